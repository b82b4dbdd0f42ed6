import assert from "node:assert/strict";
import { test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { createRefreshingCache } from "./refreshing-cache.js";

/** A cache over a counter: each computation of a key returns the next number, after `delayMs`. */
function counting(opts: { periodMs: number; staleMs: number; delayMs?: number; fail?: () => boolean }) {
  const calls = new Map<string, number>();
  const errors: unknown[] = [];
  const cache = createRefreshingCache<string, number>({
    ...opts,
    compute: async (key) => {
      const n = (calls.get(key) ?? 0) + 1;
      calls.set(key, n);
      if (opts.delayMs) await sleep(opts.delayMs);
      if (opts.fail?.()) throw new Error(`boom ${key}`);
      return n;
    },
    onError: (_key, err) => errors.push(err),
  });
  return { cache, calls, errors };
}

test("the first get waits for a value; later gets are served from memory while fresh", async () => {
  const { cache, calls } = counting({ periodMs: 60_000, staleMs: 60_000 });
  try {
    assert.deepEqual(await Promise.all([cache.get("a"), cache.get("a")]), [1, 1], "one computation for both");
    assert.equal(await cache.get("a"), 1);
    assert.equal(calls.get("a"), 1);
  } finally {
    cache.close();
  }
});

test("a stale value is served at once and recomputed in the background", async () => {
  const { cache, calls } = counting({ periodMs: 60_000, staleMs: 20, delayMs: 50 });
  try {
    assert.equal(await cache.get("a"), 1);
    await sleep(40);
    const started = Date.now();
    assert.equal(await cache.get("a"), 1, "the old value, without waiting for the new one");
    assert.ok(Date.now() - started < 40);
    await sleep(100);
    assert.equal(calls.get("a"), 2, "one background computation");
    assert.equal(await cache.get("a"), 2);
  } finally {
    cache.close();
  }
});

test("keys are recomputed on the period and forgotten when unread", async () => {
  const { cache, calls } = counting({ periodMs: 30, staleMs: 60_000 });
  try {
    await cache.get("a");
    await sleep(100);
    assert.ok((calls.get("a") ?? 0) >= 2, "recomputed on the period");
    assert.ok((await cache.get("a")) >= 2);
    // Unread for more than six periods: dropped, so it stops being recomputed.
    await sleep(400);
    const n = calls.get("a") ?? 0;
    await sleep(150);
    assert.equal(calls.get("a"), n);
  } finally {
    cache.close();
  }
});

test("a failed first computation rejects; a failed refresh keeps the old value and is reported", async () => {
  let failing = true;
  const { cache, errors } = counting({ periodMs: 60_000, staleMs: 0, fail: () => failing });
  try {
    await assert.rejects(cache.get("a"), /boom a/);
    failing = false;
    const first = await cache.get("a");
    failing = true;
    await sleep(5);
    assert.equal(await cache.get("a"), first, "stale but kept");
    await sleep(20);
    assert.equal(await cache.get("a"), first);
    assert.ok(errors.length >= 1);
  } finally {
    cache.close();
  }
});

test("delete makes the next get compute afresh", async () => {
  const { cache } = counting({ periodMs: 60_000, staleMs: 60_000 });
  try {
    assert.equal(await cache.get("a"), 1);
    cache.delete("a");
    assert.equal(await cache.get("a"), 2);
  } finally {
    cache.close();
  }
});
