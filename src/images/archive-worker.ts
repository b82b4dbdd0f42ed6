/**
 * Entry module of the image archive worker threads (see archive.ts): writes saved archives and
 * reads archives being loaded — tar headers, hashing, decompression, JSON of untrusted size —
 * on a thread of its own, so berthd's event loop only moves finished files.
 */
import { createHash } from "node:crypto";
import {
  closeSync,
  constants,
  createReadStream,
  createWriteStream,
  fstatSync,
  fsyncSync,
  openSync,
  readSync,
  renameSync,
  rmSync,
  writeSync,
} from "node:fs";
import { join } from "node:path";
import { Writable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { pack as tarPack } from "tar-stream";
import { compressionOfMagic, compressionOfMediaType, decompressor } from "../archive/index.js";
import { RuntimeError } from "../errdefs/index.js";
import { serveWorker } from "../sys/index.js";
import type { LoadedDescriptor, LoadedImage, LoadJob, LoadResult, SaveBlob, SaveJob } from "./archive-format.js";
import { type Descriptor, MediaType, parseImageConfig, parseManifest } from "./manifest.js";
import { parsePlatform, selectPlatform } from "./platform.js";

serveWorker({
  save: (job: SaveJob) => save(job),
  load: (job: LoadJob) => load(job),
});

function bad(message: string): RuntimeError {
  return new RuntimeError("InvalidArgument", `archive: ${message}`);
}

const hexOf = (digest: string) => digest.slice("sha256:".length);
const EPOCH = new Date(0);

// ---------------------------------------------------------------------------------------------
// save

async function save(job: SaveJob): Promise<void> {
  const pack = tarPack();
  const written = pipeline(pack, createWriteStream(job.out, { mode: 0o600 }));
  written.catch(() => {}); // Awaited at the end; a write error also fails the entries below.
  const names = new Set<string>();
  const entry = (name: string, size: number, fill: (w: NodeJS.WritableStream) => Promise<void>) =>
    new Promise<void>((resolve, reject) => {
      const e = pack.entry({ name, size, mode: 0o644, mtime: EPOCH, uid: 0, gid: 0 }, (err) =>
        err ? reject(err) : resolve(),
      );
      fill(e as unknown as NodeJS.WritableStream).catch(reject);
    });
  const addBuffer = async (name: string, data: Buffer) => {
    if (names.has(name)) return;
    names.add(name);
    await entry(name, data.length, async (w) => {
      w.end(data);
    });
  };
  const addFile = async (name: string, path: string, size: number) => {
    if (names.has(name)) return;
    names.add(name);
    await entry(name, size, async (w) => {
      for await (const chunk of createReadStream(path)) {
        if (!w.write(chunk as Buffer)) await new Promise((r) => w.once("drain", r));
      }
      w.end();
    });
  };
  const addDir = (name: string) =>
    new Promise<void>((resolve, reject) =>
      pack.entry({ name, type: "directory", mode: 0o755, mtime: EPOCH }, (err) => (err ? reject(err) : resolve())),
    );
  const blob = (b: SaveBlob) => addFile(`blobs/sha256/${hexOf(b.digest)}`, b.path, b.size);
  await addDir("blobs");
  await addDir("blobs/sha256");
  if (job.format === "oci") {
    await addBuffer("oci-layout", Buffer.from('{"imageLayoutVersion":"1.0.0"}'));
    const manifests: object[] = [];
    for (const image of job.images) {
      for (const b of [...image.layers, image.config, image.manifest]) await blob(b);
      const desc = { mediaType: image.manifest.mediaType, digest: image.manifest.digest, size: image.manifest.size };
      if (image.names.length === 0) manifests.push(desc);
      for (const n of image.names) {
        manifests.push({
          ...desc,
          annotations: { "io.containerd.image.name": n.full, "org.opencontainers.image.ref.name": n.tag },
        });
      }
    }
    await addBuffer(
      "index.json",
      Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: MediaType.ociIndex, manifests })),
    );
  } else {
    const manifest: object[] = [];
    const repositories: Record<string, Record<string, string>> = {};
    for (const image of job.images) {
      await blob(image.config);
      const layers: string[] = [];
      for (const [i, layer] of image.layers.entries()) {
        const diffId = image.diffIds[i] as string;
        const name = `blobs/sha256/${hexOf(diffId)}`;
        layers.push(name);
        if (names.has(name)) continue;
        if (compressionOfMediaType(layer.mediaType) === "none") await addFile(name, layer.path, layer.size);
        else {
          // docker-archive layers are plain tars: decompress to a file first (the tar header needs the size).
          const tmp = `${job.out}.layer`;
          try {
            const size = await decompressTo(layer, tmp, diffId);
            await addFile(name, tmp, size);
          } finally {
            rmSync(tmp, { force: true });
          }
        }
      }
      const tags = image.names.map((n) => n.familiar);
      manifest.push({ Config: `blobs/sha256/${hexOf(image.config.digest)}`, RepoTags: tags, Layers: layers });
      const top = image.diffIds.at(-1);
      for (const n of image.names) {
        const repo = n.familiar.slice(0, n.familiar.length - n.tag.length - 1);
        if (top) repositories[repo] = { ...repositories[repo], [n.tag]: hexOf(top) };
      }
    }
    await addBuffer("manifest.json", Buffer.from(JSON.stringify(manifest)));
    await addBuffer("repositories", Buffer.from(JSON.stringify(repositories)));
  }
  pack.finalize();
  await written;
}

