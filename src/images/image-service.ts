import { rm } from "node:fs/promises";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { createUnpacker, type Unpacker } from "../archive/index.js";
import type { ContentStore } from "../content/index.js";
import { RuntimeError, wrap } from "../errdefs/index.js";
import { type Logger, silentLogger } from "../log/index.js";
import type { Snapshotter } from "../snapshots/index.js";
import type { Collection, Store } from "../store/index.js";
import { AmbiguousPrefixError, createRefreshingCache, KeyedMutex, resolvePrefix } from "../util/index.js";
import { ArchiveWorkers, DEFAULT_LOAD_LIMITS, familiarName, spool, stagingFile, streamAndRemove } from "./archive.js";
import type { ArchiveFormat, SaveImage } from "./archive-format.js";
import type { RegistryCredentials } from "./auth.js";
import { collectGarbage, type GcLocks, type GcResult, Leases, type References } from "./gc.js";
import { type ImageConfig, parseImageConfig, parseManifest } from "./manifest.js";
import { formatPlatform, hostPlatform, type Platform, parsePlatform } from "./platform.js";
import { abortError, EXTRACT_PREFIX, type LayerProgress, Puller } from "./pull.js";
import { Pusher, type PushProgress, planPush } from "./push.js";
import { digestReference, parseReference, type Reference, repositoryName, tagReference } from "./reference.js";
import { RegistryClient } from "./registry.js";
import type { TransportTimeouts } from "./transport.js";

/**
 * The image domain the CRI ImageService adapter calls: pull, status, list, remove, fsInfo,
 * plus what the container layer needs (an image's rootfs chain ID and config).
 *
 * State: one record per image (keyed by its ID, `sha256:<config digest>`) in the store's
 * "images" collection; blobs in the content store; layers as committed snapshots named by chain
 * ID. All three are on disk, so images and their tags survive a restart. A record is written
 * only after every blob and snapshot it names exists; removal deletes the record first and
 * then garbage-collects whatever no record references.
 *
 * Tags and digests: a pull by tag records `repo:tag` in repoTags (moving it off any other
 * image) and `repo@<resolved digest>` in repoDigests (the index's digest for multi-platform
 * images, as containerd records it). A pull by digest, or by tag+digest (the digest wins),
 * records only the repo digest.
 *
 * Removal (as the issue specifies): by ID, the image and all its references go; by tag or repo
 * digest, only that reference goes while the image still has another tag, otherwise the whole
 * image. Removing an absent image is not an error.
 */

/** An image as recorded. */
export interface ImageRecord {
  /** `sha256:<config digest>`. */
  id: string;
  /** Normalised `domain/path:tag` references. */
  repoTags: string[];
  /** Normalised `domain/path@sha256:...` references. */
  repoDigests: string[];
  /** Compressed layer sizes plus the config size, in bytes. */
  size: number;
  config: ImageConfig;
  /** Chain IDs of the layers, base first; the last one is the rootfs parent of containers. */
  chainIds: string[];
  /** The platform manifest the image was unpacked from. */
  manifestDigest: string;
  /** Every blob the image needs (indexes, manifests, config, layers): what GC keeps. */
  blobs: string[];
  /** Pinned images are exempt from kubelet image GC (berth pins none yet). */
  pinned: boolean;
  /** Milliseconds since the epoch of the first pull. */
  createdAt: number;
}

/** Usage of the image filesystem (content store plus snapshots). */
export interface ImageFsInfo {
  /** When measured, nanoseconds since the epoch. */
  timestamp: bigint;
  mountpoint: string;
  usedBytes: number;
  inodesUsed: number;
}

/** Options of one push through the service. */
export interface ImagePushOptions {
  auth?: RegistryCredentials;
  signal?: AbortSignal;
  onProgress?: (event: PushProgress) => void;
}

/** Options of one pull through the service. */
export interface ImagePullOptions {
  auth?: RegistryCredentials;
  signal?: AbortSignal;
  onProgress?: (event: LayerProgress) => void;
}

/** One finished pull as {@link ImageServiceOptions.onPull} sees it. */
export interface PullOutcome {
  /** The registry host (and port) of the reference. */
  registry: string;
  /** Layer bytes downloaded (layers already in the content store cost none). */
  bytes: number;
  seconds: number;
  ok: boolean;
}

