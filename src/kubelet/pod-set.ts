/**
 * The pods of one manifest file, each with its worker — what `berth run` (foreground or its
 * detached supervisor) and `berth kubelet` (one set per file) keep running.
 *
 * Before starting, `reconcile()` makes CRI match the manifest: sandboxes of an earlier version
 * of the same file (same `berth.io/manifest`, other uid) are removed — a changed file recreates
 * its pods — and a pod whose namespace/name is taken by another manifest or client is an error.
 * Pods already running with the same uid are adopted by their workers, not duplicated.
 *
 * Also here: the runner record, `runners/<manifestHash>.json`, naming the process that keeps a
 * manifest's pods (so `berth down` can ask it to stop them, and a second `berth run` refuses).
 */
import { mkdir, readFile, rm } from "node:fs/promises";
import { dirname } from "node:path";
import type { CriClient } from "../client/index.js";
import { alreadyExists } from "../errdefs/index.js";
import { writeFileAtomic } from "../util/index.js";
import type { Backoff } from "./backoff.js";
import { type Clock, realClock } from "./clock.js";
import type { HostInfo } from "./convert.js";
import type { Layout } from "./layout.js";
import { removePod } from "./lifecycle.js";
import type { ParsedManifest } from "./manifest.js";
import { pidAlive } from "./pod-query.js";
import type { PodView } from "./pod-view.js";
import { ANNOTATIONS, LABELS } from "./types.js";
import { PodWorker, type PodWorkerHooks } from "./worker.js";

/** Options shared by every worker of a set. */
export interface PodSetOptions {
  client: CriClient;
  layout: Layout;
  host: HostInfo;
  owner: string;
  backoff: Backoff;
  clock?: Clock;
  syncPeriodMs?: number;
  hooks?: PodWorkerHooks;
}

export class PodSet {
  readonly workers: PodWorker[];

  constructor(
    readonly manifest: ParsedManifest,
    private readonly o: PodSetOptions,
  ) {
    this.workers = manifest.pods.map(
      (pod) =>
        new PodWorker(pod, {
          client: o.client,
          layout: o.layout,
          host: o.host,
          owner: o.owner,
          backoff: o.backoff,
          ...(o.clock ? { clock: o.clock } : {}),
          ...(o.syncPeriodMs !== undefined ? { syncPeriodMs: o.syncPeriodMs } : {}),
          ...(o.hooks ? { hooks: o.hooks } : {}),
        }),
    );
  }

  /**
   * Removes this manifest's stale pods (other uids: an earlier version of the file) and fails
   * with AlreadyExists if another manifest or client has a pod with one of these names.
   * Returns the names of the pods it removed.
   */
  async reconcile(): Promise<string[]> {
    const { items } = await this.o.client.runtime.listPodSandbox({});
    const wanted = new Set(this.manifest.pods.map((p) => p.metadata.uid));
    const names = new Map(this.manifest.pods.map((p) => [`${p.metadata.namespace}/${p.metadata.name}`, p]));
    const stale = new Map<string, string>();
    for (const sb of items) {
      const uid = sb.metadata?.uid ?? "";
      if (wanted.has(uid)) continue;
      const key = `${sb.metadata?.namespace}/${sb.metadata?.name}`;
      const ours =
        sb.labels[LABELS.manifest] === this.manifest.manifestHash && sb.labels[LABELS.owner] === this.o.owner;
      if (ours) stale.set(uid, key);
      else if (names.has(key)) {
        const from = sb.annotations[ANNOTATIONS.manifestPath];
        const owner = sb.labels[LABELS.owner];
        throw alreadyExists(
          `pod ${key} already exists${from ? ` (from ${from}${owner ? `, kept by ${owner === "run" ? "berth run" : "berth kubelet"}` : ""})` : " (created by another CRI client)"}: remove it first${from ? ` with berth down ${from}` : ""}`,
        );
      }
    }
    await Promise.all(
      [...stale.keys()].map((uid) =>
        removePod(uid, {
          client: this.o.client,
          clock: this.o.clock ?? realClock,
          layout: this.o.layout,
          hostIP: this.o.host.hostIP,
        }),
      ),
    );
    return [...new Set(stale.values())];
  }

  start(): void {
    for (const w of this.workers) w.start();
  }

  /** Stops and removes every pod (graceful, preStop hooks first), in parallel. */
  async terminate(options: { gracePeriodSeconds?: number } = {}): Promise<void> {
    const results = await Promise.allSettled(this.workers.map((w) => w.terminate(options)));
    const failed = results.find((r): r is PromiseRejectedResult => r.status === "rejected");
    if (failed) throw failed.reason;
  }

  /** Stops supervising; the pods keep running. */
  async detach(): Promise<void> {
    await Promise.all(this.workers.map((w) => w.detach()));
  }

  views(): (PodView | undefined)[] {
    return this.workers.map((w) => w.view);
  }

  /** Resolves when every pod satisfies `predicate`. */
  async waitAll(predicate: (v: PodView) => boolean, signal?: AbortSignal): Promise<PodView[]> {
    return Promise.all(this.workers.map((w) => w.waitFor(predicate, signal)));
  }
}

/** The process keeping a manifest's pods, as recorded in `runners/<manifestHash>.json`. */
export interface RunnerRecord {
  pid: number;
  manifest: string;
  mode: "foreground" | "detached";
  startedAt: number;
}

/** The live runner of a manifest, or undefined (a record of a dead process counts as none). */
export async function readRunner(layout: Layout, manifestHash: string): Promise<RunnerRecord | undefined> {
  try {
    const r = JSON.parse(await readFile(layout.runnerFile(manifestHash), "utf8")) as RunnerRecord;
    return pidAlive(r.pid) && r.pid !== process.pid && (await isBerth(r.pid)) ? r : undefined;
  } catch {
    return undefined;
  }
}

/** Guards against a recycled pid: the process must be a node process running berth. */
async function isBerth(pid: number): Promise<boolean> {
  const cmdline = await readFile(`/proc/${pid}/cmdline`, "utf8").catch(() => undefined);
  return cmdline === undefined || /berth/.test(cmdline);
}

/** Records this process as the manifest's runner; AlreadyExists when a live one is recorded. */
export async function claimRunner(layout: Layout, manifestHash: string, record: RunnerRecord): Promise<void> {
  const current = await readRunner(layout, manifestHash);
  if (current) {
    throw alreadyExists(
      `the pods of ${current.manifest} are already kept by berth run (pid ${current.pid}${current.mode === "detached" ? ", detached" : ""}): use berth down ${current.manifest} first`,
    );
  }
  const file = layout.runnerFile(manifestHash);
  await mkdir(dirname(file), { recursive: true });
  await writeFileAtomic(file, `${JSON.stringify(record)}\n`);
}

/** Removes the runner record if it is this process's. */
export async function releaseRunner(layout: Layout, manifestHash: string): Promise<void> {
  try {
    const r = JSON.parse(await readFile(layout.runnerFile(manifestHash), "utf8")) as RunnerRecord;
    if (r.pid !== process.pid) return;
  } catch {
    return;
  }
  await rm(layout.runnerFile(manifestHash), { force: true });
}
