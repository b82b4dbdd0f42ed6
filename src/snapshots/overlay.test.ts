import assert from "node:assert/strict";
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, test } from "node:test";
import { skipUnlessCi } from "../../test/support/skip.js";
import { isKind } from "../errdefs/index.js";
import { snapshotterConformance } from "./conformance.js";
import { createOverlaySnapshotter, layerDirsOf, mountAll, unmount } from "./index.js";
import { mountCommand } from "./mount.js";

snapshotterConformance("overlay", (root) => createOverlaySnapshotter({ root }));

describe("overlay snapshotter", () => {
  let root: string;
  beforeEach(async () => {
    root = await mkdtemp(join(tmpdir(), "berth-overlay-"));
  });
  afterEach(async () => {
    await rm(root, { recursive: true, force: true });
  });
  const dir = (...parts: string[]) => join(root, "snapshots", "overlay", "snapshots", ...parts);

  test("a snapshot without a parent is a bind mount of its fs directory", async () => {
    const sn = await createOverlaySnapshotter({ root });
    const mounts = await sn.prepare("a", undefined);
    assert.deepEqual(mounts, [{ type: "bind", source: dir("1", "fs"), options: ["rbind", "rw"] }]);
    assert.deepEqual(layerDirsOf(mounts), { upper: dir("1", "fs"), lowers: [] });
  });

  test("a snapshot with parents is an overlay, lowerdir nearest parent first; one parent is an overlay too", async () => {
    const sn = await createOverlaySnapshotter({ root });
    await sn.prepare("e1", undefined);
    await sn.commit("l1", "e1");
    assert.deepEqual(await sn.prepare("single", "l1"), [
      {
        type: "overlay",
        source: "overlay",
        options: [`workdir=${dir("2", "work")}`, `upperdir=${dir("2", "fs")}`, `lowerdir=${dir("1", "fs")}`],
      },
    ]);
    await sn.prepare("e3", "l1");
    await sn.commit("l2", "e3");
    const mounts = await sn.prepare("c", "l2");
    assert.deepEqual(layerDirsOf(mounts), { upper: dir("4", "fs"), lowers: [dir("3", "fs"), dir("1", "fs")] });
    assert.ok((await stat(dir("4", "work"))).isDirectory());
  });

  test("removing a snapshot deletes its directory", async () => {
    const sn = await createOverlaySnapshotter({ root });
    await sn.prepare("a", undefined);
    await sn.remove("a");
    assert.deepEqual(await readdir(dir()), []);
  });

  test("directories no record names (a crash mid-prepare) are deleted at open", async () => {
    const sn = await createOverlaySnapshotter({ root });
    await sn.prepare("a", undefined);
    await mkdir(dir("99", "fs"), { recursive: true });
    await createOverlaySnapshotter({ root });
    assert.deepEqual(await readdir(dir()), ["1"]);
  });

  test("a root containing a comma or colon is refused", async () => {
    await assert.rejects(createOverlaySnapshotter({ root: "/var/lib/a,b" }), (err) => isKind(err, "InvalidArgument"));
  });

  test("long lowerdir lists switch to paths relative to a cwd and fit in a page", () => {
    const base = "/var/lib/berth/snapshots/overlay/snapshots";
    const lowers = Array.from({ length: 120 }, (_, i) => `${base}/${1000 + i}/fs`);
    const cmd = mountCommand(
      {
        type: "overlay",
        source: "overlay",
        options: [`workdir=${base}/9/work`, `upperdir=${base}/9/fs`, `lowerdir=${lowers.join(":")}`],
      },
      "/run/berth/rootfs",
    );
    assert.equal(cmd.cwd, base);
    const opts = cmd.args[3] ?? "";
    assert.ok(opts.length < 4096, `options are ${opts.length} bytes`);
    assert.ok(opts.startsWith("workdir=9/work,upperdir=9/fs,lowerdir=1000/fs:1001/fs:"), opts.slice(0, 80));
    assert.deepEqual(cmd.args.slice(0, 3), ["-t", "overlay", "-o"]);
    assert.deepEqual(cmd.args.slice(4), ["overlay", "/run/berth/rootfs"]);
  });

  test("short options keep absolute paths and no cwd", () => {
    const cmd = mountCommand({ type: "bind", source: "/a/fs", options: ["rbind", "rw"] }, "/t");
    assert.deepEqual(cmd, { args: ["-t", "bind", "-o", "rbind,rw", "/a/fs", "/t"] });
  });

  test("an image of 150 layers mounts, its lowerdir list being longer than a page", {
    skip: skipUnlessCi(process.getuid?.() === 0 ? false : "mounting needs root"),
  }, async () => {
    const sn = await createOverlaySnapshotter({ root });
    let parent: string | undefined;
    for (let i = 0; i < 150; i++) {
      const mounts = await sn.prepare(`e${i}`, parent);
      await writeFile(join(layerDirsOf(mounts).upper, `f${i}`), String(i));
      await sn.commit(`l${i}`, `e${i}`);
      parent = `l${i}`;
    }
    const mounts = await sn.prepare("c", parent);
    assert.ok((mounts[0]?.options.join(",").length ?? 0) > 4096);
    const target = await mkdtemp(join(root, "mnt-"));
    await mountAll(mounts, target);
    try {
      assert.equal((await readdir(target)).length, 150);
      assert.equal(await readFile(join(target, "f0"), "utf8"), "0");
    } finally {
      await unmount(target);
    }
  });

  test("too many layers even for relative paths is InvalidArgument", () => {
    const lowers = Array.from({ length: 2000 }, (_, i) => `/s/${100000 + i}/fs`);
    assert.throws(
      () =>
        mountCommand(
          {
            type: "overlay",
            source: "overlay",
            options: [`upperdir=/s/1/fs`, `workdir=/s/1/work`, `lowerdir=${lowers.join(":")}`],
          },
          "/t",
        ),
      (err) => isKind(err, "InvalidArgument"),
    );
  });
});
