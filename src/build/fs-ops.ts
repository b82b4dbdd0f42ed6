import { spawn } from "node:child_process";
import { createHash, type Hash } from "node:crypto";
import {
  chmodSync,
  closeSync,
  copyFileSync,
  createReadStream,
  createWriteStream,
  lchownSync,
  lstatSync,
  mkdirSync,
  openSync,
  readdirSync,
  readlinkSync,
  readSync,
  rmSync,
  type Stats,
  symlinkSync,
  utimesSync,
} from "node:fs";
import { basename, dirname, join, posix } from "node:path";
import { Transform, type TransformCallback } from "node:stream";
import { pipeline } from "node:stream/promises";
import { createGzip } from "node:zlib";
import tarStream from "tar-stream";

/**
 * The filesystem work of a build, run inside a build worker thread (worker.ts), never on berthd's
 * event loop: hashing COPY sources, copying them into a step's root, and turning a step's overlay
 * upper dir into an OCI layer tar. Paths taken from the context or the image are resolved inside
 * their root (a symlink never leads out), errors are plain Errors with a `kind` the caller maps.
 */

/** An error carrying an errdefs kind across the worker boundary. */
export class OpError extends Error {
  constructor(
    readonly kind: "NotFound" | "InvalidArgument" | "Internal",
    message: string,
  ) {
    super(message);
  }
}

/**
 * Resolves `path` (absolute or relative to `/`) inside `root` as the container would see it: symlinks are
 * followed, absolute targets and `..` stay inside `root`. The last component is followed only with
 * `followLast`. Returns the host path (which may not exist).
 */
export function resolveInRoot(root: string, path: string, followLast = true): string {
  const parts = path.split("/").filter((p) => p !== "" && p !== ".");
  const resolved: string[] = [];
  let hops = 0;
  while (parts.length > 0) {
    const part = parts.shift() as string;
    if (part === "..") {
      resolved.pop();
      continue;
    }
    const host = join(root, ...resolved, part);
    let st: Stats | undefined;
    try {
      st = lstatSync(host);
    } catch {
      st = undefined;
    }
    if (st?.isSymbolicLink() && (parts.length > 0 || followLast)) {
      if (++hops > 40) throw new OpError("InvalidArgument", `too many symlinks resolving ${path}`);
      const target = readlinkSync(host);
      if (target.startsWith("/")) resolved.length = 0;
      parts.unshift(...target.split("/").filter((p) => p !== "" && p !== "."));
      continue;
    }
    resolved.push(part);
  }
  return join(root, ...resolved);
}

/** Go's filepath.Match for one path segment: `*`, `?`, `[...]`, `\` escapes. */
export function matchSegment(pattern: string, name: string): boolean {
  let re = "^";
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i] as string;
    if (c === "*") re += "[^/]*";
    else if (c === "?") re += "[^/]";
    else if (c === "[") {
      const end = pattern.indexOf("]", i + 2);
      if (end < 0) throw new OpError("InvalidArgument", `bad pattern ${pattern}`);
      let cls = pattern.slice(i + 1, end);
      if (cls.startsWith("^")) cls = `!${cls.slice(1)}`;
      re += `[${cls.startsWith("!") ? `^${cls.slice(1)}` : cls}]`;
      i = end;
    } else if (c === "\\" && i + 1 < pattern.length) {
      re += (pattern[++i] as string).replace(/[.*+?^${}()|[\]\\/]/g, "\\$&");
    } else re += c.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&");
  }
  return new RegExp(`${re}$`, "s").test(name);
}

