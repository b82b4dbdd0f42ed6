import { type FSWatcher, watch } from "node:fs";
import { stat } from "node:fs/promises";
import { messageOf } from "../errdefs/index.js";
import { type Logger, silentLogger } from "../log/index.js";
import { loadNetworkConfig, type NetworkConfigList } from "./config.js";

/** Options of `ConfigWatcher.start`. */
export interface ConfigWatcherOptions {
  confDir: string;
  logger?: Logger;
  /** How often to look for a conf dir that does not exist yet (default 2000 ms). */
  pollIntervalMs?: number;
  /** Quiet time after the last change before re-reading, so one edit is one reload (default 50 ms). */
  debounceMs?: number;
}

/**
 * Keeps the current network configuration of a conf dir, so readiness (CRI NetworkReady)
 * follows the admin adding, fixing or removing a conflist without a daemon restart.
 *
 * Lifecycle: `start()` reads the dir once and resolves; then an fs.watch on the dir re-reads it
 * after every change (a dir that does not exist yet, or was removed, is polled for instead);
 * `close()` stops everything. Reads are serialised, so `current` always reflects the latest
 * completed read, never an older one finishing late.
 */
export class ConfigWatcher {
  private state: { config: NetworkConfigList } | { error: string } = { error: "cni config uninitialized" };
  private watcher: FSWatcher | undefined;
  private watchedIno: number | undefined;
  private timer: NodeJS.Timeout | undefined;
  private chain: Promise<void> = Promise.resolve();
  private closed = false;
  private readonly log: Logger;

  private constructor(private readonly options: ConfigWatcherOptions) {
    this.log = (options.logger ?? silentLogger()).child({ confDir: options.confDir });
  }

  /** Reads the conf dir and starts watching it. Never throws for a missing or broken config. */
  static async start(options: ConfigWatcherOptions): Promise<ConfigWatcher> {
    const w = new ConfigWatcher(options);
    await w.reload();
    return w;
  }

  /** The valid configuration in force, or undefined when there is none. */
  get config(): NetworkConfigList | undefined {
    return "config" in this.state ? this.state.config : undefined;
  }

  /** Why there is no configuration (`no network config found in /etc/cni/net.d`), else undefined. */
  get error(): string | undefined {
    return "error" in this.state ? this.state.error : undefined;
  }

  /** Re-reads the conf dir now; resolves once this read (and any queued before it) is done. */
  reload(): Promise<void> {
    this.chain = this.chain.then(() => this.load());
    return this.chain;
  }

  /** Stops watching and polling. Idempotent. */
  close(): void {
    this.closed = true;
    clearTimeout(this.timer);
    this.watcher?.close();
    this.watcher = undefined;
  }

  private async load(): Promise<void> {
    if (this.closed) return;
    const wasReady = this.config !== undefined;
    try {
      const config = await loadNetworkConfig(this.options.confDir);
      this.state = { config };
      if (!wasReady) this.log.info({ network: config.name, source: config.source }, "network config loaded");
    } catch (err) {
      const error = messageOf(err);
      if (error !== this.error) this.log.warn({ reason: error }, "network not ready");
      this.state = { error };
    }
    await this.arm();
  }

  /** Watches the dir if it exists (re-watching a recreated one), else schedules a poll. */
  private async arm(): Promise<void> {
    if (this.closed) return;
    let ino: number | undefined;
    try {
      ino = (await stat(this.options.confDir)).ino;
    } catch {
      ino = undefined;
    }
    if (ino !== this.watchedIno || this.watcher === undefined) {
      this.watcher?.close();
      this.watcher = undefined;
      this.watchedIno = undefined;
      if (ino !== undefined) {
        try {
          this.watcher = watch(this.options.confDir, { persistent: false }, () =>
            this.schedule(this.options.debounceMs ?? 50),
          );
          this.watcher.on("error", () => {
            // A failed watch delivers no more events: drop it so the next read re-arms it.
            this.watcher?.close();
            this.watcher = undefined;
            this.schedule(0);
          });
          this.watchedIno = ino;
        } catch (err) {
          this.log.warn({ err: messageOf(err) }, "watch network config dir");
        }
      }
    }
    // Without a working watch, polling is the only way to notice the dir appearing.
    if (this.watcher === undefined) this.schedule(this.options.pollIntervalMs ?? 2000);
  }

  private schedule(delayMs: number): void {
    if (this.closed) return;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => void this.reload(), delayMs);
    this.timer.unref();
  }
}
