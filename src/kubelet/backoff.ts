/**
 * The kubelet's crash-loop back-off (k8s.io/client-go/util/flowcontrol.Backoff as the kubelet
 * configures it): after a container exits, its first restart is immediate; every later restart
 * waits a delay that starts at 10 s and doubles up to 5 min, measured from when the container
 * finished. A container that ran longer than the reset period (10 min) before exiting starts
 * over with an immediate restart.
 *
 * ```
 * exit #1 ─▶ restart now   (delay := 10 s)
 * exit #2 ─▶ wait 10 s ─▶ restart   (delay := 20 s)
 * exit #3 ─▶ wait 20 s ─▶ ...  40, 80, 160, 300, 300, ...
 * ran > 10 min before exiting ─▶ restart now (delay := 10 s)
 * ```
 * Keys are `<pod uid>/<container>` (or an image, for pull back-off).
 */
import type { Clock } from "./clock.js";

/** Back-off timing; the defaults are the kubelet's. */
export interface BackoffOptions {
  /** First delay (default 10 s). */
  initialMs?: number;
  /** Cap (default 5 min). */
  maxMs?: number;
  /** A key idle this long since its last restart starts over (default 2 × max = 10 min). */
  resetMs?: number;
}

export class Backoff {
  private readonly entries = new Map<string, { delayMs: number; lastRestart: number }>();
  readonly initialMs: number;
  readonly maxMs: number;
  readonly resetMs: number;

  constructor(
    private readonly clock: Clock,
    options: BackoffOptions = {},
  ) {
    this.initialMs = options.initialMs ?? 10_000;
    this.maxMs = options.maxMs ?? 300_000;
    this.resetMs = options.resetMs ?? 2 * this.maxMs;
  }

  /**
   * How long to wait before restarting `key`, whose last run finished at `finishedAt` (ms):
   * 0 means restart now. Does not change state; call {@link restarted} when restarting.
   */
  remaining(key: string, finishedAt: number): number {
    const e = this.entries.get(key);
    if (!e || this.expired(e, finishedAt)) return 0;
    return Math.max(0, finishedAt + e.delayMs - this.clock.now());
  }

  /** Records a restart of `key` now; returns the delay that the next restart will wait. */
  restarted(key: string): number {
    const now = this.clock.now();
    const e = this.entries.get(key);
    const delayMs = !e || this.expired(e, now) ? this.initialMs : Math.min(e.delayMs * 2, this.maxMs);
    this.entries.set(key, { delayMs, lastRestart: now });
    return delayMs;
  }

  /** The delay currently in force for `key` (0 when none). */
  current(key: string): number {
    return this.entries.get(key)?.delayMs ?? 0;
  }

  forget(key: string): void {
    this.entries.delete(key);
  }

  /** Forgets every key starting with `prefix` (a pod's containers when the pod goes). */
  forgetPrefix(prefix: string): void {
    for (const k of [...this.entries.keys()]) if (k.startsWith(prefix)) this.entries.delete(k);
  }

  private expired(e: { lastRestart: number }, at: number): boolean {
    return at - e.lastRestart > this.resetMs;
  }
}
