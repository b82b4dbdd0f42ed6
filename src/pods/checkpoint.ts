import { isAbsolute } from "node:path";
import { failedPrecondition, invalidArgument, unimplemented } from "../errdefs/index.js";
import { criuSupport } from "../runtime/index.js";
import type { ContainerManager } from "./containers.js";

/**
 * CheckpointContainer. A checkpoint is `runc checkpoint` driven by CRIU, so CRIU must work on the
 * host first: `criu check` is asked once (see runtime/criu.ts), and where it fails the RPC answers
 * FailedPrecondition quoting CRIU's own error, so an operator learns exactly what the kernel or VM
 * lacks (on the Firecracker VMs berth is developed on: "vdso: Unexpected rt vDSO area bounds").
 *
 * Validation order: the container must exist (NotFound) and run (FailedPrecondition), the location
 * must be an absolute path (InvalidArgument), and only then is CRIU consulted.
 */
export async function checkpointContainer(
  containers: Pick<ContainerManager, "get">,
  ref: string,
  options: { location: string; criu?: string },
): Promise<void> {
  const rec = containers.get(ref);
  if (rec.state !== "running") throw failedPrecondition(`container ${rec.id} is ${rec.state}, not running`);
  if (!options.location) throw invalidArgument("checkpoint location is required");
  if (!isAbsolute(options.location)) throw invalidArgument(`checkpoint location ${options.location} is not absolute`);
  const criu = await criuSupport(options.criu);
  if (!criu.ok)
    throw failedPrecondition(`checkpoint container ${rec.id}: CRIU cannot run on this host: criu check: ${criu.error}`);
  // TODO(#14): runc checkpoint into a CRI-O-style archive (checkpoint/, config.dump, spec.dump, rootfs-diff.tar),
  // and restore through CreateContainer, once a host where CRIU works can test it; until then no fake success.
  throw unimplemented(`checkpoint container ${rec.id}: writing the checkpoint archive is not implemented yet`);
}
