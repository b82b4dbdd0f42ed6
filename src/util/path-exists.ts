import { access } from "node:fs/promises";

/**
 * Whether something exists at `path` (a symlink counts only if its target does). Any error, not only ENOENT,
 * reads as "no": callers use this for optional files and fall back, never to decide about deleting.
 */
export function pathExists(path: string): Promise<boolean> {
  return access(path).then(
    () => true,
    () => false,
  );
}
