/** forwardPort against a real socat and a pod-side server on loopback (no netns: socat runs in the host's). */
import assert from "node:assert/strict";
import { type AddressInfo, createServer, type Socket } from "node:net";
import { Duplex } from "node:stream";
import { test } from "node:test";
import { isKind } from "../errdefs/index.js";
import { silentLogger } from "../log/index.js";
import { forwardPort } from "./port-forward.js";

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
    await forwardPort(client, { port: pod.port, signal: AbortSignal.timeout(20_000), log: silentLogger() });
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
    const forwarding = forwardPort(client, {
      port: pod.port,
      signal: AbortSignal.timeout(20_000),
      log: silentLogger(),
    });
    while (client.received === 0) await new Promise((r) => setTimeout(r, 10));
    client.destroy(new Error("client reset the stream"));
    await forwarding;
  } finally {
    pod.close();
  }
});

test("a port nobody listens on is FailedPrecondition, after trying IPv4 and IPv6", { timeout: 30_000 }, async () => {
  const pod = await podServer(() => {});
  const { port } = pod;
  pod.close();
  await assert.rejects(
    forwardPort(endlessClient(), { port, signal: AbortSignal.timeout(20_000), log: silentLogger() }),
    (err) => isKind(err, "FailedPrecondition") && /port \d+: connection refused/.test((err as Error).message),
  );
});
