/**
 * Offline OCI image fixtures, built here from Debian's static busybox so that no test ever pulls from the
 * internet.
 *
 * Every image is assembled from scratch: layer tars are written with tar-stream (fixed mtimes, uid/gid 0 unless
 * stated, sorted parents before children), compressed with zlib (gzip) or the `zstd` binary, and described by
 * hand-written OCI (or Docker schema 2) configs, manifests and indexes. The output is deterministic for a given
 * busybox binary, Node zlib and zstd version, so blobs are cached on disk and reused by later runs.
 *
 * On-disk layout of the cache (drawn once; every path comes from {@link layoutPaths}):
 *
 *   <cacheDir>/                   default /var/tmp/berth-fixtures/<FIXTURES_VERSION>
 *   ├── oci-layout                {"imageLayoutVersion":"1.0.0"} (the directory is a valid OCI image layout)
 *   ├── index.json                one descriptor per fixture tag, annotated with its full name
 *   ├── catalog.json              the fixture images (without `big`), written last, atomically
 *   ├── catalog-big.json          the same for the optional `berth-test/big` image
 *   ├── blobs/sha256/<hex>        configs, layers, manifests and indexes, content-addressed
 *   └── ingest/<pid>-<random>     partial writes, renamed into blobs/ once hashed and fsynced
 *
 * Several processes may build the same cache at once (node --test runs files in parallel): blobs and catalogs
 * are only ever published by rename, and their content is identical whoever wins.
 */

import { execFile, spawn } from "node:child_process";
import { createCipheriv, createHash, randomBytes } from "node:crypto";
import { createWriteStream } from "node:fs";
import { mkdir, open, readFile, rename, rm } from "node:fs/promises";
import { join } from "node:path";
import { Duplex, PassThrough, Readable, Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import { promisify } from "node:util";
import { createGzip } from "node:zlib";
import { type Pack, pack as tarPack } from "tar-stream";
import { pathExists } from "../../src/util/index.js";

const execFileAsync = promisify(execFile);

/** Bump when the builder's output changes, so stale caches are not reused. */
export const FIXTURES_VERSION = "v1";

/** Where fixture blobs are cached unless the caller says otherwise. */
export const DEFAULT_FIXTURES_DIR = `/var/tmp/berth-fixtures/${FIXTURES_VERSION}`;

/** Media types used by the fixtures (OCI image-spec v1.1 and Docker image manifest v2 schema 2). */
export const MediaTypes = {
  ociManifest: "application/vnd.oci.image.manifest.v1+json",
  ociIndex: "application/vnd.oci.image.index.v1+json",
  ociConfig: "application/vnd.oci.image.config.v1+json",
  ociLayer: "application/vnd.oci.image.layer.v1.tar",
  ociLayerGzip: "application/vnd.oci.image.layer.v1.tar+gzip",
  ociLayerZstd: "application/vnd.oci.image.layer.v1.tar+zstd",
  dockerManifest: "application/vnd.docker.distribution.manifest.v2+json",
  dockerManifestList: "application/vnd.docker.distribution.manifest.list.v2+json",
  dockerConfig: "application/vnd.docker.container.image.v1+json",
  dockerLayerGzip: "application/vnd.docker.image.rootfs.diff.tar.gzip",
} as const;

/** The media types a registry client must accept to be served every fixture's manifest or index. */
export const MANIFEST_MEDIA_TYPES: readonly string[] = [
  MediaTypes.ociManifest,
  MediaTypes.ociIndex,
  MediaTypes.dockerManifest,
  MediaTypes.dockerManifestList,
];

/** An OCI platform, as found in index entries and image configs. */
export interface Platform {
  architecture: string;
  os: string;
  variant?: string;
}

/** An OCI content descriptor; `digest` is always `sha256:<64 hex>` and `size` the blob's exact byte length. */
export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  platform?: Platform;
}

/** One image manifest of a fixture, with everything it references. */
export interface FixtureManifest {
  /** The manifest blob itself; carries `platform` when the manifest is a child of an index. */
  descriptor: Descriptor;
  /** The image config; its digest is the image ID. */
  config: Descriptor;
  /** Layer blobs, base first, exactly as listed in the manifest. */
  layers: Descriptor[];
  /** sha256 of each uncompressed layer tar, in layer order (equal to the config's rootfs.diff_ids). */
  diffIds: string[];
}

