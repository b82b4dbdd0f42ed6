/**
 * Pods for end-to-end tests: a berthd with its own CNI network (a bridge and subnet no other test file uses),
 * the fixture registry with the images a test file needs pulled, and helpers to run pods and containers and
 * wait for them.
 *
 * Lifecycle: `startPodEnv()` in a `before` hook; `close()` in the `after` hook removes every pod still there
 * (through CRI, so conmon, runc state, mounts, netns and cgroups go the normal way), stops berthd, deletes the
 * bridge and the test directory. Everything lives under one temp directory:
 *
 * ```
 * <dir>/            berthd's --dir (root/, state/, berth.sock, config.toml)
 * <dir>/cni/        the conflist
 * <dir>/ipam/       host-local IPAM allocations
 * <dir>/logs/<pod>/ each pod's log directory
 * ```
 */
import { mkdir, mkdtemp, readFile, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import {
  type ContainerConfig,
  type ContainerConfigSchema,
  ContainerState,
  type ContainerStatus,
  type PodSandboxConfig,
  type PodSandboxConfigSchema,
} from "../../src/api/gen/runtime/v1/api_pb.js";
import { defaultConflist } from "../../src/network/index.js";
import { run } from "../../src/sys/index.js";
import { removeAllPods, removeTestDir, startBerthd, type TestDaemon } from "./berthd.js";
import { ensureFixtureRegistry, type FixtureRegistry } from "./fixtures.js";

/** The plain-object form of a PodSandboxConfig (not a message instance), so tests can spread it. */
export type SandboxConfigInit = Exclude<MessageInitShape<typeof PodSandboxConfigSchema>, PodSandboxConfig>;
/** The plain-object form of a ContainerConfig. */
export type ContainerConfigInit = Exclude<MessageInitShape<typeof ContainerConfigSchema>, ContainerConfig>;

/** Options of {@link startPodEnv}. */
export interface PodEnvOptions {
  /** Bridge name, unique per test file (at most 15 characters). */
  bridge: string;
  /** A private /24 no other test file uses. */
  subnet: string;
  /** Fixture images to pull, e.g. `berth-test/busybox`. */
  images: string[];
  /** Extra berthd config appended after the [cni] table. */
  config?: string;
}

/** A running berthd with networking and pulled images. */
export interface PodEnv {
  readonly dir: string;
  readonly reg: FixtureRegistry;
  /** The current daemon (replaced by {@link restart}). */
  d: TestDaemon;
  /** Registry-qualified reference of a fixture image, e.g. `image("berth-test/busybox")`. */
  image(name: string): string;
  /** Runs a sandbox; returns its ID and the config used (needed again by CreateContainer). */
  runPod(name: string, extra?: Partial<SandboxConfigInit>): Promise<Pod>;
  /** Creates and starts a container; returns its ID. */
  startContainer(pod: Pod, config: ContainerConfigInit): Promise<string>;
  /** Creates, starts and waits for a container to exit; returns its status and its CRI log. */
  runToExit(
    pod: Pod,
    config: ContainerConfigInit,
    timeoutMs?: number,
  ): Promise<{ id: string; status: ContainerStatus; log: string }>;
  /** Polls ContainerStatus until the container has exited. */
  waitExited(id: string, timeoutMs?: number): Promise<ContainerStatus>;
  /** Stops and removes one pod (idempotent). */
  removePod(pod: Pod): Promise<void>;
  /** SIGKILLs berthd (`kill: true`) or SIGTERMs it, then starts a new one on the same directory. */
  restart(options?: { kill?: boolean; beforeStart?: () => Promise<void> }): Promise<void>;
  /** Removes every pod, stops berthd, deletes the bridge and the directory. */
  close(): Promise<void>;
}

/**
 * Closes a file's pod environment; when its berthd died mid-file, prints why once (every later test of
 * that file fails the same way, so the cause would otherwise be lost).
 */
export async function closePodEnv(env: PodEnv | undefined): Promise<void> {
  const child = env?.d.child;
  if (env && child && (child.exitCode !== null || child.signalCode !== null))
    console.error(
      `# berthd died (${child.exitCode ?? child.signalCode}):\n${env.d.stderr().split("\n").slice(-30).join("\n")}`,
    );
  await env?.close();
}

/** A sandbox as tests use it. */
export interface Pod {
  id: string;
  config: SandboxConfigInit;
  logDir: string;
}

export async function startPodEnv(options: PodEnvOptions): Promise<PodEnv> {
  const reg = await ensureFixtureRegistry();
  const dir = await mkdtemp(join(tmpdir(), "berth-e2e-"));
  const cni = join(dir, "cni");
  await mkdir(cni, { recursive: true });
  await writeFile(
    join(cni, "10-test.conflist"),
    defaultConflist({
      bridge: options.bridge,
      subnet: options.subnet,
      name: options.bridge,
      ipamDataDir: join(dir, "ipam"),
    }),
  );
  const config = `[cni]\nconf_dir = "${cni}"\n${options.config ?? ""}`;
  let d: TestDaemon;
  try {
    d = await startBerthd({ dir, config });
  } catch (err) {
    await removeTestDir(dir);
    throw err;
  }
  const image = (name: string) => `${reg.plain.host}/${reg.image(name).reference}`;
  for (const name of options.images) await d.client.image.pullImage({ image: { image: image(name) } });

  const env: PodEnv = {
    dir,
    reg,
    d,
    image,
    async runPod(name, extra = {}) {
      const logDir = join(dir, "logs", name);
      const config: SandboxConfigInit = {
        metadata: { name, namespace: "e2e", uid: `uid-${name}`, attempt: 0 },
        hostname: name,
        logDirectory: logDir,
        ...extra,
      };
      const r = await env.d.client.runtime.runPodSandbox({ config });
      return { id: r.podSandboxId, config, logDir };
    },
    async startContainer(pod, config) {
      const c = await env.d.client.runtime.createContainer({ podSandboxId: pod.id, sandboxConfig: pod.config, config });
      await env.d.client.runtime.startContainer({ containerId: c.containerId });
      return c.containerId;
    },
    async runToExit(pod, config, timeoutMs = 20_000) {
      const logPath = config.logPath ?? `${config.metadata?.name ?? "c"}.log`;
      const id = await env.startContainer(pod, { ...config, logPath });
      const status = await env.waitExited(id, timeoutMs);
      const log = await readFile(join(pod.logDir, logPath), "utf8").catch(() => "");
      return { id, status, log };
    },
    async waitExited(id, timeoutMs = 20_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const s = await env.d.client.runtime.containerStatus({ containerId: id });
        if (s.status?.state === ContainerState.CONTAINER_EXITED) return s.status;
        if (Date.now() > deadline)
          throw new Error(`container ${id} did not exit within ${timeoutMs} ms (state ${s.status?.state})`);
        await sleep(50);
      }
    },
    async removePod(pod) {
      await env.d.client.runtime.stopPodSandbox({ podSandboxId: pod.id }).catch((err: unknown) => {
        if (!(err instanceof ConnectError && err.code === Code.NotFound)) throw err;
      });
      await env.d.client.runtime.removePodSandbox({ podSandboxId: pod.id });
    },
    async restart(o = {}) {
      await env.d.stop(o.kill ? "SIGKILL" : "SIGTERM");
      await o.beforeStart?.();
      env.d = await startBerthd({ dir, config });
    },
    async close() {
      try {
        await removeAllPods(env.d.client);
      } finally {
        await env.d.stop("SIGTERM");
        await run("ip", ["link", "del", options.bridge], { name: "ip" }).catch(() => {});
        await removeTestDir(dir);
        await reg.stop();
      }
    },
  };
  return env;
}

