import assert from "node:assert/strict";
import { mkdir, mkdtemp, rename, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { eventually } from "../../test/support/network-env.js";
import { createNetworkManager, defaultConflist, NETWORK_NOT_READY_REASON } from "./index.js";

describe("network readiness follows the conf dir", () => {
  let base = "";
  before(async () => {
    base = await mkdtemp(join(tmpdir(), "berth-watch-"));
  });
  after(async () => {
    await rm(base, { recursive: true, force: true });
  });

  test("a conflist added makes the network ready, and removing it makes it not ready again", async () => {
    const dir = join(base, "flip");
    await mkdir(dir);
    const m = await createNetworkManager({ confDir: dir, resultDir: join(base, "r1") });
    try {
      const before = m.status();
      assert.equal(before.ready, false);
      assert.deepEqual(before, {
        ready: false,
        reason: NETWORK_NOT_READY_REASON,
        message: `cni config not ready: no network config found in ${dir}`,
      });
      await assert.rejects(
        m.setUp({ sandboxId: "sb", netnsPath: "/nonexistent", podName: "p", podNamespace: "n", podUid: "u" }),
        {
          kind: "FailedPrecondition",
          message: `set up network for sandbox sb: network not ready: no network config found in ${dir}`,
        },
      );
      await m.tearDown("sb", "/nonexistent"); // nothing cached, nothing configured: nothing to do

      // Written the way the set-up script does: a dotted temp file renamed into place.
      await writeFile(join(dir, ".10-berth.conflist.tmp"), defaultConflist());
      await rename(join(dir, ".10-berth.conflist.tmp"), join(dir, "10-berth.conflist"));
      assert.ok(await eventually(() => m.status().ready), "not ready after adding a conflist");

      await rm(join(dir, "10-berth.conflist"));
      assert.ok(await eventually(() => !m.status().ready), "still ready after removing the conflist");
    } finally {
      m.close();
    }
  });

  test("an invalid conflist is not ready with the reason, and fixing it makes it ready", async () => {
    const dir = join(base, "fix");
    await mkdir(dir);
    await writeFile(join(dir, "10.conflist"), JSON.stringify({ cniVersion: "1.0.0", name: "n", plugins: [] }));
    const m = await createNetworkManager({ confDir: dir, resultDir: join(base, "r2") });
    try {
      const s = m.status();
      assert.equal(s.ready, false);
      assert.match(
        s.ready ? "" : s.message,
        /invalid network config .*10\.conflist: "plugins" must be a non-empty list/,
      );
      await writeFile(join(dir, "10.conflist"), defaultConflist());
      assert.ok(await eventually(() => m.status().ready));
    } finally {
      m.close();
    }
  });

  test("a conf dir that does not exist yet is picked up once created, and after being recreated", async () => {
    const dir = join(base, "later", "net.d");
    const m = await createNetworkManager({ confDir: dir, resultDir: join(base, "r3"), pollIntervalMs: 50 });
    try {
      assert.match(m.status().ready ? "" : (m.status() as { message: string }).message, /directory does not exist/);
      await mkdir(dir, { recursive: true });
      await writeFile(join(dir, "10.conflist"), defaultConflist());
      assert.ok(await eventually(() => m.status().ready), "not ready after the dir appeared");

      await rm(dir, { recursive: true });
      assert.ok(await eventually(() => !m.status().ready), "still ready after the dir was removed");
      await mkdir(dir);
      await writeFile(join(dir, "10.conflist"), defaultConflist());
      assert.ok(await eventually(() => m.status().ready), "not ready after the dir was recreated");
    } finally {
      m.close();
    }
  });

  test("a list waiting for the pod cidr is not ready until setPodCidr, and bad cidrs are rejected", async () => {
    const dir = join(base, "cidr");
    await mkdir(dir);
    const ipam = { type: "host-local", ranges: [[{ subnet: "{{podCidr}}" }]] };
    await writeFile(
      join(dir, "10.conflist"),
      JSON.stringify({ cniVersion: "1.0.0", name: "n", plugins: [{ type: "bridge", ipam }] }),
    );
    const m = await createNetworkManager({ confDir: dir, resultDir: join(base, "r4") });
    try {
      assert.match(
        m.status().ready ? "" : (m.status() as { message: string }).message,
        /waits for the node's pod cidr/,
      );
      assert.throws(() => m.setPodCidr("10.0.0.0/33"), { kind: "InvalidArgument" });
      assert.throws(() => m.setPodCidr("banana"), { kind: "InvalidArgument" });
      m.setPodCidr("10.244.0.0/24,fd00::/64");
      assert.deepEqual(m.status(), { ready: true });
    } finally {
      m.close();
    }
  });
});
