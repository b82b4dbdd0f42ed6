import { isIP } from "node:net";
import { failedPrecondition, invalidArgument, messageOf, notFound, wrap } from "../errdefs/index.js";
import { type Logger, silentLogger } from "../log/index.js";
import { KeyedMutex } from "../util/index.js";
import { type CacheEntry, readCache, removeCache, writeCache } from "./cache.js";
import { type CapabilityArgs, runtimeConfigFor } from "./capabilities.js";
import { applyPodCidrs, compareVersions, type NetworkConfigList, needsPodCidr, type PluginConf } from "./config.js";
import { masqueradesInNetns, removeMasquerade } from "./masquerade.js";
import { isNetns } from "./netns.js";
import { checkName, DEFAULT_CONF_DIR, DEFAULT_IFNAME, DEFAULT_PLUGIN_DIRS, DEFAULT_RESULT_DIR } from "./paths.js";
import { type CniCommand, execPlugin, pluginStdin } from "./plugin.js";
import { parseResult, toPodNetwork } from "./result.js";
import type { Bandwidth, DnsConfig, IpRange, NetworkStatus, PodNetwork, PortMapping } from "./types.js";
import { ConfigWatcher } from "./watcher.js";

/** Options of `createNetworkManager`; every path defaults to the layout in `paths.ts`. */
export interface NetworkManagerOptions {
  confDir?: string;
  pluginDirs?: readonly string[];
  resultDir?: string;
  /** CNI_IFNAME of the pod interface (default eth0). */
  ifName?: string;
  /** Limit on one plugin execution (default 60 s). */
  pluginTimeoutMs?: number;
  /** How often a missing conf dir is looked for (default 2 s). */
  pollIntervalMs?: number;
  logger?: Logger;
  /** Told of every ADD and DEL of a plugin chain, with its duration and outcome (metrics); must not throw. */
  onOperation?: (event: NetworkOperation) => void;
}

/** One ADD or DEL of a pod's plugin chain as {@link NetworkManagerOptions.onOperation} sees it. */
export interface NetworkOperation {
  operation: "add" | "del";
  seconds: number;
  ok: boolean;
}

/** One pod's attachment request, in domain terms (`cri/` converts the CRI sandbox config). */
export interface SetUpRequest {
  sandboxId: string;
  /** The pod's network namespace (from `createNetns`); must exist. */
  netnsPath: string;
  podName: string;
  podNamespace: string;
  podUid: string;
  portMappings?: PortMapping[];
  bandwidth?: Bandwidth;
  dns?: DnsConfig;
  /** Capability `ipRanges`; defaults to one range set per pod CIDR when a pod CIDR is known. */
  ipRanges?: IpRange[][];
  /** Pod CIDR(s), comma-separated, for this call only; defaults to the one from `setPodCidr`. */
  podCidr?: string;
  signal?: AbortSignal;
}

/** The CRI NetworkReady reason while pods cannot be networked (kubelet's and containerd's word). */
export const NETWORK_NOT_READY_REASON = "NetworkPluginNotReady";

const VERSION_WITH_PREV_RESULT = "0.4.0";

/**
 * Starts a NetworkManager: reads the conf dir once and keeps watching it. Never fails for a
 * missing or invalid configuration; `status()` reports that instead.
 */
export async function createNetworkManager(options: NetworkManagerOptions = {}): Promise<NetworkManager> {
  const logger = options.logger ?? silentLogger();
  const confDir = options.confDir ?? DEFAULT_CONF_DIR;
  const watcher = await ConfigWatcher.start({
    confDir,
    logger,
    ...(options.pollIntervalMs === undefined ? {} : { pollIntervalMs: options.pollIntervalMs }),
  });
  return new NetworkManager(options, watcher, logger);
}

