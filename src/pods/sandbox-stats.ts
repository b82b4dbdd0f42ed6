import { type InterfaceCounters, interfaceCounters, readCgroupStats } from "../sys/index.js";
import { podCgroupDir } from "./cgroup-paths.js";
import type { ContainerManager, ContainerStatsRecord } from "./containers.js";
import type { SandboxRecord } from "./types.js";

/** A pod's resource use at one moment (PodSandboxStats). Counters are cumulative, as the cgroups keep them. */
export interface SandboxStatsRecord {
  record: SandboxRecord;
  /** When the figures were taken, in nanoseconds since the epoch. */
  timestamp: bigint;
  cpu: {
    usageCoreNanoSeconds: bigint;
    /** Only when every running container has a rate (each needs two samples). */
    usageNanoCores: bigint | undefined;
  };
  memory: {
    workingSetBytes: bigint;
    usageBytes: bigint;
    rssBytes: bigint;
    pageFaults: bigint;
    majorPageFaults: bigint;
    /** The pod cgroup's memory limit (the kubelet's, or UpdatePodSandboxResources') less the working set. */
    availableBytes: bigint | undefined;
  };
  processCount: bigint;
  /** The pod's interfaces (none on the host's network) and the default one (eth0, else the first). */
  interfaces: InterfaceCounters[];
  defaultInterface: InterfaceCounters | undefined;
  /** Every container's stats (a container whose stats failed is left out). */
  containers: ContainerStatsRecord[];
}

/**
 * A pod's stats: its CPU and memory as the sum over its running containers (berth runs no process of its
 * own for a pod), its process count, its network counters read from the namespace of one of its processes
 * (a running container's, else the infra process's), and every container's stats.
 */
export async function sandboxStats(
  containers: Pick<ContainerManager, "list" | "stats">,
  sb: SandboxRecord,
  options: { cgroupRoot?: string } = {},
): Promise<SandboxStatsRecord> {
  const records = containers.list({ sandboxId: sb.id });
  const stats = (await Promise.all(records.map((r) => containers.stats(r.id).catch(() => undefined)))).filter(
    (s): s is ContainerStatsRecord => s !== undefined,
  );
  const sum = (f: (s: ContainerStatsRecord) => bigint | undefined) => stats.reduce((a, s) => a + (f(s) ?? 0n), 0n);
  const running = stats.filter((s) => s.cgroup !== undefined);
  const pid = running[0]?.record.pid ?? sb.infraPid;
  const interfaces = pid && sb.config.namespaces.network !== "node" ? await interfaceCounters(pid) : [];
  // The pod's limit is on its cgroup parent (set by the kubelet, changed by UpdatePodSandboxResources).
  const pod = sb.config.cgroupParent
    ? await readCgroupStats(podCgroupDir(sb), options.cgroupRoot).catch(() => undefined)
    : undefined;
  const workingSetBytes = sum((s) => s.cgroup?.workingSetBytes);
  const limit = pod?.memoryLimitBytes;
  return {
    record: sb,
    timestamp: BigInt(Date.now()) * 1_000_000n,
    cpu: {
      usageCoreNanoSeconds: sum((s) => s.cgroup?.cpuUsageNs),
      usageNanoCores:
        running.length > 0 && running.every((s) => s.nanoCores !== undefined) ? sum((s) => s.nanoCores) : undefined,
    },
    memory: {
      workingSetBytes,
      usageBytes: sum((s) => s.cgroup?.memoryUsageBytes),
      rssBytes: sum((s) => s.cgroup?.rssBytes),
      pageFaults: sum((s) => s.cgroup?.pageFaults),
      majorPageFaults: sum((s) => s.cgroup?.majorPageFaults),
      availableBytes: limit !== undefined && limit >= workingSetBytes ? limit - workingSetBytes : undefined,
    },
    processCount: sum((s) => (s.cgroup ? BigInt(s.cgroup.processCount) : 0n)),
    interfaces,
    defaultInterface: interfaces.find((i) => i.name === "eth0") ?? interfaces[0],
    containers: stats,
  };
}
