/**
 * A CRI runtime under test, as the measurements see it: a client, the daemon's PID, and where on the host its
 * pods leave traces (for the memory walk and the leak check). `berth.ts` and `containerd.ts` start one each on
 * private directories; this file holds what both share (daemon process handling, the CNI network).
 */
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { mkdir, open, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { promisify } from "node:util";
import { type CriClient, createCriClient } from "../src/client/index.js";
import { defaultConflist } from "../src/network/index.js";
import { killAll, processTable, waitGone } from "./host.js";

/** Which runtime; also the key of its results. */
export type RuntimeName = "berth" | "containerd";

/** The CNI network a runtime's pods join: the same plugins (berth's default list), its own bridge and subnet. */
export interface BenchNetwork {
  /** CNI network name (host-local keeps reservations per name; NAT rules are commented with it). */
  name: string;
  bridge: string;
  subnet: string;
  /** host-local's reservation directory (private, so the leak check can count leases). */
  ipamDir: string;
}

/** A started runtime. */
export interface RuntimeUnderTest {
  readonly name: RuntimeName;
  readonly client: CriClient;
  /** The daemon's PID (berthd's node process; containerd). */
  readonly pid: number;
  /** Cgroup under which the benchmark puts its pods (`cgroup_parent` = `<cgroupRoot>/pod<uid>`). */
  readonly cgroupRoot: string;
  readonly network: BenchNetwork;
  /** Where the runtime keeps its network namespace files. */
  readonly netnsDir: string;
  /** Mount points at or below these belong to this runtime (seen from the daemon's mount namespace). */
  readonly mountPrefixes: readonly string[];
  /** The content store's blob directory (`.../blobs/sha256`), to check that a pull starts cold. */
  readonly blobDir: string;
  /** Image reference of the pod container (the same image, from the same registry, for both). */
  readonly image: string;
  /** Its per-pod/per-container monitor processes (conmon, containerd-shim), found by their command line. */
  monitorPids(): Promise<number[]>;
  /** `<name> <version>` from the CRI Version RPC. */
  version(): Promise<string>;
  /** Removes every pod left, then stops the daemon (by PID), then any monitor left; idempotent. */
  stop(): Promise<void>;
}

/** Writes the network's conflist into `confDir` (as `10-<name>.conflist`). */
export async function writeNetworkConfig(confDir: string, network: BenchNetwork): Promise<void> {
  const text = defaultConflist({
    name: network.name,
    bridge: network.bridge,
    subnet: network.subnet,
    ipamDataDir: network.ipamDir,
  });
  await writeFile(join(confDir, `10-${network.name}.conflist`), text);
}

/**
 * Mounts a tmpfs at `path` (created if needed). A runtime's volatile state lives on tmpfs in production
 * (/run/berth, /run/containerd), where fsync is free; the benchmark's temporary directory may be on disk, so
 * each state directory gets its own tmpfs to keep the comparison honest. Unmounted with the bench directory.
 */
export async function mountTmpfs(path: string): Promise<void> {
  await mkdir(path, { recursive: true });
  await promisify(execFile)("mount", ["-t", "tmpfs", "-o", "mode=0711", "tmpfs", path]);
}

/** A daemon the benchmark spawned: its own process group, stdout and stderr to a log file. */
export interface Daemon {
  readonly pid: number;
  readonly child: ChildProcess;
  /** undefined while running. */
  exitCode(): number | undefined;
}

/**
 * Spawns a daemon detached into its own process group (so Ctrl-C in the terminal reaches only the benchmark,
 * which then removes the pods through the daemon before stopping it), logging to `logPath`.
 */
export async function spawnDaemon(file: string, args: readonly string[], logPath: string): Promise<Daemon> {
  const log = await open(logPath, "a");
  let code: number | undefined;
  try {
    const child = spawn(file, [...args], { detached: true, stdio: ["ignore", log.fd, log.fd] });
    child.on("exit", (c, sig) => {
      code = c ?? 128 + (sig === "SIGKILL" ? 9 : 15);
    });
    await new Promise<void>((resolve, reject) => {
      child.once("spawn", resolve);
      child.once("error", reject);
    });
    if (child.pid === undefined) throw new Error(`spawn ${file}: no pid`);
    return { pid: child.pid, child, exitCode: () => code };
  } finally {
    await log.close();
  }
}

/** Polls the CRI Version RPC until it answers; throws with the log's tail when the daemon exits or time runs out. */
export async function waitServing(
  daemon: Daemon,
  socket: string,
  describe: () => Promise<string>,
  timeoutMs = 30_000,
): Promise<CriClient> {
  const client = createCriClient({ socket, timeoutMs: 180_000 });
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const code = daemon.exitCode();
    if (code !== undefined) {
      client.close();
      throw new Error(`daemon exited with ${code} before serving: ${await describe()}`);
    }
    try {
      await client.runtime.version({}, { timeoutMs: 1000 });
      return client;
    } catch {
      // not serving yet
    }
    if (Date.now() > deadline) {
      client.close();
      throw new Error(`daemon did not serve on ${socket} within ${timeoutMs} ms: ${await describe()}`);
    }
    await sleep(100);
  }
}

/** SIGTERM, then SIGKILL after `graceMs`; resolves when the process is gone. */
export async function stopProcess(pid: number, graceMs = 10_000): Promise<void> {
  killAll([pid], "SIGTERM");
  if (await waitGone(pid, graceMs)) return;
  killAll([pid], "SIGKILL");
  await waitGone(pid, 5000);
}

/** PIDs (other than `except`) whose command line contains `marker`. */
export async function pidsWithMarker(marker: string, except: readonly number[] = []): Promise<number[]> {
  const out: number[] = [];
  for (const p of (await processTable()).values()) {
    if (p.pid !== process.pid && !except.includes(p.pid) && p.cmdline.includes(marker)) out.push(p.pid);
  }
  return out;
}

/**
 * Stops and removes every pod the runtime still has (10 at a time), ignoring errors: used before stopping a
 * daemon, and on the way out after a failure.
 */
export async function removeAllPods(client: CriClient): Promise<void> {
  const { items } = await client.runtime.listPodSandbox({}, { timeoutMs: 30_000 });
  const queue = [...items];
  const worker = async (): Promise<void> => {
    for (let sb = queue.shift(); sb !== undefined; sb = queue.shift()) {
      await client.runtime.stopPodSandbox({ podSandboxId: sb.id }, { timeoutMs: 60_000 }).catch(() => {});
      await client.runtime.removePodSandbox({ podSandboxId: sb.id }, { timeoutMs: 60_000 }).catch(() => {});
    }
  };
  await Promise.all(Array.from({ length: 10 }, worker));
}