/** A fixture image: one repository:tag and what it resolves to. */
export interface FixtureImage {
  /** e.g. `berth-test/busybox`. */
  repository: string;
  /** e.g. `latest`. */
  tag: string;
  /** What the tag points at: a manifest, or an index / manifest list. */
  target: Descriptor;
  /**
   * For a plain manifest, exactly one entry whose descriptor equals `target`; for an index, one entry per
   * child in index order (children carry their platform).
   */
  manifests: FixtureManifest[];
}

/** A built and cached set of fixture images. */
export interface FixtureImages {
  /** The cache directory (an OCI image layout). */
  dir: string;
  /** Every fixture image, one per repository:tag, in a stable order. */
  images: FixtureImage[];
  /** Absolute path of a blob in the cache; the file exists for every digest the images reference. */
  blobPath(digest: string): string;
  /** The image tagged `reference` (`repository:tag`, tag defaults to `latest`); throws if there is none. */
  get(reference: string): FixtureImage;
}

/** Options of {@link buildFixtureImages}. */
export interface BuildFixtureImagesOptions {
  /** Cache directory; default {@link DEFAULT_FIXTURES_DIR}. */
  cacheDir?: string;
  /** Also build `berth-test/big` (~100 MB, three layers), which only the benchmark needs. */
  big?: boolean;
  /** The busybox binary to put in every image; default `/bin/busybox` (Debian busybox-static). */
  busybox?: string;
  signal?: AbortSignal;
}

/**
 * Applets every fixture rootfs exposes as `/bin/<name>` symlinks to `/bin/busybox`. The build fails if the
 * busybox binary lacks any of them.
 */
export const BUSYBOX_APPLETS: readonly string[] = [
  "sh",
  "ls",
  "cat",
  "echo",
  "sleep",
  "id",
  "nc",
  "httpd",
  "wget",
  "env",
  "stat",
  "grep",
  "head",
  "tail",
  "true",
  "false",
  "hostname",
  "ps",
  "mount",
  "umount",
  "stty",
  "mkdir",
  "touch",
  "rm",
  "rmdir",
  "test",
  "[",
  "kill",
  "printf",
  "seq",
  "dd",
  "yes",
  "cut",
  "wc",
  "date",
  "pwd",
  "readlink",
  "realpath",
  "uname",
  "whoami",
  "sed",
  "awk",
  "tr",
  "sort",
  "uniq",
  "ip",
  "ifconfig",
  "nslookup",
  "ping",
  "timeout",
  "chmod",
  "chown",
  "chgrp",
  "ln",
  "cp",
  "mv",
  "tee",
  "xargs",
  "find",
  "basename",
  "dirname",
  "sha256sum",
  "md5sum",
  "du",
  "df",
  "mkfifo",
  "mknod",
  "nproc",
  "expr",
  "free",
  "hexdump",
  "xxd",
  "base64",
  "pidof",
  "tty",
  "uptime",
  "truncate",
  "which",
  "mktemp",
  "sync",
  "setsid",
  "nsenter",
  "unshare",
  "su",
  "top",
  "cmp",
  "diff",
  "usleep",
  "gzip",
  "tar",
  "vi",
];

/** The PATH every fixture config sets. */
const DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/** Every layer entry and config carries this time, so the output does not depend on when it was built. */
const EPOCH = new Date("2024-01-01T00:00:00Z");
const CREATED = EPOCH.toISOString().replace(".000Z", "Z");

