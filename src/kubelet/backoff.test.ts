import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { Backoff } from "./backoff.js";
import { ManualClock } from "./clock.js";

/** Simulates a container that crashes `runMs` after each restart; returns the waits before each restart. */
async function crashLoop(clock: ManualClock, backoff: Backoff, crashes: number, runMs: number): Promise<number[]> {
  const waits: number[] = [];
  for (let i = 0; i < crashes; i++) {
    await clock.advance(runMs);
    const finishedAt = clock.now();
    const wait = backoff.remaining("pod/c", finishedAt);
    waits.push(wait);
    await clock.advance(wait);
    assert.equal(backoff.remaining("pod/c", finishedAt), 0, "the wait is over after waiting it");
    backoff.restarted("pod/c");
  }
  return waits;
}

describe("crash-loop back-off", () => {
  test("the kubelet's schedule: immediate, then 10 s doubling, capped at 5 min", async () => {
    const clock = new ManualClock();
    const b = new Backoff(clock);
    const waits = await crashLoop(clock, b, 9, 1000);
    assert.deepEqual(waits, [0, 10_000, 20_000, 40_000, 80_000, 160_000, 300_000, 300_000, 300_000]);
  });

  test("the delay is measured from the container's finish, not from when the runner looks", async () => {
    const clock = new ManualClock();
    const b = new Backoff(clock);
    b.restarted("k"); // delay is now 10 s
    const finishedAt = clock.now();
    await clock.advance(4000);
    assert.equal(b.remaining("k", finishedAt), 6000);
  });

  test("a container that ran longer than the reset period starts over", async () => {
    const clock = new ManualClock();
    const b = new Backoff(clock);
    assert.deepEqual(await crashLoop(clock, b, 4, 1000), [0, 10_000, 20_000, 40_000]);
    // Runs 11 minutes, then crashes: restart at once, and the next delay is 10 s again.
    assert.deepEqual(await crashLoop(clock, b, 3, 11 * 60_000), [0, 0, 0]);
    assert.deepEqual(await crashLoop(clock, b, 3, 1000), [10_000, 20_000, 40_000]);
  });

  test("injected base delays make the same schedule fast", async () => {
    const clock = new ManualClock();
    const b = new Backoff(clock, { initialMs: 100, maxMs: 400 });
    assert.equal(b.resetMs, 800);
    assert.deepEqual(await crashLoop(clock, b, 6, 10), [0, 100, 200, 400, 400, 400]);
  });

  test("keys are independent and can be forgotten", async () => {
    const clock = new ManualClock();
    const b = new Backoff(clock);
    b.restarted("uid-1/a");
    b.restarted("uid-1/a");
    b.restarted("uid-2/a");
    assert.equal(b.current("uid-1/a"), 20_000);
    assert.equal(b.current("uid-2/a"), 10_000);
    b.forgetPrefix("uid-1/");
    assert.equal(b.current("uid-1/a"), 0);
    assert.equal(b.remaining("uid-1/a", clock.now()), 0);
    assert.equal(b.current("uid-2/a"), 10_000);
  });
});
