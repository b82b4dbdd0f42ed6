import assert from "node:assert/strict";
import { once } from "node:events";
import { createServer as createHttpServer, request } from "node:http";
import { createServer as createTcpServer, type Server, type Socket } from "node:net";
import { after, before, describe, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { HostProcessBackend } from "../../test/support/host-backend.js";
import {
  dialSpdy,
  openStream,
  roundTrip,
  SpdyPortForwardClient,
  spdyExec,
  UpgradeRejectedError,
  WsChannelClient,
  WsPortForwardClient,
  wsExec,
} from "../client/streaming/index.js";
import { isKind } from "../errdefs/index.js";
import { type ExecRequest, StreamingServer, type StreamingServerOptions } from "./index.js";
import { RstStatus } from "./spdy/framing.js";
import { SpdyStreamResetError } from "./spdy/session.js";

const SH = ["/bin/busybox", "sh", "-c"];

function execReq(script: string, opts: Partial<ExecRequest> = {}): ExecRequest {
  return { containerId: "c1", cmd: [...SH, script], tty: false, stdin: false, stdout: true, stderr: true, ...opts };
}

async function startServer(
  options: Partial<StreamingServerOptions> = {},
): Promise<{ server: StreamingServer; backend: HostProcessBackend }> {
  const backend = new HostProcessBackend();
  const server = new StreamingServer({ backend, ...options });
  await server.listen();
  return { server, backend };
}

async function waitFor(cond: () => boolean, what: string, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(5);
  }
}

/** A TCP echo server that answers a half-close with its own (the pod side of port-forward). */
async function startEcho(): Promise<{ port: number; server: Server }> {
  const server = createTcpServer({ allowHalfOpen: true }, (socket: Socket) => socket.pipe(socket));
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  return { port: (server.address() as { port: number }).port, server };
}

async function startHttp(): Promise<{ port: number; close: () => Promise<void> }> {
  const server = createHttpServer((req, res) => res.end(`hello ${req.url}`));
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  return {
    port: (server.address() as { port: number }).port,
    close: () =>
      new Promise((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

/** A minimal HTTP/1.0-style GET over a forwarded connection. */
function httpGet(path: string): string {
  return `GET ${path} HTTP/1.1\r\nHost: pod\r\nConnection: close\r\n\r\n`;
}

/** A raw HTTP request to the streaming server; resolves with status, headers and body. */
function rawRequest(
  url: string,
  headers: Record<string, string | string[]>,
): Promise<{ status: number; headers: Record<string, string[]>; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method: "GET", headers, agent: false });
    req.on("response", async (res) => {
      const chunks: Buffer[] = [];
      for await (const c of res) chunks.push(c as Buffer);
      const h: Record<string, string[]> = {};
      for (const [k, v] of Object.entries(res.headersDistinct)) if (v) h[k] = v;
      resolve({ status: res.statusCode ?? 0, headers: h, body: Buffer.concat(chunks).toString() });
    });
    req.on("upgrade", (_res, socket) => {
      socket.destroy();
      reject(new Error("unexpected upgrade"));
    });
    req.on("error", reject);
    req.end();
  });
}

async function rejection(p: Promise<unknown>): Promise<UpgradeRejectedError> {
  try {
    await p;
  } catch (err) {
    if (err instanceof UpgradeRejectedError) return err;
    throw err;
  }
  throw new Error("expected the upgrade to be rejected");
}

