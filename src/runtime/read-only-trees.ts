import { lstat, mkdir, readdir, rm, rmdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { wrap } from "../errdefs/index.js";
import type { Spec } from "../oci/index.js";
import { isMountPoint, mountRecursiveReadOnly, unmountIfMounted } from "../sys/index.js";

/**
 * Recursive read-only binds for runc 1.1, which has no "rro" mount option (runc 1.2 does). For each
 * mount of `spec` carrying "rro", a read-only clone of the source's whole mount tree is attached under
 * `dir` (one mount_setattr call, so no submount is ever writable), and the mount binds that clone with
 * plain "ro": a bind copies each submount's read-only flag, so the container sees every level read-only.
 * Edits `spec` in place. The clones live outside the bundle and are detached by `releaseReadOnlyTrees`.
 */
export async function bindReadOnlyTrees(spec: Spec, dir: string, signal?: AbortSignal): Promise<void> {
  const mounts = spec.mounts ?? [];
  for (const [i, m] of mounts.entries()) {
    if (!m.options?.includes("rro") || !m.source) continue;
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const target = join(dir, String(i));
    const source = await lstat(m.source).catch((err: unknown) => {
      throw wrap(err, `mount ${m.destination}: source ${m.source}`);
    });
    if (source.isDirectory()) await mkdir(target, { mode: 0o700 });
    else await writeFile(target, "", { mode: 0o600, flag: "wx" });
    await mountRecursiveReadOnly(m.source, target, signal ? { signal } : {});
    m.source = target;
    m.options = m.options.map((o) => (o === "rro" ? "ro" : o));
  }
}

/**
 * Detaches every clone under `dir` (a lazy unmount takes the clone's submounts with it), then removes the
 * empty mount points one by one: never a recursive removal, which could walk into a clone still attached.
 * Idempotent.
 */
export async function releaseReadOnlyTrees(dir: string): Promise<void> {
  const entries = await readdir(dir).catch((err: NodeJS.ErrnoException) => {
    if (err.code === "ENOENT") return [];
    throw err;
  });
  for (const name of entries) {
    const target = join(dir, name);
    await unmountIfMounted(target);
    if (await isMountPoint(target)) throw wrap(new Error("still mounted"), `release read-only bind ${target}`);
    await rmdir(target).catch(async (err: NodeJS.ErrnoException) => {
      if (err.code !== "ENOTDIR") throw err;
      await rm(target, { force: true });
    });
  }
  await rmdir(dir).catch((err: NodeJS.ErrnoException) => {
    if (err.code !== "ENOENT") throw err;
  });
}
