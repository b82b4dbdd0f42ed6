/**
 * Measurement 6, the floor: what the same work costs with no daemon at all, so that each runtime's overhead
 * above it shows.
 * - `runc run --detach` of an equivalent bundle (the busybox layer unpacked into a directory, `runc spec`'s
 *   defaults with `sleep 3600`, new PID/IPC/UTS/mount/network namespaces, a cgroup like a pod's): the time
 *   from exec to runc's exit, which is when the container process runs; then `runc delete --force`.
 * - One CNI ADD and DEL of the same plugin list (berth's default conflist on a third bridge and subnet), each
 *   plugin exec'd directly per the CNI spec (config on stdin, CNI_* in the environment, prevResult chained),
 *   in a network namespace made beforehand (not timed) and removed afterwards.
 * - Download only: the big image's blobs fetched from the registry over HTTP, 3 at a time (both runtimes'
 *   max_concurrent_downloads), and thrown away: no hashing, decompression or unpacking.
 *
 *   <dir>/bundle/{config.json,rootfs/}  <dir>/runc/  <dir>/cni/  <dir>/netns/  <dir>/ipam/
 */
import { execFile, spawn } from "node:child_process";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import http from "node:http";
import { join } from "node:path";
import { promisify } from "node:util";
import { createNetns, defaultConflist, removeNetns } from "../src/network/index.js";
import type { Descriptor } from "../test/support/images.js";
import type { Cleanup } from "./cleanup.js";
import { deleteLink, removeCgroupTree, removeNatRules } from "./host.js";
import type { BenchImages } from "./images.js";
import type { BenchNetwork } from "./runtime.js";
import { mapLimit } from "./workload.js";

const exec = promisify(execFile);
const CNI_BIN_DIR = "/usr/lib/cni";
const RUNC = "/usr/sbin/runc";

/** One round's floor figures (each the median of that round's repetitions, in ms, or MB/s). */
export interface FloorResult {
  runcRunMs: number;
  runcDeleteMs: number;
  cniAddMs: number;
  cniDelMs: number;
  downloadSeconds: number;
  downloadMbPerSecond: number;
}

/** A prepared floor: the bundle, the CNI config and the download list. */
export interface Floor {
  runcRun(id: string): Promise<{ runMs: number; deleteMs: number }>;
  cniAddDel(id: string): Promise<{ addMs: number; delMs: number }>;
  download(): Promise<{ seconds: number; mbPerSecond: number }>;
}

/** Unpacks the bundle and writes the CNI config; registers the removal of what it leaves on the host. */
export async function prepareFloor(
  dir: string,
  images: BenchImages,
  network: BenchNetwork,
  o: { cgroupRoot: string; cleanup: Cleanup },
): Promise<Floor> {
  const bundle = join(dir, "bundle");
  const rootfs = join(bundle, "rootfs");
  const runcRoot = join(dir, "runc");
  const netnsDir = join(dir, "netns");
  await mkdir(rootfs, { recursive: true });
  await mkdir(network.ipamDir, { recursive: true });
  const busybox = images.fixtures.get("berth-test/busybox:latest").manifests[0];
  for (const layer of busybox?.layers ?? []) {
    await exec("tar", ["-xzf", images.fixtures.blobPath(layer.digest), "-C", rootfs]);
  }
  await exec(RUNC, ["spec", "--bundle", bundle]);
  const spec = JSON.parse(await readFile(join(bundle, "config.json"), "utf8"));
  spec.process.terminal = false;
  spec.process.args = ["sleep", "3600"];
  spec.root.readonly = false;
  spec.linux.namespaces = ["pid", "network", "ipc", "uts", "mount"].map((type) => ({ type }));
  o.cleanup.defer("remove the floor's cgroups", () => removeCgroupTree(o.cgroupRoot));
  o.cleanup.defer("remove the floor's bridge", () => deleteLink(network.bridge));
  o.cleanup.defer("remove the floor's NAT rules", () => removeNatRules(network.name));

  const conflist = JSON.parse(
    defaultConflist({
      name: network.name,
      bridge: network.bridge,
      subnet: network.subnet,
      ipamDataDir: network.ipamDir,
    }),
  ) as { cniVersion: string; name: string; plugins: Array<Record<string, unknown>> };

  return {
    async runcRun(id) {
      spec.linux.cgroupsPath = `${o.cgroupRoot}/${id}`;
      await writeFile(join(bundle, "config.json"), JSON.stringify(spec));
      const t0 = performance.now();
      await runc(runcRoot, ["run", "--detach", "--bundle", bundle, id]);
      const t1 = performance.now();
      await runc(runcRoot, ["delete", "--force", id]);
      const t2 = performance.now();
      return { runMs: t1 - t0, deleteMs: t2 - t1 };
    },
    async cniAddDel(id) {
      const netns = await createNetns(id, { dir: netnsDir });
      try {
        const t0 = performance.now();
        let prevResult: unknown;
        for (const plugin of conflist.plugins) {
          prevResult = await cni("ADD", id, netns, { ...netconf(conflist, plugin), prevResult });
        }
        const t1 = performance.now();
        for (const plugin of [...conflist.plugins].reverse()) {
          await cni("DEL", id, netns, { ...netconf(conflist, plugin), prevResult });
        }
        const t2 = performance.now();
        return { addMs: t1 - t0, delMs: t2 - t1 };
      } finally {
        await removeNetns(netns);
      }
    },
    async download() {
      return downloadBlobs(images.registry.url, "berth-test/big", images.bigBlobs);
    },
  };
}

