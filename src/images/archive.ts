import { open, rm } from "node:fs/promises";
import { join } from "node:path";
import type { ContentStore } from "../content/index.js";
import { RuntimeError } from "../errdefs/index.js";
import { createWorkerPool, type WorkerPool } from "../sys/index.js";
import type { LoadJob, LoadLimits, LoadResult, SaveJob } from "./archive-format.js";

/**
 * The main thread's side of `save` and `load` (formats in archive-format.ts): the work itself runs
 * on archive worker threads (archive-worker.ts), at most two jobs at once; the event loop only
 * spools bytes to a file and streams a finished file out.
 *
 * Every file lives in a staging directory of the content store (`<root>/content/ingest/<x>.d/`),
 * on the store's filesystem, so verified blobs are renamed in, never copied, and whatever a crash
 * leaves there is removed by the next start.
 */

/** Default limits on an archive being loaded. */
export const DEFAULT_LOAD_LIMITS: LoadLimits & { maxArchiveBytes: number } = {
  maxArchiveBytes: 64 * 1024 ** 3,
  maxEntries: 100_000,
  maxManifestBytes: 4 * 1024 * 1024,
  maxConfigBytes: 16 * 1024 * 1024,
  maxImages: 1000,
};

const workerUrl = new URL(`./archive-worker${import.meta.url.endsWith(".ts") ? ".ts" : ".js"}`, import.meta.url);

/** Runs archive jobs on worker threads; `close()` ends them. */
export class ArchiveWorkers {
  private pool: WorkerPool | undefined;

  /** Writes the archive `job` describes. */
  save(job: SaveJob, signal?: AbortSignal): Promise<void> {
    return this.workers().run<void>("save", job, signal ? { signal } : {});
  }

  /** Reads and verifies the archive at `job.archive`, staging its blobs. */
  load(job: LoadJob, signal?: AbortSignal): Promise<LoadResult> {
    return this.workers().run<LoadResult>("load", job, signal ? { signal } : {});
  }

  async close(): Promise<void> {
    await this.pool?.close();
  }

  private workers(): WorkerPool {
    this.pool ??= createWorkerPool(workerUrl, { concurrency: 2, idleMs: 2000 });
    return this.pool;
  }
}

/**
 * Writes `source` to `path`, failing with ResourceExhausted past `maxBytes` (an archive is
 * untrusted, and so is its length).
 */
export async function spool(
  source: AsyncIterable<Uint8Array>,
  path: string,
  maxBytes: number,
  signal?: AbortSignal,
): Promise<number> {
  const fh = await open(path, "wx", 0o600);
  let size = 0;
  try {
    for await (const chunk of source) {
      signal?.throwIfAborted();
      size += chunk.length;
      if (size > maxBytes)
        throw new RuntimeError("ResourceExhausted", `archive: larger than the limit of ${maxBytes} bytes`);
      for (let off = 0; off < chunk.length; ) off += (await fh.write(chunk, off, chunk.length - off)).bytesWritten;
    }
  } finally {
    await fh.close();
  }
  return size;
}

/**
 * The bytes of a finished file, in chunks of up to 1 MiB, then removes `dir` (the staging
 * directory holding it), also when the reader stops early.
 */
export async function* streamAndRemove(path: string, dir: string): AsyncGenerator<Uint8Array> {
  try {
    const fh = await open(path, "r");
    try {
      const buf = Buffer.allocUnsafe(1024 * 1024);
      for (;;) {
        const { bytesRead } = await fh.read(buf, 0, buf.length, null);
        if (bytesRead === 0) return;
        yield Uint8Array.prototype.slice.call(buf, 0, bytesRead);
      }
    } finally {
      await fh.close();
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** A fresh staging directory and the path of a file in it. */
export async function stagingFile(content: ContentStore, name: string): Promise<{ dir: string; path: string }> {
  const dir = await content.stagingDir();
  return { dir, path: join(dir, name) };
}

/**
 * The name docker shows and writes in manifest.json (`busybox:latest` for
 * `docker.io/library/busybox:latest`, `user/x:1` for `docker.io/user/x:1`).
 */
export function familiarName(full: string): string {
  if (full.startsWith("docker.io/library/")) return full.slice("docker.io/library/".length);
  if (full.startsWith("docker.io/")) return full.slice("docker.io/".length);
  return full;
}
