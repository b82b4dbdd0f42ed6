/**
 * One-off images for tests that need something the fixture set does not have (a numeric USER, a hostile layer):
 * layers are written in memory with tar-stream (names exactly as given, nothing normalised, so a test can write
 * `../x`), gzipped, and stored with their config and manifest as files named by digest in a directory the test
 * owns. The result is a FixtureImage that `pushImage()` from ./registry.js pushes, reading blobs it does not hold
 * (reused fixture layers) from `fallback`.
 */
import { createHash } from "node:crypto";
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import { createGzip } from "node:zlib";
import { pack as tarPack } from "tar-stream";
import { type Descriptor, type FixtureImage, hostArchitecture, MediaTypes } from "./images.js";
import type { BlobSource } from "./registry.js";

/** One tar entry; `name` goes into the header verbatim. */
export type TarEntry =
  | { type: "directory"; name: string; mode?: number }
  | { type: "file"; name: string; content: string; mode?: number }
  | { type: "symlink"; name: string; linkname: string }
  | { type: "link"; name: string; linkname: string }
  | { type: "character-device"; name: string; devmajor: number; devminor: number }
  | { type: "fifo"; name: string }
  /** A file of `size` zero bytes, streamed (a 256 MiB file costs no memory; gzip makes it ~250 KiB). */
  | { type: "zeros"; name: string; size: number };

/** A layer to build, or an existing (fixture) layer reused by descriptor and diff ID. */
export type LayerSpec = { entries: TarEntry[] } | { descriptor: Descriptor; diffId: string };

/** Options of {@link buildImage}. */
export interface BuildImageOptions {
  repository: string;
  tag?: string;
  layers: LayerSpec[];
  /** The config's `config` object (User, Env, Cmd, ...). */
  config?: Record<string, unknown>;
  /** Where blobs this image adds are read from when absent here (the fixture cache). */
  fallback?: BlobSource;
}

/** A built image: push it with `pushImage(registry, image.repository, image.tag, image, { blobs: built })`. */
export interface BuiltImage extends BlobSource {
  image: FixtureImage;
}

/** Builds the image into `dir` (created if needed). */
export async function buildImage(dir: string, options: BuildImageOptions): Promise<BuiltImage> {
  await mkdir(dir, { recursive: true });
  const own = new Set<string>();
  const put = async (mediaType: string, bytes: Buffer): Promise<Descriptor> => {
    const digest = `sha256:${createHash("sha256").update(bytes).digest("hex")}`;
    await writeFile(join(dir, digest.slice(7)), bytes);
    own.add(digest);
    return { mediaType, digest, size: bytes.length };
  };
  const layers: Descriptor[] = [];
  const diffIds: string[] = [];
  for (const spec of options.layers) {
    if ("descriptor" in spec) {
      layers.push(spec.descriptor);
      diffIds.push(spec.diffId);
      continue;
    }
    const { diffId, gzipped } = await layerOf(spec.entries);
    diffIds.push(diffId);
    layers.push(await put(MediaTypes.ociLayerGzip, gzipped));
  }
  const config = await put(
    MediaTypes.ociConfig,
    Buffer.from(
      JSON.stringify({
        architecture: hostArchitecture(),
        os: "linux",
        config: options.config ?? {},
        rootfs: { type: "layers", diff_ids: diffIds },
      }),
    ),
  );
  const manifest = await put(
    MediaTypes.ociManifest,
    Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: MediaTypes.ociManifest, config, layers })),
  );
  const image: FixtureImage = {
    repository: options.repository,
    tag: options.tag ?? "latest",
    target: manifest,
    manifests: [{ descriptor: manifest, config, layers, diffIds }],
  };
  return {
    image,
    blobPath(digest) {
      if (own.has(digest)) return join(dir, digest.slice(7));
      if (options.fallback === undefined) throw new Error(`blob ${digest}: not built here and no fallback`);
      return options.fallback.blobPath(digest);
    },
  };
}

/** The gzipped tar of `entries`, in order, and its diff ID (sha256 of the tar), streamed. */
async function layerOf(entries: TarEntry[]): Promise<{ diffId: string; gzipped: Buffer }> {
  const pack = tarPack();
  const hash = createHash("sha256");
  const chunks: Buffer[] = [];
  const collected = pipeline(
    pack,
    new Transform({
      transform(chunk: Buffer, _enc, done) {
        hash.update(chunk);
        done(null, chunk);
      },
    }),
    createGzip(),
    async (source: AsyncIterable<Buffer>) => {
      for await (const chunk of source) chunks.push(chunk);
    },
  );
  const common = { mtime: new Date(0), uid: 0, gid: 0 };
  for (const e of entries) {
    await new Promise<void>((resolve, reject) => {
      const done = (err?: Error | null) => (err ? reject(err) : resolve());
      switch (e.type) {
        case "directory":
          pack.entry({ ...common, name: e.name, type: "directory", mode: e.mode ?? 0o755 }, done);
          break;
        case "file":
          pack.entry({ ...common, name: e.name, type: "file", mode: e.mode ?? 0o644 }, e.content, done);
          break;
        case "symlink":
        case "link":
          pack.entry({ ...common, name: e.name, type: e.type, linkname: e.linkname, mode: 0o777 }, done);
          break;
        case "character-device":
          pack.entry(
            { ...common, name: e.name, type: e.type, devmajor: e.devmajor, devminor: e.devminor, mode: 0o666 },
            done,
          );
          break;
        case "fifo":
          pack.entry({ ...common, name: e.name, type: "fifo", mode: 0o644 }, done);
          break;
        case "zeros": {
          const body = pack.entry({ ...common, name: e.name, type: "file", mode: 0o644, size: e.size }, done);
          const zeros = Buffer.alloc(1024 * 1024);
          void pipeline(
            (function* () {
              for (let left = e.size; left > 0; left -= zeros.length)
                yield left >= zeros.length ? zeros : zeros.subarray(0, left);
            })(),
            body,
          ).catch(reject);
          break;
        }
      }
    });
  }
  pack.finalize();
  await collected;
  return { diffId: `sha256:${hash.digest("hex")}`, gzipped: Buffer.concat(chunks) };
}
