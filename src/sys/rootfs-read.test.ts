/** Reading files of a hostile rootfs: what resolves inside, what is refused, and that nothing hangs. */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdir, mkdtemp, open, rename, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { isKind } from "../errdefs/index.js";
import { readFileInRoot } from "./fs-offload.js";
import { readFileInRootSync, resolveInRoot } from "./rootfs-read.js";

let dir: string;
let root: string;
let outside: string;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), "berth-rootfs-read-"));
  root = join(dir, "root");
  outside = join(dir, "outside");
  await mkdir(join(root, "etc"), { recursive: true });
  await mkdir(outside);
  await writeFile(join(outside, "secret"), "host secret\n");
  await writeFile(join(root, "etc", "passwd"), "root:x:0:0:root:/root:/bin/sh\n");
});
after(() => {
  // GNU rm walks with openat: it removes the tree deeper than PATH_MAX that fs.rm could not name.
  execFileSync("rm", ["-rf", "--one-file-system", dir]);
});

/** A fresh rootfs `name` under the test directory, with `build` run on it. */
async function rootfs(name: string, build: (r: string) => Promise<void>): Promise<string> {
  const r = join(dir, name);
  await mkdir(join(r, "etc"), { recursive: true });
  await build(r);
  return r;
}

const failed = (pattern: RegExp) => (err: unknown) =>
  isKind(err, "FailedPrecondition") && pattern.test((err as Error).message);