/** Builds (or reuses from the cache) every fixture image; resolves once all blobs are on disk. */
export async function buildFixtureImages(options: BuildFixtureImagesOptions = {}): Promise<FixtureImages> {
  const dir = options.cacheDir ?? DEFAULT_FIXTURES_DIR;
  const busyboxPath = options.busybox ?? "/bin/busybox";
  const signal = options.signal;
  const paths = layoutPaths(dir);
  const busybox = await readFile(busyboxPath);
  const busyboxDigest = sha256(busybox);

  let main = await loadCatalog(paths.catalog, busyboxDigest, paths);
  let big = options.big === true ? await loadCatalog(paths.catalogBig, busyboxDigest, paths) : [];
  if (main === undefined || big === undefined) {
    const store = await createBlobStore(paths);
    const builder = new ImageBuilder(store, busybox, busyboxPath, signal);
    if (main === undefined) {
      main = await builder.standardImages();
      await writeCatalog(paths.catalog, { version: FIXTURES_VERSION, busyboxDigest, images: main });
    }
    if (big === undefined) {
      big = [await builder.bigImage()];
      await writeCatalog(paths.catalogBig, { version: FIXTURES_VERSION, busyboxDigest, images: big });
    }
    await writeLayoutIndex(paths, [...main, ...big]);
  }

  const images = [...main, ...big];
  return {
    dir,
    images,
    blobPath: (digest) => paths.blob(digest),
    get(reference) {
      const [repository, tag] = splitReference(reference);
      const found = images.find((i) => i.repository === repository && i.tag === tag);
      if (found === undefined) throw new Error(`fixture image ${repository}:${tag}: not found`);
      return found;
    },
  };
}

/** Splits `repo[:tag]` (no registry host) into repository and tag, the tag defaulting to `latest`. */
export function splitReference(reference: string): [string, string] {
  const colon = reference.lastIndexOf(":");
  if (colon > reference.lastIndexOf("/")) return [reference.slice(0, colon), reference.slice(colon + 1)];
  return [reference, "latest"];
}

/** `sha256:<hex>` of `data`. */
export function sha256(data: Uint8Array | string): string {
  return `sha256:${createHash("sha256").update(data).digest("hex")}`;
}

// ---------------------------------------------------------------------------------------------------------------
// Image definitions

type Compression = "gzip" | "zstd" | "none";

interface BuiltLayer {
  descriptor: Descriptor;
  diffId: string;
  createdBy: string;
}

/** The container part of an image config (the subset of fields the fixtures use). */
interface ContainerConfig {
  User?: string;
  ExposedPorts?: Record<string, Record<string, never>>;
  Env: string[];
  Entrypoint?: string[];
  Cmd?: string[];
  WorkingDir?: string;
  Labels?: Record<string, string>;
  StopSignal?: string;
}

class ImageBuilder {
  readonly #store: BlobStore;
  readonly #busybox: Buffer;
  readonly #busyboxPath: string;
  readonly #signal: AbortSignal | undefined;
  #base: Map<string, Promise<BuiltLayer>> = new Map();

  constructor(store: BlobStore, busybox: Buffer, busyboxPath: string, signal: AbortSignal | undefined) {
    this.#store = store;
    this.#busybox = busybox;
    this.#busyboxPath = busyboxPath;
    this.#signal = signal;
  }

