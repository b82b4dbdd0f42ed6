/**
 * Interoperability with the real client: kubectl (client-go, moby/spdystream, gorilla/websocket)
 * against our streaming server, through a minimal API server that proxies like the kubelet.
 * Skipped when kubectl is not installed (scripts/setup.sh installs one where none exists); under CI=true a
 * missing kubectl fails the run instead.
 */

import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import { existsSync, mkdtempSync, realpathSync, rmSync, writeFileSync } from "node:fs";
import { createServer as createHttpServer } from "node:http";
import { connect, createServer as createTcpServer, type Server } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { after, before, describe, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { HostProcessBackend } from "../../test/support/host-backend.js";
import { type KubeApiShim, type ShimRequest, startKubeApiShim } from "../../test/support/kube-api-shim.js";
import { skipUnlessCi } from "../../test/support/skip.js";
import { StreamingServer } from "./index.js";

function findKubectl(): string | undefined {
  try {
    execFileSync("kubectl", ["version", "--client"], { stdio: "ignore", timeout: 10_000 });
    return "kubectl";
  } catch {
    return undefined;
  }
}

/** The path of `name` on PATH, or undefined. */
function which(name: string): string | undefined {
  try {
    return execFileSync("sh", ["-c", 'command -v "$0"', name]).toString().trim() || undefined;
  } catch {
    return undefined;
  }
}

const KUBECTL = findKubectl();
const skip = skipUnlessCi(KUBECTL === undefined ? "kubectl is not installed (scripts/setup.sh installs one)" : false);

interface Run {
  code: number | null;
  stdout: Buffer;
  stderr: string;
}

describe("kubectl against the streaming server", { skip }, () => {
  let server: StreamingServer;
  let backend: HostProcessBackend;
  let shim: KubeApiShim;
  let home: string;
  const seen: ShimRequest[] = [];

  before(async () => {
    backend = new HostProcessBackend();
    server = new StreamingServer({ backend });
    await server.listen();
    const flag = (q: URLSearchParams, k: string) => q.get(k) === "true" || q.get(k) === "1";
    shim = await startKubeApiShim({
      resolve: (req) => {
        seen.push(req);
        const q = req.query;
        const stdio = {
          stdin: flag(q, "stdin"),
          stdout: flag(q, "stdout"),
          stderr: flag(q, "stderr"),
          tty: flag(q, "tty"),
        };
        if (req.kind === "exec") return server.prepareExec({ containerId: "c", cmd: q.getAll("command"), ...stdio });
        if (req.kind === "attach") return server.prepareAttach({ containerId: "c", ...stdio });
        return server.preparePortForward({ podSandboxId: "pod", ports: q.getAll("ports").map(Number) });
      },
    });
    home = mkdtempSync(join(tmpdir(), "berth-kubectl-"));
    writeFileSync(join(home, "kubeconfig"), "");
  });
  after(async () => {
    await shim.close();
    await server.close();
    rmSync(home, { recursive: true, force: true });
  });

  function kubectlArgs(args: string[]): string[] {
    return ["--server", shim.url, "--cache-dir", join(home, "cache"), ...args];
  }

  function kubectlEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
    return { ...process.env, KUBECONFIG: join(home, "kubeconfig"), HOME: home, ...extra };
  }

  function run(
    args: string[],
    options: { input?: Buffer | string; env?: Record<string, string>; binary?: string } = {},
  ): Promise<Run> {
    return new Promise((resolve, reject) => {
      const child = spawn(options.binary ?? KUBECTL!, kubectlArgs(args), {
        env: kubectlEnv(options.env ?? {}),
        stdio: ["pipe", "pipe", "pipe"],
        timeout: 30_000,
      });
      const out: Buffer[] = [];
      const err: Buffer[] = [];
      child.stdout.on("data", (b: Buffer) => out.push(b));
      child.stderr.on("data", (b: Buffer) => err.push(b));
      child.on("error", reject);
      child.on("close", (code) => resolve({ code, stdout: Buffer.concat(out), stderr: Buffer.concat(err).toString() }));
      child.stdin.on("error", () => undefined);
      child.stdin.end(options.input ?? "");
    });
  }

  const SPDY = { KUBECTL_REMOTE_COMMAND_WEBSOCKETS: "false", KUBECTL_PORT_FORWARD_WEBSOCKETS: "false" };

  test("exec over WebSocket v5 (kubectl's default): stdin, stdout, stderr and the exit code", async () => {
    const r = await run(["exec", "-i", "p", "--", "/bin/busybox", "sh", "-c", "cat; echo oops >&2; exit 3"], {
      input: "hi\n",
    });
    assert.equal(r.stdout.toString(), "hi\n");
    assert.match(r.stderr, /oops/);
    assert.equal(r.code, 3, r.stderr);
    assert.equal(seen.at(-1)?.upgrade.toLowerCase(), "websocket");
    assert.match(seen.at(-1)?.protocols ?? "", /v5\.channel\.k8s\.io/);
  });

  test("exec over SPDY: megabytes both ways (moby/spdystream has no flow control) and the exit code", async () => {
    const input = Buffer.alloc(2_000_000);
    for (let i = 0; i < input.length; i++) input[i] = (i * 31) & 0xff;
    const r = await run(["exec", "-i", "p", "--", "/bin/busybox", "sh", "-c", "cat; exit 4"], { input, env: SPDY });
    assert.equal(r.code, 4, r.stderr);
    assert.ok(r.stdout.equals(input), `got ${r.stdout.length} bytes`);
    assert.equal(seen.at(-1)?.upgrade, "SPDY/3.1");
  });

  test("attach over both transports", async () => {
    for (const env of [{}, SPDY]) {
      const r = await run(["attach", "-i", "p", "-c", "c"], { input: "to the console\n", env });
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout.toString(), "to the console\n");
    }
  });

  test("exec -it: the terminal size reaches the backend (SPDY and WebSocket)", {
    skip: skipUnlessCi(which("script") === undefined ? "script(1) is not installed (bsdutils)" : false),
  }, async () => {
    for (const [env, cols, rows] of [
      ["", 123, 45],
      ["KUBECTL_REMOTE_COMMAND_WEBSOCKETS=false ", 99, 33],
    ] as const) {
      const before = backend.execs.length;
      const cmd = [
        KUBECTL!,
        ...kubectlArgs(["exec", "-it", "p", "--", "/bin/busybox", "sh", "-c", "sleep 0.5; echo tty-done"]),
      ]
        .map((a) => `'${a}'`)
        .join(" ");
      const r = await new Promise<Run>((resolve, reject) => {
        // script(1) gives kubectl a terminal of the size we set, as a user's shell would.
        const child = spawn("script", ["-qec", `stty cols ${cols} rows ${rows}; ${env}exec ${cmd}`, "/dev/null"], {
          env: kubectlEnv({}),
          stdio: ["ignore", "pipe", "pipe"],
          timeout: 30_000,
        });
        const out: Buffer[] = [];
        child.stdout.on("data", (b: Buffer) => out.push(b));
        child.on("error", reject);
        child.on("close", (code) => resolve({ code, stdout: Buffer.concat(out), stderr: "" }));
      });
      assert.match(r.stdout.toString(), /tty-done/);
      const call = backend.execs[before];
      assert.equal(call?.request.tty, true);
      assert.deepEqual(call?.resizes[0], { width: cols, height: rows });
    }
  });

  describe("port-forward", () => {
    let echo: Server;
    let echoPort: number;
    let web: ReturnType<typeof createHttpServer>;
    let webPort: number;
    before(async () => {
      echo = createTcpServer({ allowHalfOpen: true }, (s) => s.pipe(s)).listen(0, "127.0.0.1");
      web = createHttpServer((req, res) => res.end(`pod says ${req.url}`)).listen(0, "127.0.0.1");
      await Promise.all([new Promise((r) => echo.once("listening", r)), new Promise((r) => web.once("listening", r))]);
      echoPort = (echo.address() as { port: number }).port;
      webPort = (web.address() as { port: number }).port;
    });
    after(() => {
      echo.close();
      web.close();
      web.closeAllConnections();
    });

    /** Runs kubectl port-forward with random local ports; returns them in order, and a stop function. */
    async function portForward(
      env: Record<string, string>,
      remote: number[],
    ): Promise<{ local: number[]; stop: () => Promise<void> }> {
      const child = spawn(KUBECTL!, kubectlArgs(["port-forward", "p", ...remote.map((p) => `:${p}`)]), {
        env: kubectlEnv(env),
        stdio: ["ignore", "pipe", "pipe"],
      });
      const local = new Map<number, number>();
      let output = "";
      child.stdout.on("data", (b: Buffer) => {
        output += b.toString();
        for (const m of output.matchAll(/Forwarding from 127\.0\.0\.1:(\d+) -> (\d+)/g))
          local.set(Number(m[2]), Number(m[1]));
      });
      const deadline = Date.now() + 20_000;
      while (local.size < remote.length) {
        if (Date.now() > deadline || child.exitCode !== null) {
          child.kill();
          throw new Error(`kubectl port-forward did not start: ${output}`);
        }
        await sleep(20);
      }
      return {
        local: remote.map((p) => local.get(p)!),
        stop: async () => {
          child.kill();
          if (child.exitCode === null) await new Promise((r) => child.once("close", r));
        },
      };
    }

    function fetchText(port: number, path: string): Promise<string> {
      return new Promise((resolve, reject) => {
        const s = connect(port, "127.0.0.1", () =>
          s.end(`GET ${path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`),
        );
        let text = "";
        s.on("data", (b) => {
          text += b.toString();
        });
        s.on("end", () => resolve(text));
        s.on("error", reject);
      });
    }

    function echoBytes(port: number, payload: Buffer): Promise<Buffer> {
      return new Promise((resolve, reject) => {
        const s = connect({ port, host: "127.0.0.1", allowHalfOpen: true }, () => s.end(payload));
        const chunks: Buffer[] = [];
        s.on("data", (b: Buffer) => chunks.push(b));
        s.on("end", () => {
          s.end();
          resolve(Buffer.concat(chunks));
        });
        s.on("error", reject);
      });
    }

    for (const [name, env] of [
      ["SPDY tunnelled in WebSocket (kubectl's default)", {}],
      ["SPDY", SPDY],
    ] as const) {
      test(`over ${name}: parallel HTTP requests and a large echo`, async () => {
        const pf = await portForward(env, [webPort, echoPort]);
        try {
          const pages = await Promise.all(["/a", "/b", "/c"].map((p) => fetchText(pf.local[0]!, p)));
          for (const [i, page] of pages.entries()) assert.match(page, new RegExp(`pod says /${"abc"[i]}$`));
          const payload = Buffer.alloc(300_000, 5);
          assert.ok((await echoBytes(pf.local[1]!, payload)).equals(payload));
        } finally {
          await pf.stop();
        }
        const upgrade = seen.at(-1)?.upgrade.toLowerCase();
        assert.equal(upgrade, name === "SPDY" ? "spdy/3.1" : "websocket");
      });
    }
  });

  // An older client, when the machine has one next to the default kubectl (Google Cloud SDK does).
  const kubectlPath = KUBECTL === undefined ? undefined : which(KUBECTL);
  const legacy = kubectlPath === undefined ? undefined : join(dirname(realpathSync(kubectlPath)), "kubectl.1.27");
  test("kubectl 1.27 (SPDY, v4.channel.k8s.io)", {
    skip: legacy === undefined || !existsSync(legacy) ? "no kubectl.1.27 next to kubectl" : false,
  }, async () => {
    const r = await run(["exec", "-i", "p", "--", "/bin/busybox", "sh", "-c", "cat; exit 9"], {
      input: "old\n",
      binary: legacy!,
    });
    assert.equal(r.stdout.toString(), "old\n");
    assert.equal(r.code, 9, r.stderr);
    assert.match(seen.at(-1)?.protocols ?? "", /^v4\.channel\.k8s\.io/);
  });
});