/** Decompresses a stored layer into `out`, checking it against its diff ID; returns its size. */
async function decompressTo(layer: SaveBlob, out: string, diffId: string): Promise<number> {
  const compression = compressionOfMediaType(layer.mediaType) ?? "none";
  const stage = decompressor(compression);
  const hash = createHash("sha256");
  let size = 0;
  const fd = openSync(out, constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC | constants.O_NOFOLLOW, 0o600);
  try {
    const sink = new Writable({
      write(chunk: Buffer, _enc, cb) {
        hash.update(chunk);
        size += chunk.length;
        for (let off = 0; off < chunk.length; ) off += writeSync(fd, chunk, off);
        cb();
      },
    });
    if (stage) await pipeline(createReadStream(layer.path), stage, sink);
    else await pipeline(createReadStream(layer.path), sink);
  } finally {
    closeSync(fd);
  }
  const got = `sha256:${hash.digest("hex")}`;
  if (got !== diffId)
    throw new RuntimeError(
      "Internal",
      `layer ${layer.digest}: uncompressed content ${got} is not its diff id ${diffId}`,
    );
  return size;
}

// ---------------------------------------------------------------------------------------------
// load: the tar index

interface Entry {
  name: string;
  type: "file" | "dir" | "symlink" | "link";
  offset: number;
  size: number;
  link?: string;
}

const BLOCK = 512;
const MAX_NAME = 4096;

/** Normalises an entry name; refuses absolute paths and `..` (the archive is untrusted). */
function cleanName(raw: string): string {
  if (raw.length > MAX_NAME) throw bad(`entry name longer than ${MAX_NAME} bytes`);
  if (raw.includes("\0")) throw bad("entry name with a NUL byte");
  if (raw.startsWith("/")) throw bad(`absolute entry name ${JSON.stringify(raw.slice(0, 200))}`);
  const parts = raw.split("/").filter((p) => p !== "" && p !== ".");
  if (parts.includes(".."))
    throw bad(`entry name leaves the archive (path traversal): ${JSON.stringify(raw.slice(0, 200))}`);
  return parts.join("/");
}

function field(h: Buffer, start: number, len: number): string {
  const b = h.subarray(start, start + len);
  const nul = b.indexOf(0);
  return b.subarray(0, nul < 0 ? len : nul).toString("utf8");
}

function numeric(h: Buffer, start: number, len: number): number {
  const b = h.subarray(start, start + len);
  if ((b[0] ?? 0) & 0x80) {
    // base-256 (GNU): big-endian, the top bit of the first byte is the marker.
    let n = (b[0] ?? 0) & 0x7f;
    for (let i = 1; i < len; i++) n = n * 256 + (b[i] ?? 0);
    if (!Number.isSafeInteger(n)) throw bad("entry size out of range");
    return n;
  }
  const s = field(h, start, len).trim();
  if (s === "") return 0;
  if (!/^[0-7]+$/.test(s)) throw bad("corrupt tar header (not a tar archive?)");
  return Number.parseInt(s, 8);
}

