/**
 * berthd under test: the built daemon (`dist/src/bin/berthd.js`, or the source through tsx when there is no
 * build), on its own root, state, socket and CNI config, logging at `info` as a production node would.
 *
 *   <dir>/config.toml   registry hosts dir (shared with containerd), CNI conf dir
 *   <dir>/root/ <dir>/berth.sock <dir>/berthd.log
 *   <dir>/state/        a tmpfs, as /run/berth is
 *   <dir>/cni/          10-<network>.conflist
 *   <dir>/ipam/         host-local reservations of the network
 */
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { CriClient } from "../src/client/index.js";
import { berthdCommand } from "../test/support/berthd.js";
import type { Cleanup } from "./cleanup.js";
import { killAll } from "./host.js";
import {
  type BenchNetwork,
  mountTmpfs,
  pidsWithMarker,
  type RuntimeUnderTest,
  removeAllPods,
  spawnDaemon,
  stopProcess,
  waitServing,
  writeNetworkConfig,
} from "./runtime.js";

/** Options of {@link startBerth}. */
export interface StartBerthOptions {
  dir: string;
  /** containerd-format hosts directory (`<host>/hosts.toml`) for the fixture registry. */
  registryHostsDir: string;
  network: BenchNetwork;
  cgroupRoot: string;
  image: string;
  cleanup: Cleanup;
}

/** Starts berthd and registers its stop with the clean-up list. */
export async function startBerth(o: StartBerthOptions): Promise<RuntimeUnderTest> {
  const root = join(o.dir, "root");
  const state = join(o.dir, "state");
  const socket = join(o.dir, "berth.sock");
  const cniDir = join(o.dir, "cni");
  const logPath = join(o.dir, "berthd.log");
  await mkdir(cniDir, { recursive: true });
  await mountTmpfs(state);
  await mkdir(o.network.ipamDir, { recursive: true });
  await writeNetworkConfig(cniDir, o.network);
  const configPath = join(o.dir, "config.toml");
  await writeFile(
    configPath,
    [
      "[log]",
      'level = "info"',
      "[registry]",
      `config_path = ${JSON.stringify(o.registryHostsDir)}`,
      "[cni]",
      `conf_dir = ${JSON.stringify(cniDir)}`,
      "",
    ].join("\n"),
  );
  const [cmd, ...pre] = berthdCommand();
  const daemon = await spawnDaemon(
    cmd as string,
    [...pre, "--config", configPath, "--root", root, "--state", state, "--socket", socket],
    logPath,
  );
  // conmon's command line names the bundle under berth's state directory: that is how its monitors are found.
  const monitorPids = (): Promise<number[]> => pidsWithMarker(`${state}/`, [daemon.pid]);
  let client: CriClient | undefined;
  let stopped = false;
  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    if (client !== undefined) {
      if (daemon.exitCode() === undefined) await removeAllPods(client).catch(() => {});
      client.close();
    }
    if (daemon.exitCode() === undefined) await stopProcess(daemon.pid);
    // Stopping berthd never stops containers: whatever a failed removal left is killed by PID.
    killAll(await monitorPids());
  };
  o.cleanup.defer("stop berthd", stop);
  const serving = await waitServing(daemon, socket, async () => tail(logPath));
  client = serving;
  return {
    name: "berth",
    client: serving,
    pid: daemon.pid,
    cgroupRoot: o.cgroupRoot,
    network: o.network,
    netnsDir: join(state, "netns"),
    mountPrefixes: [o.dir],
    blobDir: join(root, "content", "blobs", "sha256"),
    image: o.image,
    monitorPids,
    version: async () => {
      const v = await serving.runtime.version({});
      return `${v.runtimeName} ${v.runtimeVersion}`;
    },
    stop,
  };
}

async function tail(path: string): Promise<string> {
  const text = await readFile(path, "utf8").catch(() => "");
  return text.trim().split("\n").slice(-20).join("\n");
}
