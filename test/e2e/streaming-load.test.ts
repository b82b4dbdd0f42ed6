/**
 * Streaming sessions that end badly, many sessions, and many at once (issue #6), on a real berthd with its own
 * CNI bridge (`bte2e-stl`, 10.231.32.0/24):
 * - a client that drops its connection mid-exec gets its process killed (checked from inside the container);
 * - 200 sessions of every kind (exec with and without a terminal, attach, port-forward, over SPDY and WebSocket,
 *   finished, detached or dropped) leave the daemon's fds, child processes, ptys and exec directories where
 *   they were;
 * - a hundred concurrent exec sessions while Version and ListContainers are timed (reported, not asserted).
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import {
  roundTrip,
  SpdyPortForwardClient,
  spdyExec,
  UpgradeRejectedError,
  WsPortForwardClient,
  wsExec,
} from "../../src/client/streaming/index.js";
import { isRoot } from "../support/berthd.js";
import { closePodEnv, eventually, type Pod, type PodEnv, shell, sleep, startPodEnv } from "../support/pods.js";
import { sizeFromEnv, skipUnlessCi } from "../support/skip.js";
import {
  censusCounts,
  censusDiff,
  type DaemonCensus,
  daemonCensus,
  openSession,
  type Transport,
} from "../support/streams.js";

const SESSIONS = sizeFromEnv("BERTH_E2E_STREAM_SESSIONS", 200);
const SESSION_PARALLELISM = 8;
const CONCURRENT = sizeFromEnv("BERTH_E2E_STREAM_CONCURRENT", 100);

describe("streaming under load", {
  skip: skipUnlessCi(isRoot() ? false : "needs root (runc, conmon, CNI, netns)"),
  timeout: 180_000,
}, () => {
  let env: PodEnv;
  let pod: Pod;
  let web: Pod;
  const ids = { main: "", echo: "" };

  before(async () => {
    env = await startPodEnv({
      bridge: "bte2e-stl",
      subnet: "10.231.32.0/24",
      images: ["berth-test/busybox", "berth-test/web"],
    });
    pod = await env.runPod("load");
    web = await env.runPod("web");
    [ids.main, ids.echo] = await Promise.all([
      env.startContainer(pod, shell(env, "main", "exec sleep 3600")),
      env.startContainer(pod, { ...shell(env, "echo", "while read l; do echo got:$l; done"), stdin: true }),
      env.startContainer(web, { metadata: { name: "httpd" }, image: { image: env.image("berth-test/web") } }),
    ]);
  });
  after(() => closePodEnv(env));

  const execUrl = (cmd: string[], o: { tty?: boolean; stdin?: boolean; stderr?: boolean } = {}) =>
    env.d.client.runtime
      .exec({
        containerId: ids.main,
        cmd,
        tty: o.tty ?? false,
        stdin: o.stdin ?? false,
        stdout: true,
        stderr: o.stderr ?? !o.tty,
      })
      .then((r) => r.url);

  /** The container's processes whose command line is exactly `args`, from `ps` run by ExecSync. */
  const processes = async (args: string): Promise<string[]> => {
    const r = await env.d.client.runtime.execSync({
      containerId: ids.main,
      cmd: ["ps", "-o", "pid,args"],
      timeout: 10n,
    });
    return Buffer.from(r.stdout)
      .toString()
      .split("\n")
      .filter((l) => l.trim().replace(/^\d+\s+/, "") === args);
  };

  describe("a client that goes away", () => {
    let n = 1000;
    for (const transport of ["spdy", "websocket"] as Transport[]) {
      for (const tty of [false, true]) {
        test(`${transport}${tty ? " with a terminal" : ""}: dropping the connection kills the exec'd process`, async () => {
          const args = `sleep ${++n}`;
          const url = await execUrl(["sleep", String(n)], { tty, stdin: true });
          const s = await openSession(url, { transport, tty, stdin: true });
          if (tty) s.resize({ width: 80, height: 24 });
          await eventually(`${args} to run`, async () => (await processes(args)).length === 1, 10_000);
          s.drop();
          await eventually(`${args} to be killed`, async () => (await processes(args)).length === 0, 10_000);
        });
      }
    }

    test("a client that leaves before the command starts leaves no process behind", async () => {
      const args = `sleep ${++n}`;
      const url = await execUrl(["sleep", String(n)], { tty: true, stdin: true });
      // No resize: the backend is still waiting for the terminal size when the client hangs up.
      const s = await openSession(url, { transport: "spdy", tty: true, stdin: true });
      s.drop();
      await sleep(1500);
      assert.deepEqual(await processes(args), []);
    });
  });

  test(`after ${SESSIONS} sessions of every kind, the daemon's fds, children, ptys and exec dirs are back to baseline`, async (t) => {
    const kinds: [string, (i: number) => Promise<void>][] = [
      [
        "spdy exec, stdin to cat",
        async (i) => {
          const r = await spdyExec(await execUrl(["cat"], { stdin: true }), { stdin: `line ${i}\n` });
          assert.equal(r.stdout.toString(), `line ${i}\n`);
          assert.equal(r.exitCode, 0);
        },
      ],
      [
        "websocket exec, exit code",
        async () => {
          const r = await wsExec(await execUrl(["sh", "-c", "echo o; echo e >&2; exit 3"]), {
            protocols: ["v5.channel.k8s.io"],
          });
          assert.equal(r.stdout.toString(), "o\n");
          assert.equal(r.stderr.toString(), "e\n");
          assert.equal(r.exitCode, 3);
        },
      ],
      [
        "spdy exec with a terminal, interactive sh",
        async (i) => {
          const s = await openSession(await execUrl(["sh"], { tty: true, stdin: true }), {
            transport: "spdy",
            tty: true,
            stdin: true,
          });
          s.resize({ width: 90, height: 30 });
          s.write(`echo n=$((${i}+1))\nexit 4\n`);
          const r = await s.outcome;
          assert.match(r.stdout.toString(), new RegExp(`n=${i + 1}\\r\\n`));
          assert.equal(r.exitCode, 4);
        },
      ],
      [
        "websocket exec with a terminal, stty size",
        async () => {
          const r = await wsExec(await execUrl(["stty", "size"], { tty: true }), {
            tty: true,
            resize: [{ width: 77, height: 22 }],
          });
          assert.equal(r.stdout.toString(), "22 77\r\n");
        },
      ],
      [
        "spdy attach, detach",
        async (i) => {
          const { url } = await env.d.client.runtime.attach({
            containerId: ids.echo,
            stdin: true,
            stdout: true,
            stderr: true,
            tty: false,
          });
          const s = await openSession(url, { transport: "spdy", stdin: true });
          s.write(`attach ${i}\n`);
          await s.stdout.until(new RegExp(`got:attach ${i}\\n`));
          await s.detach();
        },
      ],
      [
        "websocket attach, dropped",
        async (i) => {
          const { url } = await env.d.client.runtime.attach({
            containerId: ids.echo,
            stdin: true,
            stdout: true,
            stderr: false,
            tty: false,
          });
          const s = await openSession(url, { transport: "websocket", stdin: true, stderr: false });
          s.write(`ws attach ${i}\n`);
          await s.stdout.until(new RegExp(`got:ws attach ${i}\\n`));
          s.drop();
        },
      ],
      [
        "spdy port-forward, two requests",
        async () => {
          const { url } = await env.d.client.runtime.portForward({ podSandboxId: web.id, port: [80] });
          const client = await SpdyPortForwardClient.connect(url);
          try {
            const [a, b] = await Promise.all([client.forward(80), client.forward(80)]);
            const replies = await Promise.all([a, b].map((c) => roundTrip(c, "GET / HTTP/1.0\r\n\r\n")));
            for (const r of replies) assert.match(r.toString(), /hello from berth/);
          } finally {
            await client.close();
          }
        },
      ],
      [
        "websocket port-forward",
        async () => {
          const { url } = await env.d.client.runtime.portForward({ podSandboxId: web.id, port: [80] });
          const client = await WsPortForwardClient.connect(url);
          const p = client.port(0);
          p.write("GET / HTTP/1.0\r\n\r\n");
          const chunks: Buffer[] = [];
          for await (const c of p.data) chunks.push(c as Buffer);
          assert.match(Buffer.concat(chunks).toString(), /hello from berth/);
          await client.close();
        },
      ],
      [
        "exec dropped mid-command",
        async () => {
          const s = await openSession(await execUrl(["sh", "-c", "echo up; sleep 30"]), { transport: "spdy" });
          await s.stdout.until(/up\n/);
          s.drop();
        },
      ],
      [
        "a reused token",
        async () => {
          const url = await execUrl(["true"]);
          assert.equal((await spdyExec(url, {})).exitCode, 0);
          await assert.rejects(
            spdyExec(url, {}),
            (e: unknown) => e instanceof UpgradeRejectedError && e.status === 404,
          );
        },
      ],
    ];

    // Warm-up: one of each, so what stays for good (pooled connections, lazily loaded modules) is in the baseline.
    for (const [name, run] of kinds) await run(0).catch((err: unknown) => assert.fail(`warm-up ${name}: ${err}`));
    const settled = async (): Promise<DaemonCensus> => {
      // The daemon's own fds close asynchronously after a session; the dropped `sleep 30`s must be gone.
      let c = await daemonCensus(env.d.pid, env.d.state);
      await eventually(
        "no exec children left",
        async () => {
          c = await daemonCensus(env.d.pid, env.d.state);
          return c.children.length === 0 && c.execDirs.length === 0;
        },
        10_000,
      ).catch(() => {});
      return c;
    };
    const baseline = await settled();
    // Exec with a terminal gets a pty from the container's own devpts; the process holding it must be gone.
    const containerPtys = async () => {
      const r = await env.d.client.runtime.execSync({ containerId: ids.main, cmd: ["ls", "/dev/pts"], timeout: 10n });
      return Buffer.from(r.stdout)
        .toString()
        .split(/\s+/)
        .filter((x) => /^\d+$/.test(x));
    };
    const ptysBefore = await containerPtys();

    const t0 = performance.now();
    const failures: string[] = [];
    const byKind = new Map<string, number[]>();
    let next = 0;
    const worker = async () => {
      while (next < SESSIONS) {
        const i = next++;
        const [name, run] = kinds[i % kinds.length]!;
        const s0 = performance.now();
        await run(i).catch((err: unknown) => failures.push(`${i} ${name}: ${err}`));
        byKind.set(name, [...(byKind.get(name) ?? []), performance.now() - s0]);
      }
    };
    await Promise.all(Array.from({ length: SESSION_PARALLELISM }, worker));
    const elapsed = performance.now() - t0;
    t.diagnostic(`${SESSIONS} sessions (${SESSION_PARALLELISM} at a time) in ${Math.round(elapsed)} ms`);
    for (const [name, ms] of byKind) {
      const sorted = [...ms].sort((a, b) => a - b);
      t.diagnostic(
        `  ${name}: median ${Math.round(sorted[sorted.length >> 1] ?? 0)} ms, max ${Math.round(sorted.at(-1) ?? 0)} ms`,
      );
    }
    if (failures.length > 0) {
      const warnings = env.d
        .stderr()
        .split("\n")
        .filter((l) => /"level":(40|50)/.test(l));
      t.diagnostic(`daemon warnings:\n${warnings.slice(-20).join("\n")}`);
    }
    assert.deepEqual(failures, []);

    // A leak is something the sessions added. berthd's worker threads (spawns, rootfs reads) hold fds of
    // their own and exit after seconds idle, so fds that went away are no leak, and the check waits
    // for workers started during the sessions to exit.
    const leftovers = (c: DaemonCensus) =>
      Object.fromEntries(
        Object.entries(censusDiff(baseline, c))
          .filter(([, d]) => d.added.length > 0)
          .map(([k, d]) => [k, d.added]),
      );
    let now = await settled();
    await eventually(
      "nothing the sessions added to remain",
      async () => {
        now = await daemonCensus(env.d.pid, env.d.state);
        return Object.keys(leftovers(now)).length === 0;
      },
      20_000,
    ).catch(() => {});
    t.diagnostic(`census: ${JSON.stringify(censusCounts(now))} (baseline ${JSON.stringify(censusCounts(baseline))})`);
    assert.deepEqual(await containerPtys(), ptysBefore, "ptys in the container's devpts");
    assert.deepEqual(leftovers(now), {}, "what the sessions left in berthd");
  });

  test(`${CONCURRENT} concurrent exec sessions; Version and ListContainers keep answering`, async (t) => {
    const rt = env.d.client.runtime;
    const time = async (): Promise<number> => {
      const t0 = performance.now();
      await rt.version({});
      await rt.listContainers({});
      return performance.now() - t0;
    };
    const idle: number[] = [];
    for (let i = 0; i < 20; i++) idle.push(await time());

    const t0 = performance.now();
    let running = true;
    const busy: number[] = [];
    const prober = (async () => {
      while (running) {
        busy.push(await time());
        await sleep(20);
      }
    })();
    const firstOutput: number[] = [];
    const sessions = Array.from({ length: CONCURRENT }, async (_, i) => {
      const transport: Transport = i % 2 === 0 ? "spdy" : "websocket";
      const tty = i % 4 === 3;
      const url = await execUrl(["sh", "-c", `echo start ${i}; sleep 2; echo end ${i}`], { tty });
      const s = await openSession(url, { transport, tty });
      if (tty) s.resize({ width: 80, height: 24 });
      await s.stdout.until(new RegExp(`start ${i}`), 60_000);
      firstOutput.push(performance.now() - t0);
      const r = await s.outcome;
      assert.equal(r.exitCode, 0, `session ${i}: ${r.error}`);
      assert.match(r.stdout.toString(), new RegExp(`start ${i}\\r?\\nend ${i}\\r?\\n$`));
    });
    const results = await Promise.allSettled(sessions);
    const total = performance.now() - t0;
    running = false;
    await prober;
    const stats = (ms: number[]) => {
      const s = [...ms].sort((a, b) => a - b);
      const at = (q: number) => Math.round(s[Math.min(s.length - 1, Math.floor(q * s.length))] ?? 0);
      return `n=${s.length} median=${at(0.5)} p95=${at(0.95)} max=${at(1)} ms`;
    };
    t.diagnostic(`${CONCURRENT} concurrent exec sessions (sleep 2 each) done in ${Math.round(total)} ms`);
    t.diagnostic(`  time to each session's first output: ${stats(firstOutput)}`);
    t.diagnostic(`  Version + ListContainers idle: ${stats(idle)}`);
    t.diagnostic(`  Version + ListContainers during the sessions: ${stats(busy)}`);
    const failed = results.filter((r): r is PromiseRejectedResult => r.status === "rejected");
    assert.deepEqual(
      failed.map((f) => String(f.reason)),
      [],
    );
  });
});
