import { createHash, randomBytes } from "node:crypto";
import { type ApplyResult, LayerFeed, type LayerSource, type Unpacker } from "../archive/index.js";
import type { ContentStore } from "../content/index.js";
import { RuntimeError } from "../errdefs/index.js";
import type { Logger } from "../log/index.js";
import { layerDirsOf, type Snapshotter } from "../snapshots/index.js";
import { signalOption, untilAborted } from "../util/index.js";
import type { RegistryCredentials } from "./auth.js";
import type { GcLocks, Lease } from "./gc.js";
import {
  type Descriptor,
  type ImageConfig,
  type ImageIndex,
  type ImageManifest,
  layerCompression,
  MAX_CONFIG_SIZE,
  MediaType,
  parseImageConfig,
  parseManifest,
} from "./manifest.js";
import { formatPlatform, type Platform, selectPlatform } from "./platform.js";
import { formatReference, type Reference } from "./reference.js";
import type { RegistryClient, Repository } from "./registry.js";

/**
 * Pulling one image: resolve → manifest (through an index, choosing the platform) → config →
 * layers downloaded in parallel into the content store, each unpacked on a worker thread while
 * it downloads, into its own snapshot → snapshots committed in chain order, once per chain ID.
 *
 * Guarantees:
 * - every manifest, config and layer is verified against its digest and size before it is
 *   visible (manifests here, blobs by the content store's ingest), and every applied layer
 *   against the config's diff ID before its snapshot is committed;
 * - a blob is downloaded once however many pulls want it at the same time (one shared download
 *   per digest, cancelled only when every pull waiting for it has gone);
 * - a committed chain ID is reused, never unpacked again (two pulls racing for the same new
 *   layer both unpack it; the first commit wins, the other's snapshot is removed);
 * - a failed or cancelled unpack leaves no snapshot behind (its temporary active snapshot is
 *   removed), and cancelling stops downloads and unpacking promptly.
 */

/** Where a layer is: `waiting` for a download slot (done = 0) or for its turn to be extracted (done = total). */
export type LayerState = "waiting" | "downloading" | "verifying" | "extracting" | "done";

/** One progress event of one layer. */
export interface LayerProgress {
  digest: string;
  /** Compressed size in bytes. */
  total: number;
  /** Bytes downloaded so far. */
  done: number;
  state: LayerState;
}

/** What a pull produced, ready to be recorded. */
export interface PulledImage {
  /** `sha256:<config digest>`. */
  id: string;
  reference: Reference;
  /** The digest the reference resolved to: an index's, or the manifest's when there is no index. */
  targetDigest: string;
  manifestDigest: string;
  config: ImageConfig;
  layers: Descriptor[];
  chainIds: string[];
  /** Every blob of the image: indexes, manifest, config, layers. */
  blobs: string[];
  /** Compressed layer sizes plus the config's size (what containerd's CRI reports). */
  size: number;
}

/** Options of one pull. */
export interface PullOptions {
  credentials?: RegistryCredentials;
  signal?: AbortSignal;
  onProgress?: (event: LayerProgress) => void;
}

/** Dependencies and settings of a {@link Puller}. */
export interface PullerOptions {
  content: ContentStore;
  snapshotter: Snapshotter;
  registry: RegistryClient;
  /** Runs layer application off the event loop. */
  unpacker: Unpacker;
  /** Limits of one layer (`unpack.max_layer_bytes`, `unpack.max_layer_entries`). */
  limits?: { maxBytes?: number; maxEntries?: number };
  /** Flush each unpacked layer's filesystem before commit, so it survives power loss (default true). */
  syncFs?: boolean;
  locks: GcLocks;
  log: Logger;
  platform: Platform;
  /** Layers of one image downloaded at once (default 3). */
  maxConcurrentDownloads?: number;
  /** A download that receives nothing for this long fails (default 5 minutes). */
  stallTimeoutMs?: number;
}

/** A download shared by every pull that wants the same blob. */
interface SharedDownload {
  promise: Promise<void>;
  controller: AbortController;
  waiters: number;
  listeners: Set<(bytes: number) => void>;
  /** The growing ingest file, once the download writes one; undefined when it ends without. */
  feed: Promise<LayerFeed | undefined>;
}

/** Temporary active snapshots of unpacking; any left at start-up are debris of a crash. */
export const EXTRACT_PREFIX = "extract-";

