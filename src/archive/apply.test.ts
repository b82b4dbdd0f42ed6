import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import {
  appendFile,
  lstat,
  mkdir,
  mkdtemp,
  readdir,
  readFile,
  readlink,
  rename,
  rm,
  writeFile,
} from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, test } from "node:test";
import { gunzipSync as gunzip, gzipSync } from "node:zlib";
import { pack } from "tar-stream";
import { isKind, RuntimeError } from "../errdefs/index.js";
import { createOverlaySnapshotter, layerDirsOf, mountAll, unmount } from "../snapshots/index.js";
import { applyLayer, createUnpacker, defaultUnpacker, LayerFeed } from "./index.js";

const asRoot =
  process.getuid?.() === 0 ? false : "needs root (lchown, mknod of whiteouts, trusted.* xattrs, overlay mounts)";
const hasAttr = existsSync("/usr/bin/setfattr") && existsSync("/usr/bin/getfattr");
const withXattrs = asRoot || (hasAttr ? false : "needs setfattr/getfattr (Debian package attr)");

const OCI_TAR = "application/vnd.oci.image.layer.v1.tar";
const DIGEST = `sha256:${"ab".repeat(32)}`;

type Entry = { name: string; body?: string | Buffer } & Record<string, unknown>;

/** A tar built the way registries serve them, entry by entry. */
async function tarOf(entries: Entry[]): Promise<Buffer> {
  const p = pack();
  // Read while writing: a large entry's callback waits until the pack has been drained.
  const chunks: Buffer[] = [];
  const collected = (async () => {
    for await (const c of p) chunks.push(Buffer.from(c as Uint8Array));
  })();
  for (const { body, ...header } of entries) {
    await new Promise<void>((resolve, reject) => {
      const cb = (err?: Error | null) => (err ? reject(err) : resolve());
      // biome-ignore lint/suspicious/noExplicitAny: test headers are loosely typed on purpose
      if (body !== undefined) p.entry(header as any, body, cb);
      // biome-ignore lint/suspicious/noExplicitAny: as above
      else p.entry(header as any, cb);
    });
  }
  p.finalize();
  await collected;
  return Buffer.concat(chunks);
}

/** Small chunks, so every parser boundary is crossed mid-record. */
async function* chunked(buf: Buffer, size = 333): AsyncIterable<Uint8Array> {
  for (let i = 0; i < buf.length; i += size) yield buf.subarray(i, i + size);
}

const sha256 = (b: Buffer) => `sha256:${createHash("sha256").update(b).digest("hex")}`;
const zstd = (b: Buffer) => execFileSync("zstd", ["-c", "-q"], { input: b });
const xattrsOf = (path: string): string => {
  try {
    return execFileSync("getfattr", ["-h", "-d", "-m", "-", "-e", "hex", path], {
      encoding: "utf8",
      stdio: ["ignore", "pipe", "ignore"],
    });
  } catch {
    return "";
  }
};

let work: string;
let target: string;
beforeEach(async () => {
  work = await mkdtemp(join(tmpdir(), "berth-archive-"));
  target = join(work, "fs");
  await mkdir(target);
});
afterEach(async () => {
  await rm(work, { recursive: true, force: true });
});

async function rejectsHostile(
  entries: Entry[],
  pattern: RegExp,
  options: { allowDevices?: boolean } = {},
): Promise<void> {
  const tar = await tarOf(entries);
  await assert.rejects(applyLayer(target, chunked(tar), { digest: DIGEST, mediaType: OCI_TAR, ...options }), (err) => {
    assert.ok(isKind(err, "InvalidArgument"), `kind of ${String(err)}`);
    assert.match((err as Error).message, pattern);
    return true;
  });
}