  /** The busybox base layer in one compression, built once per builder. */
  base(compression: Compression): Promise<BuiltLayer> {
    let layer = this.#base.get(compression);
    if (layer === undefined) {
      layer = this.#baseEntries().then((entries) =>
        this.layer(entries, compression, "berth-test: busybox base (/bin/busybox, applet symlinks, /etc)"),
      );
      this.#base.set(compression, layer);
    }
    return layer;
  }

  async #baseEntries(): Promise<Entry[]> {
    const available = new Set(await busyboxApplets(this.#busyboxPath, this.#signal));
    const missing = BUSYBOX_APPLETS.filter((a) => !available.has(a));
    if (missing.length > 0) throw new Error(`busybox ${this.#busyboxPath}: missing applets: ${missing.join(" ")}`);
    return baseRootfs(this.#busybox);
  }

  /** Writes one layer blob and returns its descriptor and diff ID. */
  async layer(entries: Entry[], compression: Compression, createdBy: string, gzipLevel = 6): Promise<BuiltLayer> {
    const { descriptor, diffId } = await writeLayer(this.#store, entries, {
      compression,
      gzipLevel,
      signal: this.#signal,
    });
    return { descriptor, diffId, createdBy };
  }

  /** Writes a JSON document (config, manifest, index) and returns its descriptor. */
  async json(mediaType: string, doc: unknown, platform?: Platform): Promise<Descriptor> {
    const bytes = Buffer.from(JSON.stringify(doc));
    const digest = await this.#store.put(bytes);
    const d: Descriptor = { mediaType, digest, size: bytes.length };
    if (platform !== undefined) d.platform = platform;
    return d;
  }

  /** Writes config + manifest for `layers` and returns the manifest record. */
  async manifest(
    layers: BuiltLayer[],
    config: ContainerConfig,
    opts: { platform?: Platform; docker?: boolean } = {},
  ): Promise<FixtureManifest> {
    const platform = opts.platform ?? { architecture: hostArchitecture(), os: "linux" };
    const configDoc: Record<string, unknown> = {
      created: CREATED,
      author: "berth test fixtures",
      architecture: platform.architecture,
      ...(platform.variant !== undefined ? { variant: platform.variant } : {}),
      os: platform.os,
      config,
      rootfs: { type: "layers", diff_ids: layers.map((l) => l.diffId) },
      history: layers.map((l) => ({ created: CREATED, created_by: l.createdBy })),
    };
    const docker = opts.docker === true;
    const configDesc = await this.json(docker ? MediaTypes.dockerConfig : MediaTypes.ociConfig, configDoc);
    const layerDescs = layers.map((l) =>
      docker ? { ...l.descriptor, mediaType: dockerLayerType(l.descriptor.mediaType) } : l.descriptor,
    );
    const manifestType = docker ? MediaTypes.dockerManifest : MediaTypes.ociManifest;
    const manifestDoc = { schemaVersion: 2, mediaType: manifestType, config: configDesc, layers: layerDescs };
    const descriptor = await this.json(manifestType, manifestDoc, opts.platform);
    return { descriptor, config: configDesc, layers: layerDescs, diffIds: layers.map((l) => l.diffId) };
  }

  /** Writes an index (OCI) or manifest list (Docker) over `children`. */
  async index(children: FixtureManifest[], docker: boolean): Promise<Descriptor> {
    const mediaType = docker ? MediaTypes.dockerManifestList : MediaTypes.ociIndex;
    return this.json(mediaType, { schemaVersion: 2, mediaType, manifests: children.map((c) => c.descriptor) });
  }

  /** Every fixture except `big`, in a stable order. */
  async standardImages(): Promise<FixtureImage[]> {
    const [gz, zst, raw] = await Promise.all([this.base("gzip"), this.base("zstd"), this.base("none")]);
    const sh: ContainerConfig = { Env: [DEFAULT_PATH], Cmd: ["sh"] };
    const images: FixtureImage[] = [];
    const single = (repository: string, tag: string, m: FixtureManifest): void => {
      images.push({ repository, tag, target: m.descriptor, manifests: [m] });
    };

    // 1 and 7: busybox in three compressions; the config (and so the image ID) is the same for all three.
    const busyboxGzip = await this.manifest([gz], sh);
    single("berth-test/busybox", "latest", busyboxGzip);
    single("berth-test/busybox", "gzip", busyboxGzip);
    single("berth-test/busybox", "zstd", await this.manifest([zst], sh));
    single("berth-test/busybox", "uncompressed", await this.manifest([raw], sh));

    // 2: whiteouts and opaque directories. Expected merged view: /data/b, /data/dir/y, /keep/k.
    const added = await this.layer(
      [
        dir("data"),
        file("data/a", "a\n"),
        file("data/b", "b\n"),
        dir("data/dir"),
        file("data/dir/x", "x\n"),
        dir("keep"),
        file("keep/k", "k\n"),
      ],
      "gzip",
      "berth-test: add /data/a /data/b /data/dir/x /keep/k",
    );
    const removed = await this.layer(
      [
        dir("data"),
        file("data/.wh.a", ""),
        dir("data/dir"),
        file("data/dir/.wh..wh..opq", ""),
        file("data/dir/y", "y\n"),
      ],
      "gzip",
      "berth-test: whiteout /data/a, make /data/dir opaque, add /data/dir/y",
    );
    single("berth-test/multilayer", "latest", await this.manifest([gz, added, removed], sh));

    // 3: a non-root user with a supplementary group.
    const users = await this.layer(
      [
        dir("etc"),
        file("etc/group", "root:x:0:\napp:x:1000:\nextra:x:2000:app\nnogroup:x:65534:\n"),
        file(
          "etc/passwd",
          "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
        ),
        dir("home"),
        dir("home/app", 0o755, 1000, 1000),
      ],
      "gzip",
      "berth-test: user app (1000:1000, also in group extra 2000)",
    );
    single("berth-test/users", "latest", await this.manifest([gz, users], { ...sh, User: "app" }));

    // 4: entrypoint + cmd + env + workdir + stop signal.
    const work = await this.layer([dir("work")], "gzip", "berth-test: WORKDIR /work");
    single(
      "berth-test/entrypoint",
      "latest",
      await this.manifest([gz, work], {
        Env: ["FOO=bar", DEFAULT_PATH],
        Entrypoint: ["/bin/echo", "entry"],
        Cmd: ["cmd-default"],
        WorkingDir: "/work",
        StopSignal: "SIGINT",
      }),
    );

    // 5: a web server on port 80.
    const www = await this.layer(
      [dir("www"), file("www/index.html", "hello from berth\n")],
      "gzip",
      "berth-test: /www/index.html",
    );
    single(
      "berth-test/web",
      "latest",
      await this.manifest([gz, www], {
        ExposedPorts: { "80/tcp": {} },
        Env: [DEFAULT_PATH],
        Cmd: ["/bin/httpd", "-f", "-p", "80", "-h", "/www"],
      }),
    );

    // 6 and 8: an OCI index and a Docker manifest list, each with linux/amd64 and linux/arm64 children that
    // share the (amd64) busybox layer and differ by config (architecture and Env ARCH=...).
    const amd64: Platform = { architecture: "amd64", os: "linux" };
    const arm64: Platform = { architecture: "arm64", os: "linux", variant: "v8" };
    const archConfig = (arch: string): ContainerConfig => ({ Env: [DEFAULT_PATH, `ARCH=${arch}`], Cmd: ["sh"] });
    const ociChildren = [
      await this.manifest([gz], archConfig("amd64"), { platform: amd64 }),
      await this.manifest([gz], archConfig("arm64"), { platform: arm64 }),
    ];
    images.push({
      repository: "berth-test/multiarch",
      tag: "latest",
      target: await this.index(ociChildren, false),
      manifests: ociChildren,
    });

    single("berth-test/docker", "latest", await this.manifest([gz], sh, { docker: true }));
    const dockerChildren = [
      await this.manifest([gz], archConfig("amd64"), { platform: amd64, docker: true }),
      await this.manifest([gz], archConfig("arm64"), { platform: arm64, docker: true }),
    ];
    images.push({
      repository: "berth-test/dockerlist",
      tag: "latest",
      target: await this.index(dockerChildren, true),
      manifests: dockerChildren,
    });
    return images;
  }

  /** `berth-test/big`: busybox plus two ~50 MiB layers of incompressible data, gzip level 1. */
  async bigImage(): Promise<FixtureImage> {
    const gz = await this.base("gzip");
    const chunk = 1 << 20;
    const chunks = 50;
    const bigLayer = (n: number): Promise<BuiltLayer> => {
      // AES-128-CTR over zeros is a fast, seeded, incompressible stream; one cipher per layer keeps it
      // reproducible and the two layers distinct.
      const key = createHash("sha256").update(`berth-big-layer-${n}`).digest().subarray(0, 16);
      const cipher = createCipheriv("aes-128-ctr", key, Buffer.alloc(16));
      const zeros = Buffer.alloc(chunk);
      const entries: Entry[] = [dir("big"), dir(`big/${n}`)];
      for (let i = 0; i < chunks; i++) {
        entries.push({
          kind: "file",
          path: `big/${n}/chunk-${String(i).padStart(3, "0")}`,
          mode: 0o644,
          data: () => cipher.update(zeros),
        });
      }
      return this.layer(entries, "gzip", `berth-test: ${chunks} MiB of pseudo-random data (${n})`, 1);
    };
    const l1 = await bigLayer(1);
    const l2 = await bigLayer(2);
    const m = await this.manifest([gz, l1, l2], { Env: [DEFAULT_PATH], Cmd: ["sh"] });
    return { repository: "berth-test/big", tag: "latest", target: m.descriptor, manifests: [m] };
  }
}

