import assert from "node:assert/strict";
import { test } from "node:test";
import { pino } from "pino";
import { createRpcTracker, type RpcTracker } from "../cri/index.js";
import { describeSpans, type LoopMonitor, startLoopMonitor } from "./loop-monitor.js";

/** A logger that keeps its JSON lines in memory. */
function memoryLogger() {
  const lines: Array<Record<string, unknown>> = [];
  const log = pino({ level: "debug" }, { write: (s: string) => lines.push(JSON.parse(s)) });
  return { log, lines };
}

/** Keeps the event loop busy (synchronously) for `ms` milliseconds. */
function blockFor(ms: number): void {
  const until = performance.now() + ms;
  while (performance.now() < until) {
    // spin
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Watched {
  lines: Array<Record<string, unknown>>;
  warnings: () => Array<Record<string, unknown>>;
  tracker: RpcTracker;
  monitor: LoopMonitor;
}

/** Runs `fn` with a monitor (default options) over a fresh tracker, closing it afterwards. */
async function watched(fn: (w: Watched) => Promise<void>): Promise<void> {
  const { log, lines } = memoryLogger();
  const tracker = createRpcTracker();
  const monitor = startLoopMonitor({ log, tracker });
  try {
    await fn({ lines, warnings: () => lines.filter((l) => l.level === 40), tracker, monitor });
  } finally {
    monitor.close();
  }
}

test(
  "a 200 ms block of the loop logs one warning naming the RPCs in flight, and shows in the figures",
  {
    timeout: 10_000,
  },
  () =>
    watched(async ({ lines, warnings, tracker, monitor }) => {
      await sleep(100);
      const endExec = tracker.begin("ExecSync");
      tracker.begin("ExecSync");
      // An RPC that finishes inside the blocking task is still named: it ran during the stall.
      const endStatus = tracker.begin("ContainerStatus");
      blockFor(200);
      endStatus();
      await sleep(100);
      endExec();
      const seen = warnings();
      assert.equal(seen.length, 1, JSON.stringify(lines));
      const w = seen[0] as { stallMs: number; rpcs: string; msg: string; open: number };
      assert.ok(w.stallMs >= 150 && w.stallMs < 1000, `stallMs ${w.stallMs}`);
      assert.equal(w.rpcs, "ExecSync x2, ContainerStatus");
      assert.match(w.msg, /^event loop stalled for \d+ ms; RPCs in flight: ExecSync x2, ContainerStatus$/);
      assert.equal(w.open, 2);
      const s = monitor.stats();
      assert.equal(s.stalls, 1);
      assert.ok(s.worstStallMs >= 150, JSON.stringify(s));
      assert.ok(s.maxMs >= 150 && s.maxMs < 1000, JSON.stringify(s));
      assert.ok(s.p50Ms < s.maxMs, JSON.stringify(s));
      assert.equal(s.stallThresholdMs, 100);
      monitor.close();
    }),
);

test("short delays below the threshold are not stalls", { timeout: 10_000 }, () =>
  watched(async ({ warnings, monitor }) => {
    for (let i = 0; i < 5; i++) {
      blockFor(30);
      await sleep(30);
    }
    assert.deepEqual(warnings(), []);
    assert.equal(monitor.stats().stalls, 0);
  }),
);

test(
  "a stall with nothing in flight says so; RPCs ended before the stall are not named",
  {
    timeout: 10_000,
  },
  () =>
    watched(async ({ lines, tracker }) => {
      tracker.begin("Version")();
      await sleep(100);
      blockFor(200);
      await sleep(50);
      const w = lines.find((l) => l.level === 40) as { rpcs: string; msg: string } | undefined;
      assert.ok(w, "a warning");
      assert.equal(w.rpcs, "");
      assert.match(w.msg, /RPCs in flight: none$/);
    }),
);

test("describeSpans counts repeated RPCs in order of first start", () => {
  assert.equal(
    describeSpans([
      { rpc: "Version", startedMs: 1 },
      { rpc: "ExecSync", startedMs: 2 },
      { rpc: "Version", startedMs: 3, endedMs: 4 },
    ]),
    "Version x2, ExecSync",
  );
  assert.equal(describeSpans([]), "");
});

test("the tracker forgets ended RPCs beyond its ring and counts open ones", () => {
  const tracker = createRpcTracker();
  const ends = Array.from({ length: 100 }, (_, i) => tracker.begin(`R${i}`));
  assert.equal(tracker.open, 100);
  for (const end of ends) {
    end();
    end();
  }
  assert.equal(tracker.open, 0);
  const recent = tracker.activeSince(0);
  assert.equal(recent.length, 64);
  assert.equal(recent[0]?.rpc, "R36");
});
