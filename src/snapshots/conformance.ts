import assert from "node:assert/strict";
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, test } from "node:test";
import { isKind } from "../errdefs/index.js";
import { mountAll, unmount } from "./mount.js";
import type { Snapshotter } from "./types.js";

/**
 * The behaviour every Snapshotter must show, as node:test cases. Run it from an implementation's
 * test file: `snapshotterConformance("overlay", (root) => createOverlaySnapshotter({ root }))`.
 * `factory` is called again on the same root to check that state survives a restart. Cases that
 * mount are skipped unless running as root.
 */
export function snapshotterConformance(name: string, factory: (root: string) => Promise<Snapshotter>): void {
  const skipMount = process.getuid?.() === 0 ? false : "mounting needs root (CAP_SYS_ADMIN)";

  describe(`snapshotter conformance: ${name}`, () => {
    let root: string;
    let sn: Snapshotter;
    beforeEach(async () => {
      root = await mkdtemp(join(tmpdir(), "berth-snap-"));
      sn = await factory(root);
    });
    afterEach(async () => {
      await rm(root, { recursive: true, force: true });
    });

    /** Mounts active snapshot `key` at a fresh directory, runs `fn` on it, and always unmounts. */
    async function withMounted<T>(key: string, fn: (dir: string) => Promise<T>): Promise<T> {
      const target = await mkdtemp(join(root, "mnt-"));
      await mountAll(await sn.mounts(key), target);
      try {
        return await fn(target);
      } finally {
        await unmount(target);
        await rm(target, { recursive: true });
      }
    }

    /** Builds committed snapshot `key` on `parent` by changing a mounted active snapshot. */
    async function layer(
      key: string,
      parent: string | undefined,
      change: (dir: string) => Promise<void>,
    ): Promise<void> {
      await sn.prepare(`${key}-extract`, parent);
      await withMounted(`${key}-extract`, change);
      await sn.commit(key, `${key}-extract`);
    }

    test("prepare without a parent gives an active snapshot with mounts", async () => {
      const mounts = await sn.prepare("a", undefined);
      assert.ok(mounts.length > 0);
      const info = await sn.stat("a");
      assert.equal(info?.kind, "active");
      assert.equal(info?.parent, undefined);
      assert.equal(typeof info?.createdAt, "number");
      assert.deepEqual(
        (await sn.list()).map((i) => i.key),
        ["a"],
      );
    });

    test("prepare of an existing key is AlreadyExists", async () => {
      await sn.prepare("a", undefined);
      await assert.rejects(sn.prepare("a", undefined), (err) => isKind(err, "AlreadyExists"));
    });

    test("prepare on a missing parent is NotFound and on an active parent FailedPrecondition", async () => {
      await assert.rejects(sn.prepare("a", "missing"), (err) => isKind(err, "NotFound"));
      await sn.prepare("active", undefined);
      await assert.rejects(sn.prepare("b", "active"), (err) => isKind(err, "FailedPrecondition"));
      assert.equal(await sn.stat("a"), undefined);
    });

    test("commit turns an active snapshot into a committed one and drops the active key", async () => {
      await sn.prepare("extract", undefined, { labels: { purpose: "unpack" } });
      await sn.commit("sha256:layer1", "extract");
      assert.equal(await sn.stat("extract"), undefined);
      const info = await sn.stat("sha256:layer1");
      assert.equal(info?.kind, "committed");
      assert.deepEqual(info?.labels, { purpose: "unpack" });
      await sn.prepare("extract2", "sha256:layer1");
      await sn.commit("sha256:layer2", "extract2", { labels: { replaced: "yes" } });
      assert.deepEqual((await sn.stat("sha256:layer2"))?.labels, { replaced: "yes" });
    });

    test("commit to an existing name is AlreadyExists; of an unknown or committed key fails", async () => {
      await sn.prepare("x", undefined);
      await sn.commit("base", "x");
      await sn.prepare("y", undefined);
      await assert.rejects(sn.commit("base", "y"), (err) => isKind(err, "AlreadyExists"));
      assert.equal((await sn.stat("y"))?.kind, "active", "a failed commit leaves the active snapshot");
      await assert.rejects(sn.commit("z", "nope"), (err) => isKind(err, "NotFound"));
      await assert.rejects(sn.commit("z", "base"), (err) => isKind(err, "FailedPrecondition"));
    });

    test("commit with a parent stacks a snapshot prepared without one; the parent must be committed", async () => {
      await sn.prepare("lower-x", undefined);
      await sn.prepare("upper-x", undefined);
      await assert.rejects(sn.commit("l2", "upper-x", { parent: "lower-x" }), (err) =>
        isKind(err, "FailedPrecondition"),
      );
      await assert.rejects(sn.commit("l2", "upper-x", { parent: "nope" }), (err) => isKind(err, "NotFound"));
      await sn.commit("l1", "lower-x");
      await sn.commit("l2", "upper-x", { parent: "l1" });
      assert.equal((await sn.stat("l2"))?.parent, "l1");
      await sn.prepare("c", "l2");
      await assert.rejects(sn.commit("l3", "c", { parent: "l1" }), (err) => isKind(err, "FailedPrecondition"));
      assert.equal((await sn.stat("c"))?.kind, "active", "a refused commit leaves the active snapshot");
      await assert.rejects(sn.remove("l1"), (err) => isKind(err, "FailedPrecondition"));
    });

    test("mounts of an active snapshot repeat prepare's; a committed one has none", async () => {
      await sn.prepare("x", undefined);
      await sn.commit("base", "x");
      const prepared = await sn.prepare("c", "base");
      assert.deepEqual(await sn.mounts("c"), prepared);
      await assert.rejects(sn.mounts("base"), (err) => isKind(err, "FailedPrecondition"));
      await assert.rejects(sn.mounts("nope"), (err) => isKind(err, "NotFound"));
    });

    test("parent chains are reported by stat and list", async () => {
      await sn.prepare("e1", undefined);
      await sn.commit("l1", "e1");
      await sn.prepare("e2", "l1");
      await sn.commit("l2", "e2");
      await sn.prepare("container", "l2");
      assert.equal((await sn.stat("l2"))?.parent, "l1");
      assert.equal((await sn.stat("container"))?.parent, "l2");
      const list = await sn.list();
      assert.deepEqual(list.map((i) => `${i.key}<${i.parent ?? ""}:${i.kind}`).sort(), [
        "container<l2:active",
        "l1<:committed",
        "l2<l1:committed",
      ]);
    });

    test("remove refuses a snapshot with children, then removes from the leaf up", async () => {
      await sn.prepare("e1", undefined);
      await sn.commit("l1", "e1");
      await sn.prepare("c", "l1");
      await assert.rejects(sn.remove("l1"), (err) => isKind(err, "FailedPrecondition"));
      assert.ok(await sn.stat("l1"));
      await sn.remove("c");
      await sn.remove("l1");
      assert.deepEqual(await sn.list(), []);
      await assert.rejects(sn.remove("l1"), (err) => isKind(err, "NotFound"));
    });

    test("snapshots survive reopening the same root", async () => {
      await sn.prepare("e1", undefined, { labels: { a: "b" } });
      await sn.commit("l1", "e1");
      const mounts = await sn.prepare("c", "l1");
      const reopened = await factory(root);
      assert.deepEqual(await reopened.list(), await sn.list());
      assert.deepEqual(await reopened.mounts("c"), mounts);
    });

    test("a mounted view shows the parents' files and its own changes, parents untouched", {
      skip: skipMount,
    }, async () => {
      await layer("l1", undefined, async (dir) => {
        await writeFile(join(dir, "base.txt"), "from l1");
        await mkdir(join(dir, "etc"));
        await writeFile(join(dir, "etc", "conf"), "v1");
      });
      await layer("l2", "l1", async (dir) => {
        assert.equal(await readFile(join(dir, "base.txt"), "utf8"), "from l1");
        await writeFile(join(dir, "etc", "conf"), "v2");
        await writeFile(join(dir, "l2.txt"), "from l2");
      });
      await sn.prepare("c", "l2");
      await withMounted("c", async (dir) => {
        assert.deepEqual((await readdir(dir)).sort(), ["base.txt", "etc", "l2.txt"]);
        assert.equal(await readFile(join(dir, "etc", "conf"), "utf8"), "v2");
        await writeFile(join(dir, "container.txt"), "mine");
      });
      // A second view on l1 alone still sees l1's content only.
      await sn.prepare("c1", "l1");
      await withMounted("c1", async (dir) => {
        assert.deepEqual((await readdir(dir)).sort(), ["base.txt", "etc"]);
        assert.equal(await readFile(join(dir, "etc", "conf"), "utf8"), "v1");
      });
      await withMounted("c", async (dir) => assert.equal(await readFile(join(dir, "container.txt"), "utf8"), "mine"));
    });

    test("files deleted in a layer are hidden in its children, and a replaced directory hides the old content", {
      skip: skipMount,
    }, async () => {
      await layer("l1", undefined, async (dir) => {
        await writeFile(join(dir, "gone"), "x");
        await writeFile(join(dir, "kept"), "x");
        await mkdir(join(dir, "d"));
        await writeFile(join(dir, "d", "old"), "x");
      });
      await layer("l2", "l1", async (dir) => {
        await rm(join(dir, "gone"));
        await rm(join(dir, "d"), { recursive: true });
        await mkdir(join(dir, "d"));
        await writeFile(join(dir, "d", "new"), "x");
      });
      await sn.prepare("c", "l2");
      await withMounted("c", async (dir) => {
        assert.deepEqual((await readdir(dir)).sort(), ["d", "kept"]);
        assert.deepEqual(await readdir(join(dir, "d")), ["new"]);
      });
    });

    test("usage counts what a snapshot holds", { skip: skipMount }, async () => {
      await sn.prepare("a", undefined);
      const before = await sn.usage("a");
      await withMounted("a", (dir) => writeFile(join(dir, "big"), Buffer.alloc(1024 * 1024, 1)));
      const after = await sn.usage("a");
      assert.ok(
        after.bytes >= before.bytes + 1024 * 1024,
        `usage ${after.bytes} should grow by 1 MiB from ${before.bytes}`,
      );
      assert.equal(after.inodes, before.inodes + 1);
      await sn.commit("l", "a");
      assert.deepEqual(await sn.usage("l"), after, "committing keeps the usage");
      const total = await sn.usage();
      assert.ok(total.bytes >= after.bytes);
      await assert.rejects(sn.usage("nope"), (err) => isKind(err, "NotFound"));
    });
  });
}
