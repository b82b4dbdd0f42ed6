import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { Worker } from "node:worker_threads";
import { type ErrorKind, RuntimeError } from "../errdefs/index.js";
import type { CopyRequest, LayerResult } from "./fs-ops.js";
import type { Job } from "./worker.js";

/**
 * Runs one filesystem job of a build (hash, copy, diff -> layer) in its own worker thread, so tree
 * walks, tar, gzip and hashing never run on berthd's event loop. A worker costs ~30 ms to start,
 * which is nothing beside the job; an aborted job's worker is terminated.
 */
function runJob<T>(job: Job, signal?: AbortSignal): Promise<T> {
  const js = new URL("./worker.js", import.meta.url);
  const worker = existsSync(fileURLToPath(js))
    ? new Worker(js, { workerData: job })
    : new Worker(
        `import("tsx/esm/api").then((m) => { m.register(); return import(${JSON.stringify(new URL("./worker.ts", import.meta.url).href)}); })`,
        { eval: true, workerData: job },
      );
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => {
      void worker.terminate();
      reject(new RuntimeError("Canceled", `build ${job.op}: canceled`));
    };
    signal?.addEventListener("abort", onAbort, { once: true });
    worker.once("message", (m: { ok: boolean; value?: T; kind?: ErrorKind; message?: string }) => {
      signal?.removeEventListener("abort", onAbort);
      void worker.terminate();
      if (m.ok) resolve(m.value as T);
      else reject(new RuntimeError(m.kind ?? "Internal", m.message ?? "build job failed"));
    });
    worker.once("error", (err) => {
      signal?.removeEventListener("abort", onAbort);
      reject(new RuntimeError("Internal", `build ${job.op}: ${err.message}`));
    });
  });
}

/** Content hash of COPY sources (see fs-ops.ts hashSources). */
export const hashSourcesJob = (root: string, sources: string[], signal?: AbortSignal) =>
  runJob<string>({ op: "hash", root, sources }, signal);

/** Copies COPY/ADD sources into a mounted step root. */
export const copyJob = (request: CopyRequest, signal?: AbortSignal) => runJob<void>({ op: "copy", request }, signal);

/** An overlay upper dir -> compressed OCI layer file. */
export const diffJob = (
  o: { upper: string; opaque: string[]; out: string; compression: "gzip" | "zstd"; epoch?: number },
  signal?: AbortSignal,
) => runJob<LayerResult>({ op: "diff", ...o }, signal);

/** Extracts the context tar into an empty directory; resolves to its byte count. */
export const extractJob = (archive: string, root: string, maxBytes: number, signal?: AbortSignal) =>
  runJob<number>({ op: "extract", archive, root, maxBytes }, signal);
