/**
 * The pod worker's status writer (the kubelet's status manager, for one pod): it persists what
 * only the runner knows — readiness, startup, waiting reasons, "terminating" — to the pod's
 * `status.json`, which `berth get`/`describe` in any other process read, and it hands the pod's
 * latest view to whoever waits on it in this process.
 *
 * Writes are atomic, serialised, and skipped when nothing but the time changed; a failed write is
 * reported through `onError` and the next change writes again. After `close()` nothing is written.
 */
import { mkdir } from "node:fs/promises";
import { writeFileAtomic } from "../util/index.js";
import type { Layout } from "./layout.js";
import type { PodView, RunnerStatus } from "./pod-view.js";

/** Options of {@link StatusWriter}. */
export interface StatusWriterOptions {
  layout: Layout;
  uid: string;
  onError(err: unknown): void;
}

export class StatusWriter {
  private lastJson = "";
  private writes: Promise<void> = Promise.resolve();
  private closed = false;
  private view_: PodView | undefined;
  private readonly watchers = new Set<(v: PodView) => void>();

  constructor(private readonly o: StatusWriterOptions) {}

  /** Queues a write of `status` unless it equals the last one written (ignoring `updatedAt`). */
  write(status: RunnerStatus): void {
    if (this.closed) return;
    const json = JSON.stringify({ ...status, updatedAt: 0 });
    if (json === this.lastJson) return;
    this.lastJson = json;
    const { layout, uid } = this.o;
    this.writes = this.writes
      .then(async () => {
        await mkdir(layout.podDir(uid), { recursive: true });
        await writeFileAtomic(layout.statusFile(uid), `${JSON.stringify(status)}\n`);
      })
      .catch((err) => this.o.onError(err));
  }

  /** The pod as last published (undefined before the first). */
  get view(): PodView | undefined {
    return this.view_;
  }

  /** Makes `view` the pod's current view and tells the waiters. */
  publish(view: PodView): void {
    this.view_ = view;
    for (const w of [...this.watchers]) w(view);
  }

  /** Resolves with the first view (from now on) that satisfies `predicate`. */
  waitFor(predicate: (v: PodView) => boolean, signal?: AbortSignal): Promise<PodView> {
    if (this.view_ && predicate(this.view_)) return Promise.resolve(this.view_);
    return new Promise((resolve, reject) => {
      const watcher = (v: PodView) => {
        if (!predicate(v)) return;
        this.watchers.delete(watcher);
        resolve(v);
      };
      this.watchers.add(watcher);
      signal?.addEventListener(
        "abort",
        () => {
          this.watchers.delete(watcher);
          reject(signal.reason);
        },
        { once: true },
      );
    });
  }

  /** Stops writing; resolves when the queued writes are done. */
  async close(): Promise<void> {
    this.closed = true;
    await this.writes;
  }
}
