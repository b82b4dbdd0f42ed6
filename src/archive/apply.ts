import { createHash } from "node:crypto";
import {
  chmodSync,
  closeSync,
  constants,
  lchownSync,
  linkSync,
  lstatSync,
  lutimesSync,
  mkdirSync,
  openSync,
  rmSync,
  type Stats,
  symlinkSync,
  writeSync,
} from "node:fs";
import { lstat } from "node:fs/promises";
import { join, resolve } from "node:path";
import { pipeline } from "node:stream/promises";
import { extract, type Header } from "tar-stream";
import { invalidArgument, notFound, RuntimeError, wrap } from "../errdefs/index.js";
import { run } from "../sys/index.js";
import { signalOption } from "../util/index.js";
import { type Compression, compressionOfMagic, compressionOfMediaType, decompressor, peek } from "./compression.js";
import { mknod, setXattrs } from "./fs-tools.js";

/** Options of `applyLayer`. */
export interface ApplyOptions {
  /** The layer's media type. Must be a tar layer type; the magic bytes decide the compression (see ApplyResult.warnings). */
  mediaType?: string;
  /** The layer's digest, for messages: `layer sha256:...: entry etc/x: ...`. */
  digest?: string;
  /**
   * The trees below the target, nearest first (`layerDirsOf(mounts).lowers`). A directory the layer
   * writes into without listing it is created with the mode, owner and times it has there, so
   * that the merged view does not change it; absent there, it gets 0755 root:root.
   */
  parents?: readonly string[];
  /** Accept character and block device entries. Only for layers from a trusted source. */
  allowDevices?: boolean;
  /** Flush the target's filesystem (`sync -f`) before returning, so a committed layer survives power loss. */
  syncFs?: boolean;
  /** Most uncompressed bytes the layer may have; more fails with ResourceExhausted. Default: no limit. */
  maxBytes?: number;
  /** Most tar entries the layer may have; more fails with ResourceExhausted. Default: no limit. */
  maxEntries?: number;
  /**
   * The parent trees are not known yet (the layer is unpacked in parallel with the layers below
   * it): directories the layer implies are created 0755 root:root and listed in
   * `ApplyResult.implied`, for {@link fixImpliedDirs} to finish once the parents are committed.
   */
  deferImplied?: boolean;
  signal?: AbortSignal;
}

/** What applying a layer produced. */
export interface ApplyResult {
  /** `sha256:` of the uncompressed tar: the caller checks it against the config's `rootfs.diff_ids`. */
  diffId: string;
  /** Uncompressed bytes read. */
  size: number;
  /** The compression found (by magic bytes). */
  compression: Compression;
  /** What was deliberately not applied, or not as declared, one sentence each. */
  warnings: string[];
  /** Tar entries read. */
  entries: number;
  /** With `deferImplied`: directories (relative paths) the layer wrote into without listing them. */
  implied: string[];
}

type PaxRecords = Record<string, string>;

/**
 * Applies the OCI layer tar in `source` (gzip, zstd or plain) to directory `target`, which
 * becomes an overlay lower: OCI whiteouts turn into overlay ones (`.wh.<name>` into a 0:0
 * character device, `.wh..wh..opq` into `trusted.overlay.opaque=y` on its directory).
 * Ownership, modes (setuid, setgid, sticky included), symlinks, hard links, mtimes and PAX
 * xattrs are preserved; running as root is required for ownership, whiteouts and opaque dirs.
 *
 * Guarantees that nothing outside `target` is written or followed: names with `..` fail,
 * absolute names are taken relative to `target`, a parent that is a symlink fails (even one
 * pointing inside), hard links must name an entry already in the target, and device nodes
 * fail unless `allowDevices`. A hostile or corrupt layer fails with InvalidArgument
 * (`layer sha256:...: entry <name>: ...`); on any failure `target` is left partly written,
 * and the caller discards it (apply into an active snapshot, commit only on success).
 *
 * Hard links may only point to entries of this layer (they are not resolved in `parents`).
 * xattr values come through tar-stream's PAX decoding as UTF-8 text: binary `SCHILY.xattr`
 * values that are not valid UTF-8 (e.g. `security.capability`) are skipped with a warning;
 * libarchive's `LIBARCHIVE.xattr` records (base64) keep every byte.
 *
 * Runs in the calling thread with synchronous fs calls: berthd calls it only inside an unpack
 * worker (`applyLayer` in unpacker.ts), never on its event loop.
 */
