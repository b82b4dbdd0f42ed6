/**
 * Measurement 4, teardown: every pod stopped and removed (StopPodSandbox, RemovePodSandbox; 10 pods in
 * flight, as the kubelet's pod workers would), timed as a whole; then a leak check comparing what the
 * runtime leaves on the host with a baseline taken after a warm-up pod had come and gone.
 *
 * The check counts, for this runtime only (other users of the host are never counted):
 * - mounts: mount points below the runtime's directories, read in the daemon's mount namespace;
 * - processes: its monitors (conmon / shims, by command line) and anything in the benchmark's pod cgroups;
 * - netns: files in the runtime's network namespace directory;
 * - veths: ports on the runtime's CNI bridge;
 * - cgroups: container cgroups left below the pod cgroups (the pod cgroups themselves are the kubelet's,
 *   i.e. the benchmark's, to remove, and it does so after the check);
 * - ipam: host-local address reservations of the runtime's network;
 * - nat: the bridge plugin's masquerade rules for the runtime's network.
 * Teardown is asynchronous in places (a shim exits after its last task is deleted), so the check polls for
 * up to five seconds until the counts settle at the baseline, and reports what is left after that.
 */
import {
  bridgePorts,
  cgroupsAtDepth,
  listDir,
  mountPointsUnder,
  natRulesOf,
  primaryHierarchy,
  procsUnder,
  removeCgroupTree,
} from "./host.js";
import type { RuntimeUnderTest } from "./runtime.js";
import { type BenchPod, mapLimit, removePod } from "./workload.js";

/** What a runtime has on the host at one moment, by kind; each entry names one thing. */
export interface HostSnapshot {
  mounts: string[];
  processes: string[];
  netns: string[];
  veths: string[];
  cgroups: string[];
  ipam: string[];
  nat: string[];
}

/** One teardown: wall time, what leaked (entries present now and not in the baseline), and settle time. */
export interface TeardownResult {
  pods: number;
  wallMs: number;
  leaks: HostSnapshot;
  leakCount: number;
  /** How long after the last RemovePodSandbox the host was back at the baseline (or the give-up time). */
  settleMs: number;
}

/** Takes the snapshot the leak check compares. */
export async function snapshot(rt: RuntimeUnderTest): Promise<HostSnapshot> {
  const hierarchy = await primaryHierarchy();
  const inPods = await procsUnder(hierarchy, rt.cgroupRoot);
  const monitors = await rt.monitorPids();
  return {
    mounts: await mountPointsUnder(rt.pid, rt.mountPrefixes),
    processes: [...monitors.map((p) => `monitor ${p}`), ...inPods.map((p) => `${p.pid} in ${p.cgroup}`)],
    netns: await listDir(rt.netnsDir),
    veths: await bridgePorts(rt.network.bridge),
    cgroups: await cgroupsAtDepth(rt.cgroupRoot, 2),
    ipam: (await listDir(`${rt.network.ipamDir}/${rt.network.name}`)).filter(
      (f) => f !== "lock" && !f.startsWith("last_reserved_ip"),
    ),
    nat: await natRulesOf(rt.network.name),
  };
}

/** Removes `pods` and checks for leaks against `baseline`; then removes the pods' cgroups (the kubelet's part). */
export async function measureTeardown(
  rt: RuntimeUnderTest,
  pods: readonly BenchPod[],
  baseline: HostSnapshot,
  o: { inFlight: number; signal: AbortSignal },
): Promise<TeardownResult> {
  const t0 = performance.now();
  await mapLimit(pods, o.inFlight, (pod) => removePod(rt, pod, o.signal));
  const t1 = performance.now();
  let leaks = diff(await snapshot(rt), baseline);
  while (count(leaks) > 0 && performance.now() - t1 < 5000) {
    await new Promise((r) => setTimeout(r, 100));
    leaks = diff(await snapshot(rt), baseline);
  }
  const settleMs = performance.now() - t1;
  for (const pod of pods) await removeCgroupTree(pod.cgroupParent);
  return { pods: pods.length, wallMs: t1 - t0, leaks, leakCount: count(leaks), settleMs };
}

function diff(now: HostSnapshot, base: HostSnapshot): HostSnapshot {
  const minus = (a: string[], b: string[]): string[] => a.filter((x) => !b.includes(x));
  return {
    mounts: minus(now.mounts, base.mounts),
    processes: minus(now.processes, base.processes),
    netns: minus(now.netns, base.netns),
    veths: minus(now.veths, base.veths),
    cgroups: minus(now.cgroups, base.cgroups),
    ipam: minus(now.ipam, base.ipam),
    nat: minus(now.nat, base.nat),
  };
}

/** Total number of entries of a snapshot (or of a diff). */
export function count(s: HostSnapshot): number {
  return Object.values(s).reduce((n: number, v: string[]) => n + v.length, 0);
}