/** The chain IDs of a layer stack: chain[0] = diff[0], chain[i] = sha256(chain[i-1] + " " + diff[i]). */
export function chainIds(diffIds: readonly string[]): string[] {
  const out: string[] = [];
  for (const d of diffIds) {
    const prev = out[out.length - 1];
    out.push(prev === undefined ? d : `sha256:${createHash("sha256").update(`${prev} ${d}`).digest("hex")}`);
  }
  return out;
}

/** Pulls images; holds the state shared between concurrent pulls (in-flight downloads). */
export class Puller {
  private readonly downloads = new Map<string, SharedDownload>();
  private readonly limit: number;
  private readonly stallMs: number;

  constructor(private readonly o: PullerOptions) {
    this.limit = Math.max(1, o.maxConcurrentDownloads ?? 3);
    this.stallMs = o.stallTimeoutMs ?? 5 * 60_000;
  }

  /**
   * Pulls `ref`, adding every digest and chain ID to `lease` before using it so that garbage
   * collection leaves them alone until the caller has recorded the image and released the lease.
   */
  async pull(ref: Reference, lease: Lease, options: PullOptions = {}): Promise<PulledImage> {
    const { signal } = options;
    const name = formatReference(ref);
    try {
      signal?.throwIfAborted();
      const repo = await this.o.registry.repository(
        ref,
        options.credentials ? { credentials: options.credentials } : {},
      );
      const resolved = await repo.resolve(signalOption(signal));
      lease.add(resolved.descriptor.digest);
      let doc = await this.manifest(repo, resolved.descriptor, resolved.bytes, signal);
      const blobs = [resolved.descriptor.digest];
      let manifestDigest = resolved.descriptor.digest;
      for (let depth = 0; doc.kind === "index"; depth++) {
        if (depth >= 4) throw new RuntimeError("InvalidArgument", "indexes nested too deeply");
        const candidates = doc.manifests.filter((m) => MANIFEST_TYPES.has(m.mediaType));
        const child = selectPlatform(candidates, this.o.platform);
        if (child === undefined) {
          const offered = candidates.map((m) => (m.platform ? formatPlatform(m.platform) : "unknown")).join(", ");
          throw new RuntimeError(
            "NotFound",
            `no matching manifest for ${formatPlatform(this.o.platform)} in the index (offers ${offered || "nothing"})`,
          );
        }
        lease.add(child.digest);
        doc = await this.manifest(repo, child, undefined, signal);
        blobs.push(child.digest);
        manifestDigest = child.digest;
      }
      const manifest: ImageManifest = doc;
      for (const l of manifest.layers) layerCompression(l.mediaType);
      if (manifest.config.size > MAX_CONFIG_SIZE) {
        throw new RuntimeError(
          "InvalidArgument",
          `config ${manifest.config.digest}: size ${manifest.config.size} exceeds the limit`,
        );
      }

      lease.add(manifest.config.digest);
      await this.ensureBlob(repo, manifest.config, { signal, onBytes: () => {} }).catch((err: unknown) => {
        throw contextOf(err, "download config");
      });
      const config = parseImageConfig(await this.o.content.readBlob(manifest.config.digest));
      const diffIds = config.rootfs.diff_ids;
      if (diffIds.length !== manifest.layers.length) {
        throw new RuntimeError(
          "InvalidArgument",
          `config ${manifest.config.digest} lists ${diffIds.length} diff ids for ${manifest.layers.length} layers`,
        );
      }
      const chains = chainIds(diffIds);
      lease.add(...manifest.layers.map((l) => l.digest), ...chains);
      await this.layers(repo, manifest.layers, diffIds, chains, options);
      blobs.push(manifest.config.digest, ...manifest.layers.map((l) => l.digest));
      return {
        id: manifest.config.digest,
        reference: ref,
        targetDigest: resolved.descriptor.digest,
        manifestDigest,
        config,
        layers: manifest.layers,
        chainIds: chains,
        blobs: [...new Set(blobs)],
        size: manifest.layers.reduce((n, l) => n + l.size, manifest.config.size),
      };
    } catch (err) {
      if (signal?.aborted) throw abortError(signal, `pull ${name}`);
      if (err instanceof RuntimeError) throw new RuntimeError(err.kind, `pull ${name}: ${err.message}`, { cause: err });
      throw new RuntimeError("Internal", `pull ${name}: ${(err as Error).message ?? String(err)}`, { cause: err });
    }
  }

