import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { appendFile, mkdtemp, rename, rm, symlink, truncate, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { isKind } from "../errdefs/index.js";
import {
  CriLogReader,
  type CriLogRecord,
  followCriLog,
  joinLines,
  LineJoiner,
  parseCriLog,
  parseCriLogRecord,
  parseRfc3339,
  readCriLogStreams,
} from "./index.js";
import { LineSplitter } from "./lines.js";

const T = "2024-05-01T10:00:00.123456789Z";
const rec = (stream: string, tag: string, content: string, time = T) => `${time} ${stream} ${tag} ${content}\n`;

let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), "berth-crilog-"));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function collect<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}

describe("records", () => {
  test("a record has its timestamp, stream, tag and content", () => {
    const r = parseCriLogRecord(`${T} stdout F hello world`);
    assert.deepEqual(r && { ...r, content: r.content.toString() }, {
      timestamp: T,
      timeMs: Date.UTC(2024, 4, 1, 10, 0, 0, 123),
      stream: "stdout",
      partial: false,
      content: "hello world",
    });
    assert.equal(parseCriLogRecord("2024-05-01T10:00:00Z stderr P  two  spaces ")?.content.toString(), " two  spaces ");
    assert.equal(parseCriLogRecord("2024-05-01T10:00:00Z stderr P")?.content.length, 0, "an empty partial");
    assert.equal(parseCriLogRecord("2024-05-01T10:00:00Z stdout F")?.partial, false, "an empty line");
    assert.equal(
      parseCriLogRecord("2024-05-01T10:00:00+02:00 stdout F:x:y z")?.partial,
      false,
      "more tags are ignored",
    );
    assert.equal(parseCriLogRecord("2024-05-01T10:00:00Z stdout P:x z")?.partial, true);
  });

  test("content is kept as bytes: a terminal's output need not be UTF-8", () => {
    const line = Buffer.concat([Buffer.from(`${T} stdout P `), Buffer.from([0xff, 0xfe, 0x0d, 0x1b])]);
    assert.deepEqual([...(parseCriLogRecord(line)?.content ?? [])], [0xff, 0xfe, 0x0d, 0x1b]);
  });

  test("a garbled or truncated line is not a record", () => {
    for (const bad of [
      "",
      "hello",
      " stdout F x",
      `${T}`,
      `${T} stdout`,
      `${T} stdin F x`,
      `${T} stdout X x`,
      `${T} stdout PF x`,
      "not-a-time stdout F x",
      "2024 stdout F x",
      "2024-05-01T10:00:00.12", // cut inside the timestamp
      '{"log":"docker json","stream":"stdout"}',
    ]) {
      assert.equal(parseCriLogRecord(bad), undefined, JSON.stringify(bad));
    }
  });

  test("RFC 3339 times keep milliseconds of nanosecond timestamps and honour offsets", () => {
    assert.equal(parseRfc3339("2016-10-06T00:17:09.669794202Z"), Date.UTC(2016, 9, 6, 0, 17, 9, 669));
    assert.equal(parseRfc3339("2016-10-06T02:17:09.5+02:00"), Date.UTC(2016, 9, 6, 0, 17, 9, 500));
    assert.equal(parseRfc3339("2016-10-06T00:17:09Z"), Date.UTC(2016, 9, 6, 0, 17, 9));
    assert.ok(Number.isNaN(parseRfc3339("yesterday")));
    assert.ok(Number.isNaN(parseRfc3339("2016-10-06")));
  });
});

