import assert from "node:assert/strict";
import { Writable } from "node:stream";
import { test } from "node:test";
import { Code, ConnectError, type UnaryRequest, type UnaryResponse } from "@connectrpc/connect";
import { pino } from "pino";
import { notFound, RuntimeError } from "../errdefs/index.js";
import { edgeInterceptor, MAX_STATUS_MESSAGE, toConnectError } from "./errors.js";

/** Runs one fake unary RPC through the interceptor with a debug-level logger; returns the lines it logged. */
async function logged(rpc: string, outcome: "ok" | "notfound"): Promise<{ level: number; msg: string; rpc: string }[]> {
  const lines: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      lines.push(...chunk.toString().split("\n").filter(Boolean));
      cb();
    },
  });
  const handler = edgeInterceptor(pino({ level: "debug" }, sink))(async () => {
    if (outcome === "notfound") throw notFound("container x");
    return {} as UnaryResponse;
  });
  const req = { stream: false, method: { name: rpc } } as unknown as UnaryRequest;
  await handler(req).catch(() => {});
  return lines.map((l) => JSON.parse(l) as { level: number; msg: string; rpc: string });
}

test("a mutating RPC is logged once, at info; a polling one once, at debug", async () => {
  assert.deepEqual(
    (await logged("CreateContainer", "ok")).map((l) => [l.level, l.msg, l.rpc]),
    [[30, "rpc", "CreateContainer"]],
  );
  assert.deepEqual(
    (await logged("ContainerStatus", "ok")).map((l) => [l.level, l.msg, l.rpc]),
    [[20, "rpc", "ContainerStatus"]],
  );
});

test("a failed RPC is logged once, as failed", async () => {
  assert.deepEqual(
    (await logged("StartContainer", "notfound")).map((l) => [l.level, l.msg]),
    [[30, "rpc failed"]],
  );
});

test("an error quoting a huge client value becomes a bounded status message, code kept", () => {
  const id = "x".repeat(72_000);
  const ce = toConnectError(new RuntimeError("NotFound", `pod sandbox ${id} not found`));
  assert.equal(ce.code, Code.NotFound);
  assert.ok(ce.rawMessage.length < MAX_STATUS_MESSAGE + 64, `${ce.rawMessage.length} characters`);
  assert.match(ce.rawMessage, /^pod sandbox x+… \(\d+ more characters\)$/);
});

test("a ConnectError with a huge message is bounded too; a short one passes unchanged", () => {
  const long = toConnectError(new ConnectError("y".repeat(10_000), Code.InvalidArgument));
  assert.equal(long.code, Code.InvalidArgument);
  assert.ok(long.rawMessage.length < MAX_STATUS_MESSAGE + 64);
  const short = new ConnectError("short", Code.Internal);
  assert.equal(toConnectError(short), short);
});