describe("applyLayer: compression and digests", () => {
  const tree: Entry[] = [
    { name: "etc/", type: "directory", mode: 0o755 },
    { name: "etc/hostname", body: "berth\n", mode: 0o644 },
    { name: "big", body: Buffer.alloc(200_000, 0x5a) },
  ];

  for (const [kind, mediaType, encode] of [
    ["none", OCI_TAR, (b: Buffer) => b],
    ["gzip", `${OCI_TAR}+gzip`, (b: Buffer) => gzipSync(b)],
    ["zstd", `${OCI_TAR}+zstd`, zstd],
  ] as const) {
    test(`a ${kind} layer applies and its diffID is the digest of the uncompressed tar`, async () => {
      const tar = await tarOf(tree);
      const result = await applyLayer(target, chunked(encode(tar), 4096), { mediaType, digest: DIGEST });
      assert.equal(result.diffId, sha256(tar));
      assert.equal(result.size, tar.length);
      assert.equal(result.compression, kind);
      assert.deepEqual(result.warnings, []);
      assert.equal(await readFile(join(target, "etc", "hostname"), "utf8"), "berth\n");
      assert.equal((await readFile(join(target, "big"))).length, 200_000);
    });
  }

  test("the bytes decide the compression when the media type disagrees, with a warning", async () => {
    const tar = await tarOf(tree);
    const result = await applyLayer(target, chunked(tar), {
      mediaType: "application/vnd.docker.image.rootfs.diff.tar.gzip",
    });
    assert.equal(result.compression, "none");
    assert.match(result.warnings.join("\n"), /says gzip but the content is none/);
    assert.equal(await readFile(join(target, "etc", "hostname"), "utf8"), "berth\n");
  });

  test("a media type that is not a tar layer is InvalidArgument", async () => {
    await assert.rejects(
      applyLayer(target, chunked(Buffer.alloc(1024)), { mediaType: "application/vnd.oci.image.config.v1+json" }),
      (err) => isKind(err, "InvalidArgument"),
    );
  });

  test("corrupt gzip, corrupt zstd and truncated tar are InvalidArgument naming the layer", async () => {
    const tar = await tarOf(tree);
    const gz = gzipSync(tar);
    const badGz = Buffer.concat([gz.subarray(0, 20), Buffer.alloc(200, 0xff), gz.subarray(220)]);
    const zs = zstd(tar);
    const badZs = Buffer.concat([zs.subarray(0, 12), Buffer.alloc(64, 0xee), zs.subarray(76)]);
    // Cut inside "big"'s bytes: the entry's read fails, but the error must name the truncation.
    const midFile = tar.subarray(0, 100_000);
    for (const bytes of [
      badGz,
      badZs,
      tar.subarray(0, 1500),
      midFile,
      gz.subarray(0, gz.length - 10),
      zs.subarray(0, zs.length - 10),
    ]) {
      await assert.rejects(applyLayer(target, chunked(bytes), { digest: DIGEST }), (err) => {
        assert.ok(isKind(err, "InvalidArgument"), String(err));
        assert.match((err as Error).message, new RegExp(`^layer ${DIGEST}: (invalid tar|gzip|zstd): `));
        return true;
      });
    }
  });

  test("an aborted apply is Canceled", async () => {
    const tar = await tarOf(tree);
    const ac = new AbortController();
    async function* slow(): AsyncIterable<Uint8Array> {
      yield tar.subarray(0, 1024);
      ac.abort();
      await new Promise((r) => setTimeout(r, 10));
      yield tar.subarray(1024);
    }
    await assert.rejects(applyLayer(target, slow(), { signal: ac.signal }), (err) => isKind(err, "Canceled"));
  });
});

