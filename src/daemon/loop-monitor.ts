import { type IntervalHistogram, monitorEventLoopDelay, performance } from "node:perf_hooks";
import type { RpcSpan, RpcTracker } from "../cri/index.js";
import type { Logger } from "../log/index.js";

/**
 * Watches berthd's event loop. Two parts:
 * - `perf_hooks.monitorEventLoopDelay`, a libuv timer in C++ that records into a histogram how
 *   late each of its ticks ran: the p50/p99/max shown by `berth info -v`;
 * - a JS interval that notices when it fired more than `stallMs` late and logs a warning naming
 *   the RPCs that were open during the stall (from the CRI edge's {@link RpcTracker}), so the
 *   slow path can be found from the log alone.
 * A timer can only notice a stall once the loop is free again, and it runs up to one period
 * after the stall began: a stall is reported as at least (lateness) long, which may be up to
 * `periodMs` short of the real block.
 */
export interface LoopMonitor {
  /** Figures since the monitor started. */
  stats(): LoopStats;
  /** Stops both timers. Idempotent. */
  close(): void;
}

/** Event-loop delay figures in milliseconds, beyond the sampling period itself. */
export interface LoopStats {
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  meanMs: number;
  /** Stalls longer than the threshold seen so far, and the threshold. */
  stalls: number;
  stallThresholdMs: number;
  /** The longest stall noticed, in ms (0 when none). */
  worstStallMs: number;
  /** When the monitor started (ISO 8601). */
  since: string;
}

export interface LoopMonitorOptions {
  log: Logger;
  tracker: RpcTracker;
  /** A tick this much later than due is a stall and logged (default 100 ms). */
  stallMs?: number;
  /** Sampling period of both timers (default 20 ms). */
  periodMs?: number;
}

export function startLoopMonitor(options: LoopMonitorOptions): LoopMonitor {
  const stallMs = options.stallMs ?? 100;
  const periodMs = options.periodMs ?? 20;
  const histogram: IntervalHistogram = monitorEventLoopDelay({ resolution: periodMs });
  histogram.enable();
  const since = new Date().toISOString();
  let stalls = 0;
  let worstStallMs = 0;
  let last = performance.now();
  const timer = setInterval(() => {
    const now = performance.now();
    const lateMs = now - last - periodMs;
    const previous = last;
    last = now;
    if (lateMs <= stallMs) return;
    stalls++;
    worstStallMs = Math.max(worstStallMs, lateMs);
    // The stall began after the previous tick: every RPC open at some moment since then ran during it.
    const spans = options.tracker.activeSince(previous);
    const rpcs = describeSpans(spans);
    options.log.warn(
      { stallMs: Math.round(lateMs), rpcs, open: options.tracker.open },
      `event loop stalled for ${Math.round(lateMs)} ms; RPCs in flight: ${rpcs || "none"}`,
    );
  }, periodMs);
  // The monitor must never keep the daemon alive on its own.
  timer.unref();
  let closed = false;
  const ms = (ns: number) => Math.max(0, round1(ns / 1e6 - periodMs));
  return {
    stats: () => ({
      p50Ms: ms(histogram.percentile(50)),
      p99Ms: ms(histogram.percentile(99)),
      maxMs: ms(histogram.max),
      meanMs: Number.isNaN(histogram.mean) ? 0 : ms(histogram.mean),
      stalls,
      stallThresholdMs: stallMs,
      worstStallMs: round1(worstStallMs),
      since,
    }),
    close: () => {
      if (closed) return;
      closed = true;
      clearInterval(timer);
      histogram.disable();
    },
  };
}

/** "ExecSync x37, Version": distinct RPC names in order of first start, with a count when repeated. */
export function describeSpans(spans: readonly RpcSpan[]): string {
  const counts = new Map<string, number>();
  for (const s of spans) counts.set(s.rpc, (counts.get(s.rpc) ?? 0) + 1);
  return [...counts].map(([rpc, n]) => (n > 1 ? `${rpc} x${n}` : rpc)).join(", ");
}

function round1(n: number): number {
  return Math.round(n * 10) / 10;
}
