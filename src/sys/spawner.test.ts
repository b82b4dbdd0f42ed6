import assert from "node:assert/strict";
import { after, describe, test } from "node:test";
import { isKind } from "../errdefs/index.js";
import { runUnchecked } from "./exec.js";
import { enableSpawnWorker, startChild, stopWorker } from "./spawner.js";

// The same behaviour whether children start on this thread or in the spawn worker berthd uses.
for (const mode of ["inline", "worker"] as const) {
  describe(`children started ${mode}`, () => {
    const use = () => enableSpawnWorker(mode === "worker");
    after(async () => {
      enableSpawnWorker(false);
      await stopWorker();
    });

    test("output, stdin and the exit code come back", { timeout: 20_000 }, async () => {
      use();
      const r = await runUnchecked("sh", ["-c", "cat; echo err >&2; exit 3"], { input: "in\n" });
      assert.deepEqual(r, { stdout: "in\n", stderr: "err\n", code: 3 });
      const many = await Promise.all(Array.from({ length: 20 }, (_, i) => runUnchecked("sh", ["-c", `echo ${i}`])));
      assert.deepEqual(
        many.map((x) => x.stdout),
        Array.from({ length: 20 }, (_, i) => `${i}\n`),
      );
    });

    test("output beyond the cap is dropped", { timeout: 20_000 }, async () => {
      use();
      const r = await runUnchecked("sh", ["-c", "head -c 100000 /dev/zero | tr '\\0' x"], { maxOutput: 1000 });
      assert.equal(r.stdout.length, 1000);
    });

    test("a timeout kills the child's whole group and is DeadlineExceeded", { timeout: 20_000 }, async () => {
      use();
      const t = performance.now();
      // The backgrounded sleep holds the pipes: without the group kill the call would wait 30 s.
      await assert.rejects(
        runUnchecked("sh", ["-c", "sleep 30 & sleep 30"], { timeoutMs: 200, name: "napper" }),
        (e: unknown) => isKind(e, "DeadlineExceeded") && /napper: timed out after 200 ms/.test(String(e)),
      );
      assert.ok(performance.now() - t < 10_000);
    });

    test("an abort is Canceled; a missing binary is a clear error", { timeout: 20_000 }, async () => {
      use();
      const ac = new AbortController();
      const p = runUnchecked("sleep", ["30"], { signal: ac.signal });
      setTimeout(() => ac.abort(), 100);
      await assert.rejects(p, (e: unknown) => isKind(e, "Canceled"));
      await assert.rejects(runUnchecked("/no/such/binary", []), /\/no\/such\/binary: .*ENOENT/);
    });

    test("extra fds: a write to one, a first line read from another", { timeout: 20_000 }, async () => {
      use();
      const run = startChild({
        file: "sh",
        args: ["-c", 'read x <&4; echo "got $x" >&3'],
        env: { PATH: process.env.PATH },
        stdio: ["ignore", "ignore", "pipe", "pipe", "pipe"],
        detached: false,
        killGroup: false,
        writes: { 4: "start\n" },
        reads: { 3: { max: 1000, wait: true, untilLine: true } },
      });
      const r = await run.result;
      assert.equal(r.code, 0);
      assert.equal(r.output[3], "got start\n");
    });
  });
}

describe("spawn worker replacement", () => {
  after(async () => {
    enableSpawnWorker(false);
    await stopWorker();
  });

  test("a worker that exits while its successor starts fails none of the successor's runs", {
    timeout: 30_000,
  }, async () => {
    enableSpawnWorker(true);
    for (let round = 0; round < 2; round++) {
      // Starts a worker and waits for it to be idle, then ends it without waiting for its exit (as the idle
      // timer does) and starts children at once: they go to a new worker while the old one is still exiting.
      assert.equal((await runUnchecked("true", [])).code, 0);
      const ending = stopWorker();
      const runs = Array.from({ length: 5 }, (_, i) => runUnchecked("sh", ["-c", `sleep 0.2; echo ${i}`]));
      await ending;
      const out = await Promise.all(runs);
      assert.deepEqual(
        out.map((r) => r.stdout),
        ["0\n", "1\n", "2\n", "3\n", "4\n"],
      );
    }
  });
});
