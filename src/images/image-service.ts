import { performance } from "node:perf_hooks";
import { createUnpacker, type Unpacker } from "../archive/index.js";
import type { ContentStore } from "../content/index.js";
import { RuntimeError, wrap } from "../errdefs/index.js";
import { type Logger, silentLogger } from "../log/index.js";
import type { Snapshotter } from "../snapshots/index.js";
import type { Collection, Store } from "../store/index.js";
import { AmbiguousPrefixError, createRefreshingCache, KeyedMutex, resolvePrefix } from "../util/index.js";
import type { RegistryCredentials } from "./auth.js";
import { collectGarbage, type GcLocks, type GcResult, Leases, type References } from "./gc.js";
import type { ImageConfig } from "./manifest.js";
import { hostPlatform, type Platform, parsePlatform } from "./platform.js";
import { abortError, EXTRACT_PREFIX, type LayerProgress, Puller } from "./pull.js";
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
  /** A registry client to use instead of building one (tests). */
  registry?: RegistryClient;
  /** Told of every finished pull, successful or not (metrics); must not throw. */
  onPull?: (event: PullOutcome) => void;
  logger?: Logger;
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
    void this.unpacker.close();
  }

  private references(): References {
    const blobs = new Set<string>();
    const chainIds = new Set<string>();
    for (const r of this.images.list()) {
      for (const b of r.blobs) blobs.add(b);
      for (const c of r.chainIds) chainIds.add(c);
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