describe("applyLayer: metadata", () => {
  test("ownership, special mode bits, mtimes, symlinks and hard links are preserved", { skip: asRoot }, async () => {
    const mtime = new Date("2021-03-04T05:06:07Z");
    const tar = await tarOf([
      { name: "bin/", type: "directory", mode: 0o755, mtime },
      { name: "bin/su", body: "#!su", mode: 0o4755, uid: 0, gid: 0, mtime },
      { name: "bin/wall", body: "#!wall", mode: 0o2755, uid: 0, gid: 5, mtime },
      { name: "bin/sh", type: "symlink", linkname: "/bin/busybox", mtime },
      { name: "bin/su-again", type: "link", linkname: "bin/su" },
      { name: "tmp/", type: "directory", mode: 0o1777, mtime },
      { name: "home/user/", type: "directory", mode: 0o700, uid: 1000, gid: 1000, mtime },
      { name: "home/user/notes", body: "hi", mode: 0o640, uid: 1000, gid: 1000, mtime },
      { name: "run", type: "fifo", mode: 0o600 },
    ]);
    await applyLayer(target, chunked(tar));
    const st = async (p: string) => lstat(join(target, p));
    const su = await st("bin/su");
    assert.equal(su.mode & 0o7777, 0o4755);
    assert.equal((await st("bin/wall")).mode & 0o7777, 0o2755);
    assert.equal((await st("bin/wall")).gid, 5);
    assert.equal((await st("tmp")).mode & 0o7777, 0o1777);
    const notes = await st("home/user/notes");
    assert.deepEqual([notes.uid, notes.gid, notes.mode & 0o7777], [1000, 1000, 0o640]);
    const home = await st("home/user");
    assert.deepEqual([home.uid, home.gid, home.mode & 0o7777], [1000, 1000, 0o700]);
    assert.equal(notes.mtimeMs, mtime.getTime());
    assert.equal(home.mtimeMs, mtime.getTime(), "a directory's mtime is set after its contents");
    assert.equal((await st("bin")).mtimeMs, mtime.getTime());
    assert.equal(await readlink(join(target, "bin/sh")), "/bin/busybox");
    assert.equal((await st("bin/sh")).mtimeMs, mtime.getTime());
    const again = await st("bin/su-again");
    assert.equal(again.ino, su.ino);
    assert.equal(su.nlink, 2);
    assert.ok((await st("run")).isFIFO());
  });

  test("xattrs from SCHILY and LIBARCHIVE PAX records are set; overlay ones are not", {
    skip: withXattrs,
  }, async () => {
    const caps = Buffer.from("0100000200200000000000000000000000000000", "hex"); // cap_net_bind_service, binary
    const tar = await tarOf([
      {
        name: "file",
        body: "x",
        pax: { "SCHILY.xattr.user.comment": "héllo", "SCHILY.xattr.trusted.overlay.opaque": "y" },
      },
      {
        name: "ping",
        body: "elf",
        mode: 0o755,
        pax: { "LIBARCHIVE.xattr.security.capability": caps.toString("base64") },
      },
    ]);
    const result = await applyLayer(target, chunked(tar));
    const fileAttrs = xattrsOf(join(target, "file"));
    assert.match(fileAttrs, new RegExp(`user.comment=0x${Buffer.from("héllo").toString("hex")}`));
    assert.doesNotMatch(fileAttrs, /trusted.overlay/);
    assert.match(result.warnings.join("\n"), /trusted.overlay.opaque skipped/);
    assert.match(xattrsOf(join(target, "ping")), new RegExp(`security.capability=0x${caps.toString("hex")}`));
  });
});