  /**
   * Unpacks and commits the layers of an image whose blobs are all in the content store already
   * (a loaded archive), exactly as a pull does; returns the chain IDs (added to `lease`).
   */
  async unpackStored(
    layers: Descriptor[],
    diffIds: string[],
    lease: Lease,
    options: { signal?: AbortSignal } = {},
  ): Promise<string[]> {
    const chains = chainIds(diffIds);
    lease.add(...layers.map((l) => l.digest), ...chains);
    await this.layers(undefined, layers, diffIds, chains, options);
    return chains;
  }

  /** A manifest or index from the content store, or fetched, verified and stored. */
  private async manifest(
    repo: Repository,
    desc: Descriptor,
    fetched: Buffer | undefined,
    signal: AbortSignal | undefined,
  ): Promise<ImageManifest | ImageIndex> {
    const bytes = await this.o.locks.blobs.run(desc.digest, async () => {
      if (await this.o.content.info(desc.digest)) return this.o.content.readBlob(desc.digest);
      const b = fetched ?? (await repo.fetchManifest(desc, signalOption(signal))).bytes;
      await this.o.content.writeBlob(b, desc.digest);
      return b;
    });
    return parseManifest(bytes, desc.mediaType || undefined);
  }

  /**
   * Downloads the layers (bounded, in parallel) and unpacks each as soon as its bytes start to
   * arrive, on unpack workers, every layer into its own snapshot prepared without a parent; then
   * commits them in chain order, each onto the one below, once its blob digest and diff ID are
   * verified. A failure or cancel removes every snapshot this pull prepared and did not commit.
   */
  private async layers(
    repo: Repository | undefined,
    layers: Descriptor[],
    diffIds: string[],
    chains: string[],
    options: PullOptions,
  ): Promise<void> {
    const progress = layers.map((l): LayerProgress => ({ digest: l.digest, total: l.size, done: 0, state: "waiting" }));
    const reported = layers.map(() => -1);
    const emit = (i: number, patch: Partial<LayerProgress>, force = false) => {
      const p = progress[i] as LayerProgress;
      const stateChanged = patch.state !== undefined && patch.state !== p.state;
      Object.assign(p, patch);
      // Byte counts arrive per chunk: report state changes always, bytes about every 1% and at the end.
      const last = reported[i] as number;
      const step = Math.max(p.total / 100, 256 * 1024);
      if (!force && !stateChanged && p.done - last < step && !(p.done === p.total && last !== p.total)) return;
      reported[i] = p.done;
      try {
        options.onProgress?.({ ...p });
      } catch (err) {
        this.o.log.warn({ err }, "pull progress callback failed");
      }
    };
    for (const i of layers.keys()) emit(i, {}, true);

    const failed = new AbortController();
    const signal = options.signal ? AbortSignal.any([options.signal, failed.signal]) : failed.signal;
    let firstError: unknown;
    const fail = (err: unknown) => {
      firstError ??= err;
      failed.abort();
    };
    const slot = limiter(this.limit);
    const feeds = layers.map(() => deferred<LayerFeed | undefined>());
    const downloads = layers.map((layer, i) =>
      slot(() =>
        this.ensureBlob(repo, layer, {
          signal,
          onBytes: (bytes) => emit(i, { done: bytes, state: bytes >= layer.size ? "verifying" : "downloading" }),
          onFeed: (feed) => void feed.then((f) => feeds[i]?.resolve(f)),
        }),
      ).then(
        () => emit(i, { done: layer.size }),
        (err: unknown) => {
          const e = contextOf(err, "download layer");
          fail(e);
          throw e;
        },
      ),
    );
    // Handled here so a failure of a later layer, while an earlier one is awaited, is not "unhandled".
    for (const d of downloads) d.catch(() => {});
    const unpackOptions = (i: number) => ({
      diffId: diffIds[i] as string,
      chainId: chains[i] as string,
      download: downloads[i] as Promise<void>,
      feed: (feeds[i] as Deferred<LayerFeed | undefined>).promise,
      signal,
      onStart: () => emit(i, { state: "extracting" }),
    });
    const unpacks = layers.map((layer, i) =>
      this.unpack(layer, unpackOptions(i)).catch((err: unknown) => {
        fail(err);
        throw err;
      }),
    );
    // Likewise: each unpack is awaited in order below, and its failure also goes through fail().
    for (const u of unpacks) u.catch(() => {});
    const committed = new Set<number>();
    try {
      for (const [i, layer] of layers.entries()) {
        const unpacked = await unpacks[i];
        // Committed when the pull began but collected since (a removal racing this pull, before its lease
        // covered the chain): unpacked now, from the blob in the store, under the chain's lock.
        const again = () => this.unpack(layer, { ...unpackOptions(i), feed: Promise.resolve(undefined), force: true });
        await this.commit(layer, { chainId: chains[i] as string, parent: chains[i - 1], unpacked, again, signal });
        committed.add(i);
        emit(i, { state: "done" });
      }
    } catch (err) {
      fail(err);
      throw firstError;
    } finally {
      // Nothing keeps running after the pull returns, and nothing it prepared stays uncommitted.
      await Promise.allSettled(downloads);
      const settled = await Promise.allSettled(unpacks);
      for (const [i, r] of settled.entries()) {
        if (r.status === "fulfilled" && r.value !== undefined && !committed.has(i)) {
          await this.discard(r.value.key, r.value.upper);
        }
      }
    }
  }