/**
 * Pod networking through CNI: attaches a pod's network namespace to the configured network
 * and detaches it, one attachment (sandbox ID, eth0) per pod.
 *
 * Lifecycle of an attachment:
 * ```
 *   setUp ──ADD ok──> attached ──tearDown──> gone
 *     │                  ^   └──check
 *     └─ADD failed──> DEL (rollback) ──> gone (or cached, when the rollback failed, for tearDown)
 * ```
 * Guarantees: operations on one sandbox are serialised; before the first plugin runs, the
 * configuration and arguments are persisted, and after the ADD its result, so `tearDown` after
 * a crash or restart deletes with exactly what was added, even if the conf dir changed since.
 * `tearDown` is idempotent. Call it while the netns still exists: plugins find the addresses
 * to un-masquerade inside it (bridge before 1.2 leaks its NAT chain otherwise).
 * `close()` stops the conf watcher; it does not touch attachments.
 */
export class NetworkManager {
  private readonly locks = new KeyedMutex();
  private readonly log: Logger;
  private readonly pluginDirs: readonly string[];
  private readonly resultDir: string;
  private readonly ifName: string;
  private readonly timeoutMs: number;
  private readonly onOperation: NetworkManagerOptions["onOperation"];
  private podCidrs: string[] = [];

  /** Use `createNetworkManager`. */
  constructor(
    options: NetworkManagerOptions,
    private readonly watcher: ConfigWatcher,
    logger: Logger,
  ) {
    this.log = logger.child({ module: "network" });
    this.pluginDirs = options.pluginDirs ?? DEFAULT_PLUGIN_DIRS;
    this.resultDir = options.resultDir ?? DEFAULT_RESULT_DIR;
    this.ifName = options.ifName ?? DEFAULT_IFNAME;
    this.timeoutMs = options.pluginTimeoutMs ?? 60_000;
    this.onOperation = options.onOperation;
  }

  /** Ready when a valid configuration exists (and, if it needs one, a pod CIDR is set). */
  status(): NetworkStatus {
    const config = this.watcher.config;
    if (config === undefined) {
      return {
        ready: false,
        reason: NETWORK_NOT_READY_REASON,
        message: `cni config not ready: ${this.watcher.error ?? "not loaded"}`,
      };
    }
    if (this.podCidrs.length === 0 && needsPodCidr(config)) {
      return {
        ready: false,
        reason: NETWORK_NOT_READY_REASON,
        message: `cni config ${config.source} waits for the node's pod cidr`,
      };
    }
    return { ready: true };
  }

  /**
   * Records the node's pod CIDR(s) (comma-separated for dual stack, "" to clear), used by
   * later ADDs of berth's default network and of lists with the `{{podCidr}}` placeholder.
   */
  setPodCidr(cidr: string): void {
    this.podCidrs = parseCidrs(cidr);
    this.log.info({ podCidr: this.podCidrs }, "pod cidr set");
  }