/** Dependencies and settings of {@link createImageService}. */
export interface ImageServiceOptions {
  store: Store;
  content: ContentStore;
  snapshotter: Snapshotter;
  /** Layer application: worker threads, limits (`[unpack]` in the config). */
  unpack?: {
    /** Layers applied at once (default: the CPU count, at most 4). */
    maxWorkers?: number;
    /** An idle unpack worker exits after this long (default 2 s). */
    idleMs?: number;
    /** Most uncompressed bytes of one layer. */
    maxLayerBytes?: number;
    /** Most tar entries of one layer. */
    maxLayerEntries?: number;
  };
  /** Directory reported as the image filesystem's mountpoint (the daemon root). */
  mountpoint: string;
  /** `registry.config_path` (hosts.toml roots separated by ":"); empty = no host configuration. */
  configPath?: string;
  /** Platform to pull, `os/arch[/variant]` or a Platform; default: this host. */
  platform?: string | Platform;
  /** Layers of one image downloaded at once (default 3). */
  maxConcurrentDownloads?: number;
  /** A layer download that receives nothing for this long fails with DeadlineExceeded (default 5 minutes). */
  stallTimeoutMs?: number;
  /** Deadlines of registry requests (`registry.request_timeout_seconds`, `idle_timeout_seconds`). */
  registryTimeouts?: TransportTimeouts;
  /** `berth push` uploads blobs larger than this in chunks of this size; 0 = one request (default 64 MiB). */
  pushChunkBytes?: number;
  /** A registry client to use instead of building one (tests). */
  registry?: RegistryClient;
  /** Blobs and chain IDs other modules keep alive (the build cache): GC leaves them. */
  extraReferences?: () => { blobs: Iterable<string>; chainIds: Iterable<string> };
  /** Told of every finished pull, successful or not (metrics); must not throw. */
  onPull?: (event: PullOutcome) => void;
  logger?: Logger;
}

/** An image made on this node (berth build): its blobs and snapshots are already stored. */
export interface LocalImage {
  id: string;
  config: ImageConfig;
  chainIds: string[];
  manifestDigest: string;
  blobs: string[];
  size: number;
  /** References to tag it with (each moved off any other image). */
  tags: string[];
}

const COLLECTION = "images";

/**
 * Opens the image service: cleans what an interrupted unpack left behind and collects
 * garbage once (a crash between removing a record and collecting leaves unreferenced blobs).
 */
export async function createImageService(options: ImageServiceOptions): Promise<ImageService> {
  const service = new ImageService(options);
  const log = options.logger ?? silentLogger();
  for (const s of await options.snapshotter.list()) {
    if (s.kind === "active" && s.key.startsWith(EXTRACT_PREFIX)) {
      await options.snapshotter
        .remove(s.key)
        .catch((err: unknown) => log.warn({ err, snapshot: s.key }, "remove stale extraction snapshot"));
    }
  }
  await service.collectGarbage();
  return service;
}

/** See the module comment. Construct with {@link createImageService}; `close()` cancels pulls in flight. */
export class ImageService {
  private readonly images: Collection<ImageRecord>;
  private readonly registry: RegistryClient;
  private readonly ownsRegistry: boolean;
  private readonly puller: Puller;
  private readonly pusher: Pusher;
  private readonly archives = new ArchiveWorkers();
  private readonly platform: Platform;
  private readonly unpacker: Unpacker;
  private readonly leases = new Leases();
  private readonly locks: GcLocks = { blobs: new KeyedMutex(), chains: new KeyedMutex() };
  /** Per image ID: a pull's record write and a removal of the same image never interleave. */
  private readonly imageLocks = new KeyedMutex();
  private readonly gcLock = new KeyedMutex();
  private readonly closing = new AbortController();
  private readonly log: Logger;
  /**
   * ImageFsInfo's figures, answered from memory: snapshot usage may walk container writable layers (in a
   * worker), so it is recomputed on a period and when stale, and dropped when a pull or a collection
   * changes what is stored.
   */
  private readonly usage = createRefreshingCache<"all", { bytes: number; inodes: number; at: number }>({
    periodMs: 30_000,
    staleMs: 5_000,
    compute: async () => {
      const [c, s] = await Promise.all([this.o.content.usage(), this.o.snapshotter.usage()]);
      return { bytes: c.bytes + s.bytes, inodes: c.inodes + s.inodes, at: Date.now() };
    },
    onError: (_key, err) => this.log.warn({ err }, "measure image filesystem usage"),
  });

