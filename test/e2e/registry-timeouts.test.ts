/**
 * Registry deadlines through berthd (issue #12): `[registry] request_timeout_seconds` bounds a
 * pull from a registry that accepts the connection and never answers; the pull fails with
 * DeadlineExceeded naming the host and the phase, and berthd keeps serving.
 */
import assert from "node:assert/strict";
import { type AddressInfo, createServer, type Socket } from "node:net";
import { after, before, describe, test } from "node:test";
import { Code } from "@connectrpc/connect";
import { isRoot, startBerthd, type TestDaemon } from "../support/berthd.js";
import { grpcError } from "../support/pods.js";
import { skipUnlessCi } from "../support/skip.js";

describe("registry deadlines", { skip: skipUnlessCi(isRoot() ? false : "needs root"), timeout: 120_000 }, () => {
  let d: TestDaemon;
  let host = "";
  const sockets = new Set<Socket>();
  const silent = createServer((s) => {
    sockets.add(s);
    s.on("error", () => {});
    s.once("close", () => sockets.delete(s));
  });

  before(async () => {
    await new Promise<void>((r) => silent.listen(0, "127.0.0.1", r));
    host = `127.0.0.1:${(silent.address() as AddressInfo).port}`;
    d = await startBerthd({ config: `[registry]\nconfig_path = ""\nrequest_timeout_seconds = 1\n` });
  });
  after(async () => {
    await d?.cleanup();
    for (const s of sockets) s.destroy();
    silent.close();
  });

  test("a registry that never answers fails PullImage at the deadline, naming host and phase", async () => {
    const started = Date.now();
    await assert.rejects(
      d.client.image.pullImage({ image: { image: `${host}/app:1` } }),
      grpcError(
        Code.DeadlineExceeded,
        new RegExp(`resolve ${host}/app:1: .*${host}/v2/app/manifests/1: no answer after 1 s`),
      ),
    );
    // A localhost registry is tried over TLS first; a handshake that never completes is a timeout,
    // not a sign of plain HTTP, so it ends at one deadline. Generous bound: the point is that it ends.
    assert.ok(Date.now() - started < 30_000, `took ${Date.now() - started} ms`);
    await d.client.runtime.version({});
    assert.equal(d.child.exitCode, null);
  });
});