  /**
   * Runs ADD of every plugin in order, chaining results, and returns the pod's addresses
   * (primary first) and interfaces. On any failure it runs DEL of every plugin in reverse so
   * nothing stays behind, and throws the ADD error (a CniPluginError carries the plugin's
   * code, msg and details). FailedPrecondition when the network is not ready.
   */
  async setUp(req: SetUpRequest): Promise<PodNetwork> {
    checkName("sandbox id", req.sandboxId);
    return this.locks.run(req.sandboxId, async () => {
      const id = req.sandboxId;
      const log = this.log.child({ sandboxId: id });
      let entry: CacheEntry;
      try {
        entry = {
          kind: "berthCniCacheV1",
          containerId: id,
          ifName: this.ifName,
          config: this.configFor(req.podCidr),
          cniArgs: cniArgs({ podNamespace: req.podNamespace, podName: req.podName, sandboxId: id, podUid: req.podUid }),
          capabilityArgs: capabilityArgs(req, req.podCidr === undefined ? this.podCidrs : parseCidrs(req.podCidr)),
        };
        // Written before the first plugin runs: a crash mid-ADD must still leave DEL what it needs.
        await writeCache(this.resultDir, entry);
      } catch (err) {
        throw wrap(err, `set up network for sandbox ${id}`);
      }
      const started = performance.now();
      let prevResult: unknown;
      let added = false;
      try {
        for (const plugin of entry.config.plugins) {
          prevResult = await this.exec("ADD", entry, plugin, { netns: req.netnsPath, prevResult, signal: req.signal });
        }
        const network = toPodNetwork(parseResult(prevResult, `network ${entry.config.name}`), this.ifName);
        added = true;
        this.observe("add", started, true);
        await writeCache(this.resultDir, { ...entry, result: prevResult });
        log.info(
          { network: entry.config.name, ips: network.ips, ms: Math.round(performance.now() - started) },
          "pod network set up",
        );
        return network;
      } catch (err) {
        if (!added) this.observe("add", started, false);
        // Best effort and without the caller's signal: a canceled RPC must still not leak.
        const undo: CacheEntry = prevResult === undefined ? entry : { ...entry, result: prevResult };
        try {
          await this.del(undo, req.netnsPath, undefined);
          await removeCache(this.resultDir, id, this.ifName);
        } catch (undoErr) {
          log.warn({ err: messageOf(undoErr) }, "roll back failed pod network set-up; tearDown will retry");
        }
        throw wrap(err, `set up network for sandbox ${id}`);
      }
    });
  }

  /**
   * Runs DEL of every plugin in reverse order with the cached configuration and result, then
   * drops the cache. Without a cache (never set up, or already torn down) it runs DEL with
   * the current configuration and no prevResult, which plugins treat as a no-op if nothing is
   * there; with no configuration either it does nothing. "not found" errors are ignored, as
   * containerd does. Safe to repeat; on error the cache is kept so a retry can finish.
   */
  async tearDown(sandboxId: string, netnsPath: string, options: { signal?: AbortSignal } = {}): Promise<void> {
    checkName("sandbox id", sandboxId);
    return this.locks.run(sandboxId, async () => {
      const log = this.log.child({ sandboxId });
      try {
        let entry = await this.cached(sandboxId, log);
        if (entry === undefined) {
          let config: NetworkConfigList;
          try {
            config = this.configFor(undefined);
          } catch (err) {
            // No usable config now means no ADD could have run with it either.
            log.warn(
              { reason: messageOf(err) },
              "no cached cni result and no usable network config: nothing to delete",
            );
            return;
          }
          entry = {
            kind: "berthCniCacheV1",
            containerId: sandboxId,
            ifName: this.ifName,
            config,
            cniArgs: cniArgs({ sandboxId }),
            capabilityArgs: {},
          };
        }
        const started = performance.now();
        try {
          await this.del(entry, netnsPath, options.signal);
        } catch (err) {
          this.observe("del", started, false);
          throw err;
        }
        this.observe("del", started, true);
        await removeCache(this.resultDir, sandboxId, this.ifName);
        log.info({ network: entry.config.name, ms: Math.round(performance.now() - started) }, "pod network torn down");
      } catch (err) {
        throw wrap(err, `tear down network for sandbox ${sandboxId}`);
      }
    });
  }

  private observe(operation: NetworkOperation["operation"], started: number, ok: boolean): void {
    try {
      this.onOperation?.({ operation, seconds: (performance.now() - started) / 1000, ok });
    } catch (err) {
      this.log.warn({ err: messageOf(err) }, "network operation observer failed");
    }
  }

