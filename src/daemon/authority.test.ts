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
