import { parentPort, Worker } from "node:worker_threads";
import { type ErrorKind, kindOf, messageOf, RuntimeError } from "../errdefs/index.js";

/**
 * A small pool of worker threads for filesystem work whose duration depends on content an image or a
 * container controls (reading a rootfs file, walking a writable layer). Such work must not run on the event
 * loop nor on libuv's 4-thread pool, where a FIFO or a huge tree would starve every other fs call.
 *
 * Lifecycle: workers start on the first job and exit after `idleMs` without one, so an idle daemon holds
 * none. Each worker runs one job at a time with synchronous fs calls (on its own thread); jobs wait in a
 * queue on the main thread. A job past its deadline, or whose signal aborts, is rejected at once and its
 * worker is terminated and replaced: a worker stuck in a syscall is abandoned (unref'd), never waited for.
 */
export interface WorkerPool {
  /** Runs handler `op` with `arg` in a worker; rejects with DeadlineExceeded after `timeoutMs`. */
  run<T>(op: string, arg: unknown, options?: { timeoutMs?: number; signal?: AbortSignal }): Promise<T>;
  /** Terminates every worker and rejects queued jobs (Unavailable). */
  close(): Promise<void>;
}

/** Options of {@link createWorkerPool}. */
export interface WorkerPoolOptions {
  /** Workers running at once (default 1). */
  concurrency?: number;
  /** A worker with nothing to do exits after this long (default 10 s). */
  idleMs?: number;
}

interface Job {
  op: string;
  arg: unknown;
  timeoutMs: number | undefined;
  signal: AbortSignal | undefined;
  resolve(value: unknown): void;
  reject(err: unknown): void;
}

interface Slot {
  worker: Worker;
  job: Job | undefined;
  idle: NodeJS.Timeout | undefined;
  /** Set once the worker has loaded its module; until then a job's deadline does not run. */
  ready: boolean;
  onReady: (() => void) | undefined;
}

type Reply = { ready: true } | { ok: true; value: unknown } | { ok: false; kind: ErrorKind; message: string };

/**
 * Starts the worker module at `url`. Under tsx (tests run the TypeScript sources) Node 20 does not carry the
 * loader into workers, so the worker registers it itself before importing the module.
 */
function spawn(url: URL): Worker {
  if (!url.pathname.endsWith(".ts")) return new Worker(url);
  const code = `import("tsx/esm/api").then((m) => { m.register(); return import(${JSON.stringify(url.href)}); });`;
  return new Worker(code, { eval: true });
}