function dockerLayerType(mediaType: string): string {
  if (mediaType !== MediaTypes.ociLayerGzip) throw new Error(`docker fixture: no docker media type for ${mediaType}`);
  return MediaTypes.dockerLayerGzip;
}

/** The OCI architecture name of this host (`amd64` on x86-64); the busybox binary, and so the images, are the host's. */
export function hostArchitecture(): string {
  switch (process.arch) {
    case "x64":
      return "amd64";
    case "ia32":
      return "386";
    default:
      return process.arch;
  }
}

async function busyboxApplets(busybox: string, signal: AbortSignal | undefined): Promise<string[]> {
  const { stdout } = await execFileAsync(busybox, ["--list"], { encoding: "utf8", ...(signal ? { signal } : {}) });
  return stdout.split("\n").filter((s) => s !== "");
}

// ---------------------------------------------------------------------------------------------------------------
// Layer contents

/** One tar entry. `data` may be a thunk so that large layers are generated while they are written. */
type Entry =
  | { kind: "dir"; path: string; mode: number; uid?: number; gid?: number }
  | { kind: "file"; path: string; mode: number; data: Buffer | (() => Buffer); uid?: number; gid?: number }
  | { kind: "symlink"; path: string; target: string };

function dir(path: string, mode = 0o755, uid = 0, gid = 0): Entry {
  return { kind: "dir", path, mode, uid, gid };
}