  constructor(private readonly o: ImageServiceOptions) {
    this.log = o.logger ?? silentLogger();
    this.images = o.store.collection<ImageRecord>(COLLECTION);
    this.ownsRegistry = o.registry === undefined;
    this.registry =
      o.registry ?? new RegistryClient({ configPath: o.configPath ?? "", logger: this.log, ...o.registryTimeouts });
    const platform =
      o.platform === undefined || o.platform === ""
        ? hostPlatform()
        : typeof o.platform === "string"
          ? parsePlatform(o.platform)
          : o.platform;
    this.platform = platform;
    const u = o.unpack ?? {};
    this.unpacker = createUnpacker({
      ...(u.maxWorkers !== undefined ? { maxWorkers: u.maxWorkers } : {}),
      ...(u.idleMs !== undefined ? { idleMs: u.idleMs } : {}),
    });
    this.puller = new Puller({
      content: o.content,
      snapshotter: o.snapshotter,
      registry: this.registry,
      unpacker: this.unpacker,
      limits: {
        ...(u.maxLayerBytes !== undefined ? { maxBytes: u.maxLayerBytes } : {}),
        ...(u.maxLayerEntries !== undefined ? { maxEntries: u.maxLayerEntries } : {}),
      },
      locks: this.locks,
      log: this.log,
      platform,
      ...(o.maxConcurrentDownloads !== undefined ? { maxConcurrentDownloads: o.maxConcurrentDownloads } : {}),
      ...(o.stallTimeoutMs !== undefined ? { stallTimeoutMs: o.stallTimeoutMs } : {}),
    });
    this.pusher = new Pusher({
      content: o.content,
      registry: this.registry,
      log: this.log,
      chunkBytes: o.pushChunkBytes ?? 64 * 1024 * 1024,
    });
  }

  /**
   * Pushes the local image named `name` to the repository and tag that name points at, then
   * records the pushed digest among the image's repo digests (so a later push elsewhere on that
   * registry can mount its blobs). Resolves to the digest the registry stored. Throws NotFound
   * when no local image has that name, InvalidArgument for a digest reference.
   */
  async push(name: string, options: ImagePushOptions = {}): Promise<string> {
    const ref = parseReference(name);
    if (ref.digest !== undefined)
      throw new RuntimeError("InvalidArgument", `push ${name}: give a tag, not a digest, to push to`);
    const found = this.find(name);
    if (found === undefined) throw new RuntimeError("NotFound", `image ${name}: tag an image with this name first`);
    const signal = options.signal ? AbortSignal.any([options.signal, this.closing.signal]) : this.closing.signal;
    const lease = this.leases.create();
    try {
      const record = await this.imageLocks.run(found.record.id, async () => {
        const r = this.get(found.record.id);
        lease.add(...r.blobs);
        return r;
      });
      const plan = await planPush(this.o.content, record.blobs[0] ?? record.manifestDigest, record.manifestDigest);
      const digest = await this.pusher.push(ref, plan, {
        signal,
        mountSources: (blob) => this.repositoriesHolding(ref.domain, blob),
        ...(options.auth ? { credentials: options.auth } : {}),
        ...(options.onProgress ? { onProgress: options.onProgress } : {}),
      });
      await this.imageLocks.run(record.id, async () => {
        const current = this.images.get(record.id);
        if (current === undefined) return;
        this.images.put(record.id, {
          ...current,
          repoDigests: union(current.repoDigests, [digestReference(ref, digest)]),
        });
      });
      this.log.info({ image: record.id, ref: name, digest }, "image pushed");
      return digest;
    } finally {
      lease.release();
    }
  }

  /** Repositories (paths) on `domain` that hold blob `digest`, as far as the local records know. */
  private repositoriesHolding(domain: string, digest: string): string[] {
    const out = new Set<string>();
    for (const r of this.images.list()) {
      if (!r.blobs.includes(digest)) continue;
      for (const name of [...r.repoDigests, ...r.repoTags]) {
        try {
          const ref = parseReference(name);
          if (ref.domain === domain) out.add(ref.path);
        } catch {
          // A record name that no longer parses cannot say where a blob is.
        }
      }
    }
    return [...out];
  }