/** A pool of workers running module `url`, which calls {@link serveWorker} with its handlers. */
export function createWorkerPool(url: URL, options: WorkerPoolOptions = {}): WorkerPool {
  const concurrency = options.concurrency ?? 1;
  const idleMs = options.idleMs ?? 10_000;
  const queue: Job[] = [];
  const slots = new Set<Slot>();
  let closed = false;

  const retire = (slot: Slot) => {
    slots.delete(slot);
    if (slot.idle) clearTimeout(slot.idle);
    slot.worker.removeAllListeners("message");
    // A worker blocked in a syscall cannot stop until the call returns: let it go without waiting.
    slot.worker.unref();
    // A retired worker: its job has already been settled, nothing waits on its exit.
    void slot.worker.terminate().catch(() => {});
  };

  const finish = (slot: Slot, settle: (job: Job) => void) => {
    const job = slot.job;
    if (!job) return;
    slot.job = undefined;
    settle(job);
    pump();
  };

  const newSlot = (): Slot => {
    const worker = spawn(url);
    worker.unref();
    const slot: Slot = { worker, job: undefined, idle: undefined, ready: false, onReady: undefined };
    worker.on("message", (reply: Reply) => {
      if ("ready" in reply) {
        slot.ready = true;
        slot.onReady?.();
        slot.onReady = undefined;
        return;
      }
      finish(slot, (job) =>
        reply.ok ? job.resolve(reply.value) : job.reject(new RuntimeError(reply.kind, reply.message)),
      );
    });
    const died = (err: unknown) => {
      retire(slot);
      finish(slot, (job) => job.reject(new RuntimeError("Internal", `worker ${job.op}: ${messageOf(err)}`)));
    };
    worker.on("error", died);
    worker.on("exit", (code) => {
      if (slots.has(slot)) died(new Error(`exited with code ${code}`));
    });
    slots.add(slot);
    return slot;
  };

  const start = (slot: Slot, job: Job) => {
    if (slot.idle) clearTimeout(slot.idle);
    slot.idle = undefined;
    slot.job = job;
    const abandon = (err: RuntimeError) => {
      if (slot.job !== job) return;
      retire(slot);
      finish(slot, (j) => j.reject(err));
    };
    // The deadline bounds the job, not the worker's start-up (loading modules on a busy machine).
    let timer: NodeJS.Timeout | undefined;
    const arm = () => {
      if (job.timeoutMs === undefined || slot.job !== job) return;
      const ms = job.timeoutMs;
      timer = setTimeout(
        () => abandon(new RuntimeError("DeadlineExceeded", `${job.op}: no answer within ${ms} ms`)),
        ms,
      );
      timer.unref();
    };
    if (slot.ready) arm();
    else slot.onReady = arm;
    const onAbort = () => abandon(new RuntimeError("Canceled", `${job.op}: canceled`));
    job.signal?.addEventListener("abort", onAbort, { once: true });
    const settle = { resolve: job.resolve, reject: job.reject };
    job.resolve = (v) => {
      clearTimeout(timer);
      job.signal?.removeEventListener("abort", onAbort);
      settle.resolve(v);
    };
    job.reject = (e) => {
      clearTimeout(timer);
      job.signal?.removeEventListener("abort", onAbort);
      settle.reject(e);
    };
    slot.worker.postMessage({ op: job.op, arg: job.arg });
  };

  function pump(): void {
    for (const slot of slots) {
      if (slot.job || slot.idle) continue;
      slot.idle = setTimeout(() => retire(slot), idleMs);
      slot.idle.unref();
    }
    while (queue.length > 0) {
      let free: Slot | undefined;
      for (const s of slots) if (!s.job) free = s;
      if (!free && slots.size < concurrency) free = newSlot();
      if (!free) return;
      start(free, queue.shift() as Job);
    }
  }

  return {
    run<T>(op: string, arg: unknown, opts: { timeoutMs?: number; signal?: AbortSignal } = {}): Promise<T> {
      if (closed) return Promise.reject(new RuntimeError("Unavailable", `${op}: worker pool is closed`));
      if (opts.signal?.aborted) return Promise.reject(new RuntimeError("Canceled", `${op}: canceled`));
      return new Promise<T>((resolve, reject) => {
        queue.push({
          op,
          arg,
          timeoutMs: opts.timeoutMs,
          signal: opts.signal,
          resolve: resolve as (v: unknown) => void,
          reject,
        });
        pump();
      });
    },
    async close() {
      closed = true;
      for (const job of queue.splice(0)) job.reject(new RuntimeError("Unavailable", `${job.op}: worker pool closed`));
      for (const slot of [...slots]) {
        retire(slot);
        finish(slot, (job) => job.reject(new RuntimeError("Unavailable", `${job.op}: worker pool closed`)));
      }
    },
  };
}

/**
 * Worker side: answers each `{ op, arg }` message with the handler's result, errors as `{ kind, message }`
 * (RuntimeError kinds survive the thread boundary). Call once at the top of a worker module.
 */
export function serveWorker(handlers: Record<string, (arg: never) => unknown>): void {
  const port = parentPort;
  if (!port) throw new Error("serveWorker: not in a worker thread");
  port.postMessage({ ready: true });
  // A handler may return a promise (streaming work in the worker); the pool sends the next job only after the reply.
  port.on("message", async (msg: { op: string; arg: unknown }) => {
    let reply: Reply;
    try {
      const handler = handlers[msg.op];
      if (!handler) throw new RuntimeError("Internal", `unknown worker op ${msg.op}`);
      reply = { ok: true, value: await handler(msg.arg as never) };
    } catch (err) {
      reply = { ok: false, kind: kindOf(err), message: messageOf(err) };
    }
    port.postMessage(reply);
  });
}
