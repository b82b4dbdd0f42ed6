import assert from "node:assert/strict";
import { Writable } from "node:stream";
import { test } from "node:test";
import { createPullDisplay, formatElapsed, formatLayerSize, layerLabel } from "./pull-progress.js";

function plainStream(): NodeJS.WriteStream & { text: () => string } {
  let text = "";
  const w = new Writable({
    write(chunk, _enc, cb) {
      text += String(chunk);
      cb();
    },
  });
  return Object.assign(w, { text: () => text, isTTY: false }) as unknown as NodeJS.WriteStream & { text: () => string };
}

test("off a terminal, pull prints one line per layer state change", () => {
  const out = plainStream();
  const display = createPullDisplay(out);
  const task = display.start("example.com/app:1");
  const L1 = `sha256:${"a".repeat(64)}`;
  const L2 = `sha256:${"b".repeat(64)}`;
  task.layers([
    { digest: L1, total: 2_000_000, done: 0, state: "waiting" },
    { digest: L2, total: 0, done: 0, state: "waiting" },
  ]);
  task.layers([
    { digest: L1, total: 2_000_000, done: 500_000, state: "downloading" },
    { digest: L2, total: 0, done: 0, state: "waiting" },
  ]);
  task.layers([
    { digest: L1, total: 2_000_000, done: 1_500_000, state: "downloading" },
    { digest: L2, total: 300, done: 300, state: "done" },
  ]);
  task.done("sha256:1234");
  display.stop();
  const lines = out.text().split("\n");
  assert.deepEqual(lines.slice(0, -2), [
    "Pulling example.com/app:1 ...",
    "  aaaaaaaaaaaa: waiting",
    "  bbbbbbbbbbbb: waiting",
    "  aaaaaaaaaaaa: downloading 500kB/2MB",
    "  bbbbbbbbbbbb: done 300B/300B",
  ]);
  assert.match(lines.at(-2) ?? "", /^Pulled example\.com\/app:1 \(sha256:1234\) in \d+\.\ds$/);
});

test("a failed pull says so; the error follows as the command's own line", () => {
  const out = plainStream();
  const display = createPullDisplay(out);
  display.start("example.com/nope").failed("NotFound: nope");
  assert.equal(out.text(), "Pulling example.com/nope ...\nFailed to pull example.com/nope\n");
});

test("helpers: elapsed time, layer sizes and labels", () => {
  assert.equal(formatElapsed(3210), "3.2s");
  assert.equal(formatElapsed(65_000), "1m05s");
  assert.equal(formatLayerSize({ digest: "", total: 3_400_000, done: 1_200_000, state: "downloading" }), "1.2MB/3.4MB");
  assert.equal(formatLayerSize({ digest: "", total: 0, done: 1_200_000, state: "downloading" }), "1.2MB");
  assert.equal(layerLabel(`sha256:${"0123456789ab".repeat(5)}abcd`), "0123456789ab");
});