  /**
   * Gives image `source` (a name, ID or ID prefix) the name `target`, moving that name off any
   * other image. Throws NotFound for an unknown source, InvalidArgument for a bad or digest target.
   */
  async tag(source: string, target: string): Promise<{ id: string; target: string }> {
    const ref = parseReference(target);
    const tag = tagReference(ref);
    if (ref.digest !== undefined || tag === undefined)
      throw new RuntimeError("InvalidArgument", `tag ${target}: a tag cannot carry a digest`);
    const found = this.find(source);
    if (found === undefined) throw new RuntimeError("NotFound", `image ${source}`);
    return this.imageLocks.run(found.record.id, async () => {
      const record = this.get(found.record.id);
      this.o.store.transaction(() => {
        for (const other of this.images.list()) {
          if (other.id !== record.id && other.repoTags.includes(tag))
            this.images.put(other.id, { ...other, repoTags: other.repoTags.filter((t) => t !== tag) });
        }
        this.images.put(record.id, { ...record, repoTags: union(record.repoTags, [tag]) });
      });
      this.log.info({ image: record.id, tag }, "image tagged");
      return { id: record.id, target: tag };
    });
  }

  /**
   * An archive of images `names` (names, IDs or ID prefixes), written by a worker thread and then
   * streamed: docker-archive (`docker load`), or an OCI image layout with format "oci". A name
   * puts that name in the archive; an ID puts all of the image's names. Each image's platform
   * manifest is saved. Throws NotFound for an unknown image.
   */
  async save(
    names: string[],
    format: ArchiveFormat,
    options: { signal?: AbortSignal } = {},
  ): Promise<AsyncIterable<Uint8Array>> {
    if (names.length === 0) throw new RuntimeError("InvalidArgument", "save: name at least one image");
    const lease = this.leases.create();
    const { dir, path } = await stagingFile(this.o.content, "archive.tar");
    try {
      const byId = new Map<string, SaveImage>();
      for (const name of names) {
        const found = this.find(name);
        if (found === undefined) throw new RuntimeError("NotFound", `image ${name}`);
        const record = found.record;
        lease.add(...record.blobs);
        let image = byId.get(record.id);
        if (image === undefined) {
          image = await this.saveImage(record);
          byId.set(record.id, image);
        }
        const tags = found.by.kind === "tag" ? [found.by.value] : found.by.kind === "id" ? record.repoTags : [];
        for (const full of tags) {
          if (image.names.some((n) => n.full === full)) continue;
          const tag = full.slice(full.lastIndexOf(":") + 1);
          image.names.push({ full, familiar: familiarName(full), tag });
        }
      }
      await this.archives.save({ out: path, format, images: [...byId.values()] }, options.signal);
    } catch (err) {
      await rm(dir, { recursive: true, force: true });
      throw err;
    } finally {
      lease.release();
    }
    // The file is complete: blobs may be collected now, the stream reads only the archive.
    return streamAndRemove(path, dir);
  }

  private async saveImage(record: ImageRecord): Promise<SaveImage> {
    const { content } = this.o;
    const blob = async (digest: string, mediaType: string) => {
      const info = await content.info(digest);
      if (info === undefined) throw new RuntimeError("NotFound", `image ${record.id}: blob ${digest} is missing`);
      return { digest, mediaType, size: info.size, path: content.blobPath(digest) };
    };
    const manifestBytes = await content.readBlob(record.manifestDigest);
    const doc = parseManifest(manifestBytes, undefined);
    if (doc.kind !== "manifest") throw new RuntimeError("Internal", `image ${record.id}: its manifest is an index`);
    return {
      names: [],
      manifest: await blob(record.manifestDigest, doc.mediaType),
      config: await blob(doc.config.digest, doc.config.mediaType),
      layers: await Promise.all(doc.layers.map((l) => blob(l.digest, l.mediaType))),
      diffIds: record.config.rootfs.diff_ids,
    };
  }

