import assert from "node:assert/strict";
import { test } from "node:test";
import { formatLogLine, LogJoiner, parseCriLog, parseCriLogLine, TailBuffer } from "./cri-log.js";

test("parseCriLogLine reads timestamp, stream, tag and content", () => {
  const e = parseCriLogLine("2024-05-01T10:00:00.123456789Z stdout F hello world");
  assert.deepEqual(e, {
    timestamp: "2024-05-01T10:00:00.123456789Z",
    timeMs: Date.UTC(2024, 4, 1, 10, 0, 0, 123),
    stream: "stdout",
    partial: false,
    content: "hello world",
  });
  assert.equal(parseCriLogLine("2024-05-01T10:00:00Z stderr P  two  spaces ")?.content, " two  spaces ");
  assert.equal(parseCriLogLine("2024-05-01T10:00:00Z stderr P")?.content, "", "an empty partial has no content");
  assert.equal(parseCriLogLine("2024-05-01T10:00:00Z stdout F")?.content, "", "an empty line");
  assert.equal(parseCriLogLine("2024-05-01T10:00:00+02:00 stdout F:extra x")?.partial, false, "extra tags are ignored");
});

test("parseCriLogLine rejects lines in another format", () => {
  for (const bad of [
    "",
    "hello",
    "2024-05-01T10:00:00Z stdin F x",
    "2024-05-01T10:00:00Z stdout X x",
    "not-a-time stdout F x",
    '{"log":"docker json","stream":"stdout"}',
  ]) {
    assert.equal(parseCriLogLine(bad), undefined, bad);
  }
});

test("partial entries are joined per stream into the line the container wrote", () => {
  const log = [
    "2024-05-01T10:00:00.000000001Z stdout P hel",
    "2024-05-01T10:00:00.000000002Z stderr F an error",
    "2024-05-01T10:00:00.000000003Z stdout P lo ",
    "2024-05-01T10:00:00.000000004Z stdout F world",
    "2024-05-01T10:00:01Z stdout F next",
    "",
  ].join("\n");
  const lines = parseCriLog(log);
  assert.deepEqual(
    lines.map((l) => [l.stream, l.content, l.timestamp, l.complete]),
    [
      ["stderr", "an error", "2024-05-01T10:00:00.000000002Z", true],
      ["stdout", "hello world", "2024-05-01T10:00:00.000000001Z", true],
      ["stdout", "next", "2024-05-01T10:00:01Z", true],
    ],
  );
});

test("a log ending inside a partial line yields it incomplete on flush, nothing without flush", () => {
  const log = "2024-05-01T10:00:00Z stdout F done\n2024-05-01T10:00:01Z stdout P prompt> ";
  assert.deepEqual(
    parseCriLog(log).map((l) => [l.content, l.complete]),
    [
      ["done", true],
      ["prompt> ", false],
    ],
  );
  assert.equal(parseCriLog(log, { flush: false }).length, 1);
  const joiner = new LogJoiner();
  assert.equal(joiner.flush().length, 0);
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