/** The context-relative paths a COPY source names (a glob expands; no match fails NotFound). */
export function expandSource(root: string, source: string): string[] {
  const parts = source.split("/").filter((p) => p !== "" && p !== ".");
  if (parts.length === 0) return [""];
  let found: string[] = [""];
  for (const part of parts) {
    const next: string[] = [];
    const glob = /[*?[\\]/.test(part);
    for (const base of found) {
      if (!glob) {
        next.push(base ? `${base}/${part}` : part);
        continue;
      }
      const dir = resolveInRoot(root, base);
      let names: string[] = [];
      try {
        names = readdirSync(dir).sort();
      } catch {
        names = [];
      }
      for (const n of names) if (matchSegment(part, n)) next.push(base ? `${base}/${n}` : n);
    }
    found = next;
  }
  const existing = found.filter((p) => {
    try {
      lstatSync(resolveInRoot(root, p));
      return true;
    } catch {
      return false;
    }
  });
  if (existing.length === 0) throw new OpError("NotFound", `${source}: no such file or directory in the source`);
  return existing;
}

/** Walks `dir` depth-first in sorted order, calling `fn` with paths relative to `dir` (dirs before their entries). */
function walk(dir: string, fn: (rel: string, st: Stats) => void, rel = ""): void {
  for (const name of readdirSync(join(dir, rel)).sort()) {
    const r = rel ? `${rel}/${name}` : name;
    const st = lstatSync(join(dir, r));
    fn(r, st);
    if (st.isDirectory()) walk(dir, fn, r);
  }
}

function hashFile(h: Hash, path: string): void {
  const fd = openSync(path, "r");
  try {
    const buf = Buffer.allocUnsafe(1 << 20);
    for (;;) {
      const n = readSync(fd, buf, 0, buf.length, null);
      if (n <= 0) break;
      h.update(buf.subarray(0, n));
    }
  } finally {
    closeSync(fd);
  }
}

/**
 * The content hash of COPY sources: paths, modes, owners (when kept), symlink targets and contents,
 * never mtimes. Sources are context-relative patterns.
 */
export function hashSources(root: string, sources: readonly string[]): string {
  const h = createHash("sha256");
  const entry = (rel: string, p: string, st: Stats) => {
    h.update(`${rel}\0${st.mode}\0`);
    if (st.isSymbolicLink()) h.update(`->${readlinkSync(p)}\0`);
    else if (st.isFile()) hashFile(h, p);
    h.update("\n");
  };
  for (const s of sources) {
    for (const rel of expandSource(root, s)) {
      const p = resolveInRoot(root, rel);
      const st = lstatSync(p);
      entry(rel, p, st);
      if (st.isDirectory()) walk(p, (r, s2) => entry(`${rel}/${r}`, join(p, r), s2));
    }
  }
  return `sha256:${h.digest("hex")}`;
}

/** What one COPY/ADD does (paths inside their roots). */
export interface CopyRequest {
  /** Where sources are read: the context dir, or another stage's mounted root. */
  srcRoot: string;
  sources: string[];
  /** The step's mounted root. */
  destRoot: string;
  /** Absolute destination inside the root (WORKDIR applied). */
  dest: string;
  /** The destination is a directory (it ends in `/`, or several sources). */
  destIsDir: boolean;
  uid?: number;
  gid?: number;
  chmod?: number;
  /** ADD: local tar archives are extracted. */
  extract?: boolean;
}

function mkdirParents(root: string, dirInRoot: string): string {
  const parts = dirInRoot.split("/").filter((p) => p !== "");
  let cur = "";
  for (const part of parts) {
    cur = `${cur}/${part}`;
    const host = resolveInRoot(root, cur);
    try {
      const st = lstatSync(host);
      if (!st.isDirectory()) throw new OpError("InvalidArgument", `${cur} is not a directory`);
    } catch (err) {
      if (err instanceof OpError) throw err;
      mkdirSync(host, { mode: 0o755 });
      chmodSync(host, 0o755);
    }
  }
  return resolveInRoot(root, dirInRoot);
}

/** Copies one entry tree (`src` host path) to `dst` host path with Docker's ownership rules. */
function copyTree(src: string, dst: string, req: CopyRequest): void {
  const one = (s: string, d: string, st: Stats) => {
    if (st.isDirectory()) {
      try {
        if (!lstatSync(d).isDirectory()) rmSync(d, { force: true });
      } catch {
        // Absent: created below.
      }
      mkdirSync(d, { recursive: true });
      chmodSync(d, req.chmod ?? st.mode & 0o7777);
    } else {
      rmSync(d, { force: true, recursive: true });
      if (st.isSymbolicLink()) symlinkSync(readlinkSync(s), d);
      else if (st.isFile()) {
        copyFileSync(s, d);
        chmodSync(d, req.chmod ?? st.mode & 0o7777);
      } else return; // Devices, FIFOs and sockets in a context are not copied.
    }
    lchownSync(d, req.uid ?? 0, req.gid ?? 0);
    if (!st.isSymbolicLink()) utimesSync(d, st.atime, st.mtime);
  };
  const st = lstatSync(src);
  if (st.isDirectory()) {
    // A directory's contents are copied, not the directory itself.
    mkdirSync(dst, { recursive: true });
    walk(src, (rel, s2) => one(join(src, rel), join(dst, rel), s2));
    // Directory times after their contents were written.
    walk(src, (rel, s2) => {
      if (s2.isDirectory()) utimesSync(join(dst, rel), s2.atime, s2.mtime);
    });
  } else one(src, dst, st);
}

/** Performs a COPY/ADD into the mounted step root. */
export async function copyInto(req: CopyRequest): Promise<void> {
  const rels = req.sources.flatMap((s) => expandSource(req.srcRoot, s));
  const asDir = req.destIsDir || rels.length > 1;
  for (const rel of rels) {
    const src = resolveInRoot(req.srcRoot, rel);
    const st = lstatSync(src);
    if (req.extract && st.isFile() && isArchive(src)) {
      const dir = mkdirParents(req.destRoot, req.dest);
      await extractTar(src, dir, req);
      continue;
    }
    let destInRoot = req.dest;
    if (!st.isDirectory()) {
      let destIsExistingDir = false;
      try {
        destIsExistingDir = lstatSync(resolveInRoot(req.destRoot, req.dest)).isDirectory();
      } catch {
        destIsExistingDir = false;
      }
      if (asDir || destIsExistingDir) destInRoot = posix.join(req.dest, basename(rel || src));
    }
    const parent = mkdirParents(req.destRoot, st.isDirectory() ? destInRoot : posix.dirname(destInRoot));
    const dst = st.isDirectory() ? parent : join(parent, basename(destInRoot));
    copyTree(src, dst, req);
  }
}

/** gzip, bzip2, xz or plain tar, by content (Docker's rule for ADD). */
function isArchive(path: string): boolean {
  const fd = openSync(path, "r");
  const b = Buffer.alloc(512);
  try {
    readSync(fd, b, 0, 512, 0);
  } finally {
    closeSync(fd);
  }
  if (b[0] === 0x1f && b[1] === 0x8b) return true;
  if (b.subarray(0, 3).toString("latin1") === "BZh") return true;
  if (b.subarray(0, 6).equals(Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]))) return true;
  return b.subarray(257, 262).toString("latin1") === "ustar";
}