export async function applyLayerHere(
  target: string,
  source: AsyncIterable<Uint8Array>,
  options: ApplyOptions = {},
): Promise<ApplyResult> {
  const label = `layer ${options.digest ?? "(no digest)"}`;
  const { signal } = options;
  const warnings: string[] = [];

  let declared: Compression | undefined;
  if (options.mediaType !== undefined) {
    declared = compressionOfMediaType(options.mediaType);
    if (declared === undefined) throw invalidArgument(`${label}: media type ${options.mediaType} is not a tar layer`);
  }
  const root = resolve(target);
  const rootStat = await lstat(root).catch(() => undefined);
  if (!rootStat?.isDirectory()) throw notFound(`${label}: target directory ${root}`);

  let sniffed: Awaited<ReturnType<typeof peek>>;
  try {
    sniffed = await peek(source, 4);
  } catch (err) {
    throw streamError(label, err, signal);
  }
  const { head, all } = sniffed;
  const compression = compressionOfMagic(head);
  // The bytes win, as in containerd: Docker-typed layers are sometimes stored uncompressed.
  if (declared !== undefined && declared !== compression) {
    warnings.push(
      `media type ${options.mediaType} says ${declared} but the content is ${compression}; read as ${compression}`,
    );
  }

  const hash = createHash("sha256");
  let size = 0;
  async function* measure(chunks: AsyncIterable<Uint8Array>): AsyncGenerator<Uint8Array> {
    for await (const chunk of chunks) {
      hash.update(chunk);
      size += chunk.length;
      if (options.maxBytes !== undefined && size > options.maxBytes) {
        throw new RuntimeError(
          "ResourceExhausted",
          `${label}: uncompressed size exceeds the limit of ${options.maxBytes} bytes (unpack.max_layer_bytes)`,
        );
      }
      yield chunk;
    }
  }
  const tar = extract();
  const decompress = decompressor(compression);
  const feeding = (
    decompress
      ? pipeline(all, decompress, measure, tar, signalOption(signal))
      : pipeline(all, measure, tar, signalOption(signal))
  ).then(
    () => undefined,
    (err: unknown) => err,
  );

  const applier = createApplier(root, options, warnings);
  let applyError: RuntimeError | undefined;
  let readError: unknown;
  let entries = 0;
  try {
    for await (const entry of tar) {
      const name = entry.header.name;
      try {
        signal?.throwIfAborted();
        entries++;
        if (options.maxEntries !== undefined && entries > options.maxEntries) {
          throw new RuntimeError(
            "ResourceExhausted",
            `more than ${options.maxEntries} entries (unpack.max_layer_entries)`,
          );
        }
        await applier.entry(entry.header, readBody(entry as unknown as AsyncIterable<Uint8Array>));
      } catch (err) {
        if (err instanceof BodyReadError) readError = err.cause;
        else applyError = signal?.aborted ? canceled(label, err) : wrap(fsError(err), `${label}: entry ${name}`);
        break;
      }
    }
  } catch (err) {
    readError = err;
  }
  const feedError = await feeding;
  // An entry's own error is the cause; the stream error that follows it ("premature close") is not.
  // A failed read of an entry's bytes is only the echo of the stream's error (corrupt or truncated input).
  if (applyError !== undefined) throw applyError;
  const streamFailure = feedError ?? readError;
  if (streamFailure !== undefined) throw streamError(label, streamFailure, signal);

  try {
    await applier.finish();
    if (options.syncFs) await run("sync", ["-f", root], { name: "sync", ...signalOption(signal) });
  } catch (err) {
    throw signal?.aborted ? canceled(label, err) : wrap(fsError(err), label);
  }
  return {
    diffId: `sha256:${hash.digest("hex")}`,
    size,
    compression,
    warnings,
    entries,
    implied: applier.implied(),
  };
}

/**
 * Finishes the directories a layer unpacked with `deferImplied` wrote into without listing
 * them: each takes the mode, owner and times of the same directory in the nearest of `parents`
 * (nearest first) that has it, as `applyLayerHere` does when it knows the parents up front.
 * Never follows a symlink in `target` or in a parent.
 */