  /**
   * Runs CHECK of every plugin with the cached result; throws the first plugin error.
   * NotFound when the sandbox has no attachment; a no-op when the list disables CHECK or
   * predates it (cniVersion < 0.4.0).
   */
  async check(sandboxId: string, netnsPath: string, options: { signal?: AbortSignal } = {}): Promise<void> {
    checkName("sandbox id", sandboxId);
    return this.locks.run(sandboxId, async () => {
      try {
        const entry = await readCache(this.resultDir, sandboxId, this.ifName);
        if (entry?.result === undefined) throw notFound(`no cni attachment for sandbox ${sandboxId}`);
        if (entry.config.disableCheck || compareVersions(entry.config.cniVersion, VERSION_WITH_PREV_RESULT) < 0) return;
        for (const plugin of entry.config.plugins) {
          await this.exec("CHECK", entry, plugin, {
            netns: netnsPath,
            prevResult: entry.result,
            signal: options.signal,
          });
        }
      } catch (err) {
        throw wrap(err, `check network for sandbox ${sandboxId}`);
      }
    });
  }

  /** The pod network of a set-up sandbox from the cache (after a restart), or undefined. */
  async podNetwork(sandboxId: string): Promise<PodNetwork | undefined> {
    const entry = await readCache(this.resultDir, sandboxId, this.ifName);
    if (entry?.result === undefined) return undefined;
    return toPodNetwork(parseResult(entry.result, `cached result of ${sandboxId}`), entry.ifName);
  }

  /** Stops watching the conf dir. Attachments and caches are left as they are. */
  close(): void {
    this.watcher.close();
  }

  /** The configuration a new ADD uses: the current list with the pod CIDR substituted. */
  private configFor(podCidr: string | undefined): NetworkConfigList {
    const config = this.watcher.config;
    if (config === undefined) throw failedPrecondition(`network not ready: ${this.watcher.error ?? "no cni config"}`);
    return applyPodCidrs(config, podCidr === undefined ? this.podCidrs : parseCidrs(podCidr));
  }

  private async cached(sandboxId: string, log: Logger): Promise<CacheEntry | undefined> {
    try {
      return await readCache(this.resultDir, sandboxId, this.ifName);
    } catch (err) {
      // A torn cache must not block pod removal: fall back to the current configuration.
      log.warn({ err: messageOf(err) }, "unreadable cni result cache; deleting with the current config");
      return undefined;
    }
  }

  /**
   * DEL of every plugin in reverse. Each plugin runs even when an earlier one failed, so one
   * broken plugin does not leak the others' resources; the first real error is thrown.
   */
  private async del(entry: CacheEntry, netnsPath: string, signal: AbortSignal | undefined): Promise<void> {
    // A namespace that is gone is passed as "", which the spec allows for DEL: plugins then
    // release what lives outside it (IPAM) instead of failing to enter it. "Gone" includes a pin
    // that was unmounted (by an admin, or a reboot with the state dir on tmpfs) or replaced by a
    // plain file: the file exists, but the bridge plugin fails on it with "unknown FS magic"
    // forever, and the pod could never be removed (containerd passes "" for a closed netns too).
    const netns = netnsPath !== "" && (await isNetns(netnsPath)) ? netnsPath : "";
    if (netnsPath !== "" && netns === "") {
      this.log.warn({ sandboxId: entry.containerId, netnsPath }, "pod netns is gone; cni DEL without it");
    }
    const prev = compareVersions(entry.config.cniVersion, VERSION_WITH_PREV_RESULT) >= 0 ? entry.result : undefined;
    let first: unknown;
    for (const plugin of [...entry.config.plugins].reverse()) {
      try {
        await this.exec("DEL", entry, plugin, { netns, prevResult: prev, signal });
        if (netns === "" && masqueradesInNetns(plugin)) await this.removeMasquerade(entry);
      } catch (err) {
        // containerd's rule: "not found" means already gone. It also covers a plugin binary
        // that is no longer installed, which leaves nothing this DEL could undo.
        const msg = messageOf(err);
        if (msg.includes("not found") || (netns === "" && msg.includes("no such file or directory"))) {
          this.log.debug({ sandboxId: entry.containerId, plugin: plugin.type, err: msg }, "ignored cni DEL error");
          continue;
        }
        first ??= err;
      }
    }
    if (first !== undefined) throw first;
  }

