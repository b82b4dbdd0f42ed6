import { closeSync, constants, fstatSync, lstatSync, openSync, readlinkSync, readSync, realpathSync } from "node:fs";
import { failedPrecondition, RuntimeError } from "../errdefs/index.js";

/** Largest file {@link readFileInRootSync} reads unless told otherwise: /etc/passwd of real images is a few KiB. */
export const ROOTFS_FILE_MAX_BYTES = 4 * 1024 * 1024;

/** Symlinks followed while resolving one path, as Linux's MAXSYMLINKS. */
const MAX_SYMLINKS = 40;

/** Options of {@link readFileInRootSync}. */
export interface ReadInRootOptions {
  /** Files larger than this are refused (default {@link ROOTFS_FILE_MAX_BYTES}). */
  maxBytes?: number;
}

const errnoOf = (err: unknown): string | undefined => (err as NodeJS.ErrnoException | undefined)?.code;

const mib = (n: number) => (n % (1024 * 1024) === 0 ? `${n / (1024 * 1024)} MiB` : `${n} bytes`);

function typeName(st: { isDirectory(): boolean; isFIFO(): boolean; isSocket(): boolean }, mode: number): string {
  if (st.isDirectory()) return "a directory";
  if (st.isFIFO()) return "a FIFO";
  if (st.isSocket()) return "a socket";
  if ((mode & constants.S_IFMT) === constants.S_IFCHR) return "a character device";
  if ((mode & constants.S_IFMT) === constants.S_IFBLK) return "a block device";
  return "not a regular file";
}

/**
 * Resolves `path` inside `root` the way the container will see it, one component at a time: `..` stops at
 * the root, and every symlink (absolute or relative, at any depth) is expanded against `root`, never against
 * the host. Returns the host path of the last component (not itself checked), or undefined when a component
 * does not exist or is not a directory. Throws FailedPrecondition on a symlink loop.
 */
export function resolveInRoot(root: string, path: string): string | undefined {
  const pending = path.split("/").reverse();
  const resolved: string[] = [];
  let links = 0;
  while (pending.length > 0) {
    const part = pending.pop() as string;
    if (part === "" || part === ".") continue;
    if (part === "..") {
      resolved.pop();
      continue;
    }
    const host = `${root}/${[...resolved, part].join("/")}`;
    let st: ReturnType<typeof lstatSync>;
    try {
      st = lstatSync(host);
    } catch (err) {
      const code = errnoOf(err);
      if (code === "ENOENT" || code === "ENOTDIR") return undefined;
      throw err;
    }
    if (st?.isSymbolicLink()) {
      if (++links > MAX_SYMLINKS)
        throw failedPrecondition(`${path}: too many levels of symbolic links (more than ${MAX_SYMLINKS})`);
      const target = readlinkSync(host);
      if (target.startsWith("/")) resolved.length = 0;
      pending.push(...target.split("/").reverse());
      continue;
    }
    if (pending.some((p) => p !== "" && p !== ".") && !st?.isDirectory()) return undefined;
    resolved.push(part);
  }
  return `${root}/${resolved.join("/")}`;
}

/**
 * Reads file `path` of the tree at `root` (an image or container rootfs), which its author controls. The path
 * is resolved inside `root` ({@link resolveInRoot}); the file is opened `O_RDONLY|O_NONBLOCK|O_NOFOLLOW` (a FIFO
 * opens without waiting for a writer; a symlink swapped in after resolution is refused), checked with fstat to
 * be a regular file no larger than `maxBytes`, and checked through /proc/self/fd to lie under `root`. Returns
 * undefined when the file does not exist; throws FailedPrecondition, naming `path`, for anything else amiss.
 *
 * Synchronous: it blocks its thread for as long as the filesystem takes, so call it in a worker
 * (`readFileInRoot` in ./fs-offload.ts), never on the event loop.
 */
export function readFileInRootSync(root: string, path: string, options: ReadInRootOptions = {}): Buffer | undefined {
  const maxBytes = options.maxBytes ?? ROOTFS_FILE_MAX_BYTES;
  const realRoot = realpathSync(root);
  let host: string | undefined;
  try {
    host = resolveInRoot(realRoot, path);
  } catch (err) {
    // e.g. ENAMETOOLONG from symlinks that expand past PATH_MAX: still the image's fault, still named.
    if (err instanceof RuntimeError) throw err;
    throw failedPrecondition(`${path}: resolve: ${errnoOf(err) ?? String(err)}`);
  }
  if (host === undefined) return undefined;
  let fd: number;
  try {
    fd = openSync(host, constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOFOLLOW | constants.O_NOCTTY);
  } catch (err) {
    const code = errnoOf(err);
    if (code === "ENOENT" || code === "ENOTDIR") return undefined;
    if (code === "ELOOP") throw failedPrecondition(`${path} changed into a symbolic link while being opened`);
    throw failedPrecondition(`${path}: open: ${code ?? String(err)}`);
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw failedPrecondition(`${path} is ${typeName(st, st.mode)}, not a regular file`);
    if (st.size > maxBytes)
      throw failedPrecondition(
        `${path} is ${st.size} bytes, over the ${mib(maxBytes)} limit for files read from a rootfs`,
      );
    const actual = readlinkSync(`/proc/self/fd/${fd}`);
    if (!actual.startsWith(realRoot === "/" ? "/" : `${realRoot}/`))
      throw failedPrecondition(`${path} resolved outside the rootfs`);
    // One byte more than fstat promised tells a file that grew since (never read past the cap).
    const buf = Buffer.alloc(st.size + 1);
    let len = 0;
    for (let n = -1; n !== 0 && len < buf.length; len += n) n = readSync(fd, buf, len, buf.length - len, null);
    if (len > st.size) throw failedPrecondition(`${path} grew while being read`);
    return buf.subarray(0, len);
  } finally {
    closeSync(fd);
  }
}
