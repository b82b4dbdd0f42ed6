import { ROOTFS_FILE_MAX_BYTES } from "./rootfs-read.js";
import type { TreeUsage } from "./tree-usage.js";
import { createWorkerPool, type WorkerPool } from "./worker-pool.js";

/**
 * The async face of ./rootfs-read.ts and ./tree-usage.ts: the work runs in worker threads (./fs-worker.ts),
 * so neither the event loop nor libuv's thread pool ever waits on a FIFO, a huge file or a huge tree.
 *
 * Two pools, created on first use, whose workers exit when idle: rootfs reads are short and on the
 * CreateContainer path, so they must not queue behind a walk of a 200,000-file layer.
 */
const workerUrl = new URL(`./fs-worker${import.meta.url.endsWith(".ts") ? ".ts" : ".js"}`, import.meta.url);

let readers: WorkerPool | undefined;
let walkers: WorkerPool | undefined;

/** Default bound on one rootfs read: a regular file of at most 4 MiB reads in milliseconds. */
export const ROOTFS_READ_TIMEOUT_MS = 5_000;

/** Options of {@link readFileInRoot}. */
export interface ReadFileInRootOptions {
  /** Refuse larger files (default 4 MiB). */
  maxBytes?: number;
  /** Give up (DeadlineExceeded) after this long (default {@link ROOTFS_READ_TIMEOUT_MS}). */
  timeoutMs?: number;
  signal?: AbortSignal;
}

/**
 * Reads file `path` (e.g. `/etc/passwd`) of the rootfs at `root` safely (see `readFileInRootSync`): resolved
 * inside `root`, regular files only, at most `maxBytes`, within `timeoutMs`. Undefined when it does not exist;
 * FailedPrecondition naming `path` when it is not a regular file, too big or a symlink loop.
 */
export async function readFileInRoot(
  root: string,
  path: string,
  options: ReadFileInRootOptions = {},
): Promise<Buffer | undefined> {
  readers ??= createWorkerPool(workerUrl, { concurrency: 1 });
  const out = await readers.run<Uint8Array | undefined>(
    "readFileInRoot",
    { root, path, maxBytes: options.maxBytes ?? ROOTFS_FILE_MAX_BYTES },
    {
      timeoutMs: options.timeoutMs ?? ROOTFS_READ_TIMEOUT_MS,
      ...(options.signal ? { signal: options.signal } : {}),
    },
  );
  return out === undefined ? undefined : Buffer.from(out.buffer, out.byteOffset, out.byteLength);
}

/**
 * Disk usage of the tree at `dir` (see `treeUsageSync`), measured in a worker thread; two walks run at once at
 * most, others queue. Zero for a missing `dir`; vanished entries are skipped.
 */
export function treeUsage(dir: string, options: { signal?: AbortSignal } = {}): Promise<TreeUsage> {
  walkers ??= createWorkerPool(workerUrl, { concurrency: 2 });
  return walkers.run<TreeUsage>("treeUsage", { dir }, options.signal ? { signal: options.signal } : {});
}
