import { accessSync, constants } from "node:fs";
import { chmod, mkdir } from "node:fs/promises";
import { createServer, type Http2Session } from "node:http2";
import { createServer as createNetServer } from "node:net";
import { join } from "node:path";
import type { Config } from "../config/index.js";
import { type Condition, type CriContext, createCriHandler, createRpcTracker } from "../cri/index.js";
import type { Logger } from "../log/index.js";
import { createMetrics, type MetricsServer, metricsInterceptor, serveMetrics } from "../metrics/index.js";
import { openStore, type Store } from "../store/index.js";
import { enableSpawnWorker, stopWorker } from "../sys/index.js";
import { ensureDir, packageVersion } from "../util/index.js";
import { acceptWithAuthorityFix } from "./authority.js";
import { lockRoot, type RootLock } from "./lock.js";
import { type LoopMonitor, startLoopMonitor } from "./loop-monitor.js";
import { buildModules, type Modules } from "./modules.js";
import { clearStaleSocket } from "./socket.js";

/**
 * The composition root: builds every module from the config, recovers state, serves CRI on
 * the socket, and shuts down in reverse order. Stopping berthd never stops containers.
 *
 * On-disk layout owned here (other modules draw their own subtrees):
 *   <root>/berthd.lock     PID of the daemon using this root
 *   <root>/meta.db         the store (SQLite, WAL)
 *   <root>/                0700
 *   <state>/               0711, volatile state (tmpfs): sockets, runtime state; berth's subdirectories 0700
 *   <socket>               the CRI socket, mode 0660
 */
export interface Daemon {
  readonly config: Config;
  /** Stops accepting RPCs, lets in-flight ones finish, closes every module. Idempotent. */
  close(): Promise<void>;
}

