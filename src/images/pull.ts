import { createHash, randomBytes } from "node:crypto";
import { applyLayer } from "../archive/index.js";
import type { ContentStore } from "../content/index.js";
import { RuntimeError } from "../errdefs/index.js";
import type { Logger } from "../log/index.js";
import { layerDirsOf, type Snapshotter } from "../snapshots/index.js";
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
 * layers downloaded in parallel into the content store → layers applied in order, once per
 * chain ID, into committed snapshots.
 *
 * Guarantees:
 * - every manifest, config and layer is verified against its digest and size before it is
 *   visible (manifests here, blobs by the content store's ingest), and every applied layer
 *   against the config's diff ID before its snapshot is committed;
 * - a blob is downloaded once however many pulls want it at the same time (one shared download
 *   per digest, cancelled only when every pull waiting for it has gone);
 * - a chain ID is unpacked once (per-chain lock; a committed snapshot is reused);
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

/**
 * Applies one layer blob (compressed as `mediaType` says) onto a writable snapshot: `upper` is
 * written, `lowers` (nearest first) are the parents, for whiteouts and implied directories.
 * Resolves to the diff ID (the sha256 of the uncompressed tar) and any warnings. `src/archive`'s
 * `applyLayer` by default (see {@link archiveApplier}); injectable so tests can fake it.
 */
export type LayerApplier = (
  target: { upper: string; lowers: string[] },
  layer: AsyncIterable<Uint8Array>,
  options: { mediaType: string; digest: string; signal?: AbortSignal },
) => Promise<{ diffId: string; warnings?: string[] }>;

/** The real applier: `src/archive`, flushing the filesystem so a committed layer survives power loss. */
export const archiveApplier: LayerApplier = (target, layer, options) =>
  applyLayer(target.upper, layer, {
    mediaType: options.mediaType,
    digest: options.digest,
    parents: target.lowers,
    syncFs: true,
    ...(options.signal ? { signal: options.signal } : {}),
  });

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
  applyLayer: LayerApplier;
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
}

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
      const resolved = await repo.resolve(signalOpt(signal));
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
      await this.ensureBlob(repo, manifest.config, signal, () => {}).catch((err: unknown) => {
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

  /** A manifest or index from the content store, or fetched, verified and stored. */
  private async manifest(
    repo: Repository,
    desc: Descriptor,
    fetched: Buffer | undefined,
    signal: AbortSignal | undefined,
  ): Promise<ImageManifest | ImageIndex> {
    const bytes = await this.o.locks.blobs.run(desc.digest, async () => {
      if (await this.o.content.info(desc.digest)) return this.o.content.readBlob(desc.digest);
      const b = fetched ?? (await repo.fetchManifest(desc, signalOpt(signal))).bytes;
      await this.o.content.writeBlob(b, desc.digest);
      return b;
    });
    return parseManifest(bytes, desc.mediaType || undefined);
  }

  /** Downloads the layers (bounded, in parallel) and unpacks them in order as they arrive. */
  private async layers(
    repo: Repository,
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
    const downloads = layers.map((layer, i) =>
      slot(() =>
        this.ensureBlob(repo, layer, signal, (bytes) => {
          emit(i, { done: bytes, state: bytes >= layer.size ? "verifying" : "downloading" });
        }),
      ).then(
        () => emit(i, { done: layer.size, state: "waiting" }),
        (err: unknown) => {
          const e = contextOf(err, "download layer");
          fail(e);
          throw e;
        },
      ),
    );
    // Handled here so a failure of a later layer, while an earlier one is awaited, is not "unhandled".
    for (const d of downloads) d.catch(() => {});
    try {
      for (const [i, layer] of layers.entries()) {
        await downloads[i];
        emit(i, { state: "extracting" });
        await this.unpack(layer, diffIds[i] as string, chains[i] as string, chains[i - 1], signal);
        emit(i, { state: "done" });
      }
    } catch (err) {
      fail(err);
      throw firstError;
    } finally {
      // Nothing keeps running after the pull returns.
      await Promise.allSettled(downloads);
    }
  }

  /**
   * Makes sure a blob is in the content store, joining a download already running for it.
   * `onBytes` receives the running byte count of the shared download.
   */
  private async ensureBlob(
    repo: Repository,
    desc: Descriptor,
    signal: AbortSignal | undefined,
    onBytes: (bytes: number) => void,
    retried = false,
  ): Promise<void> {
    let d = this.downloads.get(desc.digest);
    const mine = d === undefined;
    if (d === undefined) {
      const controller = new AbortController();
      const listeners = new Set<(bytes: number) => void>();
      const shared: SharedDownload = { controller, waiters: 0, listeners, promise: Promise.resolve() };
      shared.promise = this.o.locks.blobs
        .run(desc.digest, async () => {
          if (await this.o.content.info(desc.digest)) return;
          await this.o.content.ingest(
            { digest: desc.digest, size: desc.size },
            lazyBlob(repo, desc, controller.signal, this.stallMs),
            {
              signal: controller.signal,
              onProgress: (n) => {
                for (const l of listeners) l(n);
              },
            },
          );
        })
        .finally(() => {
          if (this.downloads.get(desc.digest) === shared) this.downloads.delete(desc.digest);
        });
      shared.promise.catch(() => {}); // Each waiter sees the error; nobody left waiting is fine.
      this.downloads.set(desc.digest, shared);
      d = shared;
    }
    const shared = d;
    shared.waiters++;
    shared.listeners.add(onBytes);
    try {
      await untilAborted(shared.promise, signal);
    } catch (err) {
      // Joined someone else's download and it failed (their credentials, their mirror): try once ourselves.
      if (!mine && !retried && !signal?.aborted && !shared.controller.signal.aborted) {
        return this.ensureBlob(repo, desc, signal, onBytes, true);
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

  /** Applies a layer onto its parent chain unless its chain ID is already a committed snapshot. */
  private async unpack(
    layer: Descriptor,
    diffId: string,
    chainId: string,
    parent: string | undefined,
    signal: AbortSignal,
  ): Promise<void> {
    const { snapshotter, content, log } = this.o;
    await this.o.locks.chains.run(chainId, async () => {
      signal.throwIfAborted();
      const existing = await snapshotter.stat(chainId);
      if (existing?.kind === "committed") return;
      if (existing !== undefined)
        throw new RuntimeError("FailedPrecondition", `snapshot ${chainId} exists and is not committed`);
      // A temporary key: the chain ID becomes visible only by commit, after the diff ID is verified.
      const key = `extract-${randomBytes(6).toString("hex")}-${chainId}`;
      const mounts = await snapshotter.prepare(key, parent);
      try {
        const applied = await this.o.applyLayer(layerDirsOf(mounts), content.readStream(layer.digest), {
          mediaType: layer.mediaType,
          digest: layer.digest,
          signal,
        });
        for (const w of applied.warnings ?? []) log.warn({ layer: layer.digest }, `unpack: ${w}`);
        const got = applied.diffId;
        if (got !== diffId) {
          throw new RuntimeError(
            "InvalidArgument",
            `layer ${layer.digest}: uncompressed content ${got} does not match the config's diff id ${diffId}`,
          );
        }
        await snapshotter.commit(chainId, key);
      } catch (err) {
        await snapshotter
          .remove(key)
          .catch((e: unknown) => log.warn({ err: e, snapshot: key }, "remove failed extraction snapshot"));
        throw err;
      }
    });
  }
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

/** Rejects as soon as `signal` aborts; `work` goes on (it is shared). */
function untilAborted<T>(work: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (signal === undefined) return work;
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
    work.then(
      (v) => {
        signal.removeEventListener("abort", onAbort);
        resolve(v);
      },
      (e: unknown) => {
        signal.removeEventListener("abort", onAbort);
        reject(e);
      },
    );
  });
}

/** Adds context to a RuntimeError (aborts and other errors pass through, the pull maps them). */
function contextOf(err: unknown, context: string): unknown {
  return err instanceof RuntimeError ? new RuntimeError(err.kind, `${context}: ${err.message}`, { cause: err }) : err;
}

function signalOpt(signal: AbortSignal | undefined): { signal?: AbortSignal } {
  return signal ? { signal } : {};
}

/** Canceled, or DeadlineExceeded when the signal was a timeout. */
export function abortError(signal: AbortSignal, what: string): RuntimeError {
  const reason = signal.reason as { name?: string } | undefined;
  return reason?.name === "TimeoutError"
    ? new RuntimeError("DeadlineExceeded", `${what}: deadline exceeded`, { cause: reason })
    : new RuntimeError("Canceled", `${what}: canceled`, { cause: reason });
}