describe("lines", () => {
  test("partial records are joined per stream into the line the container wrote", () => {
    const log = [
      "2024-05-01T10:00:00.000000001Z stdout P hel",
      "2024-05-01T10:00:00.000000002Z stderr F an error",
      "2024-05-01T10:00:00.000000003Z stdout P lo ",
      "2024-05-01T10:00:00.000000004Z stdout F world",
      "not a record",
      "2024-05-01T10:00:01Z stdout F next",
      "",
    ].join("\n");
    assert.deepEqual(
      parseCriLog(log).map((l) => [l.stream, l.content, l.timestamp, l.complete]),
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
    assert.equal(new LineJoiner().flush().length, 0);
  });

  test("a line longer than the cap keeps its beginning, is marked truncated, and the next line is whole", () => {
    const joiner = new LineJoiner({ maxLineBytes: 10 });
    const r = (tag: string, content: string) =>
      parseCriLogRecord(rec("stdout", tag, content).trimEnd()) as CriLogRecord;
    for (let i = 0; i < 1000; i++) assert.equal(joiner.push(r("P", "0123456789")), undefined);
    const long = joiner.push(r("F", "end"));
    assert.deepEqual(long && [long.content, long.truncated, long.complete], ["0123456789", true, true]);
    const next = joiner.push(r("F", "short"));
    assert.deepEqual(next && [next.content, next.truncated], ["short", false]);
  });

  test("a multi-byte character split across partial records comes out whole", () => {
    const euro = Buffer.from("€");
    const a = Buffer.concat([Buffer.from(`${T} stdout P x`), euro.subarray(0, 1)]);
    const b = Buffer.concat([Buffer.from(`${T} stdout F `), euro.subarray(1), Buffer.from("y")]);
    assert.equal(parseCriLog(Buffer.concat([a, Buffer.from("\n"), b, Buffer.from("\n")]))[0]?.content, "x€y");
  });

  test("the splitter gives the same lines however the bytes are chunked, and caps a huge line", () => {
    const text = Buffer.from(`${rec("stdout", "P", "hel")}${rec("stdout", "F", "lo")}${rec("stderr", "F", "oops")}`);
    for (let cut = 0; cut <= text.length; cut++) {
      const s = new LineSplitter(1024);
      const lines = [...s.push(text.subarray(0, cut)), ...s.push(text.subarray(cut))];
      assert.deepEqual(
        parseCriLog(Buffer.concat(lines.flatMap((l) => [l, Buffer.from("\n")]))).map((l) => l.content),
        ["hello", "oops"],
        `cut at ${cut}`,
      );
    }
    const s = new LineSplitter(8);
    const lines = [...s.push(Buffer.alloc(100_000, 0x61)), ...s.push(Buffer.from("bbb\nccc\n"))];
    assert.deepEqual(
      lines.map((l) => l.toString()),
      ["aaaaaaaa", "ccc"],
    );
  });
});

describe("reading a file", () => {
  test("reads a whole file; junk lines are skipped; an unterminated last line only with final", async () => {
    const f = join(dir, "whole.log");
    await writeFile(f, `${rec("stdout", "F", "one")}not a log line\n${rec("stdout", "F", "two")}${T} stdout F three`);
    const reader = await CriLogReader.open(f);
    try {
      assert.deepEqual(
        (await collect(reader.read())).map((r) => r.content.toString()),
        ["one", "two"],
      );
      assert.deepEqual(
        (await collect(reader.read({ final: true }))).map((r) => r.content.toString()),
        ["three"],
      );
    } finally {
      await reader.close();
    }
  });

  test("a missing file is NotFound, saying so", async () => {
    await assert.rejects(CriLogReader.open(join(dir, "nope.log")), (err) => {
      assert.ok(isKind(err, "NotFound"));
      assert.match((err as Error).message, /log file .*nope\.log does not exist/);
      return true;
    });
  });

  test("a FIFO or a symbolic link at the path is refused at once, without blocking on it", async () => {
    const fifo = join(dir, "fifo.log");
    execFileSync("mkfifo", [fifo]);
    await assert.rejects(CriLogReader.open(fifo), (err) => isKind(err, "InvalidArgument"));
    const target = join(dir, "target.log");
    await writeFile(target, rec("stdout", "F", "secret"));
    const link = join(dir, "link.log");
    await symlink(target, link);
    await assert.rejects(CriLogReader.open(link), /symbolic link/);
  });

  test("a huge line without a newline is capped, and the records after it are read", async () => {
    const f = join(dir, "huge.log");
    await writeFile(f, `${rec("stdout", "F", "before")}${T} stdout F ${"x".repeat(3 * 1024 * 1024)}\n`);
    await appendFile(f, rec("stdout", "F", "after"));
    const reader = await CriLogReader.open(f, { maxRecordBytes: 1000 });
    try {
      const records = await collect(reader.read({ final: true }));
      assert.deepEqual(
        records.map((r) => r.content.length),
        [6, 1000 - `${T} stdout F `.length, 5],
      );
    } finally {
      await reader.close();
    }
  });

  test("the streams' bytes are rebuilt: F ends a line, P joins, each stream capped", async () => {
    const f = join(dir, "exec.log");
    await writeFile(
      f,
      [
        rec("stdout", "F", "hello"),
        rec("stderr", "P", "par"),
        rec("stdout", "P", "a b "),
        rec("stderr", "F", "tial"),
        rec("stdout", "F", "c"),
        rec("stdout", "F", ""),
        rec("stderr", "F:x:y", "tagged"),
        "not a record\n",
        `${T} stdout P end`,
      ].join(""),
    );
    const all = await readCriLogStreams(f, { maxBytes: 1000 });
    assert.deepEqual(
      [all.stdout.toString(), all.stderr.toString(), all.truncated],
      ["hello\na b c\n\nend", "partial\ntagged\n", false],
    );
    const capped = await readCriLogStreams(f, { maxBytes: 4 });
    assert.deepEqual([capped.stdout.toString(), capped.stderr.toString(), capped.truncated], ["hell", "part", true]);
    const none = await readCriLogStreams(join(dir, "never.log"), { maxBytes: 10 });
    assert.deepEqual([none.stdout.length, none.stderr.length], [0, 0]);
  });
});

describe("following a file", () => {
  test("waits for the file, yields records as they are written, and drains when told to stop", async () => {
    const f = join(dir, "follow.log");
    let stop!: () => void;
    const until = new Promise<void>((r) => {
      stop = r;
    });
    const got: string[] = [];
    const done = (async () => {
      for await (const l of joinLines(followCriLog(f, { until, pollMs: 20 }))) got.push(l.content);
    })();
    await sleep(60);
    await writeFile(f, rec("stdout", "F", "first"));
    await sleep(100);
    assert.deepEqual(got, ["first"]);
    await appendFile(f, `${T} stdout P par`);
    await appendFile(f, `tial\n${rec("stdout", "F", "last")}`);
    stop();
    await done;
    assert.deepEqual(got, ["first", "partiallast"], "a P record continues into the next F record");
  });

  test("from the end skips what was already there", async () => {
    const f = join(dir, "end.log");
    await writeFile(f, rec("stdout", "F", "old"));
    const abort = new AbortController();
    const got: string[] = [];
    const done = (async () => {
      for await (const r of followCriLog(f, { fromEnd: true, signal: abort.signal, pollMs: 20 }))
        got.push(r.content.toString());
    })();
    await sleep(60);
    await appendFile(f, rec("stdout", "F", "new"));
    await sleep(100);
    abort.abort();
    await done;
    assert.deepEqual(got, ["new"]);
  });

  test("rotation while following: the old file is read to its end, then the new one; truncation starts over", async () => {
    const f = join(dir, "rotate.log");
    await writeFile(f, rec("stdout", "F", "before"));
    let running = true;
    const got: string[] = [];
    const reader = await CriLogReader.open(f);
    const done = (async () => {
      for await (const r of reader.follow({ isRunning: () => running, pollMs: 20, checkMs: 20 }))
        got.push(r.content.toString());
    })();
    await sleep(60);
    // Written after the last read of the old file, then renamed away (the kubelet's rotation) before the
    // runtime reopens a fresh file (ReopenContainerLog): the follower must still read it.
    await appendFile(f, rec("stdout", "F", "last of the old file"));
    await rename(f, `${f}.20240501-100003`);
    await sleep(60);
    await writeFile(f, rec("stdout", "F", "first of the new file"));
    await sleep(100);
    // copytruncate style: the file shrinks and starts again.
    await truncate(f, 0);
    await sleep(60);
    await appendFile(f, rec("stdout", "F", "after truncation"));
    await sleep(100);
    running = false;
    await done;
    await reader.close();
    assert.deepEqual(got, ["before", "last of the old file", "first of the new file", "after truncation"]);
  });

  test("ends once the container stopped, after reading its last records", async () => {
    const f = join(dir, "stopped.log");
    await writeFile(f, rec("stdout", "F", "one"));
    const reader = await CriLogReader.open(f);
    const started = Date.now();
    const records = await collect(reader.follow({ isRunning: async () => false, pollMs: 20 }));
    await reader.close();
    assert.deepEqual(
      records.map((r) => r.content.toString()),
      ["one"],
    );
    assert.ok(Date.now() - started < 2000);
  });
});
