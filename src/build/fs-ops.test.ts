import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { linkSync, mkdirSync, readFileSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { gunzipSync } from "node:zlib";
import tarStream from "tar-stream";
import { copyInto, diffToLayer, expandSource, hashSources, matchSegment, resolveInRoot } from "./fs-ops.js";

const root = process.getuid?.() === 0;

async function entries(tar: Buffer): Promise<Array<{ name: string; type: string; linkname?: string | null }>> {
  const out: Array<{ name: string; type: string; linkname?: string | null }> = [];
  const ex = tarStream.extract();
  ex.end(tar);
  for await (const e of ex) {
    out.push({ name: e.header.name, type: e.header.type ?? "", linkname: e.header.linkname });
    e.resume();
  }
  return out;
}

describe("build filesystem operations", () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "berth-build-fs-"));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  test("resolveInRoot keeps absolute symlinks and .. inside the root", () => {
    const r = join(dir, "root1");
    mkdirSync(join(r, "a"), { recursive: true });
    symlinkSync("/etc", join(r, "a", "etc"));
    symlinkSync("../../../../..", join(r, "up"));
    assert.equal(resolveInRoot(r, "/a/etc/passwd"), join(r, "etc", "passwd"));
    assert.equal(resolveInRoot(r, "up/x"), join(r, "x"));
    assert.equal(resolveInRoot(r, "../../x"), join(r, "x"));
    assert.equal(resolveInRoot(r, "/a/etc", false), join(r, "a", "etc"));
  });

  test("Go-style glob segments and source expansion", () => {
    assert.ok(matchSegment("*.txt", "a.txt"));
    assert.ok(!matchSegment("*.txt", "a.txtx"));
    assert.ok(matchSegment("[ab]?", "bz"));
    assert.ok(!matchSegment("[!ab]?", "bz"));
    const c = join(dir, "ctx");
    mkdirSync(join(c, "src"), { recursive: true });
    writeFileSync(join(c, "src", "a.txt"), "a");
    writeFileSync(join(c, "src", "b.txt"), "b");
    writeFileSync(join(c, "src", "c.md"), "c");
    assert.deepEqual(expandSource(c, "src/*.txt"), ["src/a.txt", "src/b.txt"]);
    assert.throws(() => expandSource(c, "src/*.none"), /no such file/);
  });

  test("the content hash ignores mtimes but sees contents and modes", () => {
    const c = join(dir, "hash");
    mkdirSync(c);
    writeFileSync(join(c, "f"), "one");
    const h1 = hashSources(c, ["f"]);
    execFileSync("touch", ["-d", "2001-01-01", join(c, "f")]);
    assert.equal(hashSources(c, ["f"]), h1);
    writeFileSync(join(c, "f"), "two");
    const h2 = hashSources(c, ["f"]);
    assert.notEqual(h2, h1);
    execFileSync("chmod", ["755", join(c, "f")]);
    assert.notEqual(hashSources(c, ["f"]), h2);
  });

  test("COPY rules: a directory's contents, trailing slash, several sources, owner and mode", {
    skip: !root,
  }, async () => {
    const src = join(dir, "copy-src");
    mkdirSync(join(src, "d", "sub"), { recursive: true });
    writeFileSync(join(src, "d", "sub", "x"), "x");
    writeFileSync(join(src, "f"), "f");
    const dst = join(dir, "copy-dst");
    mkdirSync(dst);
    await copyInto({ srcRoot: src, sources: ["d"], destRoot: dst, dest: "/out", destIsDir: false });
    assert.equal(readFileSync(join(dst, "out", "sub", "x"), "utf8"), "x");
    await copyInto({ srcRoot: src, sources: ["f"], destRoot: dst, dest: "/file", destIsDir: false });
    assert.equal(readFileSync(join(dst, "file"), "utf8"), "f");
    await copyInto({
      srcRoot: src,
      sources: ["f"],
      destRoot: dst,
      dest: "/dir/",
      destIsDir: true,
      uid: 7,
      gid: 8,
      chmod: 0o600,
    });
    const st = statSync(join(dst, "dir", "f"));
    assert.deepEqual([st.uid, st.gid, st.mode & 0o7777], [7, 8, 0o600]);
    assert.equal(statSync(join(dst, "dir")).mode & 0o7777, 0o755, "missing parents are 0755");
  });

  test("diff: whiteouts, opaque dirs, hard links; diff ID is the sha256 of the tar", { skip: !root }, async () => {
    const upper = join(dir, "upper");
    mkdirSync(join(upper, "etc", "opq"), { recursive: true });
    writeFileSync(join(upper, "etc", "a"), "a");
    linkSync(join(upper, "etc", "a"), join(upper, "etc", "b"));
    execFileSync("mknod", [join(upper, "etc", "gone"), "c", "0", "0"]);
    const out = join(dir, "layer.tgz");
    const r = await diffToLayer({ upper, opaque: ["etc/opq"], out, compression: "gzip", epoch: 1000 });
    const gz = readFileSync(out);
    assert.equal(r.digest, `sha256:${createHash("sha256").update(gz).digest("hex")}`);
    const tar = gunzipSync(gz);
    assert.equal(r.diffId, `sha256:${createHash("sha256").update(tar).digest("hex")}`);
    const list = await entries(tar);
    assert.deepEqual(
      list.map((e) => `${e.name} ${e.type}${e.linkname ? ` ${e.linkname}` : ""}`),
      [
        "etc/ directory",
        "etc/a file",
        "etc/b link etc/a",
        "etc/.wh.gone file",
        "etc/opq/ directory",
        "etc/opq/.wh..wh..opq file",
      ],
    );
    const empty = join(dir, "empty");
    mkdirSync(empty);
    assert.equal(
      (await diffToLayer({ upper: empty, opaque: [], out: join(dir, "e.tgz"), compression: "gzip" })).empty,
      true,
    );
  });
});
