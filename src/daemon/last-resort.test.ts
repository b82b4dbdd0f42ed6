import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { EventEmitter } from "node:events";
import { Writable } from "node:stream";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { pino } from "pino";
import { installLastResortHandler } from "./last-resort.js";

function capture() {
  const lines: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk, _enc, cb) {
      for (const l of String(chunk).split("\n").filter(Boolean)) lines.push(JSON.parse(l) as Record<string, unknown>);
      cb();
    },
  });
  return { lines, log: pino({ level: "info" }, sink) };
}

const tick = () => new Promise((r) => setImmediate(r));

test("an uncaught exception is logged at fatal with its stack and context, then the process exits 1, once", async () => {
  const proc = new EventEmitter();
  const { lines, log } = capture();
  const exits: number[] = [];
  installLastResortHandler(proc, { log, exit: (c) => exits.push(c), context: () => ({ socket: "/run/x.sock" }) });
  proc.emit("uncaughtException", new Error("write EPIPE"), "uncaughtException");
  proc.emit("uncaughtException", new Error("a second one while exiting"), "uncaughtException");
  await tick();
  assert.deepEqual(exits, [1]);
  assert.equal(lines.length, 1);
  const line = lines[0] as {
    level: number;
    kind: string;
    origin: string;
    socket: string;
    err: { message: string; stack: string };
  };
  assert.equal(line.level, 60, "fatal");
  assert.equal(line.kind, "uncaughtException");
  assert.equal(line.socket, "/run/x.sock");
  assert.equal(line.err.message, "write EPIPE");
  assert.match(line.err.stack, /last-resort\.test\.ts/);
});

test("an unhandled rejection with a non-Error reason is logged readably and exits 1", async () => {
  const proc = new EventEmitter();
  const { lines, log } = capture();
  const exits: number[] = [];
  installLastResortHandler(proc, {
    log,
    exit: (c) => exits.push(c),
    context: () => {
      throw new Error("context is broken too");
    },
  });
  proc.emit("unhandledRejection", { code: "SQLITE_FULL" });
  await tick();
  assert.deepEqual(exits, [1]);
  const line = lines[0] as { kind: string; err: { message: string } };
  assert.equal(line.kind, "unhandledRejection");
  assert.equal(line.err.message, '{"code":"SQLITE_FULL"}');
});

test("the returned function removes the handler", () => {
  const proc = new EventEmitter();
  const remove = installLastResortHandler(proc, { log: capture().log, exit: () => assert.fail("no exit") });
  assert.equal(proc.listenerCount("uncaughtException"), 1);
  remove();
  assert.equal(proc.listenerCount("uncaughtException"), 0);
  assert.equal(proc.listenerCount("unhandledRejection"), 0);
});

test("installed on a real process, a throw in a callback is logged as one JSON line and exits 1", {
  timeout: 30_000,
}, async () => {
  const module = fileURLToPath(new URL("./last-resort.ts", import.meta.url));
  const script = `
    import { pino } from "pino";
    import { installLastResortHandler } from ${JSON.stringify(module)};
    const log = pino(pino.destination({ fd: 2, sync: true }));
    installLastResortHandler(process, { log, exit: (c) => process.exit(c) });
    setTimeout(() => { throw new Error("boom from a timer"); }, 1);
    setTimeout(() => process.exit(0), 5000);
  `;
  const { code, stderr } = await new Promise<{ code: number | null; stderr: string }>((resolve) => {
    const child = execFile(
      process.execPath,
      ["--import", "tsx", "--input-type=module", "-e", script],
      { timeout: 20_000 },
      (err, _out, stderr) => resolve({ code: err ? ((err as { code?: number }).code ?? null) : 0, stderr }),
    );
    child.stdin?.end();
  });
  assert.equal(code, 1, stderr);
  const lines = stderr.split("\n").filter((l) => l.startsWith("{"));
  assert.equal(lines.length, 1, stderr);
  const line = JSON.parse(lines[0] as string) as { level: number; kind: string; err: { message: string } };
  assert.equal(line.level, 60);
  assert.equal(line.kind, "uncaughtException");
  assert.equal(line.err.message, "boom from a timer");
});
