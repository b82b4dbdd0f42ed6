/**
 * Exec, attach and port-forward end to end (issue #6): CRI Exec/Attach/PortForward on a real berthd, then
 * the returned URL dialled with the test kit's SPDY/3.1 and WebSocket clients, which open streams the way
 * client-go (kubectl, the kubelet) and crictl do. Containers run busybox under runc and conmon.
 *
 * One daemon with its own CNI bridge (`bte2e-st`, 10.231.31.0/24) and two pods:
 * - "shells": `main` (sleeps; target of exec), `echo` (stdin, echoes each line), `term` (stdin + tty, `sh`),
 *   `exited` (exited at once);
 * - "web": busybox httpd on :80 answering "hello from berth".
 * Containers that a test ends (stdin_once) get their own pod or are created inside the test.
 * Leaks, disconnects and load are in streaming-load.test.ts.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { Code } from "@connectrpc/connect";
import { ContainerState } from "../../src/api/gen/runtime/v1/api_pb.js";
import {
  type ExecOutcome,
  roundTrip,
  SpdyPortForwardClient,
  spdyExec,
  UpgradeRejectedError,
  WsChannelClient,
  WsPortForwardClient,
  wsExec,
} from "../../src/client/streaming/index.js";
import { isRoot } from "../support/berthd.js";
import { closePodEnv, grpcError, type Pod, type PodEnv, shell, startPodEnv } from "../support/pods.js";
import { IN_CI, skipUnlessCi } from "../support/skip.js";
import { openSession, type Transport } from "../support/streams.js";

const TRANSPORTS: Transport[] = ["spdy", "websocket"];

describe("streaming", {
  skip: skipUnlessCi(isRoot() ? false : "needs root (runc, conmon, CNI, netns)"),
  timeout: 120_000,
}, () => {
  let env: PodEnv;
  let shells: Pod;
  let web: Pod;
  const ids = { main: "", echo: "", term: "", exited: "" };

  before(async () => {
    env = await startPodEnv({
      bridge: "bte2e-st",
      subnet: "10.231.31.0/24",
      images: ["berth-test/busybox", "berth-test/web"],
    });
    shells = await env.runPod("shells");
    web = await env.runPod("web");
    [ids.main, ids.echo, ids.term] = await Promise.all([
      env.startContainer(shells, shell(env, "main", "exec sleep 3600")),
      env.startContainer(shells, {
        ...shell(env, "echo", "while read l; do echo got:$l; done"),
        stdin: true,
      }),
      env.startContainer(shells, {
        metadata: { name: "term" },
        image: { image: env.image("berth-test/busybox") },
        command: ["sh"],
        logPath: "term.log",
        stdin: true,
        tty: true,
      }),
      env.startContainer(web, { metadata: { name: "httpd" }, image: { image: env.image("berth-test/web") } }),
    ]);
    ids.exited = (await env.runToExit(shells, shell(env, "exited", "true"))).id;
  });
  after(() => closePodEnv(env));

  const exec = (cmd: string[], o: { tty?: boolean; stdin?: boolean; stdout?: boolean; stderr?: boolean } = {}) =>
    env.d.client.runtime
      .exec({
        containerId: ids.main,
        cmd,
        tty: o.tty ?? false,
        stdin: o.stdin ?? false,
        stdout: o.stdout ?? true,
        stderr: o.stderr ?? !o.tty,
      })
      .then((r) => r.url);

  describe("exec without a terminal", () => {
    const script = ["sh", "-c", "cat; echo out; echo err >&2; exit 7"];

    for (const transport of TRANSPORTS) {
      test(`${transport}: stdin reaches cat, stdout and stderr come back apart, exit code 7 is NonZeroExitCode`, async () => {
        const url = await exec(script, { stdin: true });
        assert.match(url, /^http:\/\/127\.0\.0\.1:\d+\/exec\/[A-Za-z0-9_-]+$/);
        const r =
          transport === "spdy"
            ? await spdyExec(url, { stdin: "piped-in\n" })
            : await wsExec(url, { stdin: "piped-in\n", protocols: ["v5.channel.k8s.io"] });
        assert.equal(r.protocol, transport === "spdy" ? "v4.channel.k8s.io" : "v5.channel.k8s.io");
        assert.equal(r.stdout.toString(), "piped-in\nout\n");
        assert.equal(r.stderr.toString(), "err\n");
        assert.equal(r.status?.reason, "NonZeroExitCode");
        assert.equal(r.exitCode, 7);
      });
    }

    test("exit code 0 is a Success status; no stdin stream means the command sees EOF", async () => {
      const r = await spdyExec(await exec(["sh", "-c", "cat; echo done"]), {});
      assert.equal(r.stdout.toString(), "done\n");
      assert.equal(r.status?.status, "Success");
      assert.equal(r.exitCode, 0);
    });

    test("v1-v3 protocols carry the exit code as text on the error stream", async () => {
      for (const protocol of ["v3.channel.k8s.io", "v2.channel.k8s.io", "channel.k8s.io"]) {
        const r = await spdyExec(await exec(["sh", "-c", "echo x; exit 3"]), { protocols: [protocol] });
        assert.equal(r.protocol, protocol);
        assert.equal(r.stdout.toString(), "x\n");
        assert.match(r.error, /non-zero exit code.*3/);
        const ok = await spdyExec(await exec(["true"]), { protocols: [protocol] });
        assert.equal(ok.error, "", `${protocol}: nothing on the error stream on success`);
      }
      const ws = await wsExec(await exec(["sh", "-c", "exit 4"]), { protocols: ["channel.k8s.io"] });
      assert.equal(ws.protocol, "channel.k8s.io");
      assert.match(ws.error, /non-zero exit code.*4/);
      const b64 = await wsExec(await exec(["sh", "-c", "echo b64; exit 5"]), {
        protocols: ["base64.channel.k8s.io"],
      });
      assert.equal(b64.stdout.toString(), "b64\n");
      assert.match(b64.error, /non-zero exit code.*5/);
    });

    test("exec runs with the container's environment and in its cgroup", async () => {
      const r = await spdyExec(
        await exec(["sh", "-c", 'echo "path=$PATH"; cat /proc/self/cgroup; cat /proc/1/cgroup']),
        {},
      );
      assert.match(r.stdout.toString(), /^path=\S*\/bin/m);
      const lines = r.stdout
        .toString()
        .split("\n")
        .filter((l) => /^\d+:/.test(l));
      const half = lines.length / 2;
      assert.deepEqual(lines.slice(0, half), lines.slice(half), "same cgroups as the container's init");
    });

    test("a large output arrives whole", async () => {
      const r = await spdyExec(await exec(["sh", "-c", "head -c 3000000 /dev/zero | tr '\\0' a"]), {});
      assert.equal(r.stdout.length, 3_000_000);
      assert.equal(r.exitCode, 0);
    });
  });

  describe("exec with a terminal", () => {
    for (const transport of TRANSPORTS) {
      test(`${transport}: interactive sh fed through stdin, its exit code comes back`, async () => {
        const url = await exec(["sh"], { tty: true, stdin: true });
        const s = await openSession(url, { transport, tty: true, stdin: true });
        s.resize({ width: 100, height: 30 });
        s.write("echo interactive $((6*7))\n");
        await s.stdout.until(/interactive 42/);
        s.write("exit 5\n");
        const r = await s.outcome;
        assert.match(r.stdout.toString(), /interactive 42\r\n/);
        assert.equal(r.exitCode, 5);
        assert.equal(r.stderr.length, 0);
      });

      test(`${transport}: stty size sees the first size, then a later resize`, async () => {
        const first = await openSession(await exec(["stty", "size"], { tty: true }), { transport, tty: true });
        first.resize({ width: 123, height: 45 });
        const r1 = await first.outcome;
        assert.equal(r1.stdout.toString(), "45 123\r\n");
        assert.equal(r1.exitCode, 0);

        const url = await exec(["sh", "-c", "stty size; sleep 0.5; stty size"], { tty: true });
        const later = await openSession(url, { transport, tty: true });
        later.resize({ width: 80, height: 24 });
        await later.stdout.until(/24 80\r\n/);
        later.resize({ width: 140, height: 50 });
        const r2 = await later.outcome;
        assert.equal(r2.stdout.toString(), "24 80\r\n50 140\r\n");
      });
    }

    test("non-ASCII bytes pass through a terminal both ways", async () => {
      const url = await exec(["sh", "-c", 'read l; echo "[$l]"'], { tty: true, stdin: true });
      const s = await openSession(url, { transport: "spdy", tty: true, stdin: true });
      s.resize({ width: 80, height: 24 });
      s.write("h\u00e9llo \u2713\n");
      const r = await s.outcome;
      assert.match(r.stdout.toString(), /\[h\u00e9llo \u2713\]\r\n$/);
      assert.equal(r.exitCode, 0);
    });

    test("TERM is xterm in a terminal exec and in a tty container, unset otherwise", async () => {
      const script = ["sh", "-c", "echo term=$TERM"];
      const tty = await spdyExec(await exec(script, { tty: true }), { tty: true, resize: [{ width: 80, height: 24 }] });
      assert.equal(tty.stdout.toString(), "term=xterm\r\n");
      assert.equal((await spdyExec(await exec(script), {})).stdout.toString(), "term=\n");
      const inTty = await env.d.client.runtime.execSync({ containerId: ids.term, cmd: script, timeout: 10n });
      assert.equal(Buffer.from(inTty.stdout).toString(), "term=xterm\n", "the tty container's own env has it");
    });

    test("a terminal session without stdin gets no stray input and exits 0", async () => {
      const r = await spdyExec(await exec(["sh", "-c", "echo $((1+2))"], { tty: true }), {
        tty: true,
        resize: [{ width: 90, height: 20 }],
      });
      assert.equal(r.stdout.toString(), "3\r\n");
      assert.equal(r.exitCode, 0);
    });
  });

  describe("request validation", () => {
    const rt = () => env.d.client.runtime;
    const streams = { tty: false, stdin: false, stdout: true, stderr: false };

    test("exec and attach of an unknown container are NotFound; port-forward of an unknown pod is NotFound", async () => {
      await assert.rejects(rt().exec({ containerId: "nope", cmd: ["true"], ...streams }), grpcError(Code.NotFound));
      await assert.rejects(rt().attach({ containerId: "nope", ...streams }), grpcError(Code.NotFound));
      await assert.rejects(rt().portForward({ podSandboxId: "nope", port: [80] }), grpcError(Code.NotFound));
    });

    test("exec and attach of a stopped container are FailedPrecondition", async () => {
      await assert.rejects(
        rt().exec({ containerId: ids.exited, cmd: ["true"], ...streams }),
        grpcError(Code.FailedPrecondition),
      );
      await assert.rejects(rt().attach({ containerId: ids.exited, ...streams }), grpcError(Code.FailedPrecondition));
    });

    test("tty with stderr, and no stream at all, are InvalidArgument", async () => {
      const none = { tty: false, stdin: false, stdout: false, stderr: false };
      await assert.rejects(
        rt().exec({ containerId: ids.main, cmd: ["true"], ...streams, tty: true, stderr: true }),
        grpcError(Code.InvalidArgument),
      );
      await assert.rejects(
        rt().exec({ containerId: ids.main, cmd: ["true"], ...none }),
        grpcError(Code.InvalidArgument),
      );
      await assert.rejects(
        rt().attach({ containerId: ids.echo, ...streams, tty: true, stderr: true }),
        grpcError(Code.InvalidArgument),
      );
      await assert.rejects(rt().attach({ containerId: ids.echo, ...none }), grpcError(Code.InvalidArgument));
      await assert.rejects(rt().exec({ containerId: ids.main, cmd: [], ...streams }), grpcError(Code.InvalidArgument));
      await assert.rejects(rt().portForward({ podSandboxId: web.id, port: [70000] }), grpcError(Code.InvalidArgument));
    });

    test("a command that does not exist fails the session, not the RPC", async () => {
      const r = await spdyExec(await exec(["/no/such/binary"]), {});
      assert.notEqual(r.exitCode, 0);
      assert.equal(r.status?.status, "Failure");
    });
  });

  describe("tokens", () => {
    const rejected = async (p: Promise<unknown>, status: number) => {
      const err = await p.then(
        () => assert.fail("dial succeeded"),
        (e: unknown) => e,
      );
      assert.ok(err instanceof UpgradeRejectedError, `expected an HTTP rejection, got ${String(err)}`);
      assert.equal(err.status, status);
    };

    test("a token is single use: the second dial is 404, over SPDY and WebSocket", async () => {
      const url = await exec(["true"]);
      assert.equal((await spdyExec(url, {})).exitCode, 0);
      await rejected(spdyExec(url, {}), 404);
      await rejected(wsExec(url, {}), 404);

      const wsUrl = await exec(["true"]);
      assert.equal((await wsExec(wsUrl, {})).exitCode, 0);
      await rejected(wsExec(wsUrl, {}), 404);
      await rejected(spdyExec(wsUrl, {}), 404);

      const pf = (await env.d.client.runtime.portForward({ podSandboxId: web.id, port: [80] })).url;
      const client = await SpdyPortForwardClient.connect(pf);
      await client.close();
      await rejected(SpdyPortForwardClient.connect(pf), 404);
    });

    test("an unknown token, or a token used on another kind's path, is 404", async () => {
      const url = await exec(["true"]);
      const base = new URL(url);
      await rejected(spdyExec(new URL("/exec/AAAAAAAAAAAAAAAAAAAAAA", base).href, {}), 404);
      await rejected(wsExec(new URL("/attach/AAAAAAAAAAAAAAAAAAAAAA", base).href, {}), 404);
      await rejected(spdyExec(url.replace("/exec/", "/attach/"), {}), 404);
      // The wrong-kind dial consumed it.
      await rejected(spdyExec(url, {}), 404);
    });

    test("a dial without a protocol header is 400, one with no common protocol 403", async () => {
      await rejected(spdyExec(await exec(["true"]), { protocols: [] }), 400);
      await rejected(spdyExec(await exec(["true"]), { protocols: ["v9.channel.k8s.io"] }), 403);
    });
  });

  describe("attach", () => {
    const attach = (containerId: string, o: { tty?: boolean; stdin?: boolean; stderr?: boolean } = {}) =>
      env.d.client.runtime
        .attach({
          containerId,
          tty: o.tty ?? false,
          stdin: o.stdin ?? true,
          stdout: true,
          stderr: o.stderr ?? !o.tty,
        })
        .then((r) => r.url);

    for (const transport of TRANSPORTS) {
      test(`${transport}: lines sent to a container echoing stdin come back; detaching leaves it running`, async () => {
        const s = await openSession(await attach(ids.echo), { transport, stdin: true });
        s.write(`hello ${transport}\n`);
        await s.stdout.until(new RegExp(`got:hello ${transport}\\n`));
        s.write("second line\n");
        await s.stdout.until(/got:second line\n/);
        assert.equal(s.stderr.text(), "");
        await s.detach();
        const st = await env.d.client.runtime.containerStatus({ containerId: ids.echo });
        assert.equal(st.status?.state, ContainerState.CONTAINER_RUNNING);
        // Still attached to the same stdin after a detach.
        const again = await openSession(await attach(ids.echo), { transport, stdin: true });
        again.write("after detach\n");
        await again.stdout.until(/got:after detach\n/);
        again.drop();
        await new Promise((r) => setTimeout(r, 300));
        const st2 = await env.d.client.runtime.containerStatus({ containerId: ids.echo });
        assert.equal(st2.status?.state, ContainerState.CONTAINER_RUNNING, "a dropped connection is a detach too");
      });

      test(`${transport}: attach with a terminal to sh runs commands and applies resizes`, async () => {
        const s = await openSession(await attach(ids.term, { tty: true }), { transport, tty: true, stdin: true });
        s.resize({ width: 111, height: 33 });
        s.write(`echo tty-${transport} $((5*5))\n`);
        await s.stdout.until(new RegExp(`tty-${transport} 25\\r\\n`));
        // The ctl FIFO resize is asynchronous to the shell: ask until the size shows.
        let seen = false;
        for (let i = 0; i < 20 && !seen; i++) {
          s.write("stty size\n");
          seen = await s.stdout.until(/33 111\r\n/, 250).then(
            () => true,
            () => false,
          );
        }
        assert.ok(seen, `stty size shows 33 111: ${JSON.stringify(s.stdout.text())}`);
        await s.detach();
        const st = await env.d.client.runtime.containerStatus({ containerId: ids.term });
        assert.equal(st.status?.state, ContainerState.CONTAINER_RUNNING);
      });
    }

    test("a container created without a log path is attached through the runtime's own log", async () => {
      const id = await env.startContainer(shells, {
        metadata: { name: "nolog" },
        image: { image: env.image("berth-test/busybox") },
        command: ["sh", "-c", "while read l; do echo nolog:$l; done"],
        stdin: true,
      });
      const st = await env.d.client.runtime.containerStatus({ containerId: id });
      assert.equal(st.status?.logPath, "", "the status reports the path the kubelet gave");
      const s = await openSession(await attach(id), { transport: "spdy", stdin: true });
      s.write("seen\n");
      await s.stdout.until(/nolog:seen\n/);
      await s.detach();
    });

    /** A session's outcome, or a failure naming what hung after `ms`. */
    const ended = (s: { outcome: Promise<ExecOutcome> }, what: string, ms = 10_000) =>
      Promise.race([
        s.outcome,
        new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`${what}: the session did not end`)), ms)),
      ]);

    for (const transport of TRANSPORTS) {
      test(`${transport}: a terminal attach ends when the container exits, though the client's resize stream stays open`, async () => {
        const id = await env.startContainer(shells, {
          metadata: { name: `tty-exit-${transport}` },
          image: { image: env.image("berth-test/busybox") },
          command: ["sh"],
          stdin: true,
          tty: true,
        });
        const s = await openSession(await attach(id, { tty: true }), { transport, tty: true, stdin: true });
        s.resize({ width: 90, height: 25 });
        s.write("echo bye; exit 3\n");
        const r = await ended(s, "container exit");
        assert.match(r.stdout.toString(), /bye\r\n/);
        assert.equal(r.status?.status, "Success");
        assert.equal((await env.waitExited(id)).exitCode, 3);
      });
    }

    test("a terminal attach ends when the client closes stdin (crictl attach -it); the container keeps running", async () => {
      const s = await openSession(await attach(ids.term, { tty: true }), { transport: "spdy", tty: true, stdin: true });
      s.resize({ width: 90, height: 25 });
      s.write("echo still-here\n");
      await s.stdout.until(/still-here\r\n/);
      s.closeStdin();
      const r = await ended(s, "stdin closed");
      assert.equal(r.status?.status, "Success");
      const st = await env.d.client.runtime.containerStatus({ containerId: ids.term });
      assert.equal(st.status?.state, ContainerState.CONTAINER_RUNNING);
    });

    test("closing stdin detaches (kubectl attach -i ending); the container keeps running", async () => {
      const s = await openSession(await attach(ids.echo), { transport: "spdy", stdin: true });
      s.write("bye\n");
      await s.stdout.until(/got:bye\n/);
      s.closeStdin();
      const r = await s.outcome;
      assert.equal(r.status?.status, "Success");
      const st = await env.d.client.runtime.containerStatus({ containerId: ids.echo });
      assert.equal(st.status?.state, ContainerState.CONTAINER_RUNNING);
    });

    test("attach ends when the container exits, after its last output", async () => {
      const id = await env.startContainer(shells, {
        ...shell(env, "short", "read l; echo last:$l; exit 3"),
        stdin: true,
      });
      const s = await openSession(await attach(id), { transport: "spdy", stdin: true });
      s.write("word\n");
      const r = await s.outcome;
      assert.match(r.stdout.toString(), /last:word\n/);
      assert.equal(r.status?.status, "Success");
      await env.waitExited(id);
    });

    test("stdin_once: the first client to leave closes the container's stdin, so cat exits", async () => {
      const id = await env.startContainer(shells, {
        metadata: { name: "once" },
        image: { image: env.image("berth-test/busybox") },
        command: ["cat"],
        logPath: "once.log",
        stdin: true,
        stdinOnce: true,
      });
      const s = await openSession(await attach(id), { transport: "spdy", stdin: true });
      s.write("only once\n");
      await s.stdout.until(/only once\n/);
      await s.detach();
      const st = await env.waitExited(id, 10_000);
      assert.equal(st.exitCode, 0);
    });

    test("attach without stdin to a container without stdin is allowed; stdin to it is InvalidArgument", async () => {
      await assert.rejects(attach(ids.main, { stdin: true }), grpcError(Code.InvalidArgument));
      const s = await openSession(await attach(ids.main, { stdin: false }), { transport: "websocket" });
      await s.detach();
    });
  });

  describe("port-forward", () => {
    const get = (path: string) => `GET ${path} HTTP/1.0\r\nHost: pod\r\n\r\n`;

    test("spdy: two parallel requests on one connection both reach httpd in the pod", async () => {
      const { url } = await env.d.client.runtime.portForward({ podSandboxId: web.id, port: [80] });
      assert.match(url, /^http:\/\/127\.0\.0\.1:\d+\/portforward\/[A-Za-z0-9_-]+$/);
      const client = await SpdyPortForwardClient.connect(url);
      try {
        const [a, b] = await Promise.all([client.forward(80), client.forward(80)]);
        const [ra, rb] = await Promise.all([roundTrip(a, get("/")), roundTrip(b, get("/index.html"))]);
        for (const r of [ra, rb]) {
          assert.match(r.toString(), /^HTTP\/1\.[01] 200 OK\r\n/);
          assert.match(r.toString(), /hello from berth\n$/);
        }
        assert.equal(await a.error, "");
        assert.equal(await b.error, "");
        // The connection carries more requests after those.
        const c = await client.forward(80);
        assert.match((await roundTrip(c, get("/"))).toString(), /hello from berth/);
      } finally {
        await client.close();
      }
    });

    test("spdy: a port nothing listens on reports on the error stream", async () => {
      const { url } = await env.d.client.runtime.portForward({ podSandboxId: web.id, port: [] });
      const client = await SpdyPortForwardClient.connect(url);
      try {
        const conn = await client.forward(81);
        const reply = await roundTrip(conn, get("/"));
        assert.equal(reply.length, 0);
        assert.match(await conn.error, /port 81.*refused/);
      } finally {
        await client.close();
      }
    });

    test("spdy: a port listening on IPv6 loopback only is reached over tcp6", async (t) => {
      const id = await env.startContainer(web, {
        metadata: { name: "v6" },
        image: { image: env.image("berth-test/busybox") },
        command: ["sh", "-c", "mkdir -p /v6 && echo only v6 > /v6/index.html && exec httpd -f -p '[::1]:8086' -h /v6"],
        logPath: "v6.log",
      });
      const probe = await env.d.client.runtime.execSync({
        containerId: id,
        cmd: ["cat", "/proc/net/tcp6"],
        timeout: 10n,
      });
      // 8086 = 0x1F96, state 0A = LISTEN.
      if (!/:1F96 \S+ 0A/.test(Buffer.from(probe.stdout).toString())) {
        // A host without IPv6 cannot run this; CI's can, so there the skip is a failure.
        assert.ok(!IN_CI, "httpd could not listen on [::1] in the pod (IPv6 disabled?)");
        t.skip("httpd could not listen on [::1] (IPv6 disabled in the pod?)");
        return;
      }
      const { url } = await env.d.client.runtime.portForward({ podSandboxId: web.id, port: [8086] });
      const client = await SpdyPortForwardClient.connect(url);
      try {
        const reply = await roundTrip(await client.forward(8086), get("/"));
        assert.match(reply.toString(), /only v6\n$/);
      } finally {
        await client.close();
      }
    });

    test("websocket: a request to the port named in the CRI request, and one named in the query", async () => {
      const { url } = await env.d.client.runtime.portForward({ podSandboxId: web.id, port: [80] });
      const client = await WsPortForwardClient.connect(url);
      const port = client.port(0);
      assert.equal(await port.port, 80);
      port.write(get("/"));
      const chunks: Buffer[] = [];
      for await (const c of port.data) chunks.push(c as Buffer);
      assert.match(Buffer.concat(chunks).toString(), /^HTTP\/1\.[01] 200 OK\r\n[\s\S]*hello from berth\n$/);
      assert.equal(await port.error, "");
      await client.close();

      const bare = (await env.d.client.runtime.portForward({ podSandboxId: web.id, port: [] })).url;
      const q = await WsPortForwardClient.connect(`${bare}?port=80`);
      const p = q.port(0);
      p.write(get("/"));
      const got: Buffer[] = [];
      for await (const c of p.data) got.push(c as Buffer);
      assert.match(Buffer.concat(got).toString(), /hello from berth/);
      await q.close();
    });

    test("websocket: the ready message and channel protocol are what kubectl expects", async () => {
      const url = await exec(["sh", "-c", "echo ready"]);
      const c = await WsChannelClient.connect(url, { protocols: ["v4.channel.k8s.io"] });
      const out: Buffer[] = [];
      for await (const chunk of c.channel(1)) out.push(chunk as Buffer);
      assert.equal(Buffer.concat(out).toString(), "ready\n");
      assert.deepEqual(c.received[0], [1, 0], "an empty stdout message first");
    });
  });

  // Last: it leaves the cache full for a minute.
  describe("the request cache", () => {
    test("with 1000 requests pending, one more Exec is ResourceExhausted", async () => {
      const rt = env.d.client.runtime;
      const req = { containerId: ids.main, cmd: ["true"], tty: false, stdin: false, stdout: true, stderr: false };
      const results = await Promise.allSettled(Array.from({ length: 1001 }, () => rt.exec(req)));
      const refused = results.filter((r): r is PromiseRejectedResult => r.status === "rejected");
      assert.ok(refused.length >= 1, "at least the 1001st is refused");
      for (const r of refused) assert.ok(grpcError(Code.ResourceExhausted)(r.reason));
      await assert.rejects(rt.exec(req), grpcError(Code.ResourceExhausted));
    });
  });
});