export function fixImpliedDirs(target: string, implied: readonly string[], parents: readonly string[]): void {
  const isRoot = process.getuid?.() === 0;
  for (const rel of implied) {
    const parts = components(rel);
    const p = join(resolve(target), ...parts);
    const st = lstatOrUndefined(p);
    if (!st?.isDirectory()) continue; // Replaced later in the same layer; nothing to finish.
    const like = likeInParents(parents, parts);
    if (like === undefined) continue;
    if (isRoot) lchownSync(p, like.uid, like.gid);
    chmodSync(p, like.mode & 0o7777);
    lutimesSync(p, like.atimeMs / 1000, like.mtimeMs / 1000);
  }
}

/** The directory at `parts` in the nearest parent tree that has something there, if it is a directory. */
function likeInParents(parents: readonly string[], parts: readonly string[]): Stats | undefined {
  for (const lower of parents) {
    const found = lstatBelow(lower, parts);
    if (found === "absent") continue;
    // A nearer layer replaced it with a non-directory: nothing below it shows.
    return found === "replaced" ? undefined : found;
  }
  return undefined;
}

/** ENOSPC and EDQUOT are the disk's limit, not the layer's fault nor ours: ResourceExhausted, said plainly. */
function fsError(err: unknown): unknown {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  // mknod and setfattr report it in their stderr, which is in the message.
  const said = err instanceof Error && /No space left on device|Disk quota exceeded/.test(err.message);
  if (code === "ENOSPC" || code === "EDQUOT" || said) {
    return new RuntimeError("ResourceExhausted", `no space left on the device of the snapshot (${code ?? "ENOSPC"})`, {
      cause: err,
    });
  }
  return err;
}

/** Classifies an error of the byte stream: corrupt input is the layer's fault, I/O is ours. */
function streamError(label: string, err: unknown, signal: AbortSignal | undefined): RuntimeError {
  if (signal?.aborted) return canceled(label, err);
  if (err instanceof RuntimeError) return wrap(err, label);
  // tar-stream's format errors carry no code, only these messages.
  const message = err instanceof Error ? err.message : String(err);
  if (/^(Invalid tar header|Unexpected end of data|Header exceeds max size|Invalid header)/.test(message)) {
    return new RuntimeError("InvalidArgument", `${label}: invalid tar: ${message}`, { cause: err });
  }
  return wrap(err, label);
}

/** Marks errors of reading an entry's bytes, which come from the stream, not from the entry. */
class BodyReadError extends Error {
  constructor(override readonly cause: unknown) {
    super("read entry", { cause });
  }
}

/** An entry's bytes; streamx types its iterator loosely, the chunks are Buffers. */
async function* readBody(body: AsyncIterable<Uint8Array>): AsyncGenerator<Uint8Array> {
  try {
    yield* body;
  } catch (err) {
    throw new BodyReadError(err);
  }
}

function canceled(label: string, cause: unknown): RuntimeError {
  return new RuntimeError("Canceled", `${label}: canceled`, { cause });
}

/** The path components of a tar name, relative to the root; `..` anywhere is refused. */
function components(name: string): string[] {
  if (name.includes("\0")) throw invalidArgument("name contains a NUL byte");
  const parts = name.split("/").filter((p) => p !== "" && p !== ".");
  if (parts.includes("..")) throw invalidArgument(`path ${JSON.stringify(name)} has a ".." component`);
  return parts;
}

/**
 * What is recorded about one path of the layer, in a tree mirroring the target: replacing a
 * path drops its subtree in O(1) (a flat set of paths needed a scan of every recorded path per
 * replaced entry: O(n²) for a tar that replaces entries over and over).
 */
interface PathNode {
  children: Map<string, PathNode>;
  /** Checked (or created) as a real directory inside the root. */
  dir: boolean;
  /** Created by this layer without being listed (see `ApplyOptions.deferImplied`). */
  implied: boolean;
  xattrs?: Map<string, Uint8Array>;
  times?: { atime: number; mtime: number };
}

function newNode(): PathNode {
  return { children: new Map(), dir: false, implied: false };
}