function file(path: string, content: string | Buffer, mode = 0o644): Entry {
  return { kind: "file", path, mode, data: typeof content === "string" ? Buffer.from(content) : content };
}

/** The busybox base rootfs: /bin/busybox, applet symlinks, /etc files, and the mount-point directories. */
function baseRootfs(busybox: Buffer): Entry[] {
  const entries: Entry[] = [
    dir("bin"),
    { kind: "file", path: "bin/busybox", mode: 0o755, data: busybox },
    ...[...BUSYBOX_APPLETS].sort().map((a): Entry => ({ kind: "symlink", path: `bin/${a}`, target: "busybox" })),
    dir("dev"),
    dir("etc"),
    file("etc/group", "root:x:0:\nnogroup:x:65534:\n"),
    // Runtimes bind-mount over these three; they exist so the mount points do.
    file("etc/hostname", ""),
    file("etc/hosts", ""),
    file("etc/passwd", "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"),
    file("etc/resolv.conf", ""),
    dir("home"),
    dir("proc", 0o555),
    dir("root", 0o700),
    dir("sys", 0o555),
    dir("tmp", 0o1777),
    dir("usr"),
    dir("usr/bin"),
    { kind: "symlink", path: "usr/bin/env", target: "../../bin/busybox" },
    dir("usr/sbin"),
    dir("var"),
    dir("var/tmp", 0o1777),
  ];
  return entries;
}

/**
 * Writes `entries` as a tar, compresses it and stores it; the diff ID is the sha256 of the uncompressed tar.
 * Memory use stays at about one entry, whatever the layer size.
 */
async function writeLayer(
  store: BlobStore,
  entries: Entry[],
  opts: { compression: Compression; gzipLevel: number; signal: AbortSignal | undefined },
): Promise<{ descriptor: Descriptor; diffId: string }> {
  const pack = tarPack();
  const diffHash = createHash("sha256");
  const tap = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      diffHash.update(chunk);
      cb(null, chunk);
    },
  });
  const compressor = createCompressor(opts.compression, opts.gzipLevel, opts.signal);
  const source = async function* (): AsyncGenerator<Buffer> {
    for await (const chunk of pack) {
      if (!(chunk instanceof Uint8Array)) throw new Error("tar-stream produced a non-buffer chunk");
      yield Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    }
  };
  const stored = store.ingest([Readable.from(source(), { objectMode: false }), tap, compressor.stream], opts.signal);
  const fed = feed(pack, entries).catch((err: unknown) => {
    pack.destroy(err instanceof Error ? err : new Error(String(err)));
    throw err;
  });
  const [{ digest, size }] = await Promise.all([stored, fed, compressor.done]);
  const mediaType =
    opts.compression === "gzip"
      ? MediaTypes.ociLayerGzip
      : opts.compression === "zstd"
        ? MediaTypes.ociLayerZstd
        : MediaTypes.ociLayer;
  return { descriptor: { mediaType, digest, size }, diffId: `sha256:${diffHash.digest("hex")}` };
}