function checksumOk(h: Buffer): boolean {
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 32 : (h[i] as number);
  return sum === numeric(h, 148, 8);
}

/** Reads every header of the tar at `fd` (skipping data) into a name → entry table. */
function indexTar(fd: number, fileSize: number, maxEntries: number): Map<string, Entry> {
  const entries = new Map<string, Entry>();
  const h = Buffer.alloc(BLOCK);
  let pos = 0;
  let count = 0;
  let longName: string | undefined;
  let longLink: string | undefined;
  let pax: Record<string, string> = {};
  const readData = (size: number, limit: number) => {
    if (size > limit) throw bad(`extended header of ${size} bytes`);
    const b = Buffer.alloc(size);
    if (readSync(fd, b, 0, size, pos + BLOCK) !== size) throw bad("truncated archive");
    return b;
  };
  for (;;) {
    if (pos + BLOCK > fileSize) {
      if (pos === fileSize) break; // no end-of-archive blocks: accept what was read
      throw bad("truncated archive");
    }
    if (readSync(fd, h, 0, BLOCK, pos) !== BLOCK) throw bad("truncated archive");
    if (h.every((b) => b === 0)) break;
    if (!checksumOk(h)) throw bad(`bad tar header checksum at offset ${pos} (not a tar archive?)`);
    if (++count > maxEntries) throw bad(`more than ${maxEntries} entries`);
    const size = numeric(h, 124, 12);
    const type = String.fromCharCode(h[156] as number);
    const dataEnd = pos + BLOCK + Math.ceil(size / BLOCK) * BLOCK;
    if (pos + BLOCK + size > fileSize) throw bad("truncated archive: an entry runs past its end");
    if (type === "x" || type === "g" || type === "L" || type === "K") {
      const data = readData(size, 1024 * 1024);
      if (type === "L") longName = field(data, 0, data.length);
      else if (type === "K") longLink = field(data, 0, data.length);
      else if (type === "x") pax = parsePax(data);
      pos = dataEnd;
      continue;
    }
    const prefix = h.subarray(257, 263).toString("latin1").startsWith("ustar") ? field(h, 345, 155) : "";
    const rawName = pax.path ?? longName ?? (prefix ? `${prefix}/${field(h, 0, 100)}` : field(h, 0, 100));
    const rawLink = pax.linkpath ?? longLink ?? field(h, 157, 100);
    const realSize = pax.size !== undefined ? Number(pax.size) : size;
    pax = {};
    longName = undefined;
    longLink = undefined;
    const name = cleanName(rawName);
    let entry: Entry;
    if (type === "0" || type === "\0" || type === "7")
      entry = { name, type: "file", offset: pos + BLOCK, size: realSize };
    else if (type === "5") entry = { name, type: "dir", offset: 0, size: 0 };
    else if (type === "2") entry = { name, type: "symlink", offset: 0, size: 0, link: rawLink };
    else if (type === "1") entry = { name, type: "link", offset: 0, size: 0, link: cleanName(rawLink) };
    else throw bad(`entry ${JSON.stringify(name)} has unsupported type ${JSON.stringify(type)}`);
    if (entry.type === "file" && pos + BLOCK + entry.size > fileSize) throw bad("truncated archive");
    entries.set(name, entry);
    pos = pos + BLOCK + Math.ceil(realSize / BLOCK) * BLOCK;
  }
  return entries;
}

function parsePax(data: Buffer): Record<string, string> {
  const out: Record<string, string> = {};
  let i = 0;
  while (i < data.length) {
    const space = data.indexOf(0x20, i);
    if (space < 0) break;
    const len = Number(data.subarray(i, space).toString("latin1"));
    if (!Number.isSafeInteger(len) || len <= 0 || i + len > data.length) throw bad("corrupt pax header");
    const record = data.subarray(space + 1, i + len - 1).toString("utf8");
    const eq = record.indexOf("=");
    if (eq > 0) out[record.slice(0, eq)] = record.slice(eq + 1);
    i += len;
  }
  return out;
}

