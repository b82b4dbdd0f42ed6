import { basename } from "node:path";
import { invalidArgument } from "../errdefs/index.js";
import type { CgroupDriver, SandboxRecord } from "./types.js";

/**
 * Where a pod's and its containers' cgroups live, for each cgroup driver.
 *
 * - cgroupfs: the kubelet's cgroup_parent is a path (`/kubepods/besteffort/pod<uid>`), and each container
 *   gets `<parent>/<id>` (`/berth/<id>` without a parent).
 * - systemd: the parent is a slice name (`kubepods-besteffort-pod<uid>.slice`; a path is reduced to its
 *   last component, as containerd and CRI-O do), runc gets `<slice>:berth:<id>` and creates the transient
 *   unit `berth-<id>.scope` in that slice, whose directory systemd derives from the slice name by its dashes:
 *   `/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod<uid>.slice/berth-<id>.scope`.
 */

/** The prefix of the transient scope units runc creates for berth's containers under the systemd driver. */
export const SCOPE_PREFIX = "berth";

/** linux.cgroupsPath of the OCI spec for object `id` of `sandbox` (the sandbox itself or a container). */
export function cgroupsPath(sandbox: Pick<SandboxRecord, "config" | "cgroupDriver">, id: string): string {
  const parent = sandbox.config.cgroupParent;
  if (sandbox.cgroupDriver === "systemd") return `${sliceOf(parent)}:${SCOPE_PREFIX}:${id}`;
  return `${parent || "/berth"}/${id}`;
}

/** The cgroup's directory below each hierarchy's root (/sys/fs/cgroup/<controller> on v1), for stats. */
export function cgroupDir(sandbox: Pick<SandboxRecord, "config" | "cgroupDriver">, id: string): string {
  const parent = sandbox.config.cgroupParent;
  if (sandbox.cgroupDriver === "systemd") return `${sliceDir(sliceOf(parent))}/${SCOPE_PREFIX}-${id}.scope`;
  return `${parent || "/berth"}/${id}`;
}

/** The pod's own cgroup directory: the cgroupfs parent path, or the systemd slice's directory. */
export function podCgroupDir(sb: Pick<SandboxRecord, "config" | "cgroupDriver">): string {
  const parent = sb.config.cgroupParent;
  if (sb.cgroupDriver === "systemd") return sliceDir(basename(parent));
  if (parent.split("/").includes("..")) throw invalidArgument(`cgroup parent ${parent} climbs out of the hierarchy`);
  return parent.startsWith("/") ? parent : `/${parent}`;
}

/** The slice a systemd-driver pod lives in: runc's default (system.slice) without a parent. */
function sliceOf(parent: string): string {
  if (parent === "") return "system.slice";
  const slice = basename(parent);
  validateSliceName(slice, parent);
  return slice;
}

/**
 * systemd's slice-to-path rule: each dash opens a level, so `a-b-c.slice` is `/a.slice/a-b.slice/a-b-c.slice`
 * and the root slice `-.slice` is `/`.
 */
export function sliceDir(slice: string): string {
  validateSliceName(slice, slice);
  if (slice === "-.slice") return "";
  const parts = slice.slice(0, -".slice".length).split("-");
  let prefix = "";
  let dir = "";
  for (const part of parts) {
    prefix = prefix ? `${prefix}-${part}` : part;
    dir += `/${prefix}.slice`;
  }
  return dir;
}

/** A slice unit name systemd accepts: `<name>.slice`, no empty dash-separated part, nothing outside [A-Za-z0-9:_.\-]. */
function validateSliceName(slice: string, given: string): void {
  if (slice === "-.slice") return;
  const name = slice.endsWith(".slice") ? slice.slice(0, -".slice".length) : undefined;
  if (name === undefined || name === "" || !/^[A-Za-z0-9:_.\\-]+$/.test(name) || name.split("-").includes("")) {
    throw invalidArgument(
      `cgroup parent ${JSON.stringify(given)}: the systemd cgroup driver needs a slice name such as "kubepods-besteffort-pod1.slice"`,
    );
  }
}

/** RunPodSandbox's check: the parent must suit the configured driver (cgroupfs paths are checked elsewhere). */
export function validateCgroupParent(parent: string, driver: CgroupDriver): void {
  if (driver === "systemd") sliceOf(parent);
}