  /**
   * Unpacks one layer into a new parentless snapshot unless its chain ID is already committed,
   * streaming from the download when this pull's download of it is writing the blob; resolves
   * once the blob is verified and the diff ID matches (undefined: nothing to unpack).
   */
  private async unpack(
    layer: Descriptor,
    o: {
      diffId: string;
      chainId: string;
      download: Promise<void>;
      feed: Promise<LayerFeed | undefined>;
      signal: AbortSignal;
      onStart: () => void;
      /** Unpack even if the chain ID is committed now. */
      force?: boolean;
    },
  ): Promise<Unpacked | undefined> {
    const { snapshotter, content, log } = this.o;
    if (!o.force && (await snapshotter.stat(o.chainId))?.kind === "committed") {
      await o.download;
      return undefined;
    }
    // A blob being written by a download is unpacked as it grows; a present one from its file.
    const feed = await Promise.race([o.feed, o.download.then(() => undefined)]);
    o.signal.throwIfAborted();
    // A temporary key: the chain ID becomes visible only by commit, after the diff ID is verified.
    const key = `${EXTRACT_PREFIX}${randomBytes(6).toString("hex")}-${o.chainId}`;
    const mounts = await snapshotter.prepare(key, undefined);
    const upper = layerDirsOf(mounts).upper;
    try {
      o.onStart();
      const apply = (source: LayerSource) =>
        this.o.unpacker.apply(upper, source, {
          mediaType: layer.mediaType,
          digest: layer.digest,
          deferImplied: true,
          syncFs: this.o.syncFs ?? true,
          ...this.o.limits,
          signal: o.signal,
        });
      let applied: ApplyResult;
      try {
        applied = await apply(feed ?? { path: content.blobPath(layer.digest) });
      } catch (err) {
        // The download it followed failed, but its retry (a download joined from another pull) may not.
        if (feed?.state().error === undefined || o.signal.aborted) throw err;
        await o.download;
        await this.o.unpacker.clear(upper);
        applied = await apply({ path: content.blobPath(layer.digest) });
      }
      // Unpacked while downloading: the blob's digest must check out before anything is committed.
      await o.download;
      for (const w of applied.warnings) log.warn({ layer: layer.digest }, `unpack: ${w}`);
      if (applied.diffId !== o.diffId) {
        throw new RuntimeError(
          "InvalidArgument",
          `layer ${layer.digest}: uncompressed content ${applied.diffId} does not match the config's diff id ${o.diffId}`,
        );
      }
      return { key, upper, implied: applied.implied };
    } catch (err) {
      await this.discard(key, upper);
      throw err;
    }
  }