describe("applyLayer: hostile layers", () => {
  test("a .. component is refused and nothing is written outside", async () => {
    await rejectsHostile(
      [
        { name: "ok", body: "fine" },
        { name: "../escape", body: "pwned" },
      ],
      new RegExp(`^layer ${DIGEST}: entry \\.\\./escape: .*"\\.\\."`),
    );
    await rejectsHostile([{ name: "a/../../escape2", body: "pwned" }], /entry a\/\.\.\/\.\.\/escape2/);
    assert.deepEqual((await readdir(work)).sort(), ["fs"]);
  });

  test("absolute names are applied relative to the target", async () => {
    await applyLayer(target, chunked(await tarOf([{ name: "/abs/path", body: "inside" }])));
    assert.equal(await readFile(join(target, "abs", "path"), "utf8"), "inside");
  });

  test("a symlink pointing outside is never followed by later entries", async () => {
    const outside = await mkdtemp(join(tmpdir(), "outside-xyz-"));
    try {
      await rejectsHostile(
        [
          { name: "link", type: "symlink", linkname: outside },
          { name: "link/file", body: "pwned" },
        ],
        /entry link\/file: parent link is a symlink/,
      );
      await rejectsHostile(
        [
          { name: "rel", type: "symlink", linkname: `../../../../../../../../..${outside}` },
          { name: "rel/file", body: "pwned" },
        ],
        /entry rel\/file: parent rel is a symlink/,
      );
      assert.deepEqual(await readdir(outside), []);
    } finally {
      await rm(outside, { recursive: true, force: true });
    }
  });

  test("a file entry over an existing symlink replaces the link instead of writing through it", async () => {
    const outside = join(work, "victim");
    await writeFile(outside, "original");
    await applyLayer(
      target,
      chunked(
        await tarOf([
          { name: "f", type: "symlink", linkname: outside },
          { name: "f", body: "new" },
        ]),
      ),
    );
    assert.equal(await readFile(outside, "utf8"), "original");
    assert.equal(await readFile(join(target, "f"), "utf8"), "new");
  });

  test("hard links to anything outside the layer are refused", async () => {
    await rejectsHostile([{ name: "pw", type: "link", linkname: "../../../../etc/passwd" }], /entry pw: .*"\.\."/);
    await rejectsHostile(
      [{ name: "pw", type: "link", linkname: "/etc/passwd" }],
      /entry pw: parent etc does not exist/,
    );
    await rejectsHostile(
      [
        { name: "etc", type: "symlink", linkname: "/etc" },
        { name: "pw", type: "link", linkname: "etc/passwd" },
      ],
      /entry pw: parent etc is a symlink/,
    );
    assert.equal(existsSync(join(target, "pw")), false);
  });

  test("device nodes are refused unless allowDevices", async () => {
    await rejectsHostile(
      [{ name: "dev/sda", type: "block-device", devmajor: 8, devminor: 0 }],
      /entry dev\/sda: block-device entries are not allowed/,
    );
    await rejectsHostile(
      [{ name: "dev/mem", type: "character-device", devmajor: 1, devminor: 1 }],
      /character-device entries are not allowed/,
    );
    assert.equal(existsSync(join(target, "dev", "mem")), false);
  });

  test("device nodes are created when allowDevices is set", { skip: asRoot }, async () => {
    await applyLayer(
      target,
      chunked(await tarOf([{ name: "dev/null", type: "character-device", devmajor: 1, devminor: 3, mode: 0o666 }])),
      {
        allowDevices: true,
      },
    );
    const st = await lstat(join(target, "dev", "null"));
    assert.ok(st.isCharacterDevice());
    assert.equal(st.rdev, (1 << 8) | 3);
    assert.equal(st.mode & 0o777, 0o666);
  });
});