function netconf(list: { cniVersion: string; name: string }, plugin: Record<string, unknown>): Record<string, unknown> {
  return { cniVersion: list.cniVersion, name: list.name, ...plugin };
}

/** Execs one CNI plugin; resolves to its parsed result (ADD) or undefined (DEL). */
async function cni(command: "ADD" | "DEL", id: string, netns: string, conf: Record<string, unknown>): Promise<unknown> {
  const type = String(conf.type);
  const env = {
    PATH: process.env.PATH ?? "/usr/sbin:/usr/bin:/sbin:/bin",
    CNI_COMMAND: command,
    CNI_CONTAINERID: id,
    CNI_NETNS: netns,
    CNI_IFNAME: "eth0",
    CNI_PATH: CNI_BIN_DIR,
  };
  const out = await new Promise<string>((resolve, reject) => {
    const child = spawn(join(CNI_BIN_DIR, type), [], { env, stdio: ["pipe", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (b: Buffer) => {
      stdout += b.toString();
    });
    child.stderr.on("data", (b: Buffer) => {
      stderr += b.toString();
    });
    child.on("error", reject);
    child.on("close", (code) =>
      code === 0 ? resolve(stdout) : reject(new Error(`cni ${type} ${command}: exit ${code}: ${stdout}${stderr}`)),
    );
    child.stdin.end(JSON.stringify(conf));
  });
  return command === "ADD" && out.trim() !== "" ? JSON.parse(out) : undefined;
}

/**
 * Runs runc with all stdio on /dev/null: a detached container inherits runc's stdio, so a pipe would stay
 * open for the container's lifetime. Errors go to runc's `--log` file instead, and into the thrown error.
 */
async function runc(root: string, args: readonly string[]): Promise<void> {
  const logPath = join(root, "runc.log");
  await mkdir(root, { recursive: true });
  await writeFile(logPath, "");
  await new Promise<void>((resolve, reject) => {
    const child = spawn(RUNC, ["--root", root, "--log", logPath, ...args], { stdio: "ignore" });
    child.on("error", reject);
    child.on("close", (code) => {
      if (code === 0) resolve();
      else
        void readFile(logPath, "utf8").then(
          (log) => reject(new Error(`runc ${args.join(" ")}: exit ${code}: ${log.trim().slice(-2000)}`)),
          reject,
        );
    });
  });
}

async function downloadBlobs(
  registryUrl: string,
  repo: string,
  blobs: readonly Descriptor[],
): Promise<{ seconds: number; mbPerSecond: number }> {
  const agent = new http.Agent({ keepAlive: true });
  try {
    const t0 = performance.now();
    const sizes = await mapLimit(blobs, 3, (b) => {
      const kind = b.mediaType.includes("manifest") ? "manifests" : "blobs";
      return fetchDiscard(`${registryUrl}/v2/${repo}/${kind}/${b.digest}`, b.mediaType, agent);
    });
    const seconds = (performance.now() - t0) / 1000;
    const bytes = sizes.reduce((a, b) => a + b, 0);
    return { seconds, mbPerSecond: bytes / 1e6 / seconds };
  } finally {
    agent.destroy();
  }
}

/** GETs a URL (following one redirect) and counts the body's bytes without keeping them. */
function fetchDiscard(url: string, accept: string, agent: http.Agent, redirects = 3): Promise<number> {
  return new Promise((resolve, reject) => {
    http
      .get(url, { agent, headers: { accept } }, (res) => {
        const location = res.headers.location;
        if (
          res.statusCode !== undefined &&
          res.statusCode >= 300 &&
          res.statusCode < 400 &&
          location &&
          redirects > 0
        ) {
          res.resume();
          resolve(fetchDiscard(new URL(location, url).toString(), accept, agent, redirects - 1));
          return;
        }
        if (res.statusCode !== 200) {
          res.resume();
          reject(new Error(`GET ${url}: ${res.statusCode}`));
          return;
        }
        let n = 0;
        res.on("data", (b: Buffer) => {
          n += b.length;
        });
        res.on("end", () => resolve(n));
        res.on("error", reject);
      })
      .on("error", reject);
  });
}