/** Extracts a local archive with GNU tar (it detects the compression), never following links out. */
async function extractTar(archive: string, dir: string, req: CopyRequest): Promise<void> {
  const args = ["-x", "-f", archive, "-C", dir, "--no-same-permissions", "--no-overwrite-dir"];
  if (req.uid !== undefined) args.push(`--owner=${req.uid}`);
  await new Promise<void>((resolve, reject) => {
    const child = spawn("tar", args, { stdio: ["ignore", "ignore", "pipe"] });
    let err = "";
    child.stderr.on("data", (d: Buffer) => {
      err += d.toString();
    });
    child.on("error", reject);
    child.on("close", (code) =>
      code === 0 ? resolve() : reject(new OpError("InvalidArgument", `extract ${basename(archive)}: ${err.trim()}`)),
    );
  });
}

class Hasher extends Transform {
  readonly hash = createHash("sha256");
  bytes = 0;
  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.hash.update(chunk);
    this.bytes += chunk.length;
    cb(null, chunk);
  }
}

/** What {@link diffToLayer} produced. */
export interface LayerResult {
  /** No entries: the step changed nothing. */
  empty: boolean;
  diffId: string;
  digest: string;
  size: number;
}

/**
 * Writes the overlay upper dir `upper` as an OCI layer to `out`: deleted files (0:0 character devices)
 * become `.wh.<name>`, directories in `opaque` (relative paths) get `.wh..wh..opq` first; hard links
 * become link entries; mtimes are clamped to `epoch` (seconds) when given.
 */
