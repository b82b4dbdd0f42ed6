import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { signalOption, untilAborted } from "./abort.js";
import { pathExists } from "./path-exists.js";

/** A promise settled from outside, to drive `work` step by step. */
function deferred<T>() {
  let resolve!: (v: T) => void;
  let reject!: (e: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

test("untilAborted settles as the work does when the signal never aborts", async () => {
  const ac = new AbortController();
  assert.equal(await untilAborted(Promise.resolve(7), ac.signal), 7);
  await assert.rejects(untilAborted(Promise.reject(new Error("boom")), ac.signal), /boom/);
  assert.equal(await untilAborted(Promise.resolve(8), undefined), 8);
});

test("untilAborted rejects at once on abort, with the signal's reason or the given error, while the work goes on", async () => {
  const work = deferred<number>();
  const ac = new AbortController();
  const waiting = untilAborted(work.promise, ac.signal);
  ac.abort(new Error("stop"));
  await assert.rejects(waiting, /stop/);
  // The work's later failure is observed by untilAborted: no unhandled rejection ends this test.
  work.reject(new Error("late"));
  await assert.rejects(
    untilAborted(new Promise(() => {}), AbortSignal.abort(), { error: () => new Error("mine") }),
    /mine/,
  );
});

test("untilAborted waits for the work when early() says the abort no longer ends the wait", async () => {
  const work = deferred<string>();
  const ac = new AbortController();
  let early = true;
  const waiting = untilAborted(work.promise, ac.signal, { early: () => early });
  early = false;
  ac.abort();
  work.resolve("finished");
  assert.equal(await waiting, "finished");
  // Already aborted and not early: the work still decides.
  assert.equal(await untilAborted(Promise.resolve("done"), AbortSignal.abort(), { early: () => false }), "done");
});

test("signalOption carries a signal and leaves out an absent one", () => {
  const { signal } = new AbortController();
  assert.deepEqual(signalOption(signal), { signal });
  assert.deepEqual(signalOption(undefined), {});
  assert.equal("signal" in signalOption(undefined), false);
});

test("pathExists is true for a file and false for a missing path or a dangling name", async () => {
  const dir = await mkdtemp(join(tmpdir(), "berth-exists-"));
  try {
    await writeFile(join(dir, "f"), "x");
    assert.equal(await pathExists(join(dir, "f")), true);
    assert.equal(await pathExists(dir), true);
    assert.equal(await pathExists(join(dir, "missing")), false);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
