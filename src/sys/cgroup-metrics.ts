import { join } from "node:path";
import { read, statMap } from "./cgroups.js";

/**
 * Everything the cAdvisor-style container metrics need from one cgroup, in the units cgroup v2
 * reports (nanoseconds of CPU, bytes), whichever version holds the controllers. Absent figures
 * (a controller not mounted, a file an older kernel lacks) are undefined, never a made-up zero.
 */
export interface CgroupMetrics {
  cpu: {
    totalNs?: bigint | undefined;
    userNs?: bigint | undefined;
    systemNs?: bigint | undefined;
    throttledPeriods?: bigint | undefined;
    throttledNs?: bigint | undefined;
  };
  memory: {
    usageBytes?: bigint | undefined;
    workingSetBytes?: bigint | undefined;
    rssBytes?: bigint | undefined;
    cacheBytes?: bigint | undefined;
    maxUsageBytes?: bigint | undefined;
    /** undefined when unlimited. */
    limitBytes?: bigint | undefined;
    oomKills?: bigint | undefined;
  };
  /** pids.current. */
  processes?: bigint | undefined;
  /** The cgroup's CPU settings: shares (v1 cpu.shares; v2 cpu.weight mapped back to shares), quota and period in µs. */
  spec: { cpuShares?: bigint | undefined; cpuQuotaUs?: bigint | undefined; cpuPeriodUs?: bigint | undefined };
  /** "v1" (the cpuacct or memory hierarchy holds the cgroup) or "v2" (the unified hierarchy does). */
  version: "v1" | "v2";
}

function num(text: string | undefined): bigint | undefined {
  return text !== undefined && /^\d+$/.test(text) ? BigInt(text) : undefined;
}

/** Limits at or above this are "unlimited" (cgroup v1 reports PAGE_COUNTER_MAX pages, in bytes). */
const UNLIMITED = 1n << 62n;
/** cgroup v1 cpuacct.stat counts USER_HZ ticks, 100 per second on every Linux architecture berth runs on. */
const NS_PER_TICK = 10_000_000n;

function workingSet(usage: bigint | undefined, inactiveFile: bigint | undefined): bigint | undefined {
  if (usage === undefined) return undefined;
  const inactive = inactiveFile ?? 0n;
  return usage > inactive ? usage - inactive : 0n;
}

/**
 * Reads the metrics of the cgroup at `cgroupPath` (as runc's cgroupfs driver names it, e.g.
 * `/berth/<id>`) under `root` (injectable, so both versions are testable on one host). The v1
 * controllers are looked for first (a hybrid host keeps them there), the unified tree otherwise.
 * Returns undefined when the cgroup does not exist in either.
 */
export async function readCgroupMetrics(
  cgroupPath: string,
  root = "/sys/fs/cgroup",
): Promise<CgroupMetrics | undefined> {
  const v1 = (controller: string, file: string) => read(join(root, controller, cgroupPath, file));
  const [usage, memUsage] = await Promise.all([v1("cpuacct", "cpuacct.usage"), v1("memory", "memory.usage_in_bytes")]);
  if (usage !== undefined || memUsage !== undefined) {
    const [cpuacctStat, cpuStat, memStat, maxUsage, limit, oomControl, pids, shares, quota, period] = await Promise.all(
      [
        v1("cpuacct", "cpuacct.stat"),
        v1("cpu", "cpu.stat"),
        v1("memory", "memory.stat"),
        v1("memory", "memory.max_usage_in_bytes"),
        v1("memory", "memory.limit_in_bytes"),
        v1("memory", "memory.oom_control"),
        v1("pids", "pids.current"),
        v1("cpu", "cpu.shares"),
        v1("cpu", "cpu.cfs_quota_us"),
        v1("cpu", "cpu.cfs_period_us"),
      ],
    );
    const ticks = statMap(cpuacctStat);
    const throttle = statMap(cpuStat);
    const mem = statMap(memStat);
    const lim = num(limit);
    const q = quota !== undefined && /^-?\d+$/.test(quota) ? BigInt(quota) : undefined;
    const user = ticks.get("user");
    const system = ticks.get("system");
    const memUsageN = num(memUsage);
    return {
      version: "v1",
      cpu: {
        totalNs: num(usage),
        userNs: user === undefined ? undefined : user * NS_PER_TICK,
        systemNs: system === undefined ? undefined : system * NS_PER_TICK,
        throttledPeriods: throttle.get("nr_throttled"),
        throttledNs: throttle.get("throttled_time"),
      },
      memory: {
        usageBytes: memUsageN,
        workingSetBytes: workingSet(memUsageN, mem.get("total_inactive_file")),
        rssBytes: mem.get("total_rss"),
        cacheBytes: mem.get("total_cache"),
        maxUsageBytes: num(maxUsage),
        limitBytes: lim !== undefined && lim > 0n && lim < UNLIMITED ? lim : undefined,
        oomKills: statMap(oomControl).get("oom_kill"),
      },
      processes: num(pids),
      spec: { cpuShares: num(shares), cpuQuotaUs: q !== undefined && q > 0n ? q : undefined, cpuPeriodUs: num(period) },
    };
  }
  const v2 = (file: string) => read(join(root, cgroupPath, file));
  const [cpuStatText, current] = await Promise.all([v2("cpu.stat"), v2("memory.current")]);
  if (cpuStatText === undefined && current === undefined) return undefined;
  const [memStat, peak, max, events, pids, weight, cpuMax] = await Promise.all([
    v2("memory.stat"),
    v2("memory.peak"),
    v2("memory.max"),
    v2("memory.events"),
    v2("pids.current"),
    v2("cpu.weight"),
    v2("cpu.max"),
  ]);
  const cpu = statMap(cpuStatText);
  const mem = statMap(memStat);
  const us = (key: string) => {
    const v = cpu.get(key);
    return v === undefined ? undefined : v * 1000n;
  };
  const usageN = num(current);
  const [quota, period] = (cpuMax ?? "").split(/\s+/);
  const w = num(weight);
  return {
    version: "v2",
    cpu: {
      totalNs: us("usage_usec"),
      userNs: us("user_usec"),
      systemNs: us("system_usec"),
      throttledPeriods: cpu.get("nr_throttled"),
      throttledNs: us("throttled_usec"),
    },
    memory: {
      usageBytes: usageN,
      workingSetBytes: workingSet(usageN, mem.get("inactive_file")),
      rssBytes: mem.get("anon"),
      cacheBytes: mem.get("file"),
      maxUsageBytes: num(peak),
      limitBytes: num(max),
      oomKills: statMap(events).get("oom_kill"),
    },
    processes: num(pids),
    spec: {
      cpuShares: w === undefined ? undefined : weightToShares(w),
      cpuQuotaUs: num(quota),
      cpuPeriodUs: num(period),
    },
  };
}

/**
 * cgroup v2 cpu.weight (1-10000) back to v1 cpu.shares (2-262144): the inverse of the mapping runc
 * and the kubelet use (weight = 1 + (shares - 2) * 9999 / 262142), so a pod's shares read back
 * as what was set, within rounding.
 */
export function weightToShares(weight: bigint): bigint {
  if (weight <= 1n) return 2n;
  return 2n + ((weight - 1n) * 262142n + 9998n) / 9999n;
}