/** The file entry `name` names, following symlinks and hard links by name inside the archive. */
function resolveEntry(entries: Map<string, Entry>, raw: string, what: string): Entry {
  let name = cleanName(raw);
  for (let hops = 0; hops < 16; hops++) {
    const e = entries.get(name);
    if (e === undefined) throw bad(`${what} ${JSON.stringify(raw.slice(0, 200))} is missing from the archive`);
    if (e.type === "file") return e;
    if (e.type === "dir") throw bad(`${what} ${JSON.stringify(raw.slice(0, 200))} is a directory`);
    if (e.type === "link") name = e.link as string;
    else {
      const link = e.link as string;
      // A symlink resolves against its own directory, and must stay inside the archive.
      const base = link.startsWith("/") ? [] : name.split("/").slice(0, -1);
      const parts: string[] = [];
      for (const p of [...base, ...link.split("/")]) {
        if (p === "" || p === ".") continue;
        if (p === "..") {
          if (parts.length === 0) throw bad(`${what}: symlink ${JSON.stringify(name)} leaves the archive`);
          parts.pop();
        } else parts.push(p);
      }
      name = parts.join("/");
    }
  }
  throw bad(`${what}: too many links`);
}

// ---------------------------------------------------------------------------------------------
// load

class Loader {
  private readonly entries: Map<string, Entry>;
  readonly staged = new Map<string, number>();

  constructor(
    private readonly fd: number,
    private readonly job: LoadJob,
  ) {
    this.entries = indexTar(fd, fstatSync(fd).size, job.limits.maxEntries);
  }

  has(name: string): boolean {
    return this.entries.has(name);
  }

  /** The whole entry, at most `limit` bytes. */
  read(name: string, limit: number, what: string): Buffer {
    const e = resolveEntry(this.entries, name, what);
    if (e.size > limit) throw bad(`${what} is ${e.size} bytes, more than the limit of ${limit}`);
    const b = Buffer.alloc(e.size);
    if (e.size > 0 && readSync(this.fd, b, 0, e.size, e.offset) !== e.size) throw bad("truncated archive");
    return b;
  }

  json(name: string, limit: number, what: string): unknown {
    const text = this.read(name, limit, what).toString("utf8");
    try {
      return JSON.parse(text) as unknown;
    } catch (err) {
      throw bad(`${what} is not JSON: ${(err as Error).message}`);
    }
  }

  /** Stages bytes from memory as a blob; returns its descriptor. */
  stageBytes(data: Buffer, mediaType: string): LoadedDescriptor {
    const digest = `sha256:${createHash("sha256").update(data).digest("hex")}`;
    if (!this.staged.has(digest)) {
      const fd = openSync(join(this.job.staging, hexOf(digest)), "wx", 0o600);
      try {
        for (let off = 0; off < data.length; ) off += writeSync(fd, data, off);
        fsyncSync(fd);
      } finally {
        closeSync(fd);
      }
      this.staged.set(digest, data.length);
    }
    return { digest, mediaType, size: data.length };
  }

