import { existsSync } from "node:fs";
import { availableParallelism } from "node:os";
import { fileURLToPath } from "node:url";
import { Worker } from "node:worker_threads";
import { kindOf, messageOf, RuntimeError } from "../errdefs/index.js";
import type { ApplyOptions, ApplyResult } from "./apply.js";
import type { ToMain, ToWorker, WireApplyOptions, WireError } from "./protocol.js";

/**
 * Layer application off berthd's event loop. Decompression, tar parsing, every fs call of
 * applying and the diff-ID hash run in worker threads (worker.ts); the main thread only routes
 * a few messages per megabyte. Workers are started on demand, run one job at a time, at most
 * `maxWorkers` at once (further jobs queue), and exit after `idleMs` without work: an idle
 * berthd holds no unpack thread and its heap.
 *
 * A layer's bytes reach a worker in one of three ways:
 * - a complete blob file: the worker reads it itself;
 * - a blob file still being downloaded ({@link LayerFeed}): the worker reads as far as it is
 *   written and waits for more, so a layer unpacks while it downloads, without the download
 *   ever waiting for the unpack;
 * - an in-memory `AsyncIterable` (tests, tools): chunks are copied to the worker, at most
 *   {@link MAX_IN_FLIGHT} bytes ahead of it.
 */

/** How far an in-memory source may run ahead of its worker. */
const MAX_IN_FLIGHT = 8 * 1024 * 1024;
/** How long an aborted job may take to wind down (kill its mknod/zstd children, close files) before its worker is ended. */
const ABORT_GRACE_MS = 10_000;

/** The announcement of a blob file that is still being written, kept up to date by its writer. */
export class LayerFeed {
  private written = 0;
  private finalPath: string | undefined;
  private error: WireError | undefined;
  private readonly listeners = new Set<() => void>();

  /** `path`: the file being written (the content store's ingest file). */
  constructor(readonly path: string) {}

  /** `bytes` (in all) are now in the file. */
  grow(bytes: number): void {
    this.written = bytes;
    this.notify();
  }

  /** The blob is complete and verified, now at `path`. */
  complete(path: string): void {
    this.finalPath = path;
    this.notify();
  }

  /** The blob will never be complete. */
  fail(err: unknown): void {
    this.error ??= { kind: kindOf(err), message: messageOf(err) };
    this.notify();
  }

