import { access, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { failedPrecondition, invalidArgument, wrap } from "../errdefs/index.js";
import type { ResourceLimits } from "../oci/index.js";
import { podCgroupDir } from "./cgroup-paths.js";
import type { SandboxRecord } from "./types.js";

/**
 * UpdatePodSandboxResources (in-place pod resize): the pod-level limits written to the pod's own
 * cgroup, the one the kubelet names as the sandbox's `cgroup_parent` and creates (berth never
 * creates or removes it: the kubelet owns the pod cgroup, as it does with containerd and CRI-O).
 * The kubelet calls this after resizing that cgroup itself, best effort, so writing the same
 * values again is harmless; what matters is that the runtime's record and metrics follow.
 *
 * Limits are `resources` (the sum over the pod's containers) plus `overhead` (the RuntimeClass's):
 * CPU shares and quota add up (at the resources' period, default 100 ms), and so does a memory
 * limit when one is set. Zero means "not set" and leaves the cgroup's value alone.
 *
 * cgroup v1 (per-controller hierarchies: cpu.shares, cpu.cfs_period_us, cpu.cfs_quota_us,
 * memory.limit_in_bytes) when the pod's cgroup exists there, else v2 (cpu.weight, cpu.max,
 * memory.max). Under the systemd driver the parent is a slice, found at its directory (cgroup-paths.ts).
 */
export async function applyPodResources(
  sb: SandboxRecord,
  limits: { resources: ResourceLimits; overhead: ResourceLimits },
  options: { cgroupRoot?: string } = {},
): Promise<ResourceLimits> {
  const root = options.cgroupRoot ?? "/sys/fs/cgroup";
  const parent = sb.config.cgroupParent;
  if (!parent) throw failedPrecondition(`pod sandbox ${sb.id} has no cgroup parent to resize`);
  const path = podCgroupDir(sb);
  const total = podTotal(limits.resources, limits.overhead);
  const writes =
    (await exists(join(root, "cpu", path))) || (await exists(join(root, "memory", path)))
      ? v1Writes(root, path, total)
      : (await exists(join(root, path)))
        ? v2Writes(root, path, total)
        : undefined;
  if (!writes) throw failedPrecondition(`pod cgroup ${path} does not exist (the kubelet creates it)`);
  for (const [file, value] of writes) {
    try {
      await writeFile(file, value);
    } catch (err) {
      // EBUSY on memory: the pod uses more than the new limit (the kernel refuses to shrink below usage).
      throw wrap(err, `resize pod ${sb.id}: write ${value} to ${file}`);
    }
  }
  return total;
}

/** `resources + overhead`, fields left out when neither sets them. */
export function podTotal(resources: ResourceLimits, overhead: ResourceLimits): ResourceLimits {
  const sum = (a: number | undefined, b: number | undefined) => (a ?? 0) + (b ?? 0);
  for (const [name, v] of Object.entries({ ...resources, ...overhead }))
    if (typeof v === "number" && (v < 0 || !Number.isSafeInteger(v)))
      throw invalidArgument(`${name} ${v} is out of range`);
  const out: ResourceLimits = {};
  const shares = sum(resources.cpuShares, overhead.cpuShares);
  if (shares > 0) out.cpuShares = shares;
  if ((resources.cpuQuota ?? 0) > 0) {
    out.cpuQuota = sum(resources.cpuQuota, overhead.cpuQuota);
    out.cpuPeriod = resources.cpuPeriod || 100_000;
  }
  if ((resources.memoryLimitBytes ?? 0) > 0)
    out.memoryLimitBytes = sum(resources.memoryLimitBytes, overhead.memoryLimitBytes);
  return out;
}

type Write = [file: string, value: string];

function v1Writes(root: string, path: string, t: ResourceLimits): Write[] {
  const w: Write[] = [];
  if (t.cpuShares) w.push([join(root, "cpu", path, "cpu.shares"), String(t.cpuShares)]);
  // The period first: a quota is checked against the period in force when it is written.
  if (t.cpuQuota && t.cpuPeriod) {
    w.push([join(root, "cpu", path, "cpu.cfs_period_us"), String(t.cpuPeriod)]);
    w.push([join(root, "cpu", path, "cpu.cfs_quota_us"), String(t.cpuQuota)]);
  }
  if (t.memoryLimitBytes) w.push([join(root, "memory", path, "memory.limit_in_bytes"), String(t.memoryLimitBytes)]);
  return w;
}

function v2Writes(root: string, path: string, t: ResourceLimits): Write[] {
  const w: Write[] = [];
  // runc's and the kubelet's shares -> weight mapping.
  if (t.cpuShares)
    w.push([join(root, path, "cpu.weight"), String(1 + Math.floor(((t.cpuShares - 2) * 9999) / 262142))]);
  if (t.cpuQuota && t.cpuPeriod) w.push([join(root, path, "cpu.max"), `${t.cpuQuota} ${t.cpuPeriod}`]);
  if (t.memoryLimitBytes) w.push([join(root, path, "memory.max"), String(t.memoryLimitBytes)]);
  return w;
}

async function exists(path: string): Promise<boolean> {
  try {
    await access(path);
    return true;
  } catch {
    return false;
  }
}
