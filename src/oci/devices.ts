import { constants } from "node:fs";
import { lstat, readdir } from "node:fs/promises";
import { join } from "node:path";
import { RuntimeError } from "../errdefs/index.js";
import type { LinuxDevice } from "./spec.js";

/**
 * The device node at `path` as a runtime-spec device (type, major/minor, mode, owner), or `undefined` when
 * `path` is not a block or character device. Symlinks are not followed, as containerd's DeviceFromPath.
 */
export async function deviceFromPath(path: string): Promise<LinuxDevice | undefined> {
  const st = await lstat(path, { bigint: true });
  const fmt = Number(st.mode) & constants.S_IFMT;
  let type: string;
  if (fmt === constants.S_IFCHR) type = "c";
  else if (fmt === constants.S_IFBLK) type = "b";
  else return undefined;
  // glibc's major()/minor() for the 64-bit dev_t encoding.
  const rdev = st.rdev;
  const major = Number(((rdev >> 8n) & 0xfffn) | ((rdev >> 32n) & ~0xfffn));
  const minor = Number((rdev & 0xffn) | ((rdev >> 12n) & ~0xffn));
  return { path, type, major, minor, fileMode: Number(st.mode) & 0o7777, uid: Number(st.uid), gid: Number(st.gid) };
}

// Directories under /dev that hold mounts or per-container state, never host devices to copy.
const SKIP_DIRS = new Set(["pts", "shm", "fd", "mqueue", ".lxc", ".lxd-mounts", ".udev"]);

/**
 * Every device under `dir` (recursively), optionally re-rooted at `containerDir`. Skips /dev/console (runc
 * provides its own), the mount directories above, and entries that vanish while we look.
 */
export async function devicesUnder(dir: string, containerDir?: string): Promise<LinuxDevice[]> {
  const out: LinuxDevice[] = [];
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const hostPath = join(dir, entry.name);
    const ctrPath = containerDir === undefined ? hostPath : join(containerDir, entry.name);
    if (entry.isDirectory()) {
      if (!SKIP_DIRS.has(entry.name)) out.push(...(await devicesUnder(hostPath, ctrPath)));
      continue;
    }
    if (entry.name === "console") continue;
    try {
      const dev = await deviceFromPath(hostPath);
      if (dev) out.push({ ...dev, path: ctrPath });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
    }
  }
  return out;
}

/**
 * The devices for one CRI-style device request: `hostPath` may be a device node or a directory of them.
 * A path that is neither fails with InvalidArgument.
 */
export async function devicesFromHostPath(hostPath: string, containerPath: string): Promise<LinuxDevice[]> {
  const st = await lstat(hostPath).catch((err: NodeJS.ErrnoException) => {
    throw new RuntimeError(err.code === "ENOENT" ? "NotFound" : "Internal", `device ${hostPath}: ${err.message}`);
  });
  if (st.isDirectory()) return devicesUnder(hostPath, containerPath);
  const dev = await deviceFromPath(hostPath);
  if (!dev) throw new RuntimeError("InvalidArgument", `device ${hostPath}: not a device node`);
  return [{ ...dev, path: containerPath }];
}
