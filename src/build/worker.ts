import { parentPort, workerData } from "node:worker_threads";
import { type CopyRequest, copyInto, diffToLayer, extractContext, hashSources, OpError } from "./fs-ops.js";

/** One build job per worker thread (see jobs.ts): the request arrives as workerData, one reply is posted. */
export type Job =
  | { op: "hash"; root: string; sources: string[] }
  | { op: "copy"; request: CopyRequest }
  | { op: "extract"; archive: string; root: string; maxBytes: number }
  | { op: "diff"; upper: string; opaque: string[]; out: string; compression: "gzip" | "zstd"; epoch?: number };

async function runJob(job: Job): Promise<unknown> {
  switch (job.op) {
    case "hash":
      return hashSources(job.root, job.sources);
    case "copy":
      return copyInto(job.request);
    case "extract":
      return extractContext(job.archive, job.root, job.maxBytes);
    case "diff":
      return diffToLayer(job);
  }
}

runJob(workerData as Job).then(
  (value) => parentPort?.postMessage({ ok: true, value }),
  (err: unknown) =>
    parentPort?.postMessage({
      ok: false,
      kind: err instanceof OpError ? err.kind : "Internal",
      message: err instanceof Error ? err.message : String(err),
    }),
);
