import { readFile } from "node:fs/promises";
import { join } from "node:path";

/** Resource usage of one cgroup at one instant (cgroup v1 or v2, whichever holds the controller). */
export interface CgroupStats {
  /** When it was read, nanoseconds since the epoch. */
  timestamp: bigint;
  cpuUsageNs: bigint;
  memoryUsageBytes: bigint;
  /** Usage minus inactive file cache: what the kubelet evicts on. */
  workingSetBytes: bigint;
  rssBytes: bigint;
  pageFaults: bigint;
  majorPageFaults: bigint;
  /** The memory limit, or undefined when unlimited. */
  memoryLimitBytes: bigint | undefined;
  /** Processes in the cgroup (pids.current), 0 when unknown. */
  processCount: number;
}

/** A cgroup file's trimmed text, or undefined when it cannot be read (the cgroup or the controller is absent). */
export async function read(path: string): Promise<string | undefined> {
  try {
    return (await readFile(path, "utf8")).trim();
  } catch {
    return undefined;
  }
}

/** "key value" lines (memory.stat, cpu.stat, ...) as a map; lines whose value is not an unsigned integer are skipped. */
export function statMap(text: string | undefined): Map<string, bigint> {
  const m = new Map<string, bigint>();
  for (const line of (text ?? "").split("\n")) {
    const [k, v] = line.split(" ");
    if (k && v && /^\d+$/.test(v)) m.set(k, BigInt(v));
  }
  return m;
}

// Limits at or above this are "unlimited" (cgroup v1 reports PAGE_COUNTER_MAX pages in bytes).
const UNLIMITED = 1n << 62n;

/**
 * Reads CPU and memory usage of the cgroup at `cgroupPath` (as given to runc with the
 * cgroupfs driver, e.g. `/berth/<id>`). Uses the v1 hierarchies (cpuacct, memory) when they
 * exist and the unified v2 files otherwise. Returns undefined when the cgroup is gone.
 */
export async function readCgroupStats(cgroupPath: string, root = "/sys/fs/cgroup"): Promise<CgroupStats | undefined> {
  const timestamp = BigInt(Date.now()) * 1_000_000n;
  const v1cpu = await read(join(root, "cpuacct", cgroupPath, "cpuacct.usage"));
  const v1mem = await read(join(root, "memory", cgroupPath, "memory.usage_in_bytes"));
  if (v1cpu !== undefined || v1mem !== undefined) {
    const stat = statMap(await read(join(root, "memory", cgroupPath, "memory.stat")));
    const usage = BigInt(v1mem ?? "0");
    const inactive = stat.get("total_inactive_file") ?? 0n;
    const limit = BigInt((await read(join(root, "memory", cgroupPath, "memory.limit_in_bytes"))) ?? "0");
    const pids = Number((await read(join(root, "pids", cgroupPath, "pids.current"))) ?? "0");
    return {
      timestamp,
      processCount: Number.isFinite(pids) ? pids : 0,
      cpuUsageNs: BigInt(v1cpu ?? "0"),
      memoryUsageBytes: usage,
      workingSetBytes: usage > inactive ? usage - inactive : 0n,
      rssBytes: stat.get("total_rss") ?? 0n,
      pageFaults: stat.get("total_pgfault") ?? 0n,
      majorPageFaults: stat.get("total_pgmajfault") ?? 0n,
      memoryLimitBytes: limit > 0n && limit < UNLIMITED ? limit : undefined,
    };
  }
  const dir = join(root, cgroupPath);
  const cpuStat = statMap(await read(join(dir, "cpu.stat")));
  const current = await read(join(dir, "memory.current"));
  if (current === undefined && cpuStat.size === 0) return undefined;
  const stat = statMap(await read(join(dir, "memory.stat")));
  const usage = BigInt(current ?? "0");
  const inactive = stat.get("inactive_file") ?? 0n;
  const max = await read(join(dir, "memory.max"));
  const pids = Number((await read(join(dir, "pids.current"))) ?? "0");
  return {
    timestamp,
    processCount: Number.isFinite(pids) ? pids : 0,
    cpuUsageNs: (cpuStat.get("usage_usec") ?? 0n) * 1000n,
    memoryUsageBytes: usage,
    workingSetBytes: usage > inactive ? usage - inactive : 0n,
    rssBytes: stat.get("anon") ?? 0n,
    pageFaults: stat.get("pgfault") ?? 0n,
    majorPageFaults: stat.get("pgmajfault") ?? 0n,
    memoryLimitBytes: max && max !== "max" ? BigInt(max) : undefined,
  };
}