  /**
   * Copies entry `name` into the staging directory while hashing it. Returns the digest, the size
   * and the staged file (named by the digest).
   */
  stageEntry(name: string, what: string): { digest: string; size: number; path: string } {
    const e = resolveEntry(this.entries, name, what);
    const tmp = join(this.job.staging, `tmp-${e.offset}`);
    const hash = createHash("sha256");
    const fd = openSync(tmp, "wx", 0o600);
    const buf = Buffer.allocUnsafe(1024 * 1024);
    try {
      for (let pos = 0; pos < e.size; ) {
        const n = readSync(this.fd, buf, 0, Math.min(buf.length, e.size - pos), e.offset + pos);
        if (n <= 0) throw bad("truncated archive");
        const chunk = buf.subarray(0, n);
        hash.update(chunk);
        for (let off = 0; off < n; ) off += writeSync(fd, chunk, off);
        pos += n;
      }
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    const digest = `sha256:${hash.digest("hex")}`;
    const path = join(this.job.staging, hexOf(digest));
    if (this.staged.has(digest)) rmSync(tmp);
    else {
      renameSync(tmp, path);
      this.staged.set(digest, e.size);
    }
    return { digest, size: e.size, path };
  }
}

/** The sha256 of a gzip file's uncompressed content. */
async function gunzipDigest(path: string): Promise<string> {
  const hash = createHash("sha256");
  const stage = decompressor("gzip") as (s: AsyncIterable<Uint8Array>) => AsyncIterable<Uint8Array>;
  try {
    for await (const chunk of stage(createReadStream(path))) hash.update(chunk);
  } catch (err) {
    throw bad(`gzip layer: ${(err as Error).message}`);
  }
  return `sha256:${hash.digest("hex")}`;
}

/** Whether a staged file starts with gzip's magic number. */
function isGzip(path: string): boolean {
  const fd = openSync(path, constants.O_RDONLY | constants.O_NOFOLLOW);
  try {
    const head = Buffer.alloc(4);
    const n = readSync(fd, head, 0, 4, 0);
    return compressionOfMagic(head.subarray(0, n)) === "gzip";
  } finally {
    closeSync(fd);
  }
}

async function load(job: LoadJob): Promise<LoadResult> {
  const fd = openSync(job.archive, constants.O_RDONLY | constants.O_NOFOLLOW);
  try {
    const loader = new Loader(fd, job);
    const images = loader.has("manifest.json")
      ? await loadDocker(loader, job)
      : loader.has("index.json")
        ? await loadOci(loader, job)
        : (() => {
            throw bad("neither manifest.json (docker-archive) nor index.json (OCI layout) found: not an image archive");
          })();
    return {
      format: loader.has("manifest.json") ? "docker" : "oci",
      images,
      blobs: [...loader.staged].map(([digest, size]) => ({ digest, size })),
    };
  } finally {
    closeSync(fd);
  }
}

async function loadDocker(loader: Loader, job: LoadJob): Promise<LoadedImage[]> {
  const doc = loader.json("manifest.json", job.limits.maxManifestBytes, "manifest.json");
  if (!Array.isArray(doc)) throw bad("manifest.json is not a list");
  if (doc.length > job.limits.maxImages) throw bad(`manifest.json lists more than ${job.limits.maxImages} images`);
  const images: LoadedImage[] = [];
  for (const [i, item] of doc.entries()) {
    const it = item as { Config?: unknown; RepoTags?: unknown; Layers?: unknown };
    const where = `manifest.json[${i}]`;
    if (typeof it.Config !== "string") throw bad(`${where} has no Config`);
    if (!Array.isArray(it.Layers) || !it.Layers.every((l) => typeof l === "string"))
      throw bad(`${where}.Layers is not a list of paths`);
    const tags = it.RepoTags === null || it.RepoTags === undefined ? [] : it.RepoTags;
    if (!Array.isArray(tags) || !tags.every((t) => typeof t === "string"))
      throw bad(`${where}.RepoTags is not a list of names`);
    const configBytes = loader.read(it.Config, job.limits.maxConfigBytes, `config ${it.Config}`);
    const config = parseImageConfig(configBytes);
    const diffIds = config.rootfs.diff_ids;
    if (diffIds.length !== it.Layers.length)
      throw bad(`${where}: the config lists ${diffIds.length} diff ids for ${it.Layers.length} layers`);
    const configDesc = loader.stageBytes(configBytes, MediaType.dockerConfig);
    const layers: LoadedDescriptor[] = [];
    for (const [j, path] of (it.Layers as string[]).entries()) {
      const want = diffIds[j] as string;
      const staged = loader.stageEntry(path, `layer ${path}`);
      // docker save writes plain tars; a gzip layer (older tools) is kept compressed, its diff ID checked through gunzip.
      const compressed = isGzip(staged.path);
      const diffId = compressed ? await gunzipDigest(staged.path) : staged.digest;
      if (diffId !== want)
        throw bad(`layer ${path}: its content hashes to ${diffId}, but the config says ${want} (wrong digest)`);
      layers.push({
        digest: staged.digest,
        size: staged.size,
        mediaType: compressed ? MediaType.dockerLayerGzip : MediaType.dockerLayer,
      });
    }
    const manifest = {
      schemaVersion: 2,
      mediaType: MediaType.dockerManifest,
      config: { mediaType: configDesc.mediaType, size: configDesc.size, digest: configDesc.digest },
      layers: layers.map((l) => ({ mediaType: l.mediaType, size: l.size, digest: l.digest })),
    };
    const manifestDesc = loader.stageBytes(Buffer.from(JSON.stringify(manifest)), MediaType.dockerManifest);
    images.push({ names: tags as string[], manifest: manifestDesc, config: configDesc, layers, diffIds });
  }
  return images;
}

async function loadOci(loader: Loader, job: LoadJob): Promise<LoadedImage[]> {
  if (!loader.has("oci-layout")) throw bad("index.json without oci-layout: not an OCI image layout");
  const layout = loader.json("oci-layout", 4096, "oci-layout") as { imageLayoutVersion?: unknown };
  if (typeof layout?.imageLayoutVersion !== "string") throw bad("oci-layout has no imageLayoutVersion");
  const indexBytes = loader.read("index.json", job.limits.maxManifestBytes, "index.json");
  const index = parseManifest(indexBytes, MediaType.ociIndex);
  if (index.kind !== "index") throw bad("index.json is not an image index");
  if (index.manifests.length > job.limits.maxImages)
    throw bad(`index.json lists more than ${job.limits.maxImages} images`);
  const platform = parsePlatform(job.platform);
  const blobName = (d: Descriptor) => `blobs/sha256/${hexOf(d.digest)}`;
  const readVerified = (d: Descriptor, limit: number, what: string) => {
    const b = loader.read(blobName(d), limit, `${what} ${d.digest}`);
    const got = `sha256:${createHash("sha256").update(b).digest("hex")}`;
    if (got !== d.digest || b.length !== d.size)
      throw bad(`${what} ${d.digest}: content hashes to ${got} (${b.length} bytes): wrong digest`);
    return b;
  };
  const images: LoadedImage[] = [];
  for (const top of index.manifests) {
    const names: string[] = [];
    const full = top.annotations?.["io.containerd.image.name"];
    const refName = top.annotations?.["org.opencontainers.image.ref.name"];
    if (full) names.push(full);
    else if (refName) names.push(refName);
    let desc: Descriptor = top;
    let doc = parseManifest(readVerified(desc, job.limits.maxManifestBytes, "manifest"), desc.mediaType || undefined);
    for (let depth = 0; doc.kind === "index"; depth++) {
      if (depth >= 4) throw bad("indexes nested too deeply");
      const child = selectPlatform(doc.manifests, platform);
      if (child === undefined) throw bad(`no manifest for ${job.platform} in index ${desc.digest}`);
      desc = child;
      doc = parseManifest(readVerified(desc, job.limits.maxManifestBytes, "manifest"), desc.mediaType || undefined);
    }
    const manifestBytes = readVerified(desc, job.limits.maxManifestBytes, "manifest");
    const manifestDesc = loader.stageBytes(manifestBytes, doc.mediaType);
    const configBytes = readVerified(doc.config, job.limits.maxConfigBytes, "config");
    const config = parseImageConfig(configBytes);
    const configDesc = loader.stageBytes(configBytes, doc.config.mediaType);
    if (config.rootfs.diff_ids.length !== doc.layers.length)
      throw bad(
        `manifest ${desc.digest}: the config lists ${config.rootfs.diff_ids.length} diff ids for ${doc.layers.length} layers`,
      );
    const layers: LoadedDescriptor[] = [];
    for (const l of doc.layers) {
      const staged = loader.stageEntry(blobName(l), `layer ${l.digest}`);
      if (staged.digest !== l.digest || staged.size !== l.size)
        throw bad(`layer ${l.digest}: content hashes to ${staged.digest} (${staged.size} bytes): wrong digest`);
      layers.push({ digest: l.digest, size: l.size, mediaType: l.mediaType });
    }
    images.push({ names, manifest: manifestDesc, config: configDesc, layers, diffIds: config.rootfs.diff_ids });
  }
  return images;
}