  /**
   * Reads an image archive (docker-archive or OCI layout, as `source` streams it), verifies every
   * blob against its digest on a worker thread, unpacks the layers and records the images with
   * their names. Resolves to the names recorded (an image without a name by its ID). A bad
   * archive fails with InvalidArgument (ResourceExhausted when too large) and stores nothing:
   * blobs are imported only once all are verified, images recorded only once all are unpacked,
   * and anything imported by a load that then fails is garbage-collected.
   */
  async load(source: AsyncIterable<Uint8Array>, options: { signal?: AbortSignal } = {}): Promise<string[]> {
    const signal = options.signal ? AbortSignal.any([options.signal, this.closing.signal]) : this.closing.signal;
    const { dir, path } = await stagingFile(this.o.content, "archive.tar");
    const lease = this.leases.create();
    let imported = false;
    try {
      await spool(source, path, DEFAULT_LOAD_LIMITS.maxArchiveBytes, signal);
      const result = await this.archives.load(
        { archive: path, staging: dir, limits: DEFAULT_LOAD_LIMITS, platform: formatPlatform(this.platform) },
        signal,
      );
      // Names are checked before anything is stored.
      const named = result.images.map((image) => ({
        image,
        refs: image.names.flatMap((n) => {
          // An OCI ref.name may be a bare tag, which names no repository.
          if (result.format === "oci" && !/[/:]/.test(n)) return [];
          try {
            const ref = parseReference(n);
            return tagReference(ref) !== undefined && ref.digest === undefined ? [ref] : [];
          } catch {
            throw new RuntimeError(
              "InvalidArgument",
              `archive: image name ${JSON.stringify(n.slice(0, 200))} is invalid`,
            );
          }
        }),
      }));
      imported = true;
      for (const b of result.blobs) {
        lease.add(b.digest);
        await this.o.content.importFile(join(dir, b.digest.slice("sha256:".length)), b);
      }
      const fresh: ImageRecord[] = [];
      for (const { image } of named) {
        const config = parseImageConfig(await this.o.content.readBlob(image.config.digest));
        const chains = await this.puller.unpackStored(image.layers, image.diffIds, lease, { signal });
        fresh.push({
          id: image.config.digest,
          repoTags: [],
          repoDigests: [],
          size: image.layers.reduce((n, l) => n + l.size, image.config.size),
          config,
          chainIds: chains,
          manifestDigest: image.manifest.digest,
          blobs: [image.manifest.digest, image.config.digest, ...image.layers.map((l) => l.digest)],
          pinned: false,
          createdAt: Date.now(),
        });
      }
      const out: string[] = [];
      this.o.store.transaction(() => {
        for (const [i, { refs }] of named.entries()) {
          const record = fresh[i] as ImageRecord;
          const tags = refs.map((r) => tagReference(r) as string);
          for (const other of this.images.list()) {
            const kept = other.repoTags.filter((t) => !tags.includes(t));
            if (other.id !== record.id && kept.length !== other.repoTags.length)
              this.images.put(other.id, { ...other, repoTags: kept });
          }
          const old = this.images.get(record.id);
          const merged: ImageRecord = old
            ? { ...old, blobs: union(old.blobs, record.blobs), repoTags: union(old.repoTags, tags) }
            : { ...record, repoTags: tags };
          this.images.put(record.id, merged);
          out.push(...(tags.length > 0 ? tags : [record.id]));
        }
      });
      this.usage.delete("all");
      this.log.info({ format: result.format, images: out }, "images loaded");
      return out;
    } catch (err) {
      lease.release();
      if (imported)
        await this.collectGarbage().catch((e: unknown) => this.log.warn({ err: e }, "collect after failed load"));
      if (signal.aborted && !(err instanceof RuntimeError)) throw abortError(signal, "load");
      throw err;
    } finally {
      lease.release();
      await rm(dir, { recursive: true, force: true });
    }
  }