export async function startDaemon(config: Config, log: Logger): Promise<Daemon> {
  const undo: Array<() => Promise<void> | void> = [];
  try {
    // Host users are kept out of both trees (containerd's modes since CVE-2021-41103): the root holds image
    // content, snapshots and the database, so it is 0700; the state dir only needs to be traversable for
    // the socket (0660, group access), so it is 0711, and everything berth makes below it is 0700.
    // Modes are set on every start, so a tree an older berthd made looser is tightened.
    await ensureDir(config.root, 0o700);
    await ensureDir(config.state, 0o711);
    // Every run-to-completion child (runc, conmon, CNI plugins) starts off the event loop (src/sys/spawner.ts).
    enableSpawnWorker();
    undo.push(() => stopWorker());
    const lock: RootLock = await lockRoot(join(config.root, "berthd.lock"));
    undo.push(() => lock.release());
    const store: Store = openStore(join(config.root, "meta.db"));
    undo.push(() => store.close());

    let podCidr = store.collection<string>("settings").get("pod_cidr") ?? "";
    const tracker = createRpcTracker();
    // Started once serving (below): start-up's own module loading and recovery are not stalls.
    let loop: LoopMonitor | undefined;
    // Metrics read the managers at scrape time; the endpoint only listens once they exist (below).
    let counted: Modules | undefined;
    const metrics = config.metrics.address
      ? createMetrics({
          containers: () => countBy(counted?.containers.list() ?? [], (r) => r.state),
          sandboxes: () => countBy(counted?.sandboxes.list() ?? [], (r) => r.state),
          eventLoop: () => loop?.stats(),
        })
      : undefined;
    const modules = await buildModules(
      config,
      store,
      log,
      metrics
        ? {
            onPull: (e) => metrics.pull(e),
            onNetworkOperation: (e) => metrics.cni(e),
            onSession: (kind) => metrics.session(kind),
          }
        : {},
    );
    counted = modules;
    undo.push(() => modules.close());
    if (metrics) {
      const unsubscribe = modules.containers.onEvent((e) => {
        if (e.type !== "stopped") return;
        const rec = modules.containers.list({ id: e.containerId })[0];
        if (rec?.reason === "OOMKilled") metrics.oomKill();
      });
      undo.push(unsubscribe);
    }
    let metricsServer: MetricsServer | undefined;
    const ctx: CriContext = {
      log,
      version: packageVersion(),
      config,
      runtimeCondition: () => runtimeCondition(config),
      networkCondition: () => {
        const s = modules.network.status();
        return s.ready
          ? { ready: true, reason: "", message: "" }
          : { ready: false, reason: s.reason, message: s.message };
      },
      setPodCidr: async (cidr) => {
        store.collection<string>("settings").put("pod_cidr", cidr);
        modules.network.setPodCidr(cidr);
        podCidr = cidr;
        log.info({ podCidr: cidr }, "pod cidr updated");
      },
      verboseInfo: () => ({
        config: { config, podCidr },
        eventLoop: loop?.stats(),
        metrics: { address: metricsServer?.address ?? "" },
      }),
      images: modules.images,
      builder: modules.builder,
      streaming: modules.streaming,
      pods: { sandboxes: modules.sandboxes, containers: modules.containers },
    };

    // The HTTP/2 server does not listen itself: a plain listener accepts each connection and
    // hands it over, through the :authority fix that pre-1.31 kubelets need (see authority.ts).
    const server = createServer(
      createCriHandler(ctx, { tracker, ...(metrics ? { interceptors: [metricsInterceptor(metrics)] } : {}) }),
    );
    const sessions = new Set<Http2Session>();
    server.on("session", (s) => {
      sessions.add(s);
      s.once("close", () => sessions.delete(s));
    });
    const listener = createNetServer((socket) =>
      acceptWithAuthorityFix(socket, (stream) => server.emit("connection", stream), {
        onRefused: (reason) => log.warn({ reason }, "cri connection refused"),
      }),
    );
    await mkdir(join(config.socket, ".."), { recursive: true });
    await clearStaleSocket(config.socket);
    await new Promise<void>((resolve, reject) => {
      listener.once("error", reject);
      listener.listen(config.socket, () => {
        listener.off("error", reject);
        resolve();
      });
    });
    // Once listening, an accept failure (EMFILE under a flood of connections) is the server's to
    // report, not a reason to crash: the server keeps listening.
    listener.on("error", (err) => log.error({ err }, "CRI socket: accept failed"));
    await chmod(config.socket, 0o660);
    undo.push(
      () =>
        new Promise<void>((resolve) => {
          // close() stops new connections; each session's graceful close lets its
          // in-flight streams finish and ends its connection, then the callback fires.
          listener.close(() => resolve());
          for (const s of sessions) s.close();
        }),
    );
    loop = startLoopMonitor({ log: log.child({ component: "event-loop" }), tracker });
    undo.push(() => loop?.close());
    if (metrics) {
      const served = await serveMetrics(metrics, config.metrics.address, log.child({ component: "metrics" }));
      metricsServer = served;
      undo.push(() => served.close());
    }
    log.info(
      { socket: config.socket, root: config.root, state: config.state, version: ctx.version },
      "berthd serving CRI v1",
    );

    let closing: Promise<void> | undefined;
    return {
      config,
      close: () => {
        closing ??= unwind(undo, log);
        return closing;
      },
    };
  } catch (err) {
    await unwind(undo, log);
    throw err;
  }
}

/** Runs undo steps newest first; a failing step is logged and never hides the others. */
async function unwind(undo: Array<() => Promise<void> | void>, log: Logger): Promise<void> {
  for (const step of undo.reverse()) {
    try {
      await step();
    } catch (err) {
      log.error({ err }, "shutdown step failed");
    }
  }
  undo.length = 0;
}

/** RuntimeReady: the default OCI runtime and conmon are present and executable. */
function runtimeCondition(config: Config): Condition {
  const handler = config.runtime.handlers[config.runtime.default];
  for (const [what, path] of [
    ["OCI runtime", handler?.path ?? ""],
    ["conmon", config.runtime.conmon_path],
  ] as const) {
    try {
      accessSync(path, constants.X_OK);
    } catch {
      return { ready: false, reason: "RuntimeBinaryMissing", message: `${what} ${path} is not executable` };
    }
  }
  return { ready: true, reason: "", message: "" };
}

/** How many items fall in each group. */
function countBy<T>(items: readonly T[], key: (item: T) => string): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const item of items) {
    const k = key(item);
    counts[k] = (counts[k] ?? 0) + 1;
  }
  return counts;
}
