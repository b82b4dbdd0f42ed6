import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer as createH2Server, connect as h2connect } from "node:http2";
import { connect, createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { acceptWithAuthorityFix } from "./authority.js";

let dir: string;
let path: string;
const seen: string[] = [];
let close: () => Promise<void>;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), "berth-authority-"));
  path = join(dir, "s.sock");
  const h2 = createH2Server((req, res) => {
    seen.push(req.headers[":authority"] ?? "");
    res.end(`hello ${req.url}`);
  });
  const listener = createServer((s) => acceptWithAuthorityFix(s, (stream) => h2.emit("connection", stream)));
  await new Promise<void>((r) => listener.listen(path, r));
  close = () =>
    new Promise<void>((r) => {
      listener.close(() => r());
    });
});
after(async () => {
  await close();
  rmSync(dir, { recursive: true, force: true });
});

async function get(authority: string, paths: string[]): Promise<string[]> {
  const session = h2connect("http://localhost", { createConnection: () => connect(path) });
  try {
    const out: string[] = [];
    for (const p of paths) {
      out.push(
        await new Promise<string>((resolve, reject) => {
          const req = session.request({ ":path": p, ":authority": authority });
          let body = "";
          req.setEncoding("utf8");
          req.on("data", (d: string) => {
            body += d;
          });
          req.on("end", () => resolve(body));
          req.on("error", reject);
          req.end();
        }),
      );
    }
    return out;
  } finally {
    session.close();
  }
}

test("a request whose :authority is a socket path (grpc-go before Kubernetes 1.31) is served", async () => {
  seen.length = 0;
  assert.deepEqual(await get("/run/berth/berth.sock", ["/a", "/b", "/c"]), ["hello /a", "hello /b", "hello /c"]);
  assert.deepEqual(seen, ["-run-berth-berth.sock", "-run-berth-berth.sock", "-run-berth-berth.sock"]);
});

test("a proper :authority reaches the server unchanged", async () => {
  seen.length = 0;
  assert.deepEqual(await get("localhost", ["/x", "/y"]), ["hello /x", "hello /y"]);
  assert.deepEqual(seen, ["localhost", "localhost"]);
});

test("the server speaks first: its SETTINGS arrive before the client sends any request (grpc-go waits for them)", async () => {
  const sock = connect(path);
  try {
    await new Promise<void>((resolve, reject) => {
      sock.once("connect", resolve);
      sock.once("error", reject);
    });
    // Client preface and an empty SETTINGS frame, then nothing until the server's SETTINGS arrive.
    sock.write(
      Buffer.concat([Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), Buffer.from([0, 0, 0, 4, 0, 0, 0, 0, 0])]),
    );
    const frameType = await new Promise<number>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error("no frame from the server within 2 s")), 2000);
      sock.once("data", (b: Buffer) => {
        clearTimeout(timer);
        resolve(b[3] as number);
      });
    });
    assert.equal(frameType, 4, "the first frame is SETTINGS");
  } finally {
    sock.destroy();
  }
});

// ---- hostile clients: every limit closes the offending connection, and only it ----

const PREFACE = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
const SETTINGS = Buffer.from([0, 0, 0, 4, 0, 0, 0, 0, 0]);

function frame(type: number, flags: number, streamId: number, payload: Buffer | number): Buffer {
  const body = typeof payload === "number" ? Buffer.alloc(payload, 0x61) : payload;
  const head = Buffer.alloc(9);
  head.writeUIntBE(body.length, 0, 3);
  head[3] = type;
  head[4] = flags;
  head.writeUInt32BE(streamId, 5);
  return Buffer.concat([head, body]);
}

/**
 * Sends `chunks` on a raw connection (as long as the server lets it), then returns the error code
 * of the GOAWAY the server sent (undefined if none) once the connection is closed. Fails after 5 s.
 */