/**
 * The state of one layer being applied: which directories are known to be real (so each
 * parent is checked once), and what is set at the end — xattrs (one `setfattr` for the layer,
 * after every chown, which would clear `security.capability`) and directory times (after
 * everything inside them is written, children first).
 */
function createApplier(root: string, options: ApplyOptions, warnings: string[]) {
  // Filesystem calls here are synchronous on purpose: each takes microseconds on a local disk,
  // while a round trip through libuv's thread pool costs ~50 µs, which made unpacking 3,000 small
  // files ~15x slower than GNU tar. This runs in an unpack worker, never on berthd's event loop.
  const isRoot = process.getuid?.() === 0;
  const tree = newNode();
  tree.dir = true;
  const signal = signalOption(options.signal);
  const abs = (parts: readonly string[]): string => join(root, ...parts);

  /** The node of `parts`, created along the way. */
  const nodeOf = (parts: readonly string[]): PathNode => {
    let n = tree;
    for (const part of parts) {
      let c = n.children.get(part);
      if (!c) {
        c = newNode();
        n.children.set(part, c);
      }
      n = c;
    }
    return n;
  };

  const queueXattr = (parts: readonly string[], name: string, value: Uint8Array) => {
    const n = nodeOf(parts);
    n.xattrs ??= new Map();
    n.xattrs.set(name, value);
  };

  /** Forgets what was recorded for `parts` and everything under it, which is being replaced. */
  const forget = (parts: readonly string[]) => {
    let n: PathNode | undefined = tree;
    for (const part of parts.slice(0, -1)) {
      n = n.children.get(part);
      if (!n) return;
    }
    n.children.delete(parts[parts.length - 1] as string);
  };

  const removeExisting = (parts: readonly string[]) => {
    // rm never follows symlinks: a symlinked directory is unlinked, not emptied.
    rmSync(abs(parts), { recursive: true, force: true });
    forget(parts);
  };

  /**
   * Makes sure every parent of `parts` is a real directory inside the root, creating missing ones
   * (unless `create` is false) and refusing symlinks: this is what keeps every write inside.
   */
  const ensureParents = (parts: readonly string[], create = true) => {
    let n = tree;
    for (let i = 1; i < parts.length; i++) {
      const part = parts[i - 1] as string;
      let c = n.children.get(part);
      if (c?.dir) {
        n = c;
        continue;
      }
      const prefix = parts.slice(0, i);
      const st = lstatOrUndefined(abs(prefix));
      if (st === undefined) {
        if (!create) throw invalidArgument(`parent ${prefix.join("/")} does not exist`);
        c ??= newNode();
        makeParent(prefix, c);
      } else if (st.isSymbolicLink()) {
        throw invalidArgument(`parent ${prefix.join("/")} is a symlink, which is not followed`);
      } else if (!st.isDirectory()) {
        throw invalidArgument(`parent ${prefix.join("/")} is not a directory`);
      }
      c ??= newNode();
      c.dir = true;
      n.children.set(part, c);
      n = c;
    }
  };

  /** Creates a directory the layer did not list, like the one it has in the nearest parent tree. */
  const makeParent = (parts: readonly string[], node: PathNode) => {
    const p = abs(parts);
    mkdirSync(p);
    if (options.deferImplied) {
      chmodSync(p, 0o755);
      node.implied = true;
      return;
    }
    const like = likeInParents(options.parents ?? [], parts);
    if (like && isRoot) lchownSync(p, like.uid, like.gid);
    chmodSync(p, like ? like.mode & 0o7777 : 0o755);
    if (like) node.times = { atime: like.atimeMs / 1000, mtime: like.mtimeMs / 1000 };
  };

  const setMetadata = (parts: readonly string[], h: Header, pax: PaxRecords, name: string) => {
    const p = abs(parts);
    if (isRoot) lchownSync(p, paxInt(pax.uid) ?? h.uid, paxInt(pax.gid) ?? h.gid);
    // After chown, which clears setuid/setgid; symlinks have no mode of their own on Linux.
    if (h.type !== "symlink") chmodSync(p, h.mode & 0o7777);
    for (const [key, value] of xattrsOf(pax, name, warnings)) {
      if (key.startsWith("trusted.overlay.") || key.startsWith("user.overlay.")) {
        warnings.push(`entry ${name}: xattr ${key} skipped: overlay metadata comes from whiteouts only`);
      } else if (h.type === "symlink" && key.startsWith("user.")) {
        warnings.push(`entry ${name}: xattr ${key} skipped: Linux refuses user.* xattrs on symlinks`);
      } else {
        queueXattr(parts, key, value);
      }
    }
    const mtime = paxTime(pax.mtime) ?? h.mtime.getTime() / 1000;
    const times = { atime: paxTime(pax.atime) ?? mtime, mtime };
    if (h.type === "directory") {
      const n = nodeOf(parts);
      n.times = times;
      n.implied = false; // Listed after all: its own metadata, not a parent's.
    } else lutimesSync(p, times.atime, times.mtime);
  };

  const whiteout = async (parts: readonly string[], base: string) => {
    ensureParents(parts);
    const dir = parts.slice(0, -1);
    if (base === ".wh..wh..opq") {
      // Hides what lower layers have in this directory; this layer's own entries stay visible.
      queueXattr(dir, "trusted.overlay.opaque", Buffer.from("y"));
      return;
    }
    // Other .wh..wh.* names are aufs bookkeeping too.
    if (base.startsWith(".wh..wh.")) return;
    const hidden = base.slice(".wh.".length);
    if (hidden === "" || hidden === "." || hidden === "..")
      throw invalidArgument(`whiteout of ${JSON.stringify(hidden)}`);
    const target = [...dir, hidden];
    removeExisting(target);
    await mknod(abs(target), { type: "char", major: 0, minor: 0 }, signal);
  };

  /** Every recorded node, parents before children, with its path parts. */
  function* walk(): Generator<[string[], PathNode]> {
    const stack: [string[], PathNode][] = [[[], tree]];
    for (let item = stack.pop(); item !== undefined; item = stack.pop()) {
      yield item;
      const [parts, n] = item;
      for (const [name, c] of n.children) stack.push([[...parts, name], c]);
    }
  }

  return {
    async entry(h: Header, body: AsyncIterable<Uint8Array>): Promise<void> {
      const parts = components(h.name);
      const base = parts[parts.length - 1];
      const pax = (h.pax ?? {}) as PaxRecords;
      // Top-level .wh..wh.* trees are aufs bookkeeping (.wh..wh.plnk, .wh..wh.aufs), meaningless here.
      if (parts[0]?.startsWith(".wh..wh.") && !(parts.length === 1 && parts[0] === ".wh..wh..opq")) {
        await drain(body);
        return;
      }
      if (base?.startsWith(".wh.")) {
        await drain(body);
        await whiteout(parts, base);
        return;
      }
      const type = h.type as string | null;
      if (parts.length === 0) {
        if (type !== "directory") throw invalidArgument(`a ${String(type)} cannot replace the root`);
        await drain(body);
        setMetadata(parts, h, pax, h.name);
        return;
      }
      // Refuse before touching anything.
      if ((type === "character-device" || type === "block-device") && !options.allowDevices) {
        throw invalidArgument(`${type} entries are not allowed in this layer`);
      }
      if (!ENTRY_TYPES.has(String(type))) throw invalidArgument(`unsupported entry type ${String(type)}`);
      ensureParents(parts);
      const p = abs(parts);
      const existing = lstatOrUndefined(p);
      if (existing && !(existing.isDirectory() && type === "directory")) removeExisting(parts);

      switch (h.type) {
        case "file":
        case "contiguous-file": {
          // O_EXCL|O_NOFOLLOW: the path was just cleared, so anything there now is not ours to follow.
          const fd = openSync(
            p,
            constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW,
            0o600,
          );
          try {
            for await (const chunk of body) writeAll(fd, chunk);
          } finally {
            closeSync(fd);
          }
          break;
        }
        case "directory":
          if (!existing?.isDirectory()) mkdirSync(p, 0o700);
          nodeOf(parts).dir = true;
          break;
        case "symlink":
          // Any target is fine: symlinks are created, never followed, here.
          symlinkSync(h.linkname, p);
          break;
        case "link": {
          const targetParts = components(h.linkname);
          if (targetParts.length === 0) throw invalidArgument("hard link to the root");
          ensureParents(targetParts, false);
          const st = lstatOrUndefined(abs(targetParts));
          if (st === undefined) throw invalidArgument(`hard link target ${h.linkname} is not in this layer`);
          if (st.isDirectory()) throw invalidArgument(`hard link target ${h.linkname} is a directory`);
          linkSync(abs(targetParts), p);
          await drain(body);
          return; // The inode's metadata came with its first name.
        }
        case "character-device":
        case "block-device":
          await mknod(
            p,
            { type: h.type === "character-device" ? "char" : "block", major: h.devmajor, minor: h.devminor },
            signal,
          );
          break;
        case "fifo":
          await mknod(p, { type: "fifo" }, signal);
          break;
      }
      await drain(body);
      setMetadata(parts, h, pax, h.name);
    },

    async finish(): Promise<void> {
      const xattrs = new Map<string, Map<string, Uint8Array>>();
      const times: [string, { atime: number; mtime: number }][] = [];
      for (const [parts, n] of walk()) {
        if (n.xattrs) xattrs.set(abs(parts), n.xattrs);
        if (n.times) times.push([abs(parts), n.times]);
      }
      for (const path of await setXattrs(xattrs, signal)) {
        warnings.push(`${path.slice(root.length) || "/"}: xattrs skipped: the filesystem does not support them`);
      }
      // Children before parents, so that setting a child's time does not disturb its parent's.
      for (const [p, t] of times.reverse()) lutimesSync(p, t.atime, t.mtime);
    },

    /** Directories created without being listed, when `deferImplied`. */
    implied(): string[] {
      const out: string[] = [];
      for (const [parts, n] of walk()) if (n.implied) out.push(parts.join("/"));
      return out;
    },
  };
}