describe("readFileInRoot", () => {
  test("reads a regular file", async () => {
    assert.equal(String(await readFileInRoot(root, "/etc/passwd")), "root:x:0:0:root:/root:/bin/sh\n");
    assert.equal(String(await readFileInRoot(root, "etc/passwd")), "root:x:0:0:root:/root:/bin/sh\n");
  });

  test("a missing file, or a file under a non-directory, is undefined", async () => {
    assert.equal(await readFileInRoot(root, "/etc/group"), undefined);
    assert.equal(await readFileInRoot(root, "/nope/group"), undefined);
    assert.equal(await readFileInRoot(root, "/etc/passwd/group"), undefined);
  });

  test("a FIFO is refused at once, without waiting for a writer", async () => {
    const r = await rootfs("fifo", async (r) => {
      execFileSync("mkfifo", [join(r, "etc", "passwd")]);
    });
    const started = Date.now();
    await assert.rejects(readFileInRoot(r, "/etc/passwd"), failed(/^\/etc\/passwd is a FIFO, not a regular file$/));
    assert.ok(Date.now() - started < 3000, "refused well before the read deadline");
  });

  test("a directory is refused", async () => {
    const r = await rootfs("dir", (r) => mkdir(join(r, "etc", "passwd")));
    await assert.rejects(readFileInRoot(r, "/etc/passwd"), failed(/is a directory, not a regular file/));
  });

  test("a file over the cap is refused, naming the cap, without reading it", async () => {
    const r = await rootfs("huge", async (r) => {
      const f = await open(join(r, "etc", "passwd"), "w");
      await f.truncate(256 * 1024 * 1024); // sparse
      await f.close();
    });
    await assert.rejects(
      readFileInRoot(r, "/etc/passwd"),
      failed(/^\/etc\/passwd is 268435456 bytes, over the 4 MiB limit/),
    );
    await assert.rejects(readFileInRoot(r, "/etc/passwd", { maxBytes: 1000 }), failed(/over the 1000 bytes limit/));
  });

  test("an absolute symlink resolves inside the root, never on the host", async () => {
    const r = await rootfs("abs", async (r) => {
      await mkdir(join(r, "real"));
      await writeFile(join(r, "real", "passwd"), "inside\n");
      await symlink("/real/passwd", join(r, "etc", "passwd"));
      await symlink(join(outside, "secret"), join(r, "etc", "group"));
    });
    assert.equal(String(await readFileInRoot(r, "/etc/passwd")), "inside\n");
    // The host path named by the link does not exist inside the root.
    assert.equal(await readFileInRoot(r, "/etc/group"), undefined);
  });

  test("`..` in the path and in relative symlinks stops at the root", async () => {
    const r = await rootfs("dotdot", async (r) => {
      await writeFile(join(r, "passwd"), "top\n");
      await symlink("../../../../../outside/secret", join(r, "etc", "group"));
      await symlink("../../../../passwd", join(r, "etc", "passwd"));
    });
    assert.equal(String(await readFileInRoot(r, "/../../etc/../../passwd")), "top\n");
    assert.equal(String(await readFileInRoot(r, "/etc/passwd")), "top\n");
    assert.equal(await readFileInRoot(r, "/etc/group"), undefined);
  });

  test("a directory symlink out of the root (`etc -> /etc`, `etc -> ../outside`) stays inside", async () => {
    const abs = await rootfs("etc-abs", async (r) => {
      await rm(join(r, "etc"), { recursive: true });
      await symlink("/etc", join(r, "etc"));
    });
    await assert.rejects(readFileInRoot(abs, "/etc/passwd"), failed(/too many levels of symbolic links/));
    const rel = await rootfs("etc-rel", async (r) => {
      await rm(join(r, "etc"), { recursive: true });
      await symlink(`../outside`, join(r, "etc"));
    });
    assert.equal(await readFileInRoot(rel, "/etc/secret"), undefined, "../outside from the root is /outside inside");
  });

  test("a file whose resolved path outgrows PATH_MAX is refused, naming it", async () => {
    const chain = Array.from({ length: 150 }, () => "d".repeat(18)).join("/");
    const r = await rootfs("long", async (r) => {
      // Two chains of 150 directories, one moved under the other, reached through two relative symlinks of
      // 2.9 KiB each: the resolved path is 5.7 KiB, though no single name given to the kernel is.
      await mkdir(join(r, "a", chain), { recursive: true });
      await mkdir(join(r, "b", chain), { recursive: true });
      await rename(join(r, "b"), join(r, "a", chain, "b"));
      await symlink(`${chain}/passwd`, join(r, "a", chain, "b", "p"));
      await symlink(`../a/${chain}/b/p`, join(r, "etc", "passwd"));
    });
    await assert.rejects(readFileInRoot(r, "/etc/passwd"), failed(/^\/etc\/passwd: resolve: ENAMETOOLONG$/));
  });

  test("a symlink loop is refused", async () => {
    const r = await rootfs("loop", async (r) => {
      await symlink("b", join(r, "etc", "a"));
      await symlink("a", join(r, "etc", "b"));
    });
    await assert.rejects(readFileInRoot(r, "/etc/a"), failed(/^\/etc\/a: too many levels of symbolic links/));
  });

  test("a deadline bounds the read (DeadlineExceeded), and the next read still works", async () => {
    // 128 MiB of (sparse) zeros with the cap raised: a read that takes tens of milliseconds, against 1 ms.
    const r = await rootfs("slow", async (r) => {
      const f = await open(join(r, "etc", "passwd"), "w");
      await f.truncate(128 * 1024 * 1024);
      await f.close();
    });
    await readFileInRoot(root, "/etc/passwd"); // the worker is up: the deadline is the read's alone
    await assert.rejects(
      readFileInRoot(r, "/etc/passwd", { maxBytes: 256 * 1024 * 1024, timeoutMs: 1 }),
      (err) => isKind(err, "DeadlineExceeded") && /readFileInRoot: no answer within 1 ms/.test((err as Error).message),
    );
    assert.equal(String(await readFileInRoot(root, "/etc/passwd")), "root:x:0:0:root:/root:/bin/sh\n");
  });

  test("an aborted signal cancels", async () => {
    await assert.rejects(readFileInRoot(root, "/etc/passwd", { signal: AbortSignal.abort() }), (err) =>
      isKind(err, "Canceled"),
    );
  });
});

describe("resolveInRoot", () => {
  test("keeps every step under the root", () => {
    assert.equal(resolveInRoot(root, "/../etc/./passwd"), `${root}/etc/passwd`);
    assert.equal(resolveInRoot(root, "/"), `${root}/`);
    assert.equal(resolveInRoot(root, "/missing/x"), undefined);
  });

  test("the sync reader gives the same answers (used inside the worker)", () => {
    assert.equal(String(readFileInRootSync(root, "/etc/passwd")), "root:x:0:0:root:/root:/bin/sh\n");
    assert.equal(readFileInRootSync(root, "/etc/shadow"), undefined);
  });
});
