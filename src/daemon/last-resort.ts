import type { Logger } from "../log/index.js";

/**
 * berthd's last-resort handler for errors nothing else caught.
 *
 * Policy: no path a client, a container or a registry can trigger may throw uncaught. Every
 * spawned process has an "error" listener, every stream a peer can break is handled (pipeline()
 * or explicit listeners), and every promise started without being awaited has a catch that logs.
 * This handler exists for the bug that slipped through, and it makes that bug visible and safe.
 *
 * It logs the error at `fatal` with its stack and where it came from, then exits with status 1.
 * Exiting, not continuing, because after an uncaught exception the code that threw was cut off
 * half-way: a lock may be held forever, a record half-changed in memory, a rollback never run.
 * Continuing would serve from that state for as long as the daemon lives. Exiting is cheap and
 * safe for berth: containers run under conmon and outlive berthd, and a restarted berthd rebuilds
 * its state from disk and reconnects to them (test/e2e/recovery.test.ts proves it), so the
 * supervisor (systemd `Restart=always`, or the kubelet's node setup) restarts it with every
 * container intact. An unhandled rejection is treated the same way: Node's default since v15,
 * and the failed operation may equally have left its work half-done.
 */

/** The part of `process` the handler uses; a unit test passes an EventEmitter. */
export interface ProcessEvents {
  on(event: "uncaughtException", listener: (err: unknown, origin: string) => void): unknown;
  on(event: "unhandledRejection", listener: (reason: unknown) => void): unknown;
  off(event: "uncaughtException", listener: (err: unknown, origin: string) => void): unknown;
  off(event: "unhandledRejection", listener: (reason: unknown) => void): unknown;
}

/** Options of {@link installLastResortHandler}. */
export interface LastResortOptions {
  log: Logger;
  /** Ends the process; `process.exit` in berthd. Called at most once. */
  exit: (code: number) => void;
  /** Fields added to the log line, e.g. the daemon's socket and root. */
  context?: () => Record<string, unknown>;
}

/** Installs the handler on `proc` (see the module comment). Returns a function that removes it. */
export function installLastResortHandler(proc: ProcessEvents, options: LastResortOptions): () => void {
  let exiting = false;
  const report = (kind: "uncaughtException" | "unhandledRejection", err: unknown, origin: string) => {
    if (exiting) return;
    exiting = true;
    try {
      options.log.fatal(
        {
          ...safeContext(options.context),
          kind,
          origin,
          pid: process.pid,
          uptimeSeconds: Math.round(process.uptime()),
          err: err instanceof Error ? err : { message: describe(err) },
        },
        `${kind}: a bug let an error escape; exiting so the supervisor restarts berthd (containers keep running)`,
      );
    } finally {
      options.exit(1);
    }
  };
  const onException = (err: unknown, origin: string) => report("uncaughtException", err, origin);
  const onRejection = (reason: unknown) => report("unhandledRejection", reason, "unhandledRejection");
  proc.on("uncaughtException", onException);
  proc.on("unhandledRejection", onRejection);
  return () => {
    proc.off("uncaughtException", onException);
    proc.off("unhandledRejection", onRejection);
  };
}

function safeContext(context: (() => Record<string, unknown>) | undefined): Record<string, unknown> {
  try {
    return context?.() ?? {};
  } catch {
    return {};
  }
}

/** A thrown non-Error (a string, an object) as text, never throwing itself. */
function describe(v: unknown): string {
  try {
    return typeof v === "string" ? v : (JSON.stringify(v) ?? String(v));
  } catch {
    return Object.prototype.toString.call(v);
  }
}