const ENTRY_TYPES = new Set([
  "file",
  "contiguous-file",
  "directory",
  "symlink",
  "link",
  "character-device",
  "block-device",
  "fifo",
]);

/** The xattrs a PAX header carries: `SCHILY.xattr.<name>` (text) and `LIBARCHIVE.xattr.<urlencoded>` (base64). */
function xattrsOf(pax: PaxRecords, entry: string, warnings: string[]): [string, Uint8Array][] {
  const out: [string, Uint8Array][] = [];
  for (const [key, value] of Object.entries(pax)) {
    if (key.startsWith("SCHILY.xattr.")) {
      const name = key.slice("SCHILY.xattr.".length);
      // tar-stream decoded the value as UTF-8; a replacement character means bytes were lost.
      if (value.includes("\uFFFD"))
        warnings.push(`entry ${entry}: xattr ${name} skipped: its binary value did not survive PAX text decoding`);
      else out.push([name, Buffer.from(value, "utf8")]);
    } else if (key.startsWith("LIBARCHIVE.xattr.")) {
      out.push([decodeURIComponent(key.slice("LIBARCHIVE.xattr.".length)), Buffer.from(value, "base64")]);
    }
  }
  return out;
}

function paxInt(v: string | undefined): number | undefined {
  if (v === undefined || !/^\d+$/.test(v)) return undefined;
  return Number(v);
}

