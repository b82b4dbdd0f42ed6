/**
 * Measurement 5, cold pull: the ~100 MB, three-layer `berth-test/big` image removed from the runtime (and its
 * blobs gone from the content store, which both runtimes collect synchronously on RemoveImage), then pulled
 * with PullImage from the local registry. Its base layer is busybox's, which the pods' image keeps in the
 * store, so that layer (~1 MB) is not fetched again: the bytes counted are those of the blobs absent when
 * the pull began (manifest, config, the two ~50 MB layers). Throughput is those bytes over the RPC's
 * duration, in MB/s with MB = 10^6 bytes; the RPC includes decompressing and unpacking into snapshots.
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import { Code, ConnectError } from "@connectrpc/connect";
import type { Descriptor } from "../test/support/images.js";
import type { RuntimeUnderTest } from "./runtime.js";

/** One round's pull. */
export interface PullResult {
  seconds: number;
  bytes: number;
  mbPerSecond: number;
  /**
   * Seconds from the start of the pull until every fetched blob was committed to the content store (polled
   * every 10 ms): the download phase. What follows until the RPC returns is unpacking that was not
   * overlapped with downloading.
   */
  fetchedSeconds: number;
  /** False when a blob not shared with the pod image was still in the store (the figure is then warm). */
  cold: boolean;
}

/** Removes `image`, waits for its blobs to be gone, then times PullImage. */
export async function measureColdPull(
  rt: RuntimeUnderTest,
  image: { ref: string; blobs: readonly Descriptor[]; shared: readonly string[] },
  signal: AbortSignal,
  /** Deadline of the PullImage call (default: the client's). */
  timeoutMs?: number,
): Promise<PullResult> {
  await rt.client.image.removeImage({ image: { image: image.ref } }, { signal }).catch((err: unknown) => {
    if (!(err instanceof ConnectError && err.code === Code.NotFound)) throw err;
  });
  const isPresent = (b: Descriptor): boolean => existsSync(join(rt.blobDir, b.digest.replace(/^sha256:/, "")));
  const own = image.blobs.filter((b) => !image.shared.includes(b.digest));
  const deadline = Date.now() + 5000;
  while (own.some(isPresent) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
  const cold = !own.some(isPresent);
  const bytes = image.blobs.filter((b) => !isPresent(b)).reduce((n, b) => n + b.size, 0);
  const waiting = image.blobs.filter((b) => !isPresent(b));
  const t0 = performance.now();
  let fetchedAt = Number.NaN;
  const poll = setInterval(() => {
    if (Number.isNaN(fetchedAt) && waiting.every(isPresent)) fetchedAt = performance.now();
  }, 10);
  try {
    await rt.client.image.pullImage({ image: { image: image.ref } }, { signal, ...(timeoutMs ? { timeoutMs } : {}) });
  } finally {
    clearInterval(poll);
  }
  const t1 = performance.now();
  if (Number.isNaN(fetchedAt)) fetchedAt = t1;
  const seconds = (t1 - t0) / 1000;
  return { seconds, fetchedSeconds: (fetchedAt - t0) / 1000, bytes, mbPerSecond: bytes / 1e6 / seconds, cold };
}
