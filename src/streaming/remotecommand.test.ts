import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { TerminalSize } from "./index.js";
import { decodeResizeEvents, exitStatus, internalErrorStatus, successStatus } from "./remotecommand.js";

async function decode(...chunks: string[]): Promise<TerminalSize[]> {
  const out: TerminalSize[] = [];
  async function* source() {
    for (const c of chunks) yield Buffer.from(c);
  }
  for await (const size of decodeResizeEvents(source())) out.push(size);
  return out;
}

describe("remote command encoding", () => {
  test("resize objects are decoded across chunk boundaries, with Go's case-insensitive field names", async () => {
    assert.deepEqual(
      await decode('{"Width":80,"Height":24}\n{"Wid', 'th":100,', '"Height":50}{"width":1,"HEIGHT":2}'),
      [
        { width: 80, height: 24 },
        { width: 100, height: 50 },
        { width: 1, height: 2 },
      ],
    );
  });

  test("decoding stops at the first malformed value, as the kubelet's loop does", async () => {
    assert.deepEqual(await decode('{"Width":80,"Height":24} [1] {"Width":1,"Height":1}'), [{ width: 80, height: 24 }]);
    assert.deepEqual(await decode('{"Width":70000,"Height":24}'), []);
    assert.deepEqual(await decode('{"Width":"80"}'), []);
  });

  test("statuses have the shape client-go decodes", () => {
    assert.equal(JSON.stringify(successStatus()), '{"metadata":{},"status":"Success"}');
    assert.deepEqual(exitStatus(0), successStatus());
    assert.deepEqual(exitStatus(3), {
      metadata: {},
      status: "Failure",
      message: "command terminated with non-zero exit code: exit code 3",
      reason: "NonZeroExitCode",
      details: { causes: [{ reason: "ExitCode", message: "3" }] },
    });
    // client-go parses the cause as a uint8: anything else would be a protocol error on its side.
    assert.equal(exitStatus(256).reason, "InternalError");
    assert.equal(exitStatus(-1).reason, "InternalError");
    assert.deepEqual(internalErrorStatus("boom"), {
      metadata: {},
      status: "Failure",
      message: "Internal error occurred: boom",
      reason: "InternalError",
      details: { causes: [{ message: "boom" }] },
      code: 500,
    });
  });
});