describe("applyLayer: whiteouts over overlay snapshots", () => {
  test("whiteouts and opaque directories hide lower files in the mounted view", { skip: withXattrs }, async () => {
    const sn = await createOverlaySnapshotter({ root: work });
    const unpack = async (key: string, parent: string | undefined, tar: Buffer) => {
      const dirs = layerDirsOf(await sn.prepare(`extract-${key}`, parent));
      const result = await applyLayer(dirs.upper, chunked(gzipSync(tar)), {
        mediaType: `${OCI_TAR}+gzip`,
        parents: dirs.lowers,
        digest: DIGEST,
      });
      assert.equal(result.diffId, sha256(tar));
      await sn.commit(key, `extract-${key}`);
      return dirs.upper;
    };
    await unpack(
      "l1",
      undefined,
      await tarOf([
        { name: "etc/", type: "directory", mode: 0o750, uid: 0, gid: 4 },
        { name: "etc/keep", body: "keep" },
        { name: "etc/gone", body: "gone" },
        { name: "opt/dir/old", body: "old" },
        { name: "opt/dir/sub/older", body: "older" },
      ]),
    );
    // No "etc/" entry here: the directory the layer writes into must keep l1's mode and group.
    const upper2 = await unpack(
      "l2",
      "l1",
      await tarOf([
        { name: "etc/.wh.gone", body: "" },
        { name: "etc/new", body: "new" },
        { name: "opt/dir/.wh..wh..opq", body: "" },
        { name: "opt/dir/fresh", body: "fresh" },
        { name: ".wh..wh.plnk/123.456", body: "aufs" },
      ]),
    );
    const wh = await lstat(join(upper2, "etc", "gone"));
    assert.ok(wh.isCharacterDevice());
    assert.equal(wh.rdev, 0);
    assert.match(xattrsOf(join(upper2, "opt", "dir")), /trusted.overlay.opaque=0x79/);
    const etc2 = await lstat(join(upper2, "etc"));
    assert.deepEqual([etc2.mode & 0o7777, etc2.gid], [0o750, 4]);

    await sn.prepare("container", "l2");
    const mnt = join(work, "rootfs");
    await mkdir(mnt);
    await mountAll(await sn.mounts("container"), mnt);
    try {
      assert.deepEqual((await readdir(join(mnt, "etc"))).sort(), ["keep", "new"]);
      assert.deepEqual(await readdir(join(mnt, "opt", "dir")), ["fresh"]);
      const etc = await lstat(join(mnt, "etc"));
      assert.deepEqual([etc.mode & 0o7777, etc.gid], [0o750, 4]);
      assert.equal(existsSync(join(mnt, ".wh..wh.plnk")), false);
    } finally {
      await unmount(mnt);
    }
  });
});

