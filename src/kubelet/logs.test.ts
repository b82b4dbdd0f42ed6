import assert from "node:assert/strict";
import { appendFile, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { CriLogParser, followLog, type LogLine, readLogLines } from "./logs.js";

const T = "2024-05-01T10:00:00.123456789Z";

describe("CRI log files", () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "berth-logs-"));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  test("the parser joins partial lines and survives chunks split anywhere", () => {
    const text = `${T} stdout P hel\n${T} stdout F lo\n${T} stderr F oops\n${T} stdout F \n`;
    for (let cut = 0; cut <= text.length; cut += 7) {
      const p = new CriLogParser();
      const lines = [...p.push(text.slice(0, cut)), ...p.push(text.slice(cut)), ...p.end()];
      assert.deepEqual(
        lines.map((l) => `${l.stream}:${l.content}`),
        ["stdout:hello", "stderr:oops", "stdout:"],
        `cut at ${cut}`,
      );
    }
  });

  test("readLogLines reads a whole file; junk lines are skipped", async () => {
    const f = join(dir, "0.log");
    await writeFile(f, `${T} stdout F one\nnot a log line\n${T} stdout F two\n`);
    assert.deepEqual(
      (await readLogLines(f)).map((l) => l.content),
      ["one", "two"],
    );
  });

  test("followLog waits for the file, yields lines as they are written, and drains when told to stop", async () => {
    const f = join(dir, "follow.log");
    let stop!: () => void;
    const until = new Promise<void>((r) => {
      stop = r;
    });
    const got: LogLine[] = [];
    const done = (async () => {
      for await (const l of followLog(f, { until, pollMs: 20 })) got.push(l);
    })();
    await new Promise((r) => setTimeout(r, 60));
    await writeFile(f, `${T} stdout F first\n`);
    await new Promise((r) => setTimeout(r, 80));
    assert.deepEqual(
      got.map((l) => l.content),
      ["first"],
    );
    await appendFile(f, `${T} stdout P par`);
    await appendFile(f, `tial\n${T} stdout F last\n`);
    stop();
    await done;
    assert.deepEqual(
      got.map((l) => l.content),
      ["first", "partiallast"],
      "a P line continues into the next F line",
    );
  });

  test("followLog from the end skips what was already there", async () => {
    const f = join(dir, "end.log");
    await writeFile(f, `${T} stdout F old\n`);
    const abort = new AbortController();
    const got: string[] = [];
    const done = (async () => {
      for await (const l of followLog(f, { fromEnd: true, signal: abort.signal, pollMs: 20 })) got.push(l.content);
    })();
    await new Promise((r) => setTimeout(r, 60));
    await appendFile(f, `${T} stdout F new\n`);
    await new Promise((r) => setTimeout(r, 80));
    abort.abort();
    await done;
    assert.deepEqual(got, ["new"]);
  });
});
