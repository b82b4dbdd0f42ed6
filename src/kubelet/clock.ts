/**
 * Time as the pod runner sees it. Everything that waits (sync loop, back-off, probe periods)
 * goes through a Clock so tests can run the runner's timing logic without real waiting.
 */
import { setTimeout as delay } from "node:timers/promises";

export interface Clock {
  /** Milliseconds since the epoch. */
  now(): number;
  /** Resolves after `ms`, or rejects with the signal's reason when it aborts first. */
  sleep(ms: number, signal?: AbortSignal): Promise<void>;
}

/** The wall clock and real timers. */
export const realClock: Clock = {
  now: () => Date.now(),
  sleep: (ms, signal) => delay(Math.max(0, ms), undefined, signal ? { signal } : {}),
};

/**
 * A clock that moves only when told to (`advance`). Sleepers wake in deadline order as time
 * passes them; each wake-up is given a chance to run (and schedule more sleeps) before the next.
 */
export class ManualClock implements Clock {
  private current: number;
  private sleepers: { until: number; resolve: () => void }[] = [];

  constructor(start = 1_700_000_000_000) {
    this.current = start;
  }

  now(): number {
    return this.current;
  }

  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    if (signal?.aborted) return Promise.reject(signal.reason);
    return new Promise((resolve, reject) => {
      const entry = { until: this.current + Math.max(0, ms), resolve: () => resolve() };
      this.sleepers.push(entry);
      signal?.addEventListener(
        "abort",
        () => {
          this.sleepers = this.sleepers.filter((s) => s !== entry);
          reject(signal.reason);
        },
        { once: true },
      );
    });
  }

  /** Moves time forward by `ms`, waking every sleeper whose deadline is reached, in order. */
  async advance(ms: number): Promise<void> {
    const target = this.current + ms;
    for (;;) {
      const next = this.sleepers.filter((s) => s.until <= target).sort((a, b) => a.until - b.until)[0];
      if (!next) break;
      this.current = next.until;
      this.sleepers = this.sleepers.filter((s) => s !== next);
      next.resolve();
      // Let the woken code run until it blocks again.
      for (let i = 0; i < 20; i++) await Promise.resolve();
      await new Promise((r) => setImmediate(r));
    }
    this.current = target;
  }

  /** Number of pending sleeps (for tests). */
  get pending(): number {
    return this.sleepers.length;
  }
}