describe("streaming server: URLs and tokens", () => {
  let server: StreamingServer;
  let now = 0;
  before(async () => {
    ({ server } = await startServer({ cache: { now: () => now } }));
  });
  after(() => server.close());

  test("URLs are absolute, on the loopback address and ephemeral port", () => {
    const url = new URL(server.prepareExec(execReq("true")));
    assert.equal(url.protocol, "http:");
    assert.equal(url.hostname, "127.0.0.1");
    assert.equal(Number(url.port), server.address().port);
    assert.match(url.pathname, /^\/exec\/[A-Za-z0-9_-]{22}$/);
    assert.match(
      server.prepareAttach({ containerId: "c", tty: true, stdin: true, stdout: true, stderr: false }),
      /\/attach\//,
    );
    assert.match(server.preparePortForward({ podSandboxId: "p", ports: [] }), /\/portforward\//);
  });

  test("requests are validated like the kubelet's", () => {
    const bad = (fn: () => unknown) => assert.throws(fn, (err) => isKind(err, "InvalidArgument"));
    bad(() => server.prepareExec(execReq("true", { containerId: "" })));
    bad(() => server.prepareExec(execReq("true", { tty: true, stderr: true })));
    bad(() => server.prepareExec(execReq("true", { stdin: false, stdout: false, stderr: false })));
    bad(() => server.prepareExec({ ...execReq("true"), cmd: [] }));
    bad(() => server.preparePortForward({ podSandboxId: "", ports: [] }));
    bad(() => server.preparePortForward({ podSandboxId: "p", ports: [0] }));
    bad(() => server.preparePortForward({ podSandboxId: "p", ports: [65536] }));
  });

  test("more than maxInFlight pending requests is ResourceExhausted (the kubelet answers 429)", async () => {
    const { server: small } = await startServer({ cache: { maxInFlight: 2 } });
    try {
      small.prepareExec(execReq("true"));
      small.preparePortForward({ podSandboxId: "p", ports: [] });
      assert.throws(
        () => small.prepareAttach({ containerId: "c", tty: false, stdin: false, stdout: true, stderr: false }),
        (err) => isKind(err, "ResourceExhausted"),
      );
    } finally {
      await small.close();
    }
  });

  test("a used token is 404, as are unknown tokens, other kinds and unknown paths", async () => {
    const url = server.prepareExec(execReq("true"));
    assert.equal((await spdyExec(url)).exitCode, 0);
    assert.equal((await rejection(spdyExec(url))).status, 404);
    assert.equal((await rejection(wsExec(url))).status, 404);
    const other = server.prepareExec(execReq("true"));
    assert.equal((await rejection(spdyExec(other.replace("/exec/", "/attach/")))).status, 404);
    const base = `http://127.0.0.1:${server.address().port}`;
    assert.equal((await rejection(spdyExec(`${base}/exec/nosuchtoken`))).status, 404);
    assert.equal((await rejection(spdyExec(`${base}/nothing/here`))).status, 404);
  });

  test("an expired token is 404 (injected clock)", async () => {
    const url = server.prepareExec(execReq("true"));
    now += 60_001;
    assert.equal((await rejection(spdyExec(url))).status, 404);
  });

  test("SPDY negotiation: missing X-Stream-Protocol-Version is 400, no common protocol is 403", async () => {
    const missing = await rejection(spdyExec(server.prepareExec(execReq("true")), { protocols: [] }));
    assert.equal(missing.status, 400);
    assert.match(missing.body, /X-Stream-Protocol-Version is required/);
    const none = await rejection(spdyExec(server.prepareExec(execReq("true")), { protocols: ["v9.channel.k8s.io"] }));
    assert.equal(none.status, 403);
    assert.deepEqual(none.headers["x-accepted-stream-protocol-versions"], [
      "v5.channel.k8s.io",
      "v4.channel.k8s.io",
      "v3.channel.k8s.io",
      "v2.channel.k8s.io",
      "channel.k8s.io",
    ]);
    const pf = await rejection(
      SpdyPortForwardClient.connect(server.preparePortForward({ podSandboxId: "p", ports: [] }), {
        protocols: ["v4.channel.k8s.io"],
      }),
    );
    assert.equal(pf.status, 403);
    assert.deepEqual(pf.headers["x-accepted-stream-protocol-versions"], ["portforward.k8s.io"]);
  });

  test("comma-separated protocol lists are split; the client's first supported one wins", async () => {
    const { protocol, session } = await dialSpdy(server.prepareExec(execReq("true")), {
      protocols: ["v9.channel.k8s.io, v3.channel.k8s.io", "v4.channel.k8s.io"],
    });
    assert.equal(protocol, "v3.channel.k8s.io");
    session.destroy();
  });

  test("a request without upgrade headers is 400; an unsupported WebSocket subprotocol is 403", async () => {
    const plain = await rawRequest(server.prepareExec(execReq("true")), {
      "X-Stream-Protocol-Version": "v4.channel.k8s.io",
    });
    assert.equal(plain.status, 400);
    assert.match(plain.body, /missing upgrade headers/);
    const ws = await rejection(
      WsChannelClient.connect(server.prepareExec(execReq("true")), { protocols: ["v9.channel.k8s.io"] }),
    );
    assert.equal(ws.status, 403);
  });

  test("a base URL with a path prefixes the routes", async () => {
    const { server: prefixed } = await startServer({ baseUrl: "http://127.0.0.1:1/cri/" });
    try {
      const url = prefixed.prepareExec(execReq("echo hi"));
      assert.match(url, /^http:\/\/127\.0\.0\.1:1\/cri\/exec\//);
      const real = url.replace(":1/", `:${prefixed.address().port}/`);
      assert.equal((await spdyExec(real)).stdout.toString(), "hi\n");
    } finally {
      await prefixed.close();
    }
  });
});

describe("streaming server: exec and attach over SPDY", () => {
  let server: StreamingServer;
  let backend: HostProcessBackend;
  before(async () => {
    // Long enough that a loaded machine (2 cores, several test runs) opens the streams in time.
    ({ server, backend } = await startServer({ streamCreationTimeoutMs: 1500 }));
  });
  after(() => server.close());

  test("stdin is echoed to stdout, stderr stays separate, and a non-zero exit is a v4 NonZeroExitCode status", async () => {
    const url = server.prepareExec(execReq("cat; echo oops >&2; exit 3", { stdin: true }));
    const out = await spdyExec(url, { stdin: "hello\n" });
    assert.equal(out.protocol, "v4.channel.k8s.io");
    assert.equal(out.stdout.toString(), "hello\n");
    assert.equal(out.stderr.toString(), "oops\n");
    assert.equal(out.exitCode, 3);
    assert.equal(out.status?.reason, "NonZeroExitCode");
    assert.deepEqual(out.status?.details?.causes, [{ reason: "ExitCode", message: "3" }]);
  });

  test("success is the kubelet's v4 Success status", async () => {
    const out = await spdyExec(server.prepareExec(execReq("echo ok")));
    assert.equal(out.error, '{"metadata":{},"status":"Success"}');
    assert.equal(out.exitCode, 0);
  });

  test("v5 over SPDY is v4", async () => {
    const out = await spdyExec(server.prepareExec(execReq("exit 5")), { protocols: ["v5.channel.k8s.io"] });
    assert.equal(out.protocol, "v5.channel.k8s.io");
    assert.equal(out.exitCode, 5);
  });

  for (const protocol of ["v3.channel.k8s.io", "v2.channel.k8s.io", "channel.k8s.io"]) {
    test(`${protocol}: failure is plain text on the error stream, success is empty`, async () => {
      const failed = await spdyExec(server.prepareExec(execReq("echo out; exit 2")), { protocols: [protocol] });
      assert.equal(failed.protocol, protocol);
      assert.equal(failed.stdout.toString(), "out\n");
      assert.equal(failed.error, "command terminated with non-zero exit code: exit code 2");
      const ok = await spdyExec(server.prepareExec(execReq("true")), { protocols: [protocol] });
      assert.equal(ok.error, "");
    });
  }

  test("stdin FIN ends the process's stdin, with large input and output both ways", async () => {
    const input = Buffer.alloc(3_000_000);
    for (let i = 0; i < input.length; i++) input[i] = (i * 7) & 0xff;
    const url = server.prepareExec(execReq("cat", { stdin: true, stderr: false }));
    const out = await spdyExec(url, { stdin: input, stderr: false });
    assert.equal(out.exitCode, 0);
    assert.ok(out.stdout.equals(input));
  });

  test("output beyond 64 KiB reaches a client without flow control (kubectl's spdystream)", async () => {
    const url = server.prepareExec(execReq("head -c 2000000 /dev/zero", { stderr: false }));
    const out = await spdyExec(url, { stderr: false, flowControl: "off" });
    assert.equal(out.stdout.length, 2_000_000);
    assert.equal(out.exitCode, 0);
  });

  test("a flow-controlled client with a small window is never overrun", async () => {
    const url = server.prepareExec(execReq("head -c 500000 /dev/zero", { stderr: false }));
    const { session } = await dialSpdy(url, { protocols: ["v4.channel.k8s.io"], initialWindowSize: 8192 });
    const error = openStream(session, { streamtype: "error" });
    await error;
    const stdout = await openStream(session, { streamtype: "stdout" });
    let total = 0;
    for await (const chunk of stdout) total += (chunk as Buffer).length;
    assert.equal(total, 500_000);
    assert.equal(session.stats.windowOverruns, 0);
    await session.close();
  });

  test("tty is passed to the backend and resize events reach it (v4), not on v2", async () => {
    const req = execReq("cat", { tty: true, stdin: true, stderr: false });
    async function* slowStdin() {
      await sleep(100);
      yield Buffer.from("typed");
    }
    const out = await spdyExec(server.prepareExec(req), {
      tty: true,
      stdin: slowStdin(),
      resize: [
        { width: 80, height: 24 },
        { width: 120, height: 40 },
      ],
    });
    assert.equal(out.stdout.toString(), "typed");
    const call = backend.execs.at(-1)!;
    assert.equal(call.request.tty, true);
    assert.deepEqual(call.io, { stdin: true, stdout: true, stderr: false });
    await waitFor(() => call.resizes.length === 2, "the resize events");
    assert.deepEqual(call.resizes, [
      { width: 80, height: 24 },
      { width: 120, height: 40 },
    ]);

    const v2 = await spdyExec(server.prepareExec(req), { tty: true, stdin: "x", protocols: ["v2.channel.k8s.io"] });
    assert.equal(v2.stdout.toString(), "x");
    assert.deepEqual(backend.execs.at(-1)!.resizes, []);
  });

  test("attach connects stdio and reports Success when it ends", async () => {
    const url = server.prepareAttach({ containerId: "c1", tty: false, stdin: true, stdout: true, stderr: false });
    const out = await spdyExec(url, { stdin: "attached\n", stderr: false });
    assert.equal(out.stdout.toString(), "attached\n");
    assert.equal(out.exitCode, 0);
    assert.equal(backend.attaches.at(-1)?.request.containerId, "c1");
  });

  test("a backend failure is an InternalError status (v4) or its text (v1)", async () => {
    const url = server.prepareExec(execReq("x", { cmd: ["/nonexistent/binary"] }));
    const v4 = await spdyExec(url);
    assert.equal(v4.status?.reason, "InternalError");
    assert.equal(v4.status?.code, 500);
    assert.match(v4.status?.message ?? "", /^Internal error occurred: error executing command in container: spawn/);
    const v1 = await spdyExec(server.prepareExec({ ...execReq("x"), cmd: ["/nonexistent/binary"] }), {
      protocols: ["channel.k8s.io"],
    });
    assert.match(v1.error, /^Internal error occurred: error executing command in container/);
  });

  test("a client that does not open its streams in time is dropped before the backend runs", async () => {
    const before = backend.execs.length;
    const { session } = await dialSpdy(server.prepareExec(execReq("true")), { protocols: ["v4.channel.k8s.io"] });
    await openStream(session, { streamtype: "error" });
    await session.closed;
    assert.equal(backend.execs.length, before);
  });

  test("a client that disconnects aborts the backend call, which kills the process", async () => {
    const url = server.prepareExec(execReq("sleep 60", { stderr: false }));
    const { session } = await dialSpdy(url, { protocols: ["v4.channel.k8s.io"] });
    await openStream(session, { streamtype: "error" });
    await openStream(session, { streamtype: "stdout" });
    await waitFor(() => backend.running === 1, "the exec to start");
    session.destroy();
    await waitFor(() => backend.running === 0, "the backend call to return");
    assert.equal(backend.execs.at(-1)?.aborted, true);
    await waitFor(() => server.activeSessions === 0, "the session to end");
  });
});

describe("streaming server: exec and attach over WebSocket", () => {
  let server: StreamingServer;
  let backend: HostProcessBackend;
  before(async () => {
    ({ server, backend } = await startServer());
  });
  after(() => server.close());

  const cases = [
    { protocol: "v5.channel.k8s.io", json: true },
    { protocol: "v4.channel.k8s.io", json: true },
    { protocol: "v4.base64.channel.k8s.io", json: true },
    { protocol: "channel.k8s.io", json: false },
    { protocol: "base64.channel.k8s.io", json: false },
    { protocol: "", json: false },
  ];
  for (const { protocol, json } of cases) {
    test(`subprotocol "${protocol}": stdout, stderr and the exit status`, async () => {
      const url = server.prepareExec(execReq("printf 'out\\000bin'; echo err >&2; exit 2"));
      const out = await wsExec(url, { protocols: protocol === "" ? [] : [protocol] });
      assert.equal(out.protocol, protocol);
      assert.ok(out.stdout.equals(Buffer.from("out\0bin")));
      assert.equal(out.stderr.toString(), "err\n");
      if (json) assert.equal(out.exitCode, 2);
      else assert.equal(out.error, "command terminated with non-zero exit code: exit code 2");
    });
  }

  test("the first message is empty, on the lowest writable channel", async () => {
    const stdoutFirst = await WsChannelClient.connect(server.prepareExec(execReq("true")), {
      protocols: ["v4.channel.k8s.io"],
    });
    await stdoutFirst.closed;
    assert.deepEqual(stdoutFirst.received[0], [1, 0]);
    const url = server.prepareExec(execReq("true", { stdout: false, stderr: false, stdin: true }));
    const errorFirst = await WsChannelClient.connect(url, { protocols: ["v5.channel.k8s.io"] });
    errorFirst.closeChannel(0);
    await errorFirst.closed;
    assert.deepEqual(errorFirst.received[0], [3, 0]);
  });

  test("v5's close signal ends stdin", async () => {
    const url = server.prepareExec(execReq("cat; echo done", { stdin: true }));
    const out = await wsExec(url, { protocols: ["v5.channel.k8s.io"], stdin: "abc\n" });
    assert.equal(out.stdout.toString(), "abc\ndone\n");
    assert.equal(out.exitCode, 0);
  });

  test("base64 stdin is decoded, and stdin without a close signal still reaches the process", async () => {
    const url = server.prepareExec(execReq("head -c 5", { stdin: true }));
    const out = await wsExec(url, { protocols: ["v4.base64.channel.k8s.io"], stdin: "hello" });
    assert.equal(out.stdout.toString(), "hello");
  });

  test("resize events on channel 4 reach the backend of a tty session", async () => {
    const url = server.prepareExec(execReq("cat", { tty: true, stdin: true, stderr: false }));
    const out = await wsExec(url, {
      protocols: ["v5.channel.k8s.io"],
      tty: true,
      resize: [{ width: 132, height: 43 }],
      stdin: "t",
    });
    assert.equal(out.stdout.toString(), "t");
    const call = backend.execs.at(-1)!;
    await waitFor(() => call.resizes.length === 1, "the resize event");
    assert.deepEqual(call.resizes, [{ width: 132, height: 43 }]);
  });

  test("attach over WebSocket", async () => {
    const url = server.prepareAttach({ containerId: "c2", tty: false, stdin: true, stdout: true, stderr: false });
    const out = await wsExec(url, { protocols: ["v5.channel.k8s.io"], stdin: "hi" });
    assert.equal(out.stdout.toString(), "hi");
    assert.equal(out.exitCode, 0);
  });

  test("a client that goes away aborts the backend call", async () => {
    const client = await WsChannelClient.connect(server.prepareExec(execReq("sleep 60")), {
      protocols: ["v4.channel.k8s.io"],
    });
    await waitFor(() => backend.running === 1, "the exec to start");
    client.ws.terminate();
    await waitFor(() => backend.running === 0, "the backend call to return");
    assert.equal(backend.execs.at(-1)?.aborted, true);
  });
});

describe("streaming server: port-forward", () => {
  let server: StreamingServer;
  let backend: HostProcessBackend;
  let echo: { port: number; server: Server };
  let http: { port: number; close: () => Promise<void> };
  before(async () => {
    ({ server, backend } = await startServer({ streamCreationTimeoutMs: 300 }));
    echo = await startEcho();
    http = await startHttp();
  });
  after(async () => {
    await server.close();
    echo.server.close();
    await http.close();
  });

  test("SPDY: two parallel requests on one connection, to two ports", async () => {
    const client = await SpdyPortForwardClient.connect(server.preparePortForward({ podSandboxId: "pod1", ports: [] }));
    const [a, b] = await Promise.all([client.forward(echo.port), client.forward(http.port)]);
    const [echoed, page] = await Promise.all([roundTrip(a, "ping pong"), roundTrip(b, httpGet("/two"))]);
    assert.equal(echoed.toString(), "ping pong");
    assert.match(page.toString(), /^HTTP\/1\.1 200 OK[\s\S]*hello \/two$/);
    assert.equal(await a.error, "");
    assert.equal(await b.error, "");
    // The same connection keeps serving new requests.
    const again = await client.forward(echo.port);
    assert.equal((await roundTrip(again, Buffer.alloc(200_000, 9))).length, 200_000);
    const targets = backend.forwards.slice(-3).map((f) => `${f.target.podSandboxId}:${f.target.port}`);
    assert.deepEqual(targets.sort(), [`pod1:${echo.port}`, `pod1:${echo.port}`, `pod1:${http.port}`].sort());
    await client.close();
  });

  test("SPDY: clients without requestID are paired by stream id", async () => {
    const client = await SpdyPortForwardClient.connect(server.preparePortForward({ podSandboxId: "pod1", ports: [] }));
    const conn = await client.forward(echo.port, { requestId: null });
    assert.equal((await roundTrip(conn, "legacy")).toString(), "legacy");
    await client.close();
  });

  test("SPDY: a port nobody listens on is reported on the error stream", async () => {
    const closed = await startEcho();
    closed.server.close();
    const client = await SpdyPortForwardClient.connect(server.preparePortForward({ podSandboxId: "pod1", ports: [] }));
    const conn = await client.forward(closed.port);
    assert.match(await conn.error, new RegExp(`^error forwarding port ${closed.port} to pod pod1: .*ECONNREFUSED`));
    await client.close();
  });

  test("SPDY: streams without a valid port or type are refused, a lone stream times out", async () => {
    const client = await SpdyPortForwardClient.connect(server.preparePortForward({ podSandboxId: "pod1", ports: [] }));
    await assert.rejects(openStream(client.session, { streamtype: "data", port: "0", requestid: "9" }));
    await assert.rejects(openStream(client.session, { streamtype: "bogus", port: "80", requestid: "9" }));
    const lonely = await openStream(client.session, { streamtype: "error", port: String(echo.port), requestid: "7" });
    const chunks: Buffer[] = [];
    for await (const c of lonely) chunks.push(c as Buffer);
    assert.match(Buffer.concat(chunks).toString(), /timed out waiting for streams/);
    await client.close();
  });

  for (const protocol of ["v4.channel.k8s.io", "v4.base64.channel.k8s.io", ""]) {
    test(`WebSocket "${protocol}": data channel 2i, error 2i+1, each announcing its port first`, async () => {
      const url = server.preparePortForward({ podSandboxId: "pod2", ports: [echo.port, http.port] });
      const client = await WsPortForwardClient.connect(url, { protocols: protocol === "" ? [] : [protocol] });
      const echoPort = client.port(0);
      const httpPort = client.port(1);
      assert.equal(await echoPort.port, echo.port);
      assert.equal(await echoPort.errorPort, echo.port);
      assert.equal(await httpPort.port, http.port);
      echoPort.write("over websocket");
      httpPort.write(httpGet("/ws"));
      const [first] = (await once(echoPort.data, "data")) as [Buffer];
      assert.equal(first.toString(), "over websocket");
      let page = "";
      for await (const chunk of httpPort.data) {
        page += chunk.toString();
        if (page.endsWith("hello /ws")) break;
      }
      assert.match(page, /hello \/ws$/);
      await client.close();
      assert.equal(await echoPort.error, "");
    });
  }

  test("WebSocket: ports come from ?port= when the CRI request named none", async () => {
    const url = server.preparePortForward({ podSandboxId: "pod3", ports: [] });
    const client = await WsPortForwardClient.connect(`${url}?port=${echo.port}`);
    const p = client.port(0);
    assert.equal(await p.port, echo.port);
    p.write("q");
    const [first] = (await once(p.data, "data")) as [Buffer];
    assert.equal(first.toString(), "q");
    await client.close();
    const none = await rejection(
      WsPortForwardClient.connect(server.preparePortForward({ podSandboxId: "p", ports: [] })),
    );
    assert.equal(none.status, 400);
    const ports = Array.from({ length: 129 }, (_, i) => 1000 + i).join(",");
    const tooMany = await rejection(
      WsPortForwardClient.connect(`${server.preparePortForward({ podSandboxId: "p", ports: [] })}?port=${ports}`),
    );
    assert.equal(tooMany.status, 400);
    assert.throws(
      () => server.preparePortForward({ podSandboxId: "p", ports: Array.from({ length: 129 }, (_, i) => 1000 + i) }),
      (err) => isKind(err, "InvalidArgument"),
    );
  });

  test("the idle timeout closes a port-forward connection nobody uses", async () => {
    const { server: idle } = await startServer({ idleTimeoutMs: 150 });
    try {
      const client = await SpdyPortForwardClient.connect(idle.preparePortForward({ podSandboxId: "p", ports: [] }));
      await client.session.closed;
      const ws = await WsPortForwardClient.connect(idle.preparePortForward({ podSandboxId: "p", ports: [echo.port] }));
      await ws.client.closed;
    } finally {
      await idle.close();
    }
  });
});

describe("streaming server: lifecycle", () => {
  test("close() drops live sessions and aborts their backend calls", async () => {
    const { server, backend } = await startServer();
    const url = server.prepareExec(execReq("sleep 60", { stderr: false }));
    const pending = spdyExec(url, { stderr: false }).catch((err: unknown) => err);
    await waitFor(() => backend.running === 1, "the exec to start");
    await server.close();
    assert.equal(backend.running, 0);
    assert.equal(backend.execs[0]?.aborted, true);
    // The client sees the connection drop (possibly before its last SYN_REPLY) and no status.
    const out = await pending;
    if (!(out instanceof Error)) assert.equal((out as { error: string }).error, "");
  });

  test("200 sessions leave no handles behind", async () => {
    // Earlier tests' sockets and processes may still be closing; start from a quiet process.
    await waitFor(() => !Object.keys(resourceCounts()).some((r) => TRANSIENT.test(r)), "earlier tests to settle");
    const baseline = resourceCounts();
    const echo = await startEcho();
    const { server, backend } = await startServer();
    const sessions: Promise<unknown>[] = [];
    for (let i = 0; i < 50; i++) {
      sessions.push(spdyExec(server.prepareExec(execReq("cat", { stdin: true })), { stdin: `spdy ${i}` }));
      sessions.push(
        wsExec(server.prepareExec(execReq("cat", { stdin: true })), {
          protocols: ["v5.channel.k8s.io"],
          stdin: `ws ${i}`,
        }),
      );
      sessions.push(
        (async () => {
          const client = await SpdyPortForwardClient.connect(
            server.preparePortForward({ podSandboxId: "p", ports: [] }),
          );
          const reply = await roundTrip(await client.forward(echo.port), `pf ${i}`);
          await client.close();
          return reply;
        })(),
      );
      sessions.push(
        (async () => {
          const client = await WsPortForwardClient.connect(
            server.preparePortForward({ podSandboxId: "p", ports: [echo.port] }),
          );
          const port = client.port(0);
          port.write(`wspf ${i}`);
          await once(port.data, "data");
          await client.close();
        })(),
      );
      // Some clients vanish mid-session.
      if (i % 10 === 0) {
        sessions.push(
          (async () => {
            const { session } = await dialSpdy(server.prepareExec(execReq("sleep 60", { stderr: false })), {
              protocols: ["v4.channel.k8s.io"],
            });
            await openStream(session, { streamtype: "error" });
            await openStream(session, { streamtype: "stdout" });
            session.destroy();
          })(),
        );
      }
    }
    await Promise.all(sessions);
    await waitFor(() => server.activeSessions === 0 && backend.running === 0, "every session to end");
    await server.close();
    echo.server.close();
    await waitFor(
      () => sameCounts(resourceCounts(), baseline),
      `handles to return to the baseline ${JSON.stringify(baseline)}, now ${JSON.stringify(resourceCounts())}`,
    );
  });
});

const TRANSIENT = /Socket|Server|Process|Shutdown|Write|Timeout/;

function resourceCounts(): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const r of process.getActiveResourcesInfo()) counts[r] = (counts[r] ?? 0) + 1;
  return counts;
}