async function feed(pack: Pack, entries: Entry[]): Promise<void> {
  const common = { mtime: EPOCH, uname: "", gname: "" };
  for (const e of entries) {
    await new Promise<void>((resolve, reject) => {
      const done = (err?: Error | null): void => (err ? reject(err) : resolve());
      switch (e.kind) {
        case "dir":
          pack.entry(
            { ...common, name: e.path, type: "directory", mode: e.mode, uid: e.uid ?? 0, gid: e.gid ?? 0 },
            done,
          );
          break;
        case "symlink":
          pack.entry(
            { ...common, name: e.path, type: "symlink", linkname: e.target, mode: 0o777, uid: 0, gid: 0 },
            done,
          );
          break;
        case "file": {
          const data = typeof e.data === "function" ? e.data() : e.data;
          const header = {
            ...common,
            name: e.path,
            type: "file" as const,
            mode: e.mode,
            uid: e.uid ?? 0,
            gid: e.gid ?? 0,
            size: data.length,
          };
          pack.entry(header, data, done);
          break;
        }
      }
    });
  }
  pack.finalize();
}

/** A compression stage for pipeline(), and a promise that rejects if the compressor fails after its output ends. */
function createCompressor(
  compression: Compression,
  gzipLevel: number,
  signal: AbortSignal | undefined,
): { stream: Duplex; done: Promise<void> } {
  switch (compression) {
    case "none":
      return { stream: new PassThrough(), done: Promise.resolve() };
    case "gzip":
      return { stream: createGzip({ level: gzipLevel }), done: Promise.resolve() };
    case "zstd": {
      // -T1: single-threaded output is reproducible regardless of the number of cores.
      const argv = ["-q", "-c", "-3", "-T1", "--no-progress"];
      const child = spawn("zstd", argv, { stdio: ["pipe", "pipe", "pipe"], ...(signal ? { signal } : {}) });
      return {
        stream: Duplex.from({ writable: child.stdin, readable: child.stdout }),
        done: childExit(child, `zstd ${argv.join(" ")}`),
      };
    }
  }
}

/** Resolves when `child` exits 0; rejects with its stderr otherwise. */
function childExit(child: ReturnType<typeof spawn>, what: string): Promise<void> {
  const stderr: Buffer[] = [];
  child.stderr?.on("data", (c: Buffer) => stderr.push(c));
  return new Promise((resolve, reject) => {
    child.once("error", (err) => reject(new Error(`${what}: ${err.message}`)));
    child.once("close", (code, sig) => {
      if (code === 0) resolve();
      else reject(new Error(`${what}: exit ${code ?? sig}: ${Buffer.concat(stderr).toString("utf8").trim()}`));
    });
  });
}

// ---------------------------------------------------------------------------------------------------------------
// Blob store and catalog

interface LayoutPaths {
  root: string;
  ociLayout: string;
  index: string;
  catalog: string;
  catalogBig: string;
  blobs: string;
  ingest: string;
  blob(digest: string): string;
}

/** Every path in the cache directory; see the tree in the module comment. */
function layoutPaths(root: string): LayoutPaths {
  const blobs = join(root, "blobs", "sha256");
  return {
    root,
    ociLayout: join(root, "oci-layout"),
    index: join(root, "index.json"),
    catalog: join(root, "catalog.json"),
    catalogBig: join(root, "catalog-big.json"),
    blobs,
    ingest: join(root, "ingest"),
    blob(digest) {
      const m = /^sha256:([0-9a-f]{64})$/.exec(digest);
      if (m?.[1] === undefined) throw new Error(`invalid digest ${JSON.stringify(digest)}`);
      return join(blobs, m[1]);
    },
  };
}