describe("unpacker: workers, limits and sources", () => {
  test("a layer over max_layer_bytes or max_layer_entries is ResourceExhausted", async () => {
    const tar = await tarOf([
      { name: "a", body: Buffer.alloc(10_000, 1) },
      { name: "b", body: "x" },
      { name: "c", body: "y" },
    ]);
    await assert.rejects(applyLayer(target, chunked(gzipSync(tar)), { maxBytes: 5000 }), (err) => {
      assert.ok(isKind(err, "ResourceExhausted"), String(err));
      assert.match((err as Error).message, /exceeds the limit of 5000 bytes/);
      return true;
    });
    await rm(target, { recursive: true });
    await mkdir(target);
    await assert.rejects(applyLayer(target, chunked(tar), { maxEntries: 2 }), (err) => {
      assert.ok(isKind(err, "ResourceExhausted"), String(err));
      assert.match((err as Error).message, /more than 2 entries/);
      return true;
    });
    const ok = await applyLayer(join(work, "fs"), chunked(tar), { maxEntries: 3, maxBytes: tar.length });
    assert.equal(ok.entries, 3);
  });

  test("a tar that replaces the same directories over and over applies (no per-entry scan)", async () => {
    const entries: Entry[] = [];
    const n = 3000;
    for (let i = 0; i < n; i++) entries.push({ name: `d${i}/`, type: "directory" }, { name: `d${i}/x`, body: "" });
    // Each file replaces a directory (and what is recorded below it): linear in the tree, not in the layer.
    for (let i = 0; i < n; i++) entries.push({ name: `d${i}`, body: "f" });
    const tar = await tarOf(entries);
    const result = await applyLayer(target, chunked(tar, 65536));
    assert.equal(result.entries, 3 * n);
    assert.equal((await readdir(target)).length, n);
    assert.ok((await lstat(join(target, "d7"))).isFile());
  });

  test("a blob file is read by the worker, also while it is still being written", async () => {
    const tar = gzipSync(
      await tarOf([
        { name: "big", body: Buffer.alloc(3 * 1024 * 1024, 7) },
        { name: "z", body: "end" },
      ]),
    );
    const blob = join(work, "blob");
    await writeFile(blob, tar);
    const whole = await applyLayer(target, { path: blob });
    assert.equal(whole.diffId, sha256(gunzip(tar)));

    // A growing file, renamed into place at the end as the content store does.
    const ingest = join(work, "ingest");
    const final = join(work, "final");
    await writeFile(ingest, "");
    const feed = new LayerFeed(ingest);
    const target2 = join(work, "fs2");
    await mkdir(target2);
    const applying = applyLayer(target2, feed);
    for (let off = 0; off < tar.length; off += 100_000) {
      await appendFile(ingest, tar.subarray(off, off + 100_000));
      feed.grow(Math.min(tar.length, off + 100_000));
      await new Promise((r) => setTimeout(r, 2));
    }
    await rename(ingest, final);
    feed.complete(final);
    const grown = await applying;
    assert.equal(grown.diffId, whole.diffId);
    assert.equal(await readFile(join(target2, "z"), "utf8"), "end");

    // A download that fails: the unpack fails with its error.
    await writeFile(ingest, tar.subarray(0, 1000));
    const broken = new LayerFeed(ingest);
    const target3 = join(work, "fs3");
    await mkdir(target3);
    const failing = applyLayer(target3, broken);
    broken.grow(1000);
    broken.fail(new RuntimeError("Unavailable", "registry went away"));
    await assert.rejects(failing, (err) => isKind(err, "Unavailable") && /registry went away/.test(String(err)));
  });

  test("layers apply on parallel workers, which exit when idle; an aborted job leaves no worker", async () => {
    const unpacker = createUnpacker({ maxWorkers: 2, idleMs: 200 });
    try {
      const gate = deferredBytes();
      const t1 = join(work, "p1");
      const t2 = join(work, "p2");
      await mkdir(t1);
      await mkdir(t2);
      const tar = await tarOf([{ name: "f", body: "1" }]);
      const ac = new AbortController();
      const slow = unpacker.apply(t1, gate.source, { signal: ac.signal });
      const fast = unpacker.apply(t2, chunked(tar));
      assert.equal((await fast).entries, 1, "a second layer is not held up by a first one waiting for bytes");
      assert.equal(unpacker.workers(), 2);
      ac.abort();
      await assert.rejects(slow, (err) => isKind(err, "Canceled"));
      const deadline = Date.now() + 5000;
      while (unpacker.workers() > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      assert.equal(unpacker.workers(), 0, "idle workers exit");
    } finally {
      await unpacker.close();
    }
  });

  test("implied directories of a layer unpacked before its parents get their metadata afterwards", {
    skip: asRoot,
  }, async () => {
    const lower = join(work, "lower");
    await mkdir(lower);
    await applyLayer(lower, chunked(await tarOf([{ name: "a/", type: "directory", mode: 0o710, uid: 5, gid: 6 }])));
    const result = await applyLayer(target, chunked(await tarOf([{ name: "a/f", body: "x" }])), { deferImplied: true });
    assert.deepEqual(result.implied, ["a"]);
    assert.equal((await lstat(join(target, "a"))).mode & 0o7777, 0o755);
    await defaultUnpacker().fixImplied(target, result.implied, [lower]);
    const st = await lstat(join(target, "a"));
    assert.deepEqual([st.mode & 0o7777, st.uid, st.gid], [0o710, 5, 6]);
  });

  test("a full disk is ResourceExhausted, not Internal", { skip: asRoot }, async () => {
    const small = join(work, "small");
    await mkdir(small);
    execFileSync("mount", ["-t", "tmpfs", "-o", "size=1m", "tmpfs", small]);
    try {
      const tar = gzipSync(await tarOf([{ name: "big", body: Buffer.alloc(4 * 1024 * 1024) }]));
      await assert.rejects(applyLayer(small, chunked(tar)), (err) => {
        assert.ok(isKind(err, "ResourceExhausted"), String(err));
        assert.match((err as Error).message, /no space left/);
        return true;
      });
    } finally {
      execFileSync("umount", [small]);
    }
  });
});

/** A source that yields nothing until it is closed: a download that has not started sending. */
function deferredBytes(): { source: AsyncIterable<Uint8Array> } {
  return {
    source: (async function* () {
      await new Promise(() => {});
      yield new Uint8Array();
    })(),
  };
}
