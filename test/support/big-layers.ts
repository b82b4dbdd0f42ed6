/**
 * Generated single-layer images too big to build entry by entry with tar-stream: a layer of many
 * small files (ustar headers written directly) and a layer of one large file. Both are
 * deterministic and cached as files named by digest under the fixture cache, so the tests and
 * the bench build each once per machine.
 *
 * Layout: `<DEFAULT_FIXTURES_DIR>/generated/<name>/<hex>` (blobs) and `.../<name>/image.json`
 * (the FixtureImage, written last, atomically).
 */
import { createCipheriv, createHash } from "node:crypto";
import { createWriteStream } from "node:fs";
import { mkdir, readFile, rename, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { createGzip } from "node:zlib";
import { DEFAULT_FIXTURES_DIR, type Descriptor, type FixtureImage, hostArchitecture, MediaTypes } from "./images.js";
import type { BlobSource } from "./registry.js";

/** A generated image: push with `pushImage(registry, image.repository, image.tag, image, { blobs })`. */
export interface GeneratedImage {
  image: FixtureImage;
  blobs: BlobSource;
  /** Uncompressed size of the layer tar. */
  tarBytes: number;
}

/** `count` files of 16 bytes, 1,000 per directory: the "200,000-file image". */
export function manyFilesImage(count: number, cacheDir = DEFAULT_FIXTURES_DIR): Promise<GeneratedImage> {
  return cached(join(cacheDir, "generated", `many-files-${count}`), `many-files`, `${count}`, () =>
    manyFilesTar(count),
  );
}

/** One file of `bytes` bytes that does not compress (AES-CTR keystream of a fixed key): the "1 GiB image". */
export function bigFileImage(bytes: number, cacheDir = DEFAULT_FIXTURES_DIR): Promise<GeneratedImage> {
  return cached(join(cacheDir, "generated", `big-file-${bytes}`), `big-file`, `${bytes}`, () => bigFileTar(bytes));
}

/** One file of `bytes` zero bytes: tiny compressed, large on disk (a full-disk test). */
export function zeroFileImage(bytes: number, cacheDir = DEFAULT_FIXTURES_DIR): Promise<GeneratedImage> {
  return cached(join(cacheDir, "generated", `zero-file-${bytes}`), `zero-file`, `${bytes}`, () =>
    oneFileTar(bytes, (n) => Buffer.alloc(n)),
  );
}

async function cached(
  dir: string,
  repository: string,
  tag: string,
  tar: () => AsyncGenerator<Buffer>,
): Promise<GeneratedImage> {
  const indexPath = join(dir, "image.json");
  const blobs: BlobSource = { blobPath: (digest) => join(dir, digest.slice("sha256:".length)) };
  try {
    return { ...(JSON.parse(await readFile(indexPath, "utf8")) as Omit<GeneratedImage, "blobs">), blobs };
  } catch {
    // Not built yet (or by a crashed run): build below.
  }
  await mkdir(dir, { recursive: true });
  const put = async (mediaType: string, bytes: Buffer): Promise<Descriptor> => {
    const digest = `sha256:${createHash("sha256").update(bytes).digest("hex")}`;
    await writeFile(blobs.blobPath(digest), bytes);
    return { mediaType, digest, size: bytes.length };
  };
  // The layer streams to disk, hashed before (diff ID) and after (digest) compression.
  const tmp = join(dir, `layer-${process.pid}.tmp`);
  const diff = createHash("sha256");
  const blob = createHash("sha256");
  let tarBytes = 0;
  let size = 0;
  await pipeline(
    Readable.from(
      (async function* () {
        for await (const chunk of tar()) {
          diff.update(chunk);
          tarBytes += chunk.length;
          yield chunk;
        }
      })(),
    ),
    createGzip({ level: 1 }),
    async function* (source: AsyncIterable<Buffer>) {
      for await (const chunk of source) {
        blob.update(chunk);
        size += chunk.length;
        yield chunk;
      }
    },
    createWriteStream(tmp),
  );
  const layer: Descriptor = { mediaType: MediaTypes.ociLayerGzip, digest: `sha256:${blob.digest("hex")}`, size };
  await rename(tmp, blobs.blobPath(layer.digest));
  const diffId = `sha256:${diff.digest("hex")}`;
  const config = await put(
    MediaTypes.ociConfig,
    Buffer.from(
      JSON.stringify({
        architecture: hostArchitecture(),
        os: "linux",
        config: {},
        rootfs: { type: "layers", diff_ids: [diffId] },
      }),
    ),
  );
  const manifest = await put(
    MediaTypes.ociManifest,
    Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: MediaTypes.ociManifest, config, layers: [layer] })),
  );
  const image: FixtureImage = {
    repository: `berth-test/${repository}`,
    tag,
    target: manifest,
    manifests: [{ descriptor: manifest, config, layers: [layer], diffIds: [diffId] }],
  };
  const built = { image, tarBytes };
  await writeFile(`${indexPath}.tmp`, JSON.stringify(built));
  await rename(`${indexPath}.tmp`, indexPath);
  await rm(tmp, { force: true });
  return { ...built, blobs };
}

/** A ustar header block (names up to 100 bytes, which is all these layers use). */
function header(name: string, type: "0" | "5", size: number, mode: number): Buffer {
  const h = Buffer.alloc(512);
  const field = (off: number, len: number, value: string) => h.write(value, off, len, "ascii");
  const octal = (off: number, len: number, n: number) => field(off, len, `${n.toString(8).padStart(len - 1, "0")}\0`);
  field(0, 100, name);
  octal(100, 8, mode);
  octal(108, 8, 0);
  octal(116, 8, 0);
  octal(124, 12, size);
  octal(136, 12, 1_700_000_000);
  field(148, 8, "        ");
  field(156, 1, type);
  field(257, 6, "ustar\0");
  field(263, 2, "00");
  let sum = 0;
  for (const b of h) sum += b;
  field(148, 8, `${sum.toString(8).padStart(6, "0")}\0 `);
  return h;
}

async function* manyFilesTar(count: number): AsyncGenerator<Buffer> {
  const perDir = 1000;
  let batch: Buffer[] = [];
  for (let i = 0; i < count; i++) {
    if (i % perDir === 0) batch.push(header(`d${i / perDir}/`, "5", 0, 0o755));
    const body = Buffer.alloc(512);
    body.write(`file ${String(i).padStart(10, "0")}\n`);
    batch.push(header(`d${Math.floor(i / perDir)}/f${i}`, "0", 16, 0o644), body);
    if (batch.length >= 2000) {
      yield Buffer.concat(batch);
      batch = [];
    }
  }
  batch.push(Buffer.alloc(1024));
  yield Buffer.concat(batch);
}

async function* oneFileTar(bytes: number, data: (n: number, offset: number) => Buffer): AsyncGenerator<Buffer> {
  yield header("data", "0", bytes, 0o644);
  const step = 1024 * 1024;
  for (let off = 0; off < bytes; off += step) yield data(Math.min(step, bytes - off), off);
  const pad = (512 - (bytes % 512)) % 512;
  yield Buffer.alloc(pad + 1024);
}

function bigFileTar(bytes: number): AsyncGenerator<Buffer> {
  // Deterministic and incompressible without hashing per byte: a counter-mode keystream.
  const cipher = createCipheriv("aes-128-ctr", Buffer.alloc(16, 1), Buffer.alloc(16, 0));
  return oneFileTar(bytes, (n) => cipher.update(Buffer.alloc(n)));
}
