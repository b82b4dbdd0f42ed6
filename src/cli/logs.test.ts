import assert from "node:assert/strict";
import { appendFile, mkdtemp, rename, rm, truncate, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { after, before, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { parseCriLog } from "../crilog/index.js";
import { formatLogLine, printLogs, TailBuffer } from "./logs.js";

let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), "berth-cli-logs-"));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

function sink(): Writable & { text: () => string } {
  let text = "";
  const w = new Writable({
    write(chunk, _enc, cb) {
      text += String(chunk);
      cb();
    },
  });
  return Object.assign(w, { text: () => text });
}

const entry = (sec: number, stream: string, tag: string, content: string) =>
  `2024-05-01T10:00:${String(sec).padStart(2, "0")}.000000000Z ${stream} ${tag} ${content}\n`;

const LOG = [
  entry(0, "stdout", "F", "one"),
  entry(1, "stderr", "F", "oops"),
  entry(2, "stdout", "P", "tw"),
  entry(3, "stdout", "F", "o"),
  entry(4, "stdout", "F", "three"),
].join("");

async function run(path: string, opts: Partial<Parameters<typeof printLogs>[1]> = {}) {
  const out = sink();
  const err = sink();
  await printLogs(path, { timestamps: false, follow: false, isRunning: async () => false, out, err, ...opts });
  return { out: out.text(), err: err.text() };
}

test("logs prints stdout and stderr lines to their streams, partial lines joined", async () => {
  const path = join(dir, "plain.log");
  await writeFile(path, LOG);
  assert.deepEqual(await run(path), { out: "one\ntwo\nthree\n", err: "oops\n" });
});

test("--tail counts joined lines; --since filters by the first entry's time; --timestamps prefixes it", async () => {
  const path = join(dir, "filters.log");
  await writeFile(path, LOG);
  assert.equal((await run(path, { tail: 2 })).out, "two\nthree\n");
  assert.equal((await run(path, { tail: 0 })).out, "");
  assert.equal((await run(path, { sinceMs: Date.UTC(2024, 4, 1, 10, 0, 2) })).out, "two\nthree\n");
  assert.equal(
    (await run(path, { sinceMs: Date.UTC(2024, 4, 1, 10, 0, 3) })).out,
    "three\n",
    "a joined line has its first entry's time",
  );
  assert.equal((await run(path, { tail: 1, timestamps: true })).out, "2024-05-01T10:00:04.000000000Z three\n");
});

test("a missing log file is an error that says so", async () => {
  await assert.rejects(run(join(dir, "nope.log")), /log file .*nope\.log does not exist/);
});

test("-f follows appended lines across rotation and truncation, and ends once the container stopped", async () => {
  const path = join(dir, "follow.log");
  await writeFile(path, entry(0, "stdout", "F", "before"));
  let running = true;
  const out = sink();
  const done = printLogs(path, {
    timestamps: false,
    follow: true,
    tail: 1,
    isRunning: async () => running,
    out,
    err: sink(),
  });
  await sleep(300);
  await appendFile(path, entry(1, "stdout", "P", "half "));
  await sleep(300);
  await appendFile(path, entry(2, "stdout", "F", "line"));
  // The kubelet's rotation: rename, then the runtime reopens a fresh file (ReopenContainerLog).
  await appendFile(path, entry(3, "stdout", "F", "last of the old file"));
  await rename(path, `${path}.20240501-100003`);
  await sleep(300);
  await writeFile(path, entry(4, "stdout", "F", "first of the new file"));
  await sleep(500);
  // copytruncate style: the file shrinks and starts again.
  await truncate(path, 0);
  await sleep(300);
  await appendFile(path, entry(5, "stdout", "F", "after truncation"));
  await sleep(500);
  running = false;
  await done;
  assert.equal(out.text(), "before\nhalf line\nlast of the old file\nfirst of the new file\nafter truncation\n");
});

test("-f on a container that already stopped prints the log and returns", async () => {
  const path = join(dir, "stopped.log");
  await writeFile(path, LOG);
  const started = Date.now();
  const { out } = await run(path, { follow: true });
  assert.equal(out, "one\ntwo\nthree\n");
  assert.ok(Date.now() - started < 2000);
});

test("formatLogLine adds the newline of complete lines and the timestamp on request", () => {
  const [line] = parseCriLog("2024-05-01T10:00:00.5Z stdout F hi");
  assert.ok(line);
  assert.equal(formatLogLine(line), "hi\n");
  assert.equal(formatLogLine(line, { timestamps: true }), "2024-05-01T10:00:00.5Z hi\n");
  assert.equal(formatLogLine({ ...line, complete: false }), "hi");
});

test("TailBuffer keeps the last n items; 0 keeps none, negative keeps all", () => {
  const t = new TailBuffer<number>(2);
  for (const n of [1, 2, 3, 4]) t.push(n);
  assert.deepEqual(t.items(), [3, 4]);
  const none = new TailBuffer<number>(0);
  none.push(1);
  assert.deepEqual(none.items(), []);
  const all = new TailBuffer<number>(-1);
  for (const n of [1, 2, 3]) all.push(n);
  assert.deepEqual(all.items(), [1, 2, 3]);
});
