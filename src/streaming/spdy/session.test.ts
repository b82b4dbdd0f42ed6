import assert from "node:assert/strict";
import { once } from "node:events";
import { connect, createServer, type Socket } from "node:net";
import { describe, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { encodePing } from "./framing.js";
import { SpdySession, type SpdySessionOptions, type SpdyStream, SpdyStreamResetError } from "./session.js";

/** A connected pair of loopback TCP sockets. */
async function socketPair(): Promise<[Socket, Socket]> {
  const server = createServer({ allowHalfOpen: true });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const { port } = server.address() as { port: number };
  const accepted = once(server, "connection") as Promise<[Socket]>;
  const client = connect({ port, host: "127.0.0.1", allowHalfOpen: true });
  await once(client, "connect");
  const [serverSide] = await accepted;
  server.close();
  return [serverSide, client];
}

async function sessionPair(
  server: Partial<SpdySessionOptions> = {},
  client: Partial<SpdySessionOptions> = {},
): Promise<{ server: SpdySession; client: SpdySession; accepted: SpdyStream[] }> {
  const [s, c] = await socketPair();
  const accepted: SpdyStream[] = [];
  const serverSession = new SpdySession(s, {
    role: "server",
    onStream: (stream) => {
      accepted.push(stream);
      return undefined;
    },
    ...server,
  });
  return { server: serverSession, client: new SpdySession(c, { role: "client", ...client }), accepted };
}

async function readAll(stream: SpdyStream): Promise<Buffer> {
  const chunks: Buffer[] = [];
  // A plain for-await destroys the Duplex at the end, which would reset our still-open side.
  for await (const chunk of stream.iterator({ destroyOnReturn: false })) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

async function waitFor(cond: () => boolean, what: string, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(5);
  }
}

describe("spdy session", () => {
  test("a client stream carries headers, data and FIN both ways", async () => {
    const { server, client, accepted } = await sessionPair();
    const stream = client.openStream({ StreamType: "stdout", port: "80" });
    assert.equal(stream.id, 1);
    await stream.reply;
    await waitFor(() => accepted.length === 1, "the server to see the stream");
    const peer = accepted[0]!;
    assert.deepEqual(peer.headers.streamtype, ["stdout"]);
    assert.deepEqual(peer.headers.port, ["80"]);
    stream.end("ping");
    assert.equal((await readAll(peer)).toString(), "ping");
    peer.end("pong");
    assert.equal((await readAll(stream)).toString(), "pong");
    await waitFor(() => server.streamCount === 0 && client.streamCount === 0, "both sides to forget the stream");
    await client.close();
    await server.closed;
  });

  test("a refused stream rejects its reply with the RST status", async () => {
    const { server, client } = await sessionPair({ onStream: () => false });
    const stream = client.openStream({ streamtype: "bogus" });
    await assert.rejects(stream.reply, (err) => err instanceof SpdyStreamResetError && err.status === 3);
    await waitFor(() => stream.destroyed, "the refused stream to be destroyed");
    client.destroy();
    await server.closed;
  });

  test("ping round-trips, and the peer's pings are echoed", async () => {
    const { server, client } = await sessionPair();
    assert.ok((await client.ping()) >= 0);
    assert.ok((await server.ping()) >= 0);
    client.destroy();
    await server.closed;
  });

  test("a flow-controlled peer's small window is never overrun, and WINDOW_UPDATEs keep data moving", async () => {
    const { server, client, accepted } = await sessionPair({}, { initialWindowSize: 4096 });
    const stream = client.openStream({ streamtype: "stdout" });
    await stream.reply;
    await waitFor(() => accepted.length === 1, "the stream");
    const payload = Buffer.alloc(300_000, 7);
    accepted[0]!.end(payload);
    const got = await readAll(stream);
    assert.equal(got.length, payload.length);
    assert.equal(client.stats.windowOverruns, 0);
    assert.equal(server.stats.peerFlowControl, "on");
    await client.close();
  });

  test("the session window is respected as well as the stream window", async () => {
    const { server, client, accepted } = await sessionPair();
    const streams = [client.openStream({ n: "1" }), client.openStream({ n: "2" }), client.openStream({ n: "3" })];
    await Promise.all(streams.map((s) => s.reply));
    await waitFor(() => accepted.length === 3, "the streams");
    // 3 x 100 KB through one 64 KiB session window: only WINDOW_UPDATE(0) lets this finish.
    for (const s of accepted) s.end(Buffer.alloc(100_000, 1));
    const sizes = await Promise.all(streams.map(async (s) => (await readAll(s)).length));
    assert.deepEqual(sizes, [100_000, 100_000, 100_000]);
    assert.equal(client.stats.windowOverruns, 0);
    await client.close();
    await server.closed;
  });

  test("a peer without flow control (moby/spdystream) still gets everything, and may overrun ours", async () => {
    const { server, client, accepted } = await sessionPair({}, { flowControl: "off" });
    const stream = client.openStream({ streamtype: "stdout" });
    await stream.reply;
    await waitFor(() => accepted.length === 1, "the stream");
    accepted[0]!.end(Buffer.alloc(1_000_000, 1));
    assert.equal((await readAll(stream)).length, 1_000_000);
    assert.equal(server.stats.peerFlowControl, "off");
    // And in the other direction: the client ignores our window, we take the data anyway.
    const up = client.openStream({ streamtype: "stdin" });
    await up.reply;
    await waitFor(() => accepted.length === 2, "the second stream");
    up.end(Buffer.alloc(500_000, 2));
    // Nobody reads yet, so everything beyond our 64 KiB window is an overrun we tolerate.
    await waitFor(() => accepted[1]!.readableLength === 500_000, "the unread data to arrive");
    assert.ok(server.stats.windowOverruns > 0);
    assert.equal((await readAll(accepted[1]!)).length, 500_000);
    await client.close();
  });

  test("a stream reset by the peer is destroyed without an error event", async () => {
    const { server, client, accepted } = await sessionPair();
    const stream = client.openStream({ streamtype: "data" });
    await stream.reply;
    await waitFor(() => accepted.length === 1, "the stream");
    stream.reset();
    await waitFor(() => accepted[0]!.destroyed, "the server stream to be destroyed");
    assert.equal(accepted[0]!.resetStatus, 5);
    assert.equal(server.streamCount, 0);
    client.destroy();
    await server.closed;
  });

  test("close() sends GOAWAY and resets streams we did not finish; the peer's signal aborts", async () => {
    const { server, client, accepted } = await sessionPair();
    const stream = client.openStream({ streamtype: "stdin" });
    await stream.reply;
    await waitFor(() => accepted.length === 1, "the stream");
    await server.close();
    assert.ok(server.signal.aborted);
    await client.closed;
    assert.ok(client.signal.aborted);
    assert.ok(stream.destroyed);
    assert.throws(() => client.openStream({}), /closed/);
  });

  test("the idle timeout ends a session without traffic", async () => {
    const { server, client } = await sessionPair({ idleTimeoutMs: 100 });
    await server.closed;
    await client.closed;
  });

  test("a protocol error (bad stream id) closes the session", async () => {
    const [s, c] = await socketPair();
    const server = new SpdySession(s, { role: "server" });
    // A server-parity stream id from the client: a session error.
    const badSyn = Buffer.from([0x80, 0x03, 0x00, 0x01, 0x00, 0x00, 0x00, 0x0a, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0]);
    c.write(Buffer.concat([encodePing(1), badSyn]));
    await server.closed;
    c.destroy();
  });

  test("past maxPeerStreams open at once a new stream is refused; closing one makes room", async () => {
    const { server, client, accepted } = await sessionPair({ maxPeerStreams: 3 });
    const open = [];
    for (let i = 0; i < 3; i++) open.push(client.openStream({ n: String(i) }));
    await Promise.all(open.map((s) => s.reply));
    const extra = client.openStream({ n: "3" });
    await assert.rejects(extra.reply, (err) => err instanceof SpdyStreamResetError && err.status === 3);
    open[0]?.reset();
    await waitFor(() => server.streamCount === 2, "the reset to reach the server");
    await client.openStream({ n: "4" }).reply;
    assert.equal(accepted.length, 4);
    await client.close();
    await server.closed;
  });

  test("past maxRefusedStreams refusals the session ends; a session under it is unaffected", async () => {
    const { server, client } = await sessionPair({ maxRefusedStreams: 2, onStream: () => false });
    for (let i = 0; i < 2; i++) await assert.rejects(client.openStream({}).reply, SpdyStreamResetError);
    assert.equal(server.signal.aborted, false, "two refusals are within the limit");
    await assert.rejects(client.openStream({}).reply);
    await server.closed;
    await client.closed;
  });

  test("a frame longer than maxFrameLength (1 MiB by default) closes the session before it is buffered", async () => {
    const [s, c] = await socketPair();
    const server = new SpdySession(s, { role: "server" });
    const head = Buffer.alloc(8);
    head.writeUInt32BE(1, 0); // data frame, stream 1
    head.writeUInt32BE(2 * 1024 * 1024, 4); // flags 0, length 2 MiB; no payload follows
    c.write(head);
    await server.closed;
    c.destroy();
  });
});
