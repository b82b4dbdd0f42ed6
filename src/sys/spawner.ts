import { Worker } from "node:worker_threads";
import { RuntimeError } from "../errdefs/index.js";
import { runChild } from "./spawn-child.js";
import type { SpawnReply, SpawnRequest, WorkerMessage } from "./spawn-protocol.js";

/**
 * Where child processes are started. Node's `child_process.spawn` is synchronous on the calling thread: libuv
 * forks (copying the page tables of a 100 MiB daemon) and then blocks reading a pipe until the child has
 * exec'd, which on a busy node means until the scheduler gets round to the child. Measured in berthd under
 * 100 concurrent ExecSync calls (each one conmon spawn) on a loaded 2-core machine, spawns held the event loop
 * for up to 17 s in one go; from a worker thread the same spawns leave it within ~0.1 s.
 *
 * So berthd calls {@link enableSpawnWorker} at start-up, and every run-to-completion child (runc, conmon,
 * CNI plugins, mount helpers) is then started by one worker thread, created on first use and ended after
 * {@link IDLE_MS} without work (it costs about 11 MiB of RSS while it lives). Without it (the CLI, tests) children
 * start on the calling thread, through the same code (spawn-child.ts). Interactive children (exec -it,
 * attach, port-forward) stream data for their whole life and stay on the main thread.
 */
export function enableSpawnWorker(enabled = true): void {
  useWorker = enabled;
  if (!enabled) void stopWorker();
}

/** A request as callers give it (the id is assigned here). */
export type ChildRequest = Omit<SpawnRequest, "id">;

/** A started child: its outcome, and a SIGKILL for it (its process group when detached). */
export interface ChildRun {
  readonly result: Promise<SpawnReply>;
  kill(): void;
}

/** Starts a child in the worker when enabled, else here. A worker that dies fails its runs with Internal. */
export function startChild(request: ChildRequest): ChildRun {
  const id = nextId++;
  const full: SpawnRequest = { ...request, id };
  if (!useWorker) {
    let kill: () => void = () => {};
    const result = new Promise<SpawnReply>((resolve) => {
      kill = runChild(full, resolve);
    });
    return { result, kill: () => kill() };
  }
  const live = ensureWorker();
  const result = new Promise<SpawnReply>((resolve, reject) => live.pending.set(id, { resolve, reject }));
  if (idleTimer) clearTimeout(idleTimer);
  idleTimer = undefined;
  live.worker.ref();
  post(live.worker, { type: "spawn", request: full });
  return { result, kill: () => post(live.worker, { type: "kill", id }) };
}

/** Ends the worker now (daemon shutdown); runs still pending fail. */
export async function stopWorker(): Promise<void> {
  const live = current;
  current = undefined;
  if (idleTimer) clearTimeout(idleTimer);
  idleTimer = undefined;
  if (live) await live.worker.terminate();
}

/** The worker ends after this long with nothing to run. */
const IDLE_MS = 5_000;

/**
 * One worker and the runs it owns. Each worker has its own map: an old worker still exiting (idle timeout,
 * stopWorker) while its successor already runs children must fail only its own runs, never the successor's.
 */
interface LiveWorker {
  readonly worker: Worker;
  readonly pending: Map<number, { resolve: (r: SpawnReply) => void; reject: (e: Error) => void }>;
}

let useWorker = false;
let nextId = 1;
let current: LiveWorker | undefined;
let idleTimer: NodeJS.Timeout | undefined;

function ensureWorker(): LiveWorker {
  if (current) return current;
  const w = fromSource()
    ? // Under tsx (tests), loader hooks do not reach worker threads: the worker registers tsx itself.
      new Worker(
        `import(${JSON.stringify(import.meta.resolve("tsx/esm/api"))}).then((t) => { t.register(); return import(${JSON.stringify(new URL("./spawn-worker.ts", import.meta.url).href)}); })`,
        { eval: true },
      )
    : new Worker(new URL("./spawn-worker.js", import.meta.url), {
        // A small heap: the worker holds only pipes and the output it was asked to keep.
        resourceLimits: { maxYoungGenerationSizeMb: 2 },
      });
  const live: LiveWorker = { worker: w, pending: new Map() };
  w.on("message", (reply: SpawnReply) => {
    const p = live.pending.get(reply.id);
    live.pending.delete(reply.id);
    p?.resolve(reply);
    if (live.pending.size === 0 && current === live) idle(live);
  });
  const fail = (why: string) => {
    if (current === live) current = undefined;
    for (const [id, p] of live.pending) {
      live.pending.delete(id);
      p.reject(new RuntimeError("Internal", `spawn worker ${why}`));
    }
  };
  w.on("error", (err) => fail(`failed: ${err.message}`));
  w.on("exit", (code) => fail(`exited (${code})`));
  current = live;
  return live;
}

/** Running from the TypeScript sources (tsx) rather than the build. */
function fromSource(): boolean {
  return import.meta.url.endsWith(".ts");
}

function idle(live: LiveWorker): void {
  // Never keeps the process alive, and goes away when unused.
  live.worker.unref();
  if (idleTimer) clearTimeout(idleTimer);
  idleTimer = setTimeout(() => {
    if (current === live && live.pending.size === 0) void stopWorker();
  }, IDLE_MS);
  idleTimer.unref();
}

function post(w: Worker, m: WorkerMessage): void {
  w.postMessage(m);
}