  /** Commits an unpacked layer as `chainId` on `parent`, unless another pull committed it first. */
  private async commit(
    layer: Descriptor,
    o: {
      chainId: string;
      parent: string | undefined;
      unpacked: Unpacked | undefined;
      /** Unpacks the layer now, when it was committed at first and is gone since. */
      again: () => Promise<Unpacked | undefined>;
      signal: AbortSignal;
    },
  ): Promise<void> {
    const { snapshotter } = this.o;
    const { chainId, parent, signal } = o;
    let { unpacked } = o;
    await this.o.locks.chains.run(chainId, async () => {
      signal.throwIfAborted();
      const existing = await snapshotter.stat(chainId);
      if (existing?.kind === "committed") {
        if (unpacked) await this.discard(unpacked.key, unpacked.upper);
        return;
      }
      if (existing !== undefined)
        throw new RuntimeError("FailedPrecondition", `snapshot ${chainId} exists and is not committed`);
      const fresh = unpacked === undefined;
      unpacked ??= await o.again();
      if (unpacked === undefined)
        throw new RuntimeError("Internal", `layer ${layer.digest}: snapshot ${chainId} vanished`);
      try {
        if (parent !== undefined && unpacked.implied.length > 0) await this.fixImplied(unpacked, parent, signal);
        await snapshotter.commit(chainId, unpacked.key, parent !== undefined ? { parent } : {});
      } catch (err) {
        // The pull's own clean-up knows only the snapshots it unpacked up front.
        if (fresh) await this.discard(unpacked.key, unpacked.upper);
        throw err;
      }
    });
  }

  /**
   * Gives the directories a layer implied the metadata they have in the layers below, now that
   * those are committed: their trees are the lowers of a throwaway snapshot on `parent`.
   */
  private async fixImplied(unpacked: Unpacked, parent: string, signal: AbortSignal): Promise<void> {
    const { snapshotter } = this.o;
    const viewKey = `${EXTRACT_PREFIX}${randomBytes(6).toString("hex")}-view`;
    await snapshotter.prepare(viewKey, parent);
    try {
      const lowers = layerDirsOf(await snapshotter.mounts(viewKey)).lowers;
      await this.o.unpacker.fixImplied(unpacked.upper, unpacked.implied, lowers, { signal });
    } finally {
      await this.discard(viewKey);
    }
  }

  /**
   * Removes a snapshot of this pull's, emptying its tree first when given (off the event loop, and
   * so that a full disk has room again for the snapshotter's metadata); a failure is logged, never
   * hiding the pull's own error.
   */
  private async discard(key: string, upper?: string): Promise<void> {
    if (upper !== undefined) {
      await this.o.unpacker
        .clear(upper)
        .catch((err: unknown) => this.o.log.warn({ err, snapshot: key }, "empty failed extraction snapshot"));
    }
    await this.o.snapshotter
      .remove(key)
      .catch((err: unknown) => this.o.log.warn({ err, snapshot: key }, "remove failed extraction snapshot"));
  }

  /**
   * Makes sure a blob is in the content store, joining a download already running for it.
   * `onBytes` receives the running byte count of the shared download; `onFeed` the download's
   * growing ingest file (undefined when the blob is present or nothing was written).
   */
  private async ensureBlob(
    repo: Repository | undefined,
    desc: Descriptor,
    o: {
      signal: AbortSignal | undefined;
      onBytes: (bytes: number) => void;
      onFeed?: (feed: Promise<LayerFeed | undefined>) => void;
      retried?: boolean;
    },
  ): Promise<void> {
    const { signal, onBytes } = o;
    let d = this.downloads.get(desc.digest);
    const mine = d === undefined;
    if (d === undefined) {
      const controller = new AbortController();
      const listeners = new Set<(bytes: number) => void>();
      const opened = deferred<LayerFeed | undefined>();
      let feed: LayerFeed | undefined;
      const shared: SharedDownload = {
        controller,
        waiters: 0,
        listeners,
        promise: Promise.resolve(),
        feed: opened.promise,
      };
      shared.promise = this.o.locks.blobs
        .run(desc.digest, async () => {
          if (await this.o.content.info(desc.digest)) return;
          if (repo === undefined) throw new RuntimeError("NotFound", `blob ${desc.digest} is not stored`);
          await this.o.content.ingest(
            { digest: desc.digest, size: desc.size },
            lazyBlob(repo, desc, controller.signal, this.stallMs),
            {
              signal: controller.signal,
              onOpen: (path) => {
                feed = new LayerFeed(path);
                opened.resolve(feed);
              },
              onProgress: (n) => {
                feed?.grow(n);
                for (const l of listeners) l(n);
              },
            },
          );
          feed?.complete(this.o.content.blobPath(desc.digest));
        })
        .catch((err: unknown) => {
          feed?.fail(err);
          throw err;
        })
        .finally(() => {
          opened.resolve(undefined);
          if (this.downloads.get(desc.digest) === shared) this.downloads.delete(desc.digest);
        });
      shared.promise.catch(() => {}); // Each waiter sees the error; nobody left waiting is fine.
      this.downloads.set(desc.digest, shared);
      d = shared;
    }
    const shared = d;
    o.onFeed?.(shared.feed);
    shared.waiters++;
    shared.listeners.add(onBytes);
    try {
      await untilAborted(shared.promise, signal);
    } catch (err) {
      // Joined someone else's download and it failed (their credentials, their mirror): try once ourselves.
      if (!mine && !o.retried && !signal?.aborted && !shared.controller.signal.aborted) {
        return this.ensureBlob(repo, desc, { signal, onBytes, retried: true });
      }
      throw err;
    } finally {
      shared.waiters--;
      shared.listeners.delete(onBytes);
      if (shared.waiters === 0 && this.downloads.get(desc.digest) === shared) {
        // The last pull that wanted it is gone (cancelled): stop the transfer, let a new pull start afresh.
        this.downloads.delete(desc.digest);
        shared.controller.abort();
        // Nothing of a pull keeps running after it returns: wait until the transfer has stopped and its
        // partial ingest is removed.
        await shared.promise.catch(() => {});
      }
    }
  }
}