/** Content-addressed writes into the cache; a blob is visible only once complete and fsynced. */
interface BlobStore {
  put(data: Buffer): Promise<string>;
  ingest(stages: [Readable, ...Duplex[]], signal: AbortSignal | undefined): Promise<{ digest: string; size: number }>;
}

async function createBlobStore(paths: LayoutPaths): Promise<BlobStore> {
  await mkdir(paths.blobs, { recursive: true });
  await mkdir(paths.ingest, { recursive: true });
  const tempPath = (): string => join(paths.ingest, `${process.pid}-${randomBytes(6).toString("hex")}`);
  return {
    async put(data) {
      const digest = sha256(data);
      const target = paths.blob(digest);
      if (!(await pathExists(target))) await atomicWrite(target, data, tempPath());
      return digest;
    },
    async ingest(stages, signal) {
      const tmp = tempPath();
      const hash = createHash("sha256");
      let size = 0;
      const tap = new Transform({
        transform(chunk: Buffer, _enc, cb) {
          hash.update(chunk);
          size += chunk.length;
          cb(null, chunk);
        },
      });
      try {
        // flush: fsync before the stream closes the file, so a renamed blob is always complete on disk.
        const out = createWriteStream(tmp, { mode: 0o644, flush: true });
        await pipeline([...stages, tap, out], signal ? { signal } : {});
      } catch (err) {
        await rm(tmp, { force: true });
        throw err;
      }
      const digest = `sha256:${hash.digest("hex")}`;
      await rename(tmp, paths.blob(digest));
      return { digest, size };
    },
  };
}

interface Catalog {
  version: string;
  busyboxDigest: string;
  images: FixtureImage[];
}

/** The catalog's images if it matches this builder and busybox and all its blobs are present; else undefined. */
async function loadCatalog(
  path: string,
  busyboxDigest: string,
  paths: LayoutPaths,
): Promise<FixtureImage[] | undefined> {
  let catalog: Catalog;
  try {
    catalog = JSON.parse(await readFile(path, "utf8")) as Catalog;
  } catch {
    return undefined;
  }
  if (
    catalog.version !== FIXTURES_VERSION ||
    catalog.busyboxDigest !== busyboxDigest ||
    !Array.isArray(catalog.images)
  ) {
    return undefined;
  }
  const digests = new Set<string>();
  for (const image of catalog.images) {
    digests.add(image.target.digest);
    for (const m of image.manifests) {
      for (const d of [m.descriptor, m.config, ...m.layers]) digests.add(d.digest);
    }
  }
  const present = await Promise.all([...digests].map((d) => pathExists(paths.blob(d))));
  return present.every(Boolean) ? catalog.images : undefined;
}

async function writeCatalog(path: string, catalog: Catalog): Promise<void> {
  await atomicWrite(path, Buffer.from(`${JSON.stringify(catalog, null, 2)}\n`), `${path}.${process.pid}.tmp`);
}

/** Makes the cache a valid OCI image layout listing every fixture tag. */
async function writeLayoutIndex(paths: LayoutPaths, images: FixtureImage[]): Promise<void> {
  await atomicWrite(
    paths.ociLayout,
    Buffer.from('{"imageLayoutVersion":"1.0.0"}'),
    `${paths.ociLayout}.${process.pid}.tmp`,
  );
  const index = {
    schemaVersion: 2,
    mediaType: MediaTypes.ociIndex,
    manifests: images.map((i) => ({
      ...i.target,
      annotations: {
        "io.containerd.image.name": `${i.repository}:${i.tag}`,
        "org.opencontainers.image.ref.name": i.tag,
      },
    })),
  };
  await atomicWrite(
    paths.index,
    Buffer.from(`${JSON.stringify(index, null, 2)}\n`),
    `${paths.index}.${process.pid}.tmp`,
  );
}

/** temp file, fsync, rename, fsync the directory. */
async function atomicWrite(target: string, data: Buffer, tmp: string): Promise<void> {
  const fh = await open(tmp, "w", 0o644);
  try {
    await fh.writeFile(data);
    await fh.sync();
  } finally {
    await fh.close();
  }
  await rename(tmp, target);
  const dirHandle = await open(join(target, ".."), "r");
  try {
    await dirHandle.sync();
  } finally {
    await dirHandle.close();
  }
}