  /**
   * Checks credentials against `registry`'s authentication (its push host from hosts.toml, with
   * its TLS settings), as `docker login` does. Throws Unauthenticated when they are refused.
   */
  async checkLogin(registry: string, auth: RegistryCredentials, options: { signal?: AbortSignal } = {}): Promise<void> {
    let ref: Reference;
    try {
      ref = parseReference(`${registry}/login-check`);
    } catch {
      throw new RuntimeError("InvalidArgument", `login: ${JSON.stringify(registry)} is not a registry host[:port]`);
    }
    if (registry.includes("/") || ref.domain !== registry.replace(/^index\.docker\.io$/, "docker.io"))
      throw new RuntimeError("InvalidArgument", `login: ${JSON.stringify(registry)} is not a registry host[:port]`);
    const signal = options.signal ? AbortSignal.any([options.signal, this.closing.signal]) : this.closing.signal;
    await this.registry.checkLogin(ref, auth, { signal });
  }

  /**
   * Pulls `ref` and records it; resolves to the image record (its `id` is what PullImage
   * returns). Throws InvalidArgument for a bad reference, Unauthenticated when the registry
   * refuses, NotFound when nothing matches, Canceled when `signal` aborts.
   */
  async pull(ref: string, options: ImagePullOptions = {}): Promise<ImageRecord> {
    const parsed = parseReference(ref);
    const onPull = this.o.onPull;
    if (!onPull) return this.pullParsed(ref, parsed, options);
    const started = performance.now();
    // Bytes that arrived, per layer: the largest `done` of a layer while it downloaded (a layer found
    // in the content store goes straight to its size without downloading, and counts nothing).
    const downloaded = new Map<string, number>();
    const onProgress = (e: LayerProgress) => {
      if (e.state === "downloading" || e.state === "verifying")
        downloaded.set(e.digest, Math.max(downloaded.get(e.digest) ?? 0, e.done));
      options.onProgress?.(e);
    };
    let ok = false;
    try {
      const record = await this.pullParsed(ref, parsed, { ...options, onProgress });
      ok = true;
      return record;
    } finally {
      const bytes = [...downloaded.values()].reduce((a, b) => a + b, 0);
      const seconds = (performance.now() - started) / 1000;
      try {
        onPull({ registry: parsed.domain, bytes, seconds, ok });
      } catch (err) {
        this.log.warn({ err }, "pull observer failed");
      }
    }
  }

  private async pullParsed(ref: string, parsed: Reference, options: ImagePullOptions): Promise<ImageRecord> {
    const signal = options.signal ? AbortSignal.any([options.signal, this.closing.signal]) : this.closing.signal;
    const lease = this.leases.create();
    try {
      const pulled = await this.puller.pull(parsed, lease, {
        signal,
        ...(options.auth ? { credentials: options.auth } : {}),
        ...(options.onProgress ? { onProgress: options.onProgress } : {}),
      });
      return await this.imageLocks.run(pulled.id, async () => {
        if (signal.aborted) throw abortError(signal, `pull ${ref}`);
        const record = this.o.store.transaction(() =>
          this.record(pulled.reference, pulled.targetDigest, {
            id: pulled.id,
            repoTags: [],
            repoDigests: [],
            size: pulled.size,
            config: pulled.config,
            chainIds: pulled.chainIds,
            manifestDigest: pulled.manifestDigest,
            blobs: pulled.blobs,
            pinned: false,
            createdAt: Date.now(),
          }),
        );
        this.usage.delete("all");
        this.log.info({ image: record.id, ref: ref }, "image pulled");
        return record;
      });
    } finally {
      lease.release();
    }
  }

  /**
   * Records an image made on this node under `tags` (normalised like pull references; InvalidArgument
   * for a bad one). Every blob and chain ID it names must already be stored.
   */
  async addLocal(image: LocalImage): Promise<ImageRecord> {
    const refs = image.tags.map((t) => parseReference(t));
    return this.imageLocks.run(image.id, async () => {
      const record = this.o.store.transaction(() => {
        let r: ImageRecord = {
          id: image.id,
          repoTags: [],
          repoDigests: [],
          size: image.size,
          config: image.config,
          chainIds: image.chainIds,
          manifestDigest: image.manifestDigest,
          blobs: image.blobs,
          pinned: false,
          createdAt: Date.now(),
        };
        const old = this.images.get(image.id);
        if (old) r = { ...old, blobs: union(old.blobs, image.blobs) };
        this.images.put(r.id, r);
        for (const ref of refs) {
          const tag = tagReference(ref);
          if (tag === undefined) continue;
          for (const other of this.images.list()) {
            if (other.id !== r.id && other.repoTags.includes(tag))
              this.images.put(other.id, { ...other, repoTags: other.repoTags.filter((t) => t !== tag) });
          }
          r = { ...r, repoTags: union(r.repoTags, [tag]) };
        }
        this.images.put(r.id, r);
        return r;
      });
      this.usage.delete("all");
      this.log.info({ image: record.id, tags: record.repoTags }, "image built");
      return record;
    });
  }

