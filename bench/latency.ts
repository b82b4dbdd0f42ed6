/**
 * Measurement 1, sequential pod start: N pods one after another, each RunPodSandbox, CreateContainer and
 * StartContainer timed on the client. The pods stay running for the memory measurement and the teardown.
 */
import type { RuntimeUnderTest } from "./runtime.js";
import { type Distribution, distribution } from "./stats.js";
import { type BenchPod, type PodTimings, startPod } from "./workload.js";

/** One round's sequential start. */
export interface SequentialResult {
  sandbox: Distribution;
  create: Distribution;
  start: Distribution;
  /** Per pod, sandbox + create + start. */
  total: Distribution;
  /** Wall time of all N pods (includes the client's own work between calls). */
  wallMs: number;
  samples: PodTimings[];
}

/** Starts `n` pods sequentially; returns the pods (running) and the timings. */
export async function measureSequential(
  rt: RuntimeUnderTest,
  n: number,
  o: { tag: string; logRoot: string; signal: AbortSignal },
): Promise<{ pods: BenchPod[]; result: SequentialResult }> {
  const pods: BenchPod[] = [];
  const samples: PodTimings[] = [];
  const t0 = performance.now();
  for (let i = 0; i < n; i++) {
    o.signal.throwIfAborted();
    const { pod, timings } = await startPod(rt, `${o.tag}-${i}`, { logRoot: o.logRoot, signal: o.signal });
    pods.push(pod);
    samples.push(timings);
  }
  const wallMs = performance.now() - t0;
  return {
    pods,
    result: {
      sandbox: distribution(samples.map((s) => s.sandboxMs)),
      create: distribution(samples.map((s) => s.createMs)),
      start: distribution(samples.map((s) => s.startMs)),
      total: distribution(samples.map((s) => s.totalMs)),
      wallMs,
      samples,
    },
  };
}
