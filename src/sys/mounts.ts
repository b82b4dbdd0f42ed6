import { mkdir, open, readFile, realpath, rm, statfs } from "node:fs/promises";
import { wrap } from "../errdefs/index.js";
import { run } from "./exec.js";

/** statfs f_type of nsfs: a pinned namespace file reports it. */
const NSFS_MAGIC = 0x6e736673;

/** True when `path` is a mount point (listed in /proc/self/mountinfo). */
export async function isMountPoint(path: string): Promise<boolean> {
  let real: string;
  try {
    real = await realpath(path);
  } catch {
    return false;
  }
  const info = await readFile("/proc/self/mountinfo", "utf8");
  for (const line of info.split("\n")) {
    // Field 5 is the mount point, with space, tab, newline and backslash octal-escaped.
    const mountPoint = line.split(" ")[4];
    if (mountPoint !== undefined && unescapeOctal(mountPoint) === real) return true;
  }
  return false;
}

/** Every mount point at or below `dir`, deepest first (the order to unmount them in). */
export async function mountsUnder(dir: string): Promise<string[]> {
  const info = await readFile("/proc/self/mountinfo", "utf8");
  const out: string[] = [];
  for (const line of info.split("\n")) {
    const mp = line.split(" ")[4];
    if (mp === undefined) continue;
    const p = unescapeOctal(mp);
    if (p === dir || p.startsWith(`${dir}/`)) out.push(p);
  }
  return out.sort((a, b) => b.length - a.length);
}

function unescapeOctal(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, oct: string) => String.fromCharCode(Number.parseInt(oct, 8)));
}

const privateMounts = new Map<string, Promise<void>>();

/**
 * Makes `dir` a private bind mount of itself (as `ip netns` does for /run/netns), so namespace
 * and tmpfs mounts made inside it never propagate into other mount namespaces, where a copy
 * would keep a deleted pod's namespace alive. Done once per directory per process. A missing
 * `dir` is created with `mode` (default 0700: only root reaches what is mounted below).
 */
export function ensurePrivateMount(dir: string, mode = 0o700): Promise<void> {
  let done = privateMounts.get(dir);
  if (!done) {
    done = (async () => {
      await mkdir(dir, { recursive: true, mode });
      if (!(await isMountPoint(dir))) await run("mount", ["--bind", dir, dir], { name: "mount" });
      await run("mount", ["--make-private", dir], { name: "mount" });
    })();
    privateMounts.set(dir, done);
    done.catch(() => privateMounts.delete(dir));
  }
  return done;
}

/** True when `path` is a pinned namespace file. */
export async function isPinnedNamespace(path: string): Promise<boolean> {
  try {
    return (await statfs(path)).type === NSFS_MAGIC;
  } catch (err) {
    // ENOTDIR: a parent directory was replaced by a file; nothing is pinned there either.
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "ENOENT" || code === "ENOTDIR") return false;
    throw err;
  }
}

/**
 * Creates new IPC and/or UTS namespaces pinned at the given files (bind mounts of nsfs, no
 * process needed) and sets the hostname in the UTS one: one `unshare` exec for all of it.
 * The parent directory must be a private mount (see ensurePrivateMount).
 */
export async function pinNamespaces(paths: { ipc?: string; uts?: string }, hostname: string): Promise<void> {
  const args: string[] = [];
  for (const [kind, path] of Object.entries(paths)) {
    if (!path) continue;
    await (await open(path, "a", 0o444)).close();
    args.push(`--${kind}=${path}`);
  }
  if (args.length === 0) return;
  const cmd = paths.uts && hostname ? ["hostname", hostname] : ["true"];
  try {
    await run("unshare", [...args, "--", ...cmd], { name: "unshare" });
  } catch (err) {
    // Undo after a failed pin: the pin's own error is the one reported.
    for (const p of Object.values(paths)) if (p) await unpinNamespace(p).catch(() => {});
    throw wrap(err, "pin pod namespaces");
  }
}

/** Unmounts (lazily, a process may still hold it) and removes a pinned namespace file; absent is fine. */
export async function unpinNamespace(path: string): Promise<void> {
  for (let i = 0; i < 8 && (await isPinnedNamespace(path)); i++) {
    await run("umount", ["--lazy", path], { name: "umount" });
  }
  await rm(path, { force: true });
}

/** Mounts a tmpfs at `target` (created if needed) with the given options. */
export async function mountTmpfs(target: string, options: string): Promise<void> {
  await mkdir(target, { recursive: true, mode: 0o755 });
  await run("mount", ["-t", "tmpfs", "-o", options, "shm", target], { name: "mount tmpfs" });
}

/** Unmounts `target` if it is a mount point (lazy: a process may still be inside). */
export async function unmountIfMounted(target: string): Promise<void> {
  for (let i = 0; i < 8 && (await isMountPoint(target)); i++) {
    await run("umount", ["--lazy", target], { name: "umount" });
  }
}
