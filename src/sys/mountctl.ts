import { join } from "node:path";
import { packageRoot } from "../util/index.js";
import { run } from "./exec.js";

/**
 * berth-mountctl (native/mountctl.c, built into dist/native by `npm run build`): the new mount API
 * (open_tree, mount_setattr, move_mount), which neither Node nor Debian 12's util-linux 2.38 offers.
 */
export function mountctlPath(): string {
  return join(packageRoot(), "dist", "native", "berth-mountctl");
}

/**
 * Attaches at `target` (an existing directory or file) a clone of the whole mount tree at `source`,
 * read-only down to every submount, in one step (mount_setattr with AT_RECURSIVE): runc 1.2's "rro".
 */
export async function mountRecursiveReadOnly(
  source: string,
  target: string,
  options: { signal?: AbortSignal } = {},
): Promise<void> {
  await run(mountctlPath(), ["rro", source, target], {
    name: "recursive read-only mount",
    timeoutMs: 30_000,
    ...options,
  });
}
