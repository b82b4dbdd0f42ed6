import { RuntimeError } from "../errdefs/index.js";
import { type ChildRun, startChild } from "../sys/index.js";
import { untilAborted } from "../util/index.js";

/**
 * The one typed wrapper around conmon (tested with 2.1.6), the per-container monitor. conmon double-forks
 * away from us, runs `runc create`, holds the container's stdio, writes the CRI log, the exit code and the
 * OOM marker, and serves attach and the `ctl` FIFO, so containers and their logs outlive the daemon.
 *
 * The handshake (CRI-O's): conmon gets two extra fds, 3 = sync pipe and 4 = start pipe, named by the
 * environment (`_OCI_SYNCPIPE=3`, `_OCI_STARTPIPE=4`). It blocks until one byte arrives on the start pipe
 * (the moment to move it into a cgroup, if we ever do), then reports one JSON line on the sync pipe:
 * `{"pid": N}` after `runc create` succeeded or `{"pid": -1, "message": "..."}`; in exec mode a single
 * `{"exit_code": N[, "message": "command timed out"]}` when the process has finished.
 */

/** conmon's `--log-level` values. */
export type ConmonLogLevel = "error" | "warn" | "info" | "debug" | "trace";

/** Everything `conmon` needs to create one container. */
export interface ConmonCreateOptions {
  id: string;
  bundleDir: string;
  persistDir: string;
  exitDir: string;
  /** The CRI log file (written with conmon's `k8s-file` driver). */
  logPath: string;
  conmonPidFile: string;
  containerPidFile: string;
  runtimePath: string;
  /** Global runtime flags, each passed as `--runtime-arg` (e.g. `--root=/run/runc`). */
  runtimeArgs: readonly string[];
  /** Where conmon puts the `<id>` symlink to the bundle holding the attach socket. */
  socketDir: string;
  terminal: boolean;
  stdin: boolean;
  /** Keep stdin open after the first attach client disconnects (CRI: stdin && !stdin_once). */
  leaveStdinOpen: boolean;
  logLevel?: ConmonLogLevel;
  logSizeMax?: number;
  systemdCgroup?: boolean;
}

/** conmon argv (without the binary) for creating a container. `--syslog` is off: conmon's stderr is /dev/null. */
export function conmonCreateArgv(o: ConmonCreateOptions): string[] {
  // biome-ignore format: one flag and its value per line
  const args = [
    "--bundle", o.bundleDir,
    "--cid", o.id,
    "--cuuid", o.id,
    "--name", o.id,
    "--exit-dir", o.exitDir,
    "--persist-dir", o.persistDir,
    "--log-path", `k8s-file:${o.logPath}`,
    "--log-level", o.logLevel ?? "warn",
    "--conmon-pidfile", o.conmonPidFile,
    "--container-pidfile", o.containerPidFile,
    "--runtime", o.runtimePath,
    "--socket-dir-path", o.socketDir,
  ];
  for (const a of o.runtimeArgs) args.push("--runtime-arg", a);
  if (o.systemdCgroup) args.push("--systemd-cgroup");
  if (o.logSizeMax !== undefined && o.logSizeMax >= 0) args.push("--log-size-max", String(o.logSizeMax));
  if (o.terminal) args.push("--terminal");
  else if (o.stdin) {
    // With a tty conmon always keeps the console open; these only matter for pipes.
    args.push("--stdin");
    if (o.leaveStdinOpen) args.push("--leave-stdin-open");
  }
  return args;
}

/** Everything `conmon --exec` needs for one ExecSync. */
export interface ConmonExecOptions {
  id: string;
  runtimePath: string;
  runtimeArgs: readonly string[];
  /** process.json for `runc exec --process`. */
  processSpec: string;
  pidFile: string;
  /** Temporary CRI-format log the output is parsed from. */
  logPath: string;
  socketDir: string;
  /** conmon kills the process group after this many seconds; 0 or absent: no limit. */
  timeoutSec?: number;
  logLevel?: ConmonLogLevel;
  /** Cap on the bytes logged (CRI-O and containerd both use 16 MiB). */
  logGlobalSizeMax?: number;
}

/** The most an exec's log (its stdout and stderr together) holds: conmon stops writing there (16 MiB). */
export const EXEC_LOG_MAX_BYTES = 16 * 1024 * 1024;

/**
 * conmon argv for an exec-sync. `--sync` keeps conmon our direct child (no double fork): the caller waits
 * for it anyway, and the exec then cannot outlive a daemon that is no longer waiting for its output.
 */
export function conmonExecArgv(o: ConmonExecOptions): string[] {
  // biome-ignore format: one flag and its value per line
  const args = [
    "--cid", o.id,
    "--name", o.id,
    "--runtime", o.runtimePath,
    "--container-pidfile", o.pidFile,
    "--exec",
    "--exec-process-spec", o.processSpec,
    "--log-path", `k8s-file:${o.logPath}`,
    "--log-level", o.logLevel ?? "warn",
    "--socket-dir-path", o.socketDir,
    "--log-global-size-max", String(o.logGlobalSizeMax ?? EXEC_LOG_MAX_BYTES),
    "--sync",
  ];
  if (o.timeoutSec && o.timeoutSec > 0) args.push("--timeout", String(o.timeoutSec));
  for (const a of o.runtimeArgs) args.push("--runtime-arg", a);
  return args;
}