  /** The current state, and calls `listener` on each change until the returned function is called. */
  subscribe(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  state(): { written: number; finalPath?: string; error?: WireError } {
    return {
      written: this.written,
      ...(this.finalPath !== undefined ? { finalPath: this.finalPath } : {}),
      ...(this.error !== undefined ? { error: this.error } : {}),
    };
  }

  private notify(): void {
    for (const l of this.listeners) l();
  }
}

/** A layer's bytes for {@link Unpacker.apply}. */
export type LayerSource = AsyncIterable<Uint8Array> | { path: string } | LayerFeed;

/** Options of {@link createUnpacker}. */
export interface UnpackerOptions {
  /** Layers applied at once (default: the CPU count, at most 4). */
  maxWorkers?: number;
  /** An idle worker exits after this long (default 2 s). */
  idleMs?: number;
}

/** Runs layer application in worker threads; see the module comment. */
export interface Unpacker {
  /** `applyLayerHere` (apply.ts) on a worker; same guarantees, errors and result. */
  apply(target: string, source: LayerSource, options?: ApplyOptions): Promise<ApplyResult>;
  /** `fixImpliedDirs` (apply.ts) on a worker. */
  fixImplied(target: string, implied: string[], parents: string[], options?: { signal?: AbortSignal }): Promise<void>;
  /**
   * Empties directory `target` (a failed layer's tree) on a worker: rm of a large tree is many fs
   * calls, and on a full disk it must happen before anything else can be written.
   */
  clear(target: string): Promise<void>;
  /** Workers alive now (running or idle), for tests and diagnostics. */
  workers(): number;
  /** Ends every worker; running jobs fail. */
  close(): Promise<void>;
}

interface Slot {
  worker: Worker;
  busy: boolean;
  idleTimer?: NodeJS.Timeout;
  /** The running job's handler of worker messages and of the worker's death. */
  onMessage?: ((m: ToMain) => void) | undefined;
  onDeath?: ((err: Error) => void) | undefined;
}

/**
 * Starts a worker thread: the compiled worker.js beside this file, or, when running from the
 * TypeScript sources (tests under tsx), worker.ts through tsx's loader, which a worker does not
 * inherit from `--import`.
 */
function startWorker(): Worker {
  const js = new URL("./worker.js", import.meta.url);
  // A hostile layer's tar headers must not grow the heap without bound.
  const limits = { resourceLimits: { maxOldGenerationSizeMb: 256 } };
  if (existsSync(fileURLToPath(js))) return new Worker(js, limits);
  const ts = new URL("./worker.ts", import.meta.url).href;
  const boot = `import("tsx/esm/api").then((m) => { m.register(); return import(${JSON.stringify(ts)}); })`;
  return new Worker(boot, { ...limits, eval: true });
}

/** Creates an {@link Unpacker}. */
export function createUnpacker(options: UnpackerOptions = {}): Unpacker {
  const max = Math.max(1, options.maxWorkers ?? Math.min(4, availableParallelism()));
  const idleMs = options.idleMs ?? 2000;
  const slots = new Set<Slot>();
  const waiting: ((slot: Slot) => void)[] = [];
  let nextId = 1;
  let closed = false;

  const spawn = (): Slot => {
    const worker = startWorker();
    const slot: Slot = { worker, busy: false };
    worker.on("message", (m: ToMain) => slot.onMessage?.(m));
    const die = (err: Error) => {
      slots.delete(slot);
      if (slot.idleTimer) clearTimeout(slot.idleTimer);
      slot.onDeath?.(err);
    };
    worker.on("error", die);
    worker.on("exit", (code) => die(new Error(`unpack worker exited with code ${code}`)));
    slots.add(slot);
    return slot;
  };

  const acquire = async (signal: AbortSignal | undefined): Promise<Slot> => {
    if (closed) throw new RuntimeError("Unavailable", "unpacker is closed");
    for (const s of slots) {
      if (!s.busy) {
        s.busy = true;
        if (s.idleTimer) clearTimeout(s.idleTimer);
        s.worker.ref();
        return s;
      }
    }
    if (slots.size < max) {
      const s = spawn();
      s.busy = true;
      return s;
    }
    return new Promise<Slot>((resolve, reject) => {
      const take = (s: Slot) => {
        signal?.removeEventListener("abort", onAbort);
        resolve(s);
      };
      const onAbort = () => {
        const i = waiting.indexOf(take);
        if (i >= 0) waiting.splice(i, 1);
        reject(new RuntimeError("Canceled", "unpack: canceled while waiting for a worker"));
      };
      if (signal?.aborted) return onAbort();
      signal?.addEventListener("abort", onAbort, { once: true });
      waiting.push(take);
    });
  };

  const release = (s: Slot) => {
    s.onMessage = undefined;
    s.onDeath = undefined;
    if (!slots.has(s)) {
      // It died: a waiting job gets a fresh worker.
      const next = waiting.shift();
      if (next && !closed) {
        const fresh = spawn();
        fresh.busy = true;
        next(fresh);
      }
      return;
    }
    const next = waiting.shift();
    if (next) return next(s);
    s.busy = false;
    s.worker.unref();
    s.idleTimer = setTimeout(() => {
      if (!s.busy) void s.worker.terminate();
    }, idleMs);
    s.idleTimer.unref();
  };

  /**
   * Runs one job on a worker: `start` posts its messages (and may keep feeding it), the job ends at
   * the worker's `done` or `error`. An abort is passed on; a worker that does not wind down in
   * time, or dies, is ended and the job fails.
   */
  const run = async <T>(
    signal: AbortSignal | undefined,
    start: (post: (m: ToWorker) => void, id: number, onAck: (fn: (bytes: number) => void) => void) => () => void,
  ): Promise<T> => {
    const slot = await acquire(signal);
    const id = nextId++;
    let stop: (() => void) | undefined;
    let graceTimer: NodeJS.Timeout | undefined;
    const onAbort = () => {
      slot.worker.postMessage({ op: "abort", id } satisfies ToWorker);
      graceTimer = setTimeout(() => void slot.worker.terminate(), ABORT_GRACE_MS);
    };
    try {
      return await new Promise<T>((resolve, reject) => {
        let ack: ((bytes: number) => void) | undefined;
        slot.onMessage = (m) => {
          if (m.id !== id) return;
          if (m.op === "ack") ack?.(m.bytes);
          else if (m.op === "done") resolve(m.result as T);
          else reject(new RuntimeError(m.kind, m.message));
        };
        slot.onDeath = (err) => reject(new RuntimeError("Internal", `unpack: ${err.message}`, { cause: err }));
        stop = start(
          (m) => slot.worker.postMessage(m, m.op === "chunk" ? [m.data.buffer as ArrayBuffer] : []),
          id,
          (fn) => {
            ack = fn;
          },
        );
        if (signal?.aborted) onAbort();
        else signal?.addEventListener("abort", onAbort, { once: true });
      });
    } finally {
      signal?.removeEventListener("abort", onAbort);
      if (graceTimer) clearTimeout(graceTimer);
      stop?.();
      release(slot);
    }
  };

  return {
    apply(target, source, options = {}) {
      const wire = wireOptions(options);
      return run<ApplyResult>(options.signal, (post, id, onAck) => {
        if (source instanceof LayerFeed) return feedFile(source, target, wire, post, id);
        if (!(Symbol.asyncIterator in source)) {
          post({ op: "apply", id, target, source: { kind: "file", path: source.path, complete: true }, options: wire });
          return () => {};
        }
        post({ op: "apply", id, target, source: { kind: "chunks" }, options: wire });
        return feedChunks(source, post, id, onAck);
      });
    },

    fixImplied(target, implied, parents, opts = {}) {
      if (implied.length === 0) return Promise.resolve();
      return run<void>(opts.signal, (post, id) => {
        post({ op: "fix", id, target, implied, parents });
        return () => {};
      });
    },

    clear(target) {
      return run<void>(undefined, (post, id) => {
        post({ op: "clear", id, target });
        return () => {};
      });
    },

    workers: () => slots.size,

    async close() {
      closed = true;
      await Promise.all([...slots].map((s) => s.worker.terminate()));
    },
  };
}

function wireOptions(o: ApplyOptions): WireApplyOptions {
  const { signal: _signal, parents, ...rest } = o;
  return { ...rest, ...(parents !== undefined ? { parents: [...parents] } : {}) };
}

/** Tells the worker about a growing file as it grows; returns the unsubscribe. */
function feedFile(
  feed: LayerFeed,
  target: string,
  options: WireApplyOptions,
  post: (m: ToWorker) => void,
  id: number,
): () => void {
  post({ op: "apply", id, target, source: { kind: "file", path: feed.path, complete: false }, options });
  // A message per megabyte at most: the worker reads from the page cache, not from these messages.
  let sent = -1;
  let ended = false;
  const update = () => {
    if (ended) return;
    const s = feed.state();
    const final = s.finalPath !== undefined || s.error !== undefined;
    if (!final && s.written - sent < 1024 * 1024) return;
    sent = s.written;
    ended = final;
    post({
      op: "grow",
      id,
      bytes: s.written,
      ...(s.finalPath !== undefined ? { finalPath: s.finalPath } : {}),
      ...(s.error !== undefined ? { error: s.error } : {}),
    });
  };
  const unsubscribe = feed.subscribe(update);
  update();
  return unsubscribe;
}

/** Copies an in-memory source's chunks to the worker, at most MAX_IN_FLIGHT bytes ahead; returns the stop. */
function feedChunks(
  source: AsyncIterable<Uint8Array>,
  post: (m: ToWorker) => void,
  id: number,
  onAck: (fn: (bytes: number) => void) => void,
): () => void {
  let inFlight = 0;
  let stopped = false;
  let resume: (() => void) | undefined;
  onAck((bytes) => {
    inFlight -= bytes;
    if (inFlight < MAX_IN_FLIGHT) resume?.();
  });
  const it = source[Symbol.asyncIterator]();
  void (async () => {
    try {
      for (;;) {
        const r = await it.next();
        if (r.done || stopped) break;
        // A copy with its own buffer, which is moved, not cloned, to the worker.
        const data = Uint8Array.prototype.slice.call(r.value);
        inFlight += data.length;
        post({ op: "chunk", id, data });
        while (inFlight >= MAX_IN_FLIGHT && !stopped) {
          await new Promise<void>((resolve) => {
            resume = resolve;
          });
          resume = undefined;
        }
        if (stopped) break;
      }
      if (!stopped) post({ op: "end", id });
    } catch (err) {
      if (!stopped) post({ op: "end", id, error: { kind: kindOf(err), message: messageOf(err) } });
    } finally {
      // Stopping the source early: its error, if any, is not the apply's outcome.
      if (stopped) await it.return?.().catch(() => {});
    }
  })();
  return () => {
    stopped = true;
    resume?.();
  };
}

let shared: Unpacker | undefined;

/** The process-wide unpacker that {@link applyLayer} uses (created on first use). */
export function defaultUnpacker(): Unpacker {
  shared ??= createUnpacker();
  return shared;
}

/**
 * Applies an OCI layer tar (gzip, zstd or plain) to directory `target` on an unpack worker:
 * see `applyLayerHere` in apply.ts for what is applied, refused and guaranteed.
 */
export function applyLayer(target: string, source: LayerSource, options: ApplyOptions = {}): Promise<ApplyResult> {
  return defaultUnpacker().apply(target, source, options);
}