export async function diffToLayer(o: {
  upper: string;
  opaque: string[];
  out: string;
  compression: "gzip" | "zstd";
  epoch?: number;
}): Promise<LayerResult> {
  const pack = tarStream.pack();
  const raw = new Hasher();
  const comp = new Hasher();
  const opaque = new Set(o.opaque);
  const links = new Map<string, string>();
  let count = 0;
  const mtime = (st: Stats) => {
    const t = st.mtime;
    return o.epoch !== undefined && t.getTime() / 1000 > o.epoch ? new Date(o.epoch * 1000) : t;
  };
  const entries: Array<{ rel: string; st: Stats }> = [];
  walk(o.upper, (rel, st) => {
    entries.push({ rel, st });
  });
  const compressor =
    o.compression === "zstd"
      ? spawn("zstd", ["-q", "-c", "-T0", "-3"], { stdio: ["pipe", "pipe", "ignore"] })
      : undefined;
  const writing = compressor
    ? Promise.all([
        pipeline(pack, raw, compressor.stdin),
        pipeline(compressor.stdout, comp, createWriteStream(o.out)),
        new Promise<void>((res, rej) => {
          compressor.on("error", rej);
          compressor.on("close", (c) => (c === 0 ? res() : rej(new OpError("Internal", `zstd: exit status ${c}`))));
        }),
      ])
    : pipeline(pack, raw, createGzip(), comp, createWriteStream(o.out));
  // tar-stream fills the header fields an entry leaves out (uname, devmajor, ...).
  const header = (h: Record<string, unknown>) => h as unknown as tarStream.Header;
  const add = (h: Record<string, unknown>) =>
    new Promise<void>((res, rej) => pack.entry(header(h), "", (err) => (err ? rej(err) : res())));
  try {
    for (const { rel, st } of entries) {
      count++;
      const p = join(o.upper, rel);
      const base = {
        mode: st.mode & 0o7777,
        uid: st.uid,
        gid: st.gid,
        mtime: mtime(st),
      };
      if (st.isCharacterDevice() && st.rdev === 0) {
        await add({
          ...base,
          name: posix.join(dirname(rel), `.wh.${basename(rel)}`).replace(/^\.\//, ""),
          type: "file",
          size: 0,
        });
      } else if (st.isDirectory()) {
        await add({ ...base, name: `${rel}/`, type: "directory" });
        if (opaque.has(rel)) await add({ ...base, name: `${rel}/.wh..wh..opq`, type: "file", size: 0 });
      } else if (st.isSymbolicLink()) {
        await add({ ...base, name: rel, type: "symlink", linkname: readlinkSync(p) });
      } else if (st.isFile()) {
        const key = `${st.dev}:${st.ino}`;
        const first = st.nlink > 1 ? links.get(key) : undefined;
        if (first !== undefined) {
          await add({ ...base, name: rel, type: "link", linkname: first });
          continue;
        }
        if (st.nlink > 1) links.set(key, rel);
        const entry = pack.entry(header({ ...base, name: rel, type: "file", size: st.size }));
        await pipeline(createReadStream(p), entry);
      } else if (st.isCharacterDevice() || st.isBlockDevice()) {
        await add({
          ...base,
          name: rel,
          type: st.isCharacterDevice() ? "character-device" : "block-device",
          devmajor: Math.floor(st.rdev / 256) & 0xfff,
          devminor: (st.rdev & 0xff) | ((st.rdev >> 12) & 0xfff00),
        });
      } else if (st.isFIFO()) {
        await add({ ...base, name: rel, type: "fifo" });
      }
    }
    pack.finalize();
    await writing;
  } catch (err) {
    pack.destroy(err as Error);
    compressor?.kill("SIGKILL");
    await Promise.resolve(writing).catch(() => undefined);
    throw err;
  }
  return {
    empty: count === 0,
    diffId: `sha256:${raw.hash.digest("hex")}`,
    digest: `sha256:${comp.hash.digest("hex")}`,
    size: comp.bytes,
  };
}

/**
 * Extracts the build context tar `archive` (written by `berth build`) into the empty dir `root`: regular
 * files, directories and symlinks only; every path is resolved inside `root`, so neither `../` names nor
 * symlinks in the archive lead out. Owners become root (COPY sets its own).
 */
export async function extractContext(archive: string, root: string, maxBytes: number): Promise<number> {
  const extract = tarStream.extract();
  let total = 0;
  const done = pipeline(createReadStream(archive), extract);
  for await (const entry of extract) {
    const h = entry.header;
    const name = posix.normalize(`/${h.name}`).replace(/\/+$/, "");
    total += h.size ?? 0;
    if (total > maxBytes) throw new OpError("InvalidArgument", `build context larger than ${maxBytes} bytes`);
    if (name === "/") {
      entry.resume();
      continue;
    }
    const parent = mkdirParents(root, posix.dirname(name));
    const target = join(parent, posix.basename(name));
    const mode = (h.mode ?? 0o644) & 0o7777;
    if (h.type === "directory") {
      try {
        if (!lstatSync(target).isDirectory()) rmSync(target, { force: true });
      } catch {
        // Absent.
      }
      mkdirSync(target, { recursive: true });
      chmodSync(target, mode);
      entry.resume();
    } else if (h.type === "symlink") {
      rmSync(target, { force: true, recursive: true });
      symlinkSync(h.linkname ?? "", target);
      entry.resume();
    } else if (h.type === "file") {
      rmSync(target, { force: true, recursive: true });
      await pipeline(entry, createWriteStream(target, { mode, flags: "wx" }));
      chmodSync(target, mode);
      if (h.mtime) utimesSync(target, h.mtime, h.mtime);
    } else entry.resume();
  }
  await done;
  return total;
}