/** One JSON line conmon writes on the sync pipe. */
export interface SyncMessage {
  pid?: number;
  exit_code?: number;
  data?: number;
  message?: string;
}

/** How to run conmon. */
export interface SpawnConmonOptions {
  /** conmon's working directory; it creates its `oom` marker here, so create uses the bundle. */
  cwd: string;
  /** Extra environment (the handler's monitor env); PATH and the pipe variables are set here. */
  env?: Readonly<Record<string, string>>;
  signal?: AbortSignal;
  /** Give up (and SIGKILL the process we spawned) after this long. */
  timeoutMs?: number;
}

/**
 * Starts conmon with its sync pipe on fd 3 and its start pipe on fd 4 (through the spawn worker when berthd
 * enabled it, see src/sys/spawner.ts), writes the start byte, and resolves once conmon has exited and its
 * sync pipe reached EOF (or, with `firstLine`, delivered one line). conmon's stderr is collected meanwhile.
 */
function spawnWithPipes(
  file: string,
  args: readonly string[],
  o: SpawnConmonOptions,
  mode: { detached: boolean; firstLine: boolean },
): ChildRun {
  return startChild({
    file,
    args: [...args],
    ...(o.cwd ? { cwd: o.cwd } : {}),
    env: {
      PATH: process.env.PATH ?? "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
      ...o.env,
      _OCI_SYNCPIPE: "3",
      _OCI_STARTPIPE: "4",
    },
    // Node makes fds 3 and 4 socketpairs; conmon only read()s and write()s them, so that is as good as a pipe.
    stdio: ["ignore", "ignore", "pipe", "pipe", "pipe"],
    detached: mode.detached,
    // Only the process we started: a conmon that already forked is the caller's to clean up.
    killGroup: false,
    writes: { 4: "0" },
    reads: {
      // Diagnostics only: conmon prints here before it daemonizes, then points stderr at /dev/null.
      2: { max: 64 * 1024, wait: false },
      3: { max: 16 * 1024 * 1024, wait: true, untilLine: mode.firstLine },
    },
  });
}

/** The JSON lines conmon wrote on the sync pipe; `first` keeps only the first (create). */
function syncMessages(text: string, first: boolean): SyncMessage[] {
  const out: SyncMessage[] = [];
  for (const line of text.split("\n")) {
    if (!line.trim()) continue;
    out.push(JSON.parse(line.trim()) as SyncMessage);
    if (first) break;
  }
  return out;
}

function deadline(o: SpawnConmonOptions, what: string): { signal: AbortSignal; error: () => RuntimeError } {
  const signals = [o.signal, o.timeoutMs !== undefined ? AbortSignal.timeout(o.timeoutMs) : undefined].filter(
    (s): s is AbortSignal => s !== undefined,
  );
  const signal = AbortSignal.any(signals);
  return {
    signal,
    error: () =>
      o.signal?.aborted
        ? new RuntimeError("Canceled", `${what}: canceled`)
        : new RuntimeError("DeadlineExceeded", `${what}: timed out after ${o.timeoutMs} ms`),
  };
}

/**
 * Starts a detached conmon for `create` and completes the handshake: returns conmon's sync message once
 * the first conmon process has exited (so its `-P` pidfile is written) and every fd we shared is closed,
 * leaving conmon tied to nothing of ours. Throws if conmon exits non-zero or silently, or on abort/timeout
 * (after SIGKILLing the process we spawned; a conmon that already forked is the caller's to clean up).
 */
export async function startConmon(file: string, args: readonly string[], o: SpawnConmonOptions): Promise<SyncMessage> {
  const s = spawnWithPipes(file, args, o, { detached: true, firstLine: true });
  const d = deadline(o, "conmon");
  try {
    const r = await untilAborted(s.result, d.signal);
    const msg = syncMessages(r.output[3] ?? "", true)[0];
    const stderr = (r.output[2] ?? "").trim();
    if (r.code !== 0 && msg === undefined)
      throw new RuntimeError("Internal", `conmon: exit status ${r.code}${stderr ? `: ${stderr}` : ""}`);
    if (msg === undefined)
      throw new RuntimeError("Internal", `conmon: exited without reporting${stderr ? `: ${stderr}` : ""}`);
    return msg;
  } catch (err) {
    if (d.signal.aborted) {
      s.kill();
      throw d.error();
    }
    throw err;
  }
}

/** The outcome of an attached (`--sync`) conmon run. */
export interface ConmonRun {
  messages: SyncMessage[];
  /** conmon's own exit status (null when killed). */
  code: number | null;
  stderr: string;
}

/**
 * Runs conmon attached (`--sync`, exec mode) to completion and returns every sync message. On abort or
 * timeout conmon is SIGKILLed and the error is Canceled/DeadlineExceeded.
 */
export async function runConmon(file: string, args: readonly string[], o: SpawnConmonOptions): Promise<ConmonRun> {
  const s = spawnWithPipes(file, args, o, { detached: false, firstLine: false });
  const d = deadline(o, "conmon exec");
  try {
    const r = await untilAborted(s.result, d.signal);
    return { messages: syncMessages(r.output[3] ?? "", false), code: r.code, stderr: (r.output[2] ?? "").trim() };
  } catch (err) {
    if (d.signal.aborted) {
      s.kill();
      throw d.error();
    }
    throw err;
  }
}