  /** Writes the pulled image's record, merging with an existing one and moving the tag. Synchronous (one transaction). */
  private record(ref: Reference, targetDigest: string, fresh: ImageRecord): ImageRecord {
    const tag = tagReference(ref);
    const digestRef = digestReference(ref, targetDigest);
    if (tag !== undefined) {
      for (const other of this.images.list()) {
        if (other.id !== fresh.id && other.repoTags.includes(tag)) {
          this.images.put(other.id, { ...other, repoTags: other.repoTags.filter((t) => t !== tag) });
        }
      }
    }
    const old = this.images.get(fresh.id);
    const record: ImageRecord = old
      ? {
          ...old,
          size: fresh.size,
          config: fresh.config,
          chainIds: fresh.chainIds,
          manifestDigest: fresh.manifestDigest,
          blobs: union(old.blobs, fresh.blobs),
        }
      : fresh;
    if (tag !== undefined) record.repoTags = union(record.repoTags, [tag]);
    record.repoDigests = union(record.repoDigests, [digestRef]);
    this.images.put(record.id, record);
    return record;
  }

  /**
   * The image `refOrId` names, or undefined: a full ID (`sha256:<hex>`), a reference (normalised
   * like a pull: `busybox` finds `docker.io/library/busybox:latest`; `repo@digest` matches a repo
   * digest), or a unique ID prefix (with or without `sha256:`). Throws InvalidArgument for an
   * ambiguous prefix.
   */
  status(refOrId: string): ImageRecord | undefined {
    return this.find(refOrId)?.record;
  }

  /** All images, or the one `filter` names (as in {@link status}), sorted by ID. */
  list(filter?: string): ImageRecord[] {
    if (filter !== undefined && filter !== "") {
      const r = this.status(filter);
      return r ? [r] : [];
    }
    return this.images.list();
  }

  /**
   * Removes an image or one of its references (see the module comment), then collects garbage.
   * An absent image is not an error.
   */
  async remove(refOrId: string): Promise<void> {
    const found = this.find(refOrId);
    if (found === undefined) return;
    await this.imageLocks.run(found.record.id, async () => {
      const current = this.images.get(found.record.id);
      if (current === undefined) return;
      const by = found.by;
      const others = by.kind === "tag" ? current.repoTags.filter((t) => t !== by.value) : current.repoTags;
      if (by.kind !== "id" && others.length > 0) {
        this.images.put(current.id, {
          ...current,
          repoTags: others,
          repoDigests: by.kind === "digest" ? current.repoDigests.filter((d) => d !== by.value) : current.repoDigests,
        });
        this.log.info({ image: current.id, ref: by.value }, "image reference removed");
        return;
      }
      this.images.delete(current.id);
      this.log.info({ image: current.id }, "image removed");
    });
    await this.collectGarbage();
  }

  /** Bytes and inodes used by image blobs and layer snapshots. */
  async fsInfo(): Promise<ImageFsInfo> {
    const u = await this.usage.get("all");
    return {
      // When the figures were measured, as CRI asks, not when they were served.
      timestamp: BigInt(u.at) * 1_000_000n,
      mountpoint: this.o.mountpoint,
      usedBytes: u.bytes,
      inodesUsed: u.inodes,
    };
  }

  /** The chain ID containers of `imageId` use as their snapshot parent (undefined for an image without layers). Throws NotFound. */
  rootfsChainId(imageId: string): string | undefined {
    return this.get(imageId).chainIds.at(-1);
  }

  /** The OCI config of image `imageId`. Throws NotFound. */
  imageConfig(imageId: string): ImageConfig {
    return this.get(imageId).config;
  }

