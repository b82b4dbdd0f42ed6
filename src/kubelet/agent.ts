/**
 * `berth kubelet --manifests DIR`: static pods. Every `*.yaml`, `*.yml` and `*.json` file in DIR
 * is a manifest whose pods the agent keeps running, like the kubelet's file source:
 *
 *   - a new file starts its pods;
 *   - a changed file (new content: new pod uids) stops and removes the old pods, then starts the new;
 *   - a deleted file stops and removes its pods;
 *   - a file that does not parse is reported once per content; its pods (if an earlier version
 *     ran) are left as they are until it parses again or goes away.
 *
 * The agent's pods carry `berth.io/owner=kubelet-<hash of DIR>`, so a restarted agent adopts
 * the pods that still match its files (same uid) and removes the ones that do not (files
 * changed or deleted while it was down). Stopping the agent leaves its pods running, as
 * stopping the kubelet leaves static pods running.
 *
 * Reconciliation runs on start, on every change fs.watch reports (debounced), and every
 * `rescanMs` as a safety net (watch events can be lost or coalesced).
 */
import { createHash } from "node:crypto";
import { type FSWatcher, watch } from "node:fs";
import { readdir, readFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import type { CriClient } from "../client/index.js";
import type { Backoff } from "./backoff.js";
import { type Clock, realClock } from "./clock.js";
import type { HostInfo } from "./convert.js";
import type { Layout } from "./layout.js";
import { removePod } from "./lifecycle.js";
import { ManifestError, manifestHash, type ParsedManifest, parseManifest } from "./manifest.js";
import { PodSet } from "./pod-set.js";
import { LABELS } from "./types.js";
import type { PodWorkerHooks } from "./worker.js";

/** Options of {@link ManifestDirAgent}. */
export interface AgentOptions {
  client: CriClient;
  layout: Layout;
  host: HostInfo;
  backoff: Backoff;
  clock?: Clock;
  syncPeriodMs?: number;
  /** Full rescan period (default 2000 ms). */
  rescanMs?: number;
  hooks?: PodWorkerHooks;
  /** One line per thing the agent did or could not do. */
  report(line: string): void;
}

/** The owner label value of an agent watching `dir`. */
export function agentOwner(dir: string): string {
  return `kubelet-${createHash("sha256").update(resolve(dir)).digest("hex").slice(0, 12)}`;
}

interface FileState {
  /** Hash of the file's content. */
  contentHash: string;
  /** Running pods (undefined when the content did not parse). */
  set?: PodSet;
  manifestHash: string;
}

export class ManifestDirAgent {
  readonly dir: string;
  readonly owner: string;
  private readonly files = new Map<string, FileState>();
  private watcher: FSWatcher | undefined;
  private timer: NodeJS.Timeout | undefined;
  private debounce: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private again = false;
  private stopped = false;

  constructor(
    dir: string,
    private readonly o: AgentOptions,
  ) {
    this.dir = resolve(dir);
    this.owner = agentOwner(this.dir);
  }

  /** First reconciliation (adopting or cleaning up what an earlier agent left), then watching. */
  async start(): Promise<void> {
    await this.reconcile();
    try {
      this.watcher = watch(this.dir, () => this.schedule(100));
      this.watcher.on("error", () => {});
    } catch (err) {
      this.o.report(`watch ${this.dir}: ${(err as Error).message}; relying on rescans`);
    }
    const tick = () => {
      this.timer = setTimeout(async () => {
        await this.reconcile();
        if (!this.stopped) tick();
      }, this.o.rescanMs ?? 2000);
    };
    tick();
  }

  /** Stops watching and supervising; pods keep running (a restarted agent adopts them). */
  async stop(): Promise<void> {
    this.stopped = true;
    this.watcher?.close();
    clearTimeout(this.timer);
    clearTimeout(this.debounce);
    await this.running;
    await Promise.all([...this.files.values()].map((f) => f.set?.detach()));
  }

  /** The pod sets by file name (for tests and status). */
  sets(): Map<string, PodSet> {
    const out = new Map<string, PodSet>();
    for (const [name, f] of this.files) if (f.set) out.set(name, f.set);
    return out;
  }

  private schedule(ms: number): void {
    if (this.stopped) return;
    clearTimeout(this.debounce);
    this.debounce = setTimeout(() => void this.reconcile(), ms);
  }

  /** Serialised: a call during a pass makes one more pass after it. */
  reconcile(): Promise<void> {
    if (this.running) {
      this.again = true;
      return this.running;
    }
    this.running = (async () => {
      do {
        this.again = false;
        try {
          await this.pass();
        } catch (err) {
          this.o.report(`reconcile ${this.dir}: ${(err as Error).message}`);
        }
      } while (this.again && !this.stopped);
      this.running = undefined;
    })();
    return this.running;
  }

  private async pass(): Promise<void> {
    if (this.stopped) return;
    const names = (await readdir(this.dir).catch(() => [] as string[]))
      .filter((n) => /\.(ya?ml|json)$/.test(n) && !n.startsWith("."))
      .sort();
    const claimed = new Map<string, string>(); // namespace/name -> file
    // 1. Files that disappeared or changed: their old pods go first (ports and names free up).
    const contents = new Map<string, string>();
    for (const name of names) {
      const text = await readFile(join(this.dir, name), "utf8").catch(() => undefined);
      if (text !== undefined) contents.set(name, text);
    }
    for (const [name, f] of [...this.files]) {
      const text = contents.get(name);
      if (text !== undefined && hash(text) === f.contentHash) continue;
      if (text !== undefined && !this.parses(name, text)) continue; // keep old pods until it parses
      if (f.set) {
        this.o.report(`${name}: ${text === undefined ? "deleted" : "changed"}: removing ${podNames(f.set.manifest)}`);
        await f.set.terminate().catch((err) => this.o.report(`${name}: remove pods: ${(err as Error).message}`));
      }
      this.files.delete(name);
    }
    // 2. New and changed files start their pods.
    for (const name of names) {
      const text = contents.get(name);
      if (text === undefined || this.stopped) continue;
      const existing = this.files.get(name);
      const contentHash = hash(text);
      if (existing && existing.contentHash === contentHash) {
        for (const p of existing.set?.manifest.pods ?? [])
          claimed.set(`${p.metadata.namespace}/${p.metadata.name}`, name);
        continue;
      }
      const path = join(this.dir, name);
      let manifest: ParsedManifest;
      try {
        manifest = parseManifest(text, { path, displayName: name });
      } catch (err) {
        if (!existing) {
          // Pods of an earlier, valid version of this file (from before a restart) are kept.
          this.files.set(name, { contentHash, manifestHash: manifestHash(path) });
          const lines = err instanceof ManifestError ? err.problems : [(err as Error).message];
          for (const l of lines) this.o.report(`invalid manifest: ${l}`);
        }
        continue;
      }
      for (const w of manifest.warnings) this.o.report(`warning: ${w}`);
      const clash = manifest.pods.map((p) => `${p.metadata.namespace}/${p.metadata.name}`).find((k) => claimed.has(k));
      if (clash) {
        this.o.report(`${name}: pod ${clash} is already declared in ${claimed.get(clash)}; skipped`);
        this.files.set(name, { contentHash, manifestHash: manifest.manifestHash });
        continue;
      }
      const set = new PodSet(manifest, {
        client: this.o.client,
        layout: this.o.layout,
        host: this.o.host,
        owner: this.owner,
        backoff: this.o.backoff,
        ...(this.o.clock ? { clock: this.o.clock } : {}),
        ...(this.o.syncPeriodMs !== undefined ? { syncPeriodMs: this.o.syncPeriodMs } : {}),
        ...(this.o.hooks ? { hooks: this.o.hooks } : {}),
      });
      try {
        const removed = await set.reconcile();
        if (removed.length > 0) this.o.report(`${name}: removed the earlier version of ${removed.join(", ")}`);
      } catch (err) {
        this.o.report(`${name}: ${(err as Error).message}`);
        this.files.set(name, { contentHash, manifestHash: manifest.manifestHash });
        continue;
      }
      for (const p of manifest.pods) claimed.set(`${p.metadata.namespace}/${p.metadata.name}`, name);
      this.files.set(name, { contentHash, manifestHash: manifest.manifestHash, set });
      set.start();
      this.o.report(`${name}: ${existing ? "changed" : "added"}: running ${podNames(manifest)}`);
    }
    // 3. Pods of this agent that no current file declares (files removed while the agent was down).
    const wanted = new Set<string>();
    for (const f of this.files.values()) for (const p of f.set?.manifest.pods ?? []) wanted.add(p.metadata.uid);
    const keepManifests = new Set([...this.files.values()].filter((f) => !f.set).map((f) => f.manifestHash));
    const { items } = await this.o.client.runtime.listPodSandbox({
      filter: { labelSelector: { [LABELS.owner]: this.owner } },
    });
    const orphans = new Map<string, string>();
    for (const sb of items) {
      const uid = sb.metadata?.uid ?? "";
      if (wanted.has(uid) || keepManifests.has(sb.labels[LABELS.manifest] ?? "")) continue;
      orphans.set(uid, `${sb.metadata?.namespace}/${sb.metadata?.name}`);
    }
    for (const [uid, name] of orphans) {
      if (this.stopped) return;
      this.o.report(`removing pod ${name}: its manifest is gone or changed`);
      await removePod(uid, {
        client: this.o.client,
        clock: this.o.clock ?? realClock,
        layout: this.o.layout,
        hostIP: this.o.host.hostIP,
      }).catch((err) => this.o.report(`remove pod ${name}: ${(err as Error).message}`));
    }
  }

  private parses(name: string, text: string): boolean {
    try {
      parseManifest(text, { path: join(this.dir, name), displayName: name });
      return true;
    } catch (err) {
      const f = this.files.get(name);
      const h = hash(text);
      if (f && f.contentHash !== h) {
        // Report a broken edit once, keep the running version.
        const lines = err instanceof ManifestError ? err.problems : [(err as Error).message];
        for (const l of lines) this.o.report(`invalid manifest${f.set ? " (keeping the running pods)" : ""}: ${l}`);
        f.contentHash = h;
      }
      return false;
    }
  }
}

function hash(text: string): string {
  return createHash("sha256").update(text).digest("hex");
}

function podNames(m: ParsedManifest): string {
  return m.pods.map((p) => `pod ${p.metadata.namespace}/${p.metadata.name}`).join(", ");
}