function sameCounts(a: Record<string, number>, b: Record<string, number>): boolean {
  const keys = new Set([...Object.keys(a), ...Object.keys(b)]);
  return [...keys].every((k) => (a[k] ?? 0) === (b[k] ?? 0));
}

describe("streaming limits", { timeout: 60_000 }, () => {
  let server: StreamingServer;
  let echo: { port: number; server: Server };
  before(async () => {
    server = new StreamingServer({
      backend: new HostProcessBackend(),
      // Long: the refusal test must reach its limit before the session gives up waiting for streams.
      streamCreationTimeoutMs: 10_000,
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
    const client = await WsChannelClient.connect(server.prepareExec(execReq("cat", { stdin: true, stderr: false })), {
      protocols: ["v5.channel.k8s.io"],
    });
    client.ws.send(Buffer.concat([Buffer.of(0), Buffer.alloc(2 * 1024 * 1024, 0x61)]));
    assert.equal((await client.closed).code, 1009);

    const ok = await wsExec(server.prepareExec(execReq("cat", { stdin: true, stderr: false })), {
      protocols: ["v5.channel.k8s.io"],
      stdin: Buffer.alloc(900 * 1024, 0x62),
    });
    assert.equal(ok.stdout.length, 900 * 1024);
    assert.equal(ok.exitCode, 0);
  });

  test("SPDY exec: unknown stream types are refused, and past 32 refusals the session is closed", async () => {
    const { session } = await dialSpdy(server.prepareExec(execReq("sleep 30", { stderr: false })), {
      protocols: ["v4.channel.k8s.io"],
    });
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

    const normal = await spdyExec(server.prepareExec(execReq("echo fine", { stderr: false })), {
      protocols: ["v4.channel.k8s.io"],
      stderr: false,
    });
    assert.equal(normal.stdout.toString(), "fine\n");
  });

  test("SPDY exec: a repeated stream type is refused instead of replacing the first", async () => {
    const { session } = await dialSpdy(server.prepareExec(execReq("echo once", { stderr: false })), {
      protocols: ["v4.channel.k8s.io"],
    });
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