  /**
   * Runs `fn` with image `refOrId`'s layer snapshots protected from garbage collection, so a
   * container can prepare its snapshot on them without racing a removal. Throws NotFound.
   */
  async withImage<T>(refOrId: string, fn: (image: ImageRecord) => Promise<T>): Promise<T> {
    const lease = this.leases.create();
    try {
      const record = this.imageLocks.run(this.get(refOrId).id, async () => {
        const r = this.get(refOrId);
        lease.add(...r.chainIds, ...r.blobs);
        return r;
      });
      return await fn(await record);
    } finally {
      lease.release();
    }
  }

  /**
   * Deletes blobs and committed layer snapshots no image references (never a snapshot with
   * children, so running containers keep their layers). Runs one collection at a time.
   */
  collectGarbage(): Promise<GcResult> {
    return this.gcLock.run("gc", async () => {
      const result = await collectGarbage({
        content: this.o.content,
        snapshotter: this.o.snapshotter,
        references: () => this.references(),
        leases: this.leases,
        locks: this.locks,
        log: this.log,
      });
      if (result.blobs.length + result.snapshots.length > 0) {
        this.usage.delete("all");
        this.log.info({ blobs: result.blobs.length, snapshots: result.snapshots.length }, "image garbage collected");
      }
      return result;
    });
  }

  /** Cancels pulls in flight and closes registry connections. The stores are the caller's. */
  close(): void {
    this.closing.abort(new RuntimeError("Canceled", "image service closing"));
    this.usage.close();
    if (this.ownsRegistry) this.registry.close();
    void this.archives.close();
    void this.unpacker.close();
  }

  private references(): References {
    const blobs = new Set<string>();
    const chainIds = new Set<string>();
    for (const r of this.images.list()) {
      for (const b of r.blobs) blobs.add(b);
      for (const c of r.chainIds) chainIds.add(c);
    }
    const extra = this.o.extraReferences?.();
    if (extra) {
      for (const b of extra.blobs) blobs.add(b);
      for (const c of extra.chainIds) chainIds.add(c);
    }
    return { blobs, chainIds };
  }

  private get(refOrId: string): ImageRecord {
    const r = this.status(refOrId);
    if (r === undefined) throw new RuntimeError("NotFound", `image ${refOrId}`);
    return r;
  }

  /** Finds an image and how it was named (ID, tag or repo digest), containerd's LocalResolve order. */
  private find(
    refOrId: string,
  ): { record: ImageRecord; by: { kind: "id" | "tag" | "digest"; value: string } } | undefined {
    if (/^sha256:[a-f0-9]{64}$/.test(refOrId)) {
      const record = this.images.get(refOrId);
      return record ? { record, by: { kind: "id", value: refOrId } } : undefined;
    }
    let ref: Reference | undefined;
    try {
      ref = parseReference(refOrId);
    } catch {
      ref = undefined;
    }
    if (ref !== undefined) {
      const tag = tagReference(ref);
      const digest = ref.digest !== undefined ? digestReference(ref, ref.digest) : undefined;
      for (const record of this.images.list()) {
        if (digest !== undefined && record.repoDigests.includes(digest))
          return { record, by: { kind: "digest", value: digest } };
        if (tag !== undefined && record.repoTags.includes(tag)) return { record, by: { kind: "tag", value: tag } };
      }
      // A digest reference may name the platform manifest under an index: match it by repository.
      if (ref.digest !== undefined) {
        const repo = repositoryName(ref);
        for (const record of this.images.list()) {
          if (record.manifestDigest === ref.digest && record.repoDigests.some((d) => d.startsWith(`${repo}@`))) {
            return { record, by: { kind: "digest", value: digestReference(ref, ref.digest) } };
          }
        }
      }
    }
    const hex = refOrId.startsWith("sha256:") ? refOrId.slice(7) : refOrId;
    if (!/^[a-f0-9]+$/.test(hex)) return undefined;
    let id: string | undefined;
    try {
      id = resolvePrefix(`sha256:${hex}`, this.images.ids());
    } catch (err) {
      if (err instanceof AmbiguousPrefixError)
        throw new RuntimeError("InvalidArgument", `image id prefix ${refOrId} matches more than one image`);
      throw wrap(err, `image ${refOrId}`);
    }
    const record = id !== undefined ? this.images.get(id) : undefined;
    return record ? { record, by: { kind: "id", value: record.id } } : undefined;
  }
}

function union(a: readonly string[], b: readonly string[]): string[] {
  return [...new Set([...a, ...b])];
}