/** PAX times are decimal seconds with an optional fraction ("1700000000.123456789"). */
function paxTime(v: string | undefined): number | undefined {
  if (v === undefined || !/^-?\d+(\.\d+)?$/.test(v)) return undefined;
  return Number(v);
}

/** `writeSync` may write less than asked; loop until the whole chunk is in the page cache. */
function writeAll(fd: number, chunk: Uint8Array): void {
  for (let off = 0; off < chunk.length; ) off += writeSync(fd, chunk, off, chunk.length - off);
}

async function drain(body: AsyncIterable<Uint8Array>): Promise<void> {
  for await (const _ of body) {
    // Entries we do not write still have to be read to reach the next header.
  }
}

function lstatOrUndefined(p: string): Stats | undefined {
  return lstatSync(p, { throwIfNoEntry: false });
}

/** The directory at `parts` under `dir`, found without following symlinks; "replaced" when a non-directory is in the way. */
function lstatBelow(dir: string, parts: readonly string[]): Stats | "absent" | "replaced" {
  for (let i = 1; i <= parts.length; i++) {
    const st = lstatOrUndefined(join(dir, ...parts.slice(0, i)));
    if (st === undefined) return "absent";
    if (!st.isDirectory()) return "replaced";
    if (i === parts.length) return st;
  }
  return "absent";
}