  /** What a netns-less DEL of bridge/ptp leaves: the pod's masquerade rules (see masquerade.ts). */
  private async removeMasquerade(entry: CacheEntry): Promise<void> {
    if (entry.result === undefined) return;
    const ips = toPodNetwork(parseResult(entry.result, "cached cni result"), entry.ifName).ips;
    const errors = await removeMasquerade(entry.config.name, entry.containerId, ips);
    if (errors.length > 0) throw new Error(`remove masquerade rules: ${errors.join("; ")}`);
  }

  /** One plugin execution for `entry`'s attachment; ADD returns the result to chain on. */
  private async exec(
    command: CniCommand,
    entry: CacheEntry,
    plugin: PluginConf,
    { netns, prevResult, signal }: { netns: string; prevResult: unknown; signal: AbortSignal | undefined },
  ): Promise<unknown> {
    const stdin = pluginStdin(entry.config, plugin, {
      runtimeConfig: runtimeConfigFor(plugin, entry.capabilityArgs),
      prevResult,
    });
    const started = performance.now();
    const out = await execPlugin(plugin.type, stdin, {
      command,
      containerId: entry.containerId,
      netns,
      ifName: entry.ifName,
      args: entry.cniArgs,
      pluginDirs: this.pluginDirs,
      timeoutMs: this.timeoutMs,
      ...(signal ? { signal } : {}),
    });
    this.log.debug(
      { sandboxId: entry.containerId, plugin: plugin.type, command, ms: Math.round(performance.now() - started) },
      "cni plugin done",
    );
    // A chained plugin that prints nothing on ADD passes the previous result through.
    return command === "ADD" ? (out ?? prevResult) : undefined;
  }
}

/** CNI_ARGS as kubelet-era runtimes pass it; IgnoreUnknown lets plugins skip keys they do not know. */
function cniArgs(pod: { sandboxId: string; podNamespace?: string; podName?: string; podUid?: string }): string {
  const pairs: [string, string | undefined][] = [
    ["IgnoreUnknown", "1"],
    ["K8S_POD_NAMESPACE", pod.podNamespace],
    ["K8S_POD_NAME", pod.podName],
    ["K8S_POD_INFRA_CONTAINER_ID", pod.sandboxId],
    ["K8S_POD_UID", pod.podUid],
  ];
  return pairs
    .filter((p): p is [string, string] => p[1] !== undefined)
    .map(([k, v]) => {
      if (/[;=]/.test(v)) throw invalidArgument(`cni arg ${k}: value ${JSON.stringify(v)} contains ; or =`);
      return `${k}=${v}`;
    })
    .join(";");
}

function capabilityArgs(req: SetUpRequest, podCidrs: readonly string[]): CapabilityArgs {
  const args: CapabilityArgs = {};
  if (req.portMappings) args.portMappings = req.portMappings;
  if (req.bandwidth) args.bandwidth = req.bandwidth;
  if (req.dns) args.dns = req.dns;
  // Without explicit ranges, the node's pod CIDR is the `ipRanges` an IPAM that declares the
  // capability allocates from (one range set per CIDR, as `{{podCidr}}` substitution does).
  if (req.ipRanges) args.ipRanges = req.ipRanges;
  else if (podCidrs.length > 0) args.ipRanges = podCidrs.map((subnet) => [{ subnet }]);
  return args;
}

function parseCidrs(text: string): string[] {
  const cidrs = text
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean);
  for (const cidr of cidrs) {
    const [addr = "", prefix = "", ...rest] = cidr.split("/");
    const family = isIP(addr);
    const bits = Number(prefix);
    if (family === 0 || rest.length > 0 || !/^\d+$/.test(prefix) || bits > (family === 4 ? 32 : 128)) {
      throw invalidArgument(`invalid pod cidr ${JSON.stringify(cidr)}`);
    }
  }
  return cidrs;
}
