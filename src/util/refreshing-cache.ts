/**
 * A cache of values that are costly to compute and may be a little old (disk usage): readers are answered
 * from memory, and values are recomputed in the background, on a period and when a read finds them stale.
 *
 * - `get(key)` of a fresh value returns it; of a stale one (older than `staleMs`) returns it too and starts a
 *   recomputation; only the very first `get` of a key waits for a computation.
 * - Every `periodMs` each key is recomputed; keys nobody read for `forgetAfterPeriods` periods are dropped
 *   instead, so the cache only works for keys someone still asks about.
 * - One computation per key runs at a time; a failed background one keeps the old value (reported to
 *   `onError`), a failed first one rejects the `get`.
 * - `close()` stops the timer and aborts computations in flight.
 */
export interface RefreshingCache<K, V> {
  get(key: K): Promise<V>;
  /** Drops `key` (its next `get` computes afresh), e.g. when what it measures changed or went away. */
  delete(key: K): void;
  close(): void;
}

/** Options of {@link createRefreshingCache}. */
export interface RefreshingCacheOptions<K, V> {
  compute(key: K, signal: AbortSignal): Promise<V>;
  /** Recompute every key in use this often (ms). */
  periodMs: number;
  /** A value older than this (ms) is returned but recomputed. */
  staleMs: number;
  /** Drop keys unread for this many periods (default 6). */
  forgetAfterPeriods?: number;
  onError?(key: K, err: unknown): void;
}

interface Entry<V> {
  value?: { v: V; at: number };
  inflight?: Promise<V> | undefined;
  readAt: number;
}

export function createRefreshingCache<K, V>(options: RefreshingCacheOptions<K, V>): RefreshingCache<K, V> {
  const entries = new Map<K, Entry<V>>();
  const closing = new AbortController();
  const forgetMs = options.periodMs * (options.forgetAfterPeriods ?? 6);

  const refresh = (key: K, entry: Entry<V>): Promise<V> => {
    if (entry.inflight) return entry.inflight;
    const p = options.compute(key, closing.signal).then(
      (v) => {
        // A key deleted meanwhile stays deleted: its value may describe something gone.
        if (entries.get(key) === entry) entry.value = { v, at: Date.now() };
        return v;
      },
      (err: unknown) => {
        if (entry.value && !closing.signal.aborted) options.onError?.(key, err);
        throw err;
      },
    );
    entry.inflight = p.finally(() => {
      entry.inflight = undefined;
    });
    // Background refreshes are not awaited: their failure is reported above, never unhandled.
    entry.inflight.catch(() => {});
    return entry.inflight;
  };

  const timer = setInterval(() => {
    const now = Date.now();
    for (const [key, entry] of entries) {
      if (now - entry.readAt > forgetMs) entries.delete(key);
      // A background refresh: onError has logged the failure; the stale value keeps serving.
      else void refresh(key, entry).catch(() => {});
    }
  }, options.periodMs);
  timer.unref();

  return {
    async get(key) {
      let entry = entries.get(key);
      if (!entry) {
        entry = { readAt: Date.now() };
        entries.set(key, entry);
      }
      entry.readAt = Date.now();
      const cached = entry.value;
      if (!cached) {
        try {
          return await refresh(key, entry);
        } catch (err) {
          if (entries.get(key) === entry && !entry.value) entries.delete(key);
          throw err;
        }
      }
      // A background refresh: onError has logged the failure; the stale value keeps serving.
      if (Date.now() - cached.at > options.staleMs) void refresh(key, entry).catch(() => {});
      return cached.v;
    },
    delete(key) {
      entries.delete(key);
    },
    close() {
      clearInterval(timer);
      closing.abort();
      entries.clear();
    },
  };
}
