/** The disk-usage walker on trees a container could make: deep, wide, changing under it, hard-linked. */
import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import { link, lstat, mkdir, mkdtemp, open, rename, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { treeUsage } from "./fs-offload.js";
import { removeTree } from "./remove-tree.js";
import { treeUsageSync } from "./tree-usage.js";

let dir: string;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), "berth-tree-usage-"));
});
after(() => {
  // GNU rm walks with openat, so it removes the deep tree that fs.rm could not name.
  execFileSync("rm", ["-rf", "--one-file-system", dir]);
});

/** `du`'s own figures for `path`, to compare against. */
function du(path: string): { bytes: number; inodes: number } {
  const bytes = Number(execFileSync("du", ["-s", "-B1", path], { encoding: "utf8" }).split("\t")[0]);
  const inodes = Number(execFileSync("du", ["-s", "--inodes", path], { encoding: "utf8" }).split("\t")[0]);
  return { bytes, inodes };
}

describe("treeUsage", () => {
  test("counts allocated bytes and inodes like du, hard links once, symlinks not followed", async () => {
    const t = join(dir, "plain");
    await mkdir(join(t, "a", "b"), { recursive: true });
    await writeFile(join(t, "a", "one"), Buffer.alloc(100_000, 1));
    await link(join(t, "a", "one"), join(t, "a", "b", "same"));
    await symlink("/usr", join(t, "usr"));
    const sparse = await open(join(t, "sparse"), "w");
    await sparse.truncate(1024 * 1024 * 1024);
    await sparse.close();
    const got = await treeUsage(t);
    assert.deepEqual({ bytes: got.bytes, inodes: got.inodes }, du(t));
    assert.equal(got.inodes, 6, "root, a, b, one (linked twice), usr, sparse");
    assert.ok(got.bytes < 1024 * 1024, "a sparse file counts its blocks, not its size");
    assert.equal(got.skipped, 0);
  });

  test("a missing tree has zero usage; a file is its own usage", async () => {
    assert.deepEqual(await treeUsage(join(dir, "absent")), { bytes: 0, inodes: 0, skipped: 0 });
    await writeFile(join(dir, "file"), "x");
    assert.equal((await treeUsage(join(dir, "file"))).inodes, 1);
  });

  test("a tree deeper than PATH_MAX is walked whole (no ENAMETOOLONG)", async () => {
    const t = join(dir, "deep");
    await mkdir(t);
    // Five chains of 1 + 150 levels, each moved under the next (rename never needs the long path): about
    // 14 KiB from the top to the file, three times PATH_MAX.
    const chain = Array.from({ length: 150 }, () => "d".repeat(18)).join("/");
    await mkdir(join(t, "c", chain), { recursive: true });
    await writeFile(join(t, "c", chain, "f"), "x");
    for (let i = 0; i < 4; i++) {
      await mkdir(join(t, "n", chain), { recursive: true });
      await rename(join(t, "c"), join(t, "n", chain, "c"));
      await rename(join(t, "n"), join(t, "c"));
    }
    const got = await treeUsage(t);
    assert.equal(got.inodes, 1 + 5 * 151 + 1);
    assert.equal(got.skipped, 0);
    assert.deepEqual({ bytes: got.bytes, inodes: got.inodes }, du(t));
  });

  test("a directory of 50,000 entries is streamed and counted", { timeout: 120_000 }, async () => {
    const t = join(dir, "wide");
    await mkdir(t);
    execFileSync("sh", ["-c", 'cd "$1" && seq 50000 | xargs touch', "sh", t], { stdio: "ignore" });
    const got = await treeUsage(t);
    assert.equal(got.inodes, 50_001);
    assert.deepEqual({ bytes: got.bytes, inodes: got.inodes }, du(t));
  });

  test("files and directories vanishing mid-walk are skipped, never thrown", { timeout: 120_000 }, async () => {
    const t = join(dir, "churn");
    await mkdir(t);
    // A writer that keeps making and deleting subtrees while we walk.
    const churn = spawn(
      "sh",
      [
        "-c",
        'cd "$1" && while :; do for d in 1 2 3 4 5 6 7 8; do mkdir -p $d/x/y && (cd $d/x/y && seq 200 | xargs touch) && rm -rf $d; done; done',
        "sh",
        t,
      ],
      { stdio: "ignore" },
    );
    try {
      // Whether a given walk meets a deletion is timing; what is asserted is that no walk fails.
      for (let i = 0; i < 40; i++) assert.ok((await treeUsage(t)).inodes >= 1);
    } finally {
      churn.kill("SIGKILL");
      await new Promise((r) => churn.once("exit", r));
    }
  });

  test("the sync walker (the worker's body) agrees with the worker", async () => {
    const t = join(dir, "plain");
    assert.deepEqual(treeUsageSync(t), await treeUsage(t));
  });
});

describe("removeTree", () => {
  test("removes a tree deeper than PATH_MAX, which fs.rm cannot", async () => {
    const t = join(dir, "remove-deep");
    const chain = Array.from({ length: 150 }, () => "e".repeat(18)).join("/");
    await mkdir(join(t, "c", chain), { recursive: true });
    for (let i = 0; i < 3; i++) {
      await mkdir(join(t, "n", chain), { recursive: true });
      await rename(join(t, "c"), join(t, "n", chain, "c"));
      await rename(join(t, "n"), join(t, "c"));
    }
    await removeTree(t);
    await assert.rejects(lstat(t), { code: "ENOENT" });
    await removeTree(t); // a missing tree is fine
  });
});
