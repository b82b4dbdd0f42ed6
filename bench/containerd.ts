/**
 * containerd under test: Debian's package (1.6), never its system service. The benchmark writes a config.toml
 * of its own and runs `containerd --config` on private root, state, socket, runc root and CNI config, with
 * its CRI plugin configured like berth: runc (io.containerd.runc.v2, cgroupfs, restrict_oom_score_adj), the same CNI plugins on
 * another bridge and subnet, the fixture registry through a hosts.toml (plain HTTP on 127.0.0.1), and a
 * local pause image (catatonit -P, see images.ts) as sandbox_image.
 *
 * containerd 1.6 puts its shims' sockets in /run/containerd/s/ whatever its `state` says (the path is
 * compiled in). So that the system's /run/containerd is never written, containerd runs in a mount namespace
 * of its own (`unshare --mount`, private propagation) in which `<dir>/run` is bind-mounted over
 * /run/containerd; shims inherit that namespace. All its mounts (overlay root filesystems, /dev/shm, pinned
 * network namespaces) live in that namespace too, which is why the leak check reads containerd's mountinfo
 * through /proc/<containerd pid>. If the host has no /run/containerd, an empty directory is made as the
 * mount point and removed again at the end.
 *
 *   <dir>/config.toml <dir>/containerd.sock <dir>/containerd.log
 *   <dir>/root/ <dir>/state/      containerd's root and state (netns under state: netns_mounts_under_state_dir)
 *   <dir>/run/                    /run/containerd inside containerd's mount namespace (shim sockets)
 *   (state/ and run/ are tmpfs mounts, as /run/containerd is)
 *   <dir>/run/runc/               runc --root of its containers (the default is /run/containerd/runc)
 *   <dir>/cni/ <dir>/ipam/        CNI conflist and host-local reservations
 */
import { existsSync } from "node:fs";
import { mkdir, readFile, rmdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { CriClient } from "../src/client/index.js";
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

/** Debian's CNI plugin directory (containernetworking-plugins). */
const CNI_BIN_DIR = "/usr/lib/cni";
const SYSTEM_STATE = "/run/containerd";

/** Options of {@link startContainerd}. */
export interface StartContainerdOptions {
  dir: string;
  registryHostsDir: string;
  network: BenchNetwork;
  cgroupRoot: string;
  /** The CRI plugin's sandbox_image. */
  sandboxImage: string;
  image: string;
  cleanup: Cleanup;
}

/** The config.toml the benchmark runs containerd with (version 2 schema of containerd 1.6). */
export function containerdConfig(o: {
  dir: string;
  registryHostsDir: string;
  sandboxImage: string;
  cniConfDir: string;
}): string {
  const q = JSON.stringify;
  const cri = '[plugins."io.containerd.grpc.v1.cri"';
  return `version = 2
root = ${q(join(o.dir, "root"))}
state = ${q(join(o.dir, "state"))}

[grpc]
  address = ${q(join(o.dir, "containerd.sock"))}

[debug]
  level = "info"

[plugins]
  ${cri}]
    sandbox_image = ${q(o.sandboxImage)}
    netns_mounts_under_state_dir = true
    # As berth's default: clamp negative oom_score_adj (the sandbox's -998) to containerd's own. Without it
    # runc fails on hosts that withhold CAP_SYS_RESOURCE ("failed to update /proc/self/oom_score_adj").
    restrict_oom_score_adj = true
    stream_server_address = "127.0.0.1"
    stream_server_port = "0"
    ${cri}.cni]
      bin_dir = ${q(CNI_BIN_DIR)}
      conf_dir = ${q(o.cniConfDir)}
      max_conf_num = 1
    ${cri}.containerd]
      snapshotter = "overlayfs"
      default_runtime_name = "runc"
      ${cri}.containerd.runtimes.runc]
        runtime_type = "io.containerd.runc.v2"
        ${cri}.containerd.runtimes.runc.options]
          BinaryName = "/usr/sbin/runc"
          Root = ${q(join(o.dir, "run", "runc"))}
          SystemdCgroup = false
    ${cri}.registry]
      config_path = ${q(o.registryHostsDir)}

  [plugins."io.containerd.internal.v1.opt"]
    path = ${q(join(o.dir, "opt"))}
`;
}

/** Starts containerd in its own mount namespace and registers its stop with the clean-up list. */
export async function startContainerd(o: StartContainerdOptions): Promise<RuntimeUnderTest> {
  const socket = join(o.dir, "containerd.sock");
  const cniDir = join(o.dir, "cni");
  const runDir = join(o.dir, "run");
  const logPath = join(o.dir, "containerd.log");
  for (const d of [cniDir, o.network.ipamDir]) await mkdir(d, { recursive: true });
  await mountTmpfs(join(o.dir, "state"));
  await mountTmpfs(runDir);
  await writeNetworkConfig(cniDir, o.network);
  const configPath = join(o.dir, "config.toml");
  await writeFile(
    configPath,
    containerdConfig({
      dir: o.dir,
      registryHostsDir: o.registryHostsDir,
      sandboxImage: o.sandboxImage,
      cniConfDir: cniDir,
    }),
  );
  if (!existsSync(SYSTEM_STATE)) {
    await mkdir(SYSTEM_STATE);
    // Only the empty mount point made here is removed; rmdir fails on anything else.
    o.cleanup.defer("remove the /run/containerd mount point", () => rmdir(SYSTEM_STATE));
  }
  const daemon = await spawnDaemon(
    "unshare",
    [
      "--mount",
      "--propagation",
      "private",
      "sh",
      "-c",
      `mount --bind "$1" ${SYSTEM_STATE} && exec containerd --config "$2"`,
      "sh",
      runDir,
      configPath,
    ],
    logPath,
  );
  // Shims are started with `-address <our socket>`: that is how this containerd's shims are told from others.
  const monitorPids = (): Promise<number[]> => pidsWithMarker(`-address ${socket}`, [daemon.pid]);
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
    // Shims outlive containerd by design; with the pods gone they exit by themselves, else they are killed.
    killAll(await monitorPids());
  };
  o.cleanup.defer("stop containerd", stop);
  const serving = await waitServing(daemon, socket, async () => tail(logPath));
  client = serving;
  return {
    name: "containerd",
    client: serving,
    pid: daemon.pid,
    cgroupRoot: o.cgroupRoot,
    network: o.network,
    netnsDir: join(o.dir, "state", "io.containerd.grpc.v1.cri", "netns"),
    mountPrefixes: [o.dir, SYSTEM_STATE],
    blobDir: join(o.dir, "root", "io.containerd.content.v1.content", "blobs", "sha256"),
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