async function hostile(chunks: Iterable<Buffer>): Promise<{ goAway: number | undefined; written: number }> {
  const sock = connect(path);
  let received = Buffer.alloc(0);
  sock.on("data", (b: Buffer) => {
    received = Buffer.concat([received, b]);
  });
  const closed = new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("connection still open after 5 s")), 5000);
    sock.once("close", () => {
      clearTimeout(timer);
      resolve();
    });
  });
  sock.on("error", () => undefined);
  await new Promise<void>((resolve) => sock.once("connect", resolve));
  let written = 0;
  for (const chunk of chunks) {
    if (sock.destroyed || sock.writableEnded || sock.readableEnded) break;
    if (!sock.write(chunk)) await new Promise((r) => setTimeout(r, 1));
    written += chunk.length;
  }
  try {
    await closed;
  } finally {
    sock.destroy();
  }
  let goAway: number | undefined;
  for (let i = 0; i + 9 <= received.length; ) {
    const len = received.readUIntBE(i, 3);
    if (received[i + 3] === 7 && i + 17 <= received.length) goAway = received.readUInt32BE(i + 13);
    i += 9 + len;
  }
  return { goAway, written };
}

/** The server still answers a well-behaved client. */
async function stillServing(): Promise<void> {
  assert.deepEqual(await get("/run/berth/berth.sock", ["/after"]), ["hello /after"]);
}

test("HEADERS without END_HEADERS followed by endless CONTINUATION frames: GOAWAY ENHANCE_YOUR_CALM and close", async () => {
  function* flood(): Generator<Buffer> {
    yield Buffer.concat([PREFACE, SETTINGS, frame(1, 0x0, 1, 16_000)]);
    // 100 MB if nobody stops it; the limit is 64 KiB.
    for (let i = 0; i < 6400; i++) yield frame(9, 0x0, 1, 16_000);
  }
  const { goAway, written } = await hostile(flood());
  assert.equal(goAway, 0xb);
  assert.ok(written < 10_000_000, `the server stopped reading early (${written} bytes written)`);
  await stillServing();
});

test("a flood of empty CONTINUATION frames is refused after 8 (nghttp2's limit)", async () => {
  function* flood(): Generator<Buffer> {
    yield Buffer.concat([PREFACE, SETTINGS, frame(1, 0x0, 1, 10)]);
    for (let i = 0; i < 100_000; i++) yield frame(9, 0x0, 1, 0);
  }
  assert.equal((await hostile(flood())).goAway, 0xb);
  await stillServing();
});

test("a frame longer than 16 KiB is refused with FRAME_SIZE_ERROR before it is buffered", async () => {
  const head = Buffer.alloc(9);
  head.writeUIntBE(0xff_ffff, 0, 3); // 16 MiB announced; nothing follows
  head[3] = 0;
  head.writeUInt32BE(1, 5);
  assert.equal((await hostile([Buffer.concat([PREFACE, SETTINGS, head])])).goAway, 0x6);
  await stillServing();
});

test("a garbage preface is refused at once", async () => {
  assert.equal((await hostile([Buffer.from("GET / HTTP/1.1\r\nHost: x\r\n\r\n")])).goAway, 0x1);
  await stillServing();
});

test("a connection that never sends its preface is closed after the preface timeout", async () => {
  const listener = createServer((s) =>
    acceptWithAuthorityFix(s, (stream) => stream.resume(), { prefaceTimeoutMs: 200 }),
  );
  const p = join(dir, "slow.sock");
  await new Promise<void>((r) => listener.listen(p, r));
  try {
    const sock = connect(p);
    sock.write("PRI * HTTP");
    sock.resume();
    const started = Date.now();
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error("still open after 3 s")), 3000);
      sock.on("error", () => undefined);
      sock.once("close", () => {
        clearTimeout(timer);
        resolve();
      });
    });
    assert.ok(Date.now() - started >= 150);
  } finally {
    await new Promise<void>((r) => listener.close(() => r()));
  }
});

test("a frame interleaved into a header block is a protocol error", async () => {
  const data = frame(0, 0x1, 3, 4);
  const { goAway } = await hostile([Buffer.concat([PREFACE, SETTINGS, frame(1, 0x0, 1, 10), data])]);
  assert.equal(goAway, 0x1);
  await stillServing();
});

test("a large legitimate header split into CONTINUATION frames is still served", async () => {
  const session = h2connect("http://localhost", { createConnection: () => connect(path) });
  try {
    const body = await new Promise<string>((resolve, reject) => {
      const req = session.request({ ":path": "/big", ":authority": "/run/x.sock", "x-big": "v".repeat(40_000) });
      let out = "";
      req.setEncoding("utf8");
      req.on("data", (d: string) => {
        out += d;
      });
      req.on("end", () => resolve(out));
      req.on("error", reject);
      req.end();
    });
    assert.equal(body, "hello /big");
  } finally {
    session.close();
  }
});
