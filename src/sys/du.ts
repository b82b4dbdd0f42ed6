import { lstat, readdir } from "node:fs/promises";
import { join } from "node:path";

/**
 * Disk usage of a tree: bytes of allocated blocks and the number of inodes, like `du -s -B1`
 * and `du -s --inodes` together, without following symlinks or counting a hard link twice.
 * Entries that vanish while walking are skipped (a container may be writing).
 */
export async function diskUsage(dir: string): Promise<{ bytes: number; inodes: number }> {
  const seen = new Set<string>();
  let bytes = 0;
  let inodes = 0;
  const walk = async (path: string): Promise<void> => {
    let st: Awaited<ReturnType<typeof lstat>>;
    try {
      st = await lstat(path);
    } catch {
      return;
    }
    const key = `${st.dev}:${st.ino}`;
    if (seen.has(key)) return;
    seen.add(key);
    bytes += st.blocks * 512;
    inodes += 1;
    if (!st.isDirectory()) return;
    let names: string[];
    try {
      names = await readdir(path);
    } catch {
      return;
    }
    for (const name of names) await walk(join(path, name));
  };
  await walk(dir);
  return { bytes, inodes };
}
