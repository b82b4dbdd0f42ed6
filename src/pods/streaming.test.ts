import assert from "node:assert/strict";
import { type AddressInfo, createServer, type Socket } from "node:net";
import { Duplex } from "node:stream";
import { test } from "node:test";
import { silentLogger } from "../log/index.js";
import type { ContainerRuntime } from "../runtime/index.js";
import type { ContainerManager } from "./containers.js";
import type { SandboxManager } from "./sandboxes.js";
import { createCrCrLfCollapser, createStreamingBackend } from "./streaming.js";

const run = (chunks: string[]) => {
  const c = createCrCrLfCollapser();
  return chunks.map((x) => c.push(Buffer.from(x)).toString()).join("") + c.flush().toString();
};

test("CR CR LF from an exec terminal becomes CR LF; other bytes pass unchanged", () => {
  assert.equal(run(["45 123\r\r\n", "a\r\n"]), "45 123\r\na\r\n");
  assert.equal(run(["x\r\r\ny\r\r\nz"]), "x\r\ny\r\nz");
  assert.equal(run(["plain\n", "\rprogress", "\t\u00e9\u2713"]), "plain\n\rprogress\t\u00e9\u2713");
});

test("CR CR LF split across chunks is still collapsed, and a held CR comes out at the end", () => {
  assert.equal(run(["a\r", "\r\nb"]), "a\r\nb");
  assert.equal(run(["a\r\r", "\nb"]), "a\r\nb");
  assert.equal(run(["a\r", "\r", "\n"]), "a\r\n");
  assert.equal(run(["50%\r"]), "50%\r");
  assert.equal(run(["a\r", "b"]), "a\rb");
});

/** A pod-side TCP server on loopback (port-forward with no netns runs socat in the host's). */
async function podServer(onConnection: (s: Socket) => void): Promise<{ port: number; close(): void }> {
  const sockets = new Set<Socket>();
  const server = createServer((s) => {
    sockets.add(s);
    s.on("error", () => {});
    s.once("close", () => sockets.delete(s));
    onConnection(s);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return {
    port: (server.address() as AddressInfo).port,
    close: () => {
      for (const s of sockets) s.destroy();
      server.close();
    },
  };
}

function backend() {
  const sandboxes = { get: (id: string) => ({ id, state: "ready", netnsPath: "" }) } as unknown as SandboxManager;
  return createStreamingBackend({
    sandboxes,
    containers: {} as ContainerManager,
    runtime: {} as ContainerRuntime,
    log: silentLogger(),
  });
}

/** A client stream that sends without end and counts what it receives. */
function endlessClient(): Duplex & { received: number } {
  const chunk = Buffer.alloc(64 * 1024, 0x61);
  const d = new Duplex({
    read() {
      this.push(chunk);
    },
    write(c: Buffer, _enc, cb) {
      d.received += c.length;
      cb();
    },
  }) as Duplex & { received: number };
  d.received = 0;
  return d;
}

test("port-forward to a pod server that closes while the client still sends ends the forward, without an uncaught EPIPE", {
  timeout: 30_000,
}, async () => {
  const pod = await podServer((s) => {
    // Answers, then closes both directions: socat's next write to it fails and socat exits,
    // so the client's bytes still being piped into socat's stdin meet EPIPE.
    s.once("data", () => s.end("bye\n", () => s.destroy()));
  });
  try {
    const client = endlessClient();
    const started = performance.now();
    await backend().portForward({ podSandboxId: "p", port: pod.port }, client, {
      signal: AbortSignal.timeout(20_000),
    });
    assert.ok(performance.now() - started < 15_000, "ended by the pod's close, not by the abort");
    client.destroy();
  } finally {
    pod.close();
  }
});

test("port-forward whose client stream fails mid-stream ends the forward and leaves nothing running", {
  timeout: 30_000,
}, async () => {
  const pod = await podServer((s) => {
    const chunk = Buffer.alloc(64 * 1024, 0x62);
    const pump = () => {
      while (!s.destroyed && s.write(chunk));
    };
    s.on("drain", pump);
    pump();
  });
  try {
    const client = endlessClient();
    const forwarding = backend().portForward({ podSandboxId: "p", port: pod.port }, client, {
      signal: AbortSignal.timeout(20_000),
    });
    while (client.received === 0) await new Promise((r) => setTimeout(r, 10));
    client.destroy(new Error("client reset the stream"));
    await forwarding;
  } finally {
    pod.close();
  }
});
