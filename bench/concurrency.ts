/**
 * Measurement 2, concurrent pod start: N pods with a fixed number in flight (10 by default, a kubelet
 * starting a burst of pods), each pod its three calls in order. Reports the wall time and pods per second.
 */
import type { RuntimeUnderTest } from "./runtime.js";
import { type Distribution, distribution } from "./stats.js";
import { type BenchPod, mapLimit, startPod } from "./workload.js";

/** One round's concurrent start. */
export interface ConcurrentResult {
  inFlight: number;
  wallMs: number;
  podsPerSecond: number;
  /** Per pod start latency under that load. */
  total: Distribution;
}

/** Starts `n` pods, `inFlight` at a time; returns them (running) and the figures. */
export async function measureConcurrent(
  rt: RuntimeUnderTest,
  n: number,
  o: { tag: string; inFlight: number; logRoot: string; signal: AbortSignal },
): Promise<{ pods: BenchPod[]; result: ConcurrentResult }> {
  const pods: BenchPod[] = [];
  const t0 = performance.now();
  const timings = await mapLimit(
    Array.from({ length: n }, (_, i) => i),
    o.inFlight,
    async (i) => {
      o.signal.throwIfAborted();
      const { pod, timings } = await startPod(rt, `${o.tag}-${i}`, { logRoot: o.logRoot, signal: o.signal });
      pods.push(pod);
      return timings.totalMs;
    },
  );
  const wallMs = performance.now() - t0;
  return {
    pods,
    result: { inFlight: o.inFlight, wallMs, podsPerSecond: n / (wallMs / 1000), total: distribution(timings) },
  };
}