/** Container config for the busybox image running `sh -c script`. */
export function shell(
  env: PodEnv,
  name: string,
  script: string,
  extra: Partial<ContainerConfigInit> = {},
): ContainerConfigInit {
  return {
    metadata: { name },
    image: { image: env.image("berth-test/busybox") },
    command: ["sh", "-c", script],
    logPath: `${name}.log`,
    ...extra,
  };
}

/** The content of every CRI log line, joined with newlines (full lines only end with one). */
export function logContent(log: string, stream?: "stdout" | "stderr"): string {
  let out = "";
  for (const line of log.split("\n")) {
    const m = CRI_LOG_LINE.exec(line);
    if (!m || (stream && m[2] !== stream)) continue;
    out += m[4] + (m[3] === "F" ? "\n" : "");
  }
  return out;
}

/** `<RFC3339Nano> <stdout|stderr> <F|P> <content>`. */
export const CRI_LOG_LINE =
  /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,9})?(?:Z|[+-]\d\d:\d\d)) (stdout|stderr) (F|P) (.*)$/;

/** A ConnectError predicate for assert.rejects that also checks the message. */
export function grpcError(code: Code, message?: RegExp): (e: unknown) => boolean {
  return (e) => {
    if (!(e instanceof ConnectError)) throw new Error(`expected a ConnectError, got ${String(e)}`);
    if (e.code !== code) throw new Error(`expected ${Code[code]}, got ${Code[e.code]}: ${e.rawMessage}`);
    if (message && !message.test(e.rawMessage))
      throw new Error(`message ${JSON.stringify(e.rawMessage)} does not match ${message}`);
    return true;
  };
}

/** Polls `check` until it returns a value other than undefined/false; throws after `timeoutMs`. */
export async function eventually<T>(
  what: string,
  check: () => Promise<T | undefined | false>,
  timeoutMs = 10_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
