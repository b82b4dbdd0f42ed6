import { closeSync, constants, type Dir, lstatSync, opendirSync, openSync, type Stats } from "node:fs";

/** Disk usage of a tree, as `du -s -B1` and `du -s --inodes` count it. */
export interface TreeUsage {
  /** Allocated bytes (st_blocks × 512), each inode once. */
  bytes: number;
  /** Distinct inodes, the root included. */
  inodes: number;
  /** Entries that vanished or could not be opened while walking (a container writing, an fd limit). */
  skipped: number;
}

/** The errors that mean "this entry went away or cannot be entered": skip it, never fail the whole walk. */
const SKIPPABLE = new Set(["ENOENT", "ENOTDIR", "ELOOP", "EACCES", "EMFILE", "ENFILE", "ESTALE"]);

const skippable = (err: unknown) => SKIPPABLE.has((err as NodeJS.ErrnoException).code ?? "");

interface Level {
  /** An O_PATH-like anchor: children are reached as /proc/self/fd/<fd>/<name>, whatever the depth. */
  fd: number;
  /** The level's entries, streamed a few at a time (a directory may hold millions). */
  dir: Dir;
}

/**
 * Walks the tree at `dir` without following symlinks or leaving its filesystem, counting each inode once
 * (hard links). Built for trees a container or image controls:
 * - depth does not matter: each directory is held open and its children are named relative to its fd
 *   through /proc/self/fd, so no path ever grows past PATH_MAX (no ENAMETOOLONG);
 * - huge directories are streamed with opendir, never read whole into memory;
 * - entries that vanish mid-walk (ENOENT), or cannot be opened, are counted in `skipped`, not thrown.
 * A missing `dir` has zero usage. Synchronous and possibly long: run it in a worker (`treeUsage` in
 * ./fs-offload.ts), never on the event loop. Holds two fds per level of depth.
 */
export function treeUsageSync(dir: string): TreeUsage {
  const usage: TreeUsage = { bytes: 0, inodes: 0, skipped: 0 };
  const linked = new Set<string>();
  const count = (st: Stats) => {
    // Only multiply-linked inodes can be met twice; remembering just those keeps memory flat on huge trees.
    if (st.nlink > 1 && !st.isDirectory()) {
      const key = `${st.dev}:${st.ino}`;
      if (linked.has(key)) return;
      linked.add(key);
    }
    usage.bytes += st.blocks * 512;
    usage.inodes += 1;
  };
  let top: Stats | undefined;
  try {
    top = lstatSync(dir, { throwIfNoEntry: false });
  } catch (err) {
    if (!skippable(err)) throw err;
  }
  if (!top) return usage;
  count(top);
  if (!top.isDirectory()) return usage;
  const dev = top.dev;
  const stack: Level[] = [];
  const enter = (path: string) => {
    let fd: number | undefined;
    try {
      fd = openSync(path, constants.O_RDONLY | constants.O_DIRECTORY | constants.O_NOFOLLOW);
      stack.push({ fd, dir: opendirSync(`/proc/self/fd/${fd}`) });
    } catch (err) {
      if (fd !== undefined) closeSync(fd);
      if (!skippable(err)) throw err;
      usage.skipped += 1;
    }
  };
  try {
    enter(dir);
    for (let level = stack.at(-1); level !== undefined; level = stack.at(-1)) {
      const entry = level.dir.readSync();
      if (entry === null) {
        stack.pop();
        level.dir.closeSync();
        closeSync(level.fd);
        continue;
      }
      const child = `/proc/self/fd/${level.fd}/${entry.name}`;
      let st: Stats | undefined;
      try {
        st = lstatSync(child, { throwIfNoEntry: false });
      } catch (err) {
        if (!skippable(err)) throw err;
      }
      if (!st) {
        usage.skipped += 1;
        continue;
      }
      count(st);
      if (st.isDirectory() && st.dev === dev) enter(child);
    }
  } finally {
    for (const level of stack.splice(0).reverse()) {
      level.dir.closeSync();
      closeSync(level.fd);
    }
  }
  return usage;
}