/** A layer unpacked into active snapshot `key`, waiting for its turn to be committed. */
interface Unpacked {
  key: string;
  /** Its tree (the snapshot's upper directory). */
  upper: string;
  /** Directories it implied, to finish from the layers below (see `fixImpliedDirs`). */
  implied: string[];
}

interface Deferred<T> {
  promise: Promise<T>;
  resolve: (value: T) => void;
}

/** A promise resolved from outside; later calls of `resolve` are ignored. */
function deferred<T>(): Deferred<T> {
  let resolve!: (value: T) => void;
  const promise = new Promise<T>((r) => {
    resolve = r;
  });
  return { promise, resolve };
}

const MANIFEST_TYPES = new Set<string>([
  MediaType.ociManifest,
  MediaType.dockerManifest,
  MediaType.ociIndex,
  MediaType.dockerManifestList,
]);

/**
 * The stream of a blob, opened only when first read (so a blob already present costs no
 * request), failing with DeadlineExceeded when no byte arrives for `stallMs` (a registry that
 * stops sending would otherwise hold the pull forever; containerd's image_pull_progress_timeout).
 */
function lazyBlob(repo: Repository, desc: Descriptor, signal: AbortSignal, stallMs: number): AsyncIterable<Uint8Array> {
  return (async function* () {
    const stalled = new AbortController();
    const timer = setTimeout(() => {
      stalled.abort(
        new RuntimeError("DeadlineExceeded", `blob ${desc.digest}: no data received for ${stallMs / 1000} s`),
      );
    }, stallMs);
    try {
      const body = await repo.fetchBlob(desc, { signal: AbortSignal.any([signal, stalled.signal]) });
      for await (const chunk of body) {
        timer.refresh();
        yield chunk as Uint8Array;
      }
    } catch (err) {
      if (stalled.signal.aborted) throw stalled.signal.reason;
      throw err;
    } finally {
      clearTimeout(timer);
    }
  })();
}

/** Runs at most `n` tasks at once, in call order; a finished task hands its slot to the next. */
function limiter(n: number): <T>(fn: () => Promise<T>) => Promise<T> {
  let active = 0;
  const queue: (() => void)[] = [];
  return async (fn) => {
    if (active >= n) await new Promise<void>((resolve) => queue.push(resolve));
    else active++;
    try {
      return await fn();
    } finally {
      const next = queue.shift();
      if (next) next();
      else active--;
    }
  };
}

/** Adds context to a RuntimeError (aborts and other errors pass through, the pull maps them). */
function contextOf(err: unknown, context: string): unknown {
  return err instanceof RuntimeError ? new RuntimeError(err.kind, `${context}: ${err.message}`, { cause: err }) : err;
}

/** Canceled, or DeadlineExceeded when the signal was a timeout. */
export function abortError(signal: AbortSignal, what: string): RuntimeError {
  const reason = signal.reason as { name?: string } | undefined;
  return reason?.name === "TimeoutError"
    ? new RuntimeError("DeadlineExceeded", `${what}: deadline exceeded`, { cause: reason })
    : new RuntimeError("Canceled", `${what}: canceled`, { cause: reason });
}
