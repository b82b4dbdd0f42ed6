import assert from "node:assert/strict";
import { once } from "node:events";
import { createServer as createTcpServer, type Server, type Socket } from "node:net";
import { after, before, describe, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { type ExecRequest, StreamingServer } from "./index.js";
import { RstStatus } from "./spdy/framing.js";
import { SpdyStreamResetError } from "./spdy/session.js";
import {
  dialSpdy,
  HostProcessBackend,
  openStream,
  roundTrip,
  SpdyPortForwardClient,
  spdyExec,
  WsChannelClient,
  wsExec,
} from "./testing/index.js";

// Every streaming bound: a client over it is closed (or refused), a normal client is not affected.

const exec = (script: string, stdin = false): ExecRequest => ({
  containerId: "c1",
  cmd: ["/bin/busybox", "sh", "-c", script],
  tty: false,
  stdin,
  stdout: true,
  stderr: false,
});

async function startEcho(): Promise<{ port: number; server: Server }> {
  const server = createTcpServer({ allowHalfOpen: true }, (socket: Socket) => socket.pipe(socket));
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  return { port: (server.address() as { port: number }).port, server };
}

describe("streaming limits", { timeout: 60_000 }, () => {
  let server: StreamingServer;
  let echo: { port: number; server: Server };
  before(async () => {
    server = new StreamingServer({
      backend: new HostProcessBackend(),
      streamCreationTimeoutMs: 1000,
      portForwardUnusedTimeoutMs: 300,
    });
    await server.listen();
    echo = await startEcho();
  });
  after(async () => {
    await server.close();
    echo.server.close();
  });

  test("a WebSocket message over 1 MiB closes the connection with 1009; normal messages pass", async () => {
    const client = await WsChannelClient.connect(server.prepareExec(exec("cat", true)), {
      protocols: ["v5.channel.k8s.io"],
    });
    client.ws.send(Buffer.concat([Buffer.of(0), Buffer.alloc(2 * 1024 * 1024, 0x61)]));
    assert.equal((await client.closed).code, 1009);

    const ok = await wsExec(server.prepareExec(exec("cat", true)), {
      protocols: ["v5.channel.k8s.io"],
      stdin: Buffer.alloc(900 * 1024, 0x62),
    });
    assert.equal(ok.stdout.length, 900 * 1024);
    assert.equal(ok.exitCode, 0);
  });

  test("SPDY exec: unknown stream types are refused, and past 32 refusals the session is closed", async () => {
    const { session } = await dialSpdy(server.prepareExec(exec("sleep 30")), { protocols: ["v4.channel.k8s.io"] });
    let refused = 0;
    for (let i = 0; i < 100 && !session.signal.aborted; i++) {
      const outcome = await openStream(session, { streamtype: `bogus-${i}` }).then(
        () => "accepted",
        (err: unknown) => (err instanceof SpdyStreamResetError ? err.status : "session closed"),
      );
      assert.notEqual(outcome, "accepted", "an unknown stream type was accepted");
      if (outcome === RstStatus.RefusedStream) refused++;
    }
    await session.closed;
    assert.ok(refused >= 32 && refused <= 34, `${refused} streams refused before the session closed`);

    const normal = await spdyExec(server.prepareExec(exec("echo fine")), {
      protocols: ["v4.channel.k8s.io"],
      stderr: false,
    });
    assert.equal(normal.stdout.toString(), "fine\n");
  });

  test("SPDY exec: a repeated stream type is refused instead of replacing the first", async () => {
    const { session } = await dialSpdy(server.prepareExec(exec("echo once")), { protocols: ["v4.channel.k8s.io"] });
    const error = await openStream(session, { streamtype: "error" });
    await assert.rejects(openStream(session, { streamtype: "error" }), SpdyStreamResetError);
    const stdout = await openStream(session, { streamtype: "stdout" });
    const out: Buffer[] = [];
    for await (const c of stdout.iterator({ destroyOnReturn: false })) out.push(c as Buffer);
    assert.equal(Buffer.concat(out).toString(), "once\n");
    error.resume();
    await session.closed;
  });

  test("a port-forward session that opens no stream is closed after the unused timeout, pings or not", async () => {
    const client = await SpdyPortForwardClient.connect(server.preparePortForward({ podSandboxId: "p", ports: [] }));
    const started = Date.now();
    const pinger = setInterval(() => client.session.ping().catch(() => undefined), 50);
    try {
      await client.session.closed;
    } finally {
      clearInterval(pinger);
    }
    assert.ok(Date.now() - started >= 250, "not before the timeout");
  });

  test("a port-forward session that opened a stream outlives the unused timeout", async () => {
    const client = await SpdyPortForwardClient.connect(server.preparePortForward({ podSandboxId: "p", ports: [] }));
    const first = await client.forward(echo.port);
    assert.equal((await roundTrip(first, "one")).toString(), "one");
    await sleep(500);
    assert.equal(client.session.signal.aborted, false);
    const second = await client.forward(echo.port);
    assert.equal((await roundTrip(second, "two")).toString(), "two");
    await client.close();
  });

  test("port-forward: at most 128 requests wait for their partner stream; stale ones expire", async (t) => {
    // A slow machine must not let the first requests expire before the 129th is sent.
    const pf = new StreamingServer({ backend: new HostProcessBackend(), streamCreationTimeoutMs: 3000 });
    await pf.listen();
    t.after(() => pf.close());
    const client = await SpdyPortForwardClient.connect(pf.preparePortForward({ podSandboxId: "p", ports: [] }));
    const port = String(echo.port);
    const lonely = await Promise.all(
      Array.from({ length: 128 }, (_, i) =>
        openStream(client.session, { streamtype: "error", port, requestid: `r${i}` }),
      ),
    );
    await assert.rejects(openStream(client.session, { streamtype: "error", port, requestid: "r128" }), (err) => {
      return err instanceof SpdyStreamResetError && err.status === RstStatus.RefusedStream;
    });
    // A pending request still pairs and forwards.
    const data = await openStream(client.session, { streamtype: "data", port, requestid: "r0" });
    assert.equal((await roundTrip({ data, error: Promise.resolve("") }, "paired")).toString(), "paired");
    // The rest expire after the stream-creation timeout (3 s here), which frees the map.
    for (const s of lonely.slice(1)) s.resume();
    await Promise.all(lonely.slice(1).map((s) => once(s, "end")));
    const conn = await client.forward(echo.port);
    assert.equal((await roundTrip(conn, "again")).toString(), "again");
    await client.close();
  });
});
