/**
 * Measurement 3, memory with N pods running: the daemon's RSS, and per pod the proportional set size (Pss)
 * of everything the runtime started for that pod, the pod's own workload (`sleep`) left out.
 *
 * How a pod's processes are found, the same way for both runtimes and without asking either:
 * 1. The benchmark gives every pod its own cgroup parent (`<cgroupRoot>/pod<uid>`, as the kubelet does), and
 *    both runtimes put each container, the sandbox's too, in a cgroup `<parent>/<container id>`. Every
 *    process in that subtree is the pod's: in the container's cgroup the workload, in any other one the
 *    infra process (containerd's pause; berth's catatonit, only for pods sharing one PID namespace).
 * 2. From each of those processes the walk goes up the parent chain (/proc/<pid>/stat) and collects every
 *    ancestor outside the pod's cgroups until it reaches PID 1, the daemon, or the benchmark itself. Those
 *    are the runtime's per-pod helpers: conmon (one per container) for berth, containerd-shim-runc-v2 (one
 *    per pod) for containerd. Both double-fork away from their daemon, so their parent is PID 1 and the
 *    walk stops right above them; a helper that stayed a child of its daemon would stop at the daemon.
 * 3. The pod's overhead is the sum of Pss (/proc/<pid>/smaps_rollup) over helpers and infra processes. Pss
 *    splits each shared page among the processes mapping it, so N shims sharing one binary add up to one
 *    copy of it, not N (which RSS would count).
 */
import { type ProcInfo, primaryHierarchy, processTable, procsUnder, pssKiB, rssKiB } from "./host.js";
import type { RuntimeUnderTest } from "./runtime.js";
import { median } from "./stats.js";
import type { BenchPod } from "./workload.js";

/** One process counted for a pod. */
export interface CountedProcess {
  pid: number;
  comm: string;
  role: "helper" | "infra" | "workload";
  pssKiB: number;
}

/** One round's memory figures. */
export interface MemoryResult {
  pods: number;
  daemonRssKiB: number;
  daemonPssKiB: number;
  /** Mean over the pods of helper + infra Pss. */
  perPodOverheadPssKiB: number;
  /** Median over the pods, as a check on the mean. */
  perPodOverheadPssKiBMedian: number;
  /** Mean Pss of the workload itself (should be alike for both runtimes). */
  perPodWorkloadPssKiB: number;
  /** Mean number of helper + infra processes per pod. */
  processesPerPod: number;
  /** The processes of the first pod, as an example. */
  example: CountedProcess[];
}

/** Measures the daemon and every pod in `pods` (which must be running). */
export async function measureMemory(rt: RuntimeUnderTest, pods: readonly BenchPod[]): Promise<MemoryResult> {
  const table = await processTable();
  const hierarchy = await primaryHierarchy();
  const stopAt = new Set<number>([1, rt.pid, ...ancestors(process.pid, table)]);
  const overheads: number[] = [];
  const workloads: number[] = [];
  const counts: number[] = [];
  let example: CountedProcess[] = [];
  for (const pod of pods) {
    const members = await procsUnder(hierarchy, pod.cgroupParent);
    const inPod = new Set(members.map((m) => m.pid));
    const counted = new Map<number, CountedProcess["role"]>();
    for (const m of members) {
      counted.set(m.pid, m.cgroup.endsWith(`/${pod.containerId}`) ? "workload" : "infra");
      for (let p = table.get(m.pid)?.ppid; p !== undefined && !stopAt.has(p); p = table.get(p)?.ppid) {
        if (!inPod.has(p)) counted.set(p, "helper");
      }
    }
    const processes: CountedProcess[] = [];
    for (const [pid, role] of counted) {
      processes.push({ pid, role, comm: table.get(pid)?.comm ?? "?", pssKiB: await pssKiB(pid) });
    }
    const overhead = processes.filter((p) => p.role !== "workload");
    overheads.push(overhead.reduce((a, p) => a + p.pssKiB, 0));
    workloads.push(processes.filter((p) => p.role === "workload").reduce((a, p) => a + p.pssKiB, 0));
    counts.push(overhead.length);
    if (example.length === 0) example = processes;
  }
  const mean = (v: number[]): number => (v.length === 0 ? Number.NaN : v.reduce((a, b) => a + b, 0) / v.length);
  return {
    pods: pods.length,
    daemonRssKiB: await rssKiB(rt.pid),
    daemonPssKiB: await pssKiB(rt.pid),
    perPodOverheadPssKiB: mean(overheads),
    perPodOverheadPssKiBMedian: median(overheads),
    perPodWorkloadPssKiB: mean(workloads),
    processesPerPod: mean(counts),
    example,
  };
}

/** `pid` and its ancestors. */
function ancestors(pid: number, table: Map<number, ProcInfo>): number[] {
  const out: number[] = [];
  for (let p: number | undefined = pid; p !== undefined && p > 0 && !out.includes(p); p = table.get(p)?.ppid)
    out.push(p);
  return out;
}
