import { type FSWatcher, constants as fsc, watch } from "node:fs";
import { lstat, mkdir, mkdtemp, open, readdir, readFile, rm, stat, symlink, writeFile } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { readCriLogStreams } from "../crilog/index.js";
import { isKind, notFound, RuntimeError, wrap } from "../errdefs/index.js";
import { type Logger, silentLogger } from "../log/index.js";
import type { LinuxResources, Process, Spec } from "../oci/index.js";
import { killProcessTree } from "../sys/index.js";
import { ensureDir, KeyedMutex, pathExists, writeFileAtomic } from "../util/index.js";
import {
  type ConmonLogLevel,
  conmonCreateArgv,
  conmonExecArgv,
  EXEC_LOG_MAX_BYTES,
  runConmon,
  startConmon,
} from "./conmon.js";
import { type Layout, layout, validateId } from "./layout.js";
import { bindReadOnlyTrees, releaseReadOnlyTrees } from "./read-only-trees.js";
import { createRunc, type Runc, type RuncConfig, runcMessage } from "./runc.js";

/** One runtime handler (CRI `runtime_handler`): its runc and the environment its conmons get. */
export interface RuntimeHandlerConfig extends RuncConfig {
  monitorEnv?: Readonly<Record<string, string>>;
}

/** Construction options of the container runtime. */
export interface ContainerRuntimeOptions {
  /** Root of the layout drawn in layout.ts (a tmpfs directory in production). */
  stateDir: string;
  /** Handlers by name; `""` in a request means `defaultHandler`. */
  handlers: Readonly<Record<string, RuntimeHandlerConfig>>;
  /** Default "runc". */
  defaultHandler?: string;
  /** Default /usr/bin/conmon. */
  conmonPath?: string;
  conmonLogLevel?: ConmonLogLevel;
  /** How long `runc create` may take under conmon (CRI-O's container_create_timeout; default 240 s). */
  createTimeoutMs?: number;
  logger?: Logger;
}

/** What createContainer needs. `spec.process.terminal` is overwritten with `tty`, which conmon must agree with. */
export interface CreateContainerOptions {
  id: string;
  spec: Spec;
  /** The CRI log file; its directory is created if missing. Default: `containers/<id>/container.log`. */
  logPath?: string;
  tty?: boolean;
  stdin?: boolean;
  stdinOnce?: boolean;
  runtimeHandler?: string;
  /**
   * An existing bundle directory (e.g. holding the rootfs) to use instead of a fresh `containers/<id>/`;
   * `containers/<id>` then becomes a symlink to it. The caller owns and removes it.
   */
  bundleDir?: string;
  signal?: AbortSignal;
}

/** Result of createContainer. */
export interface CreatedContainer {
  /** The container's init pid (runc init, waiting for start). */
  pid: number;
  conmonPid: number;
}

/** A container's lifecycle state as runc and conmon report it. */
export type ContainerState = "created" | "running" | "paused" | "stopped";

/** Status of one container, combining `runc state` with conmon's exit and OOM files. */
export interface ContainerStatus {
  id: string;
  state: ContainerState;
  /** Init pid while created, running or paused. */
  pid?: number;
  /** runc's creation time. */
  createdAt?: Date;
  /** Set when stopped: the exit status, 128+signal when killed; 255 when unknown. */
  exitCode?: number;
  /** Set when stopped: when conmon recorded the exit (now, if unknown). */
  finishedAt?: Date;
  /** The container's cgroup saw an OOM kill. */
  oomKilled: boolean;
  /** Why exitCode is a guess. */
  message?: string;
}

/** An exit observed by the exit watcher. */
export interface ContainerExit {
  id: string;
  exitCode: number;
  finishedAt: Date;
  oomKilled: boolean;
}

/** Result of execSync. On timeout exitCode is -1 and stderr "command timed out" (CRI-O's contract). */
export interface ExecSyncResult {
  stdout: string;
  stderr: string;
  exitCode: number;
}

/** What recover() found on disk for the IDs the daemon's store knows. */
export interface RecoverResult {
  /** Current status of every known container that still has state on disk. */
  statuses: Map<string, ContainerStatus>;
  /** Known IDs with no state on disk (e.g. the state tmpfs was wiped by a reboot): treat as exited. */
  missing: string[];
  /** Containers on disk the store does not know: leftovers of an interrupted create, to delete. */
  unknown: string[];
}

interface MonitorRecord {
  id: string;
  handler: string;
  logPath: string;
  tty: boolean;
  stdin: boolean;
  stdinOnce: boolean;
  createdAt: string;
}

const TIMED_OUT = "command timed out";
const KILL_GRACE_MS = 30_000;
const POLL_MS = 100;

const errno = (err: unknown): string | undefined => (err as NodeJS.ErrnoException | undefined)?.code;

/**
 * Creates the runtime: makes the state directories and starts watching the exit directory. Nothing is
 * stopped or reconnected here; call `recover()` with the IDs the store knows after a restart.
 */
export async function createContainerRuntime(options: ContainerRuntimeOptions): Promise<ContainerRuntime> {
  const l = layout(options.stateDir);
  // Root-only (and tightened when an older berthd left them looser): bundles, logs, attach sockets, exit
  // codes and exec specs are nobody else's business, and a traversable path lets a host user reach them.
  await ensureDir(l.stateDir, 0o700);
  for (const dir of [l.containers, l.exits, l.attach, l.exec]) await ensureDir(dir, 0o700);
  return new ContainerRuntime(options, l);
}

/**
 * Runs containers with runc under one conmon each. Lifecycle: created by `createContainerRuntime()`, used
 * concurrently (operations on one container are serialised; status and execSync are not), ended by
 * `close()`, which stops watching but never stops containers: they keep running under conmon and a new
 * instance over the same stateDir picks them up (`recover()`).
 */
export class ContainerRuntime {
  private readonly log: Logger;
  private readonly runcs = new Map<string, { runc: Runc; env: Readonly<Record<string, string>> }>();
  private readonly records = new Map<string, MonitorRecord>();
  private readonly locks = new KeyedMutex();
  private readonly listeners = new Set<(exit: ContainerExit) => void>();
  /** IDs whose exit was already delivered to listeners (or found by recover). */
  private readonly reported = new Set<string>();
  private watcher: FSWatcher | undefined;
  private wakeUp: { promise: Promise<void>; resolve: () => void } = deferred();
  private readonly conmonPath: string;
  private readonly defaultHandler: string;

  /** Use `createContainerRuntime()`, which creates the directories this watches. */
  constructor(
    private readonly options: ContainerRuntimeOptions,
    private readonly layout: Layout,
  ) {
    this.log = (options.logger ?? silentLogger()).child({ component: "runtime" });
    this.conmonPath = options.conmonPath ?? "/usr/bin/conmon";
    this.defaultHandler = options.defaultHandler ?? "runc";
    for (const [name, h] of Object.entries(options.handlers)) {
      this.runcs.set(name, { runc: createRunc(h), env: h.monitorEnv ?? {} });
    }
    // inotify on the exit directory: conmon writes `exits/<id>` (via a temp file and rename) when the
    // container's init exits, so this is the daemon's prompt notice of every exit.
    this.watcher = watch(this.layout.exits, (_event, name) => {
      if (name)
        this.handleExitEvent(name.toString()).catch((err: unknown) =>
          this.log.error({ err, file: name.toString() }, "handle container exit failed"),
        );
      this.wake();
    });
    this.watcher.on("error", (err) => this.log.error({ err }, "exit watcher failed"));
  }

  /** Stops the exit watcher and drops listeners. Containers and their monitors keep running. */
  async close(): Promise<void> {
    this.watcher?.close();
    this.watcher = undefined;
    this.listeners.clear();
    this.wake();
  }

  /**
   * Calls `cb` once per container exit seen while watching (an exit found by `recover()` is reported there
   * instead). Returns the unsubscribe function. A throwing listener is logged and does not affect others.
   */
  onExit(cb: (exit: ContainerExit) => void): () => void {
    this.listeners.add(cb);
    return () => this.listeners.delete(cb);
  }

  /** The attach socket (SOCK_SEQPACKET; bytes prefixed 2 = stdout, 3 = stderr) of a container's conmon. */
  attachSocketPath(id: string): string {
    return this.layout.container(id).attachSocket;
  }

  /** The control FIFO: write "1 <height> <width>\n" to resize the tty, "2 0 0\n" to reopen the log. */
  ctlFifoPath(id: string): string {
    return this.layout.container(id).ctl;
  }

  /** The CRI log conmon writes when createContainer was given no `logPath`. */
  defaultLogPath(id: string): string {
    return this.layout.container(id).defaultLog;
  }

  /**
   * Writes the bundle (config.json atomically, monitor.json), then starts a detached conmon that runs
   * `runc create`. Returns when the container exists in the "created" state, with its init pid. On any
   * failure everything created so far is undone (conmon killed, runc state deleted, files removed).
   * AlreadyExists when the ID is in use.
   */
  async createContainer(o: CreateContainerOptions): Promise<CreatedContainer> {
    const p = this.layout.container(o.id);
    const handlerName = o.runtimeHandler || this.defaultHandler;
    const handler = this.runcs.get(handlerName);
    if (!handler)
      throw new RuntimeError(
        "InvalidArgument",
        `create container ${o.id}: unknown runtime handler ${JSON.stringify(handlerName)}`,
      );
    return this.locks.run(o.id, async () => {
      // lstat, not access: a dangling bundle symlink still means the ID is taken.
      const taken = await lstat(p.dir).then(
        () => true,
        () => false,
      );
      if (taken) throw new RuntimeError("AlreadyExists", `container ${o.id}`);
      const undo: Array<() => Promise<void>> = [];
      try {
        if (o.bundleDir) await symlink(o.bundleDir, p.dir);
        else await mkdir(p.dir, { mode: 0o700 });
        undo.push(() => rm(p.dir, { recursive: true, force: true }));
        await rm(p.exitFile, { force: true }); // a previous container with this ID
        this.reported.delete(o.id);

        const tty = o.tty ?? false;
        const spec = structuredClone(o.spec);
        if (spec.process) spec.process.terminal = tty;
        undo.push(() => releaseReadOnlyTrees(p.readOnlyTrees));
        await bindReadOnlyTrees(spec, p.readOnlyTrees, o.signal);
        await writeFileAtomic(p.config, JSON.stringify(spec));
        const logPath = o.logPath || p.defaultLog;
        const rec: MonitorRecord = {
          id: o.id,
          handler: handlerName,
          logPath,
          tty,
          stdin: o.stdin ?? false,
          stdinOnce: o.stdinOnce ?? false,
          createdAt: new Date().toISOString(),
        };
        await writeFileAtomic(p.monitor, JSON.stringify(rec));
        // Root-only when we create it (conmon's log files are 0640 root:root anyway).
        await mkdir(dirname(logPath), { recursive: true, mode: 0o700 });

        undo.push(async () => {
          await this.killConmon(o.id);
          // Undo after a failed create: the create's own error is the one reported.
          await handler.runc.delete(o.id, { force: true }).catch(() => {});
          await rm(p.attachLink, { force: true });
        });
        const argv = conmonCreateArgv({
          id: o.id,
          bundleDir: p.dir,
          persistDir: p.dir,
          exitDir: this.layout.exits,
          logPath,
          conmonPidFile: p.conmonPid,
          containerPidFile: p.pidfile,
          runtimePath: handler.runc.config.path,
          runtimeArgs: handler.runc.globalArgs(),
          socketDir: this.layout.attach,
          terminal: tty,
          stdin: rec.stdin,
          leaveStdinOpen: rec.stdin && !rec.stdinOnce,
          logLevel: this.options.conmonLogLevel ?? "warn",
          ...(handler.runc.config.systemdCgroup ? { systemdCgroup: true } : {}),
        });
        const msg = await startConmon(this.conmonPath, argv, {
          cwd: p.dir, // conmon creates its `oom` marker in its working directory
          env: handler.env,
          timeoutMs: this.options.createTimeoutMs ?? 240_000,
          ...(o.signal ? { signal: o.signal } : {}),
        });
        const pid = msg.pid ?? msg.data ?? -1;
        if (pid <= 0) throw new RuntimeError("Internal", `runc create: ${runcMessage(msg.message ?? "") || "failed"}`);
        const conmonPid = Number.parseInt(await readFile(p.conmonPid, "utf8"), 10);
        this.records.set(o.id, rec);
        this.log.debug({ containerId: o.id, pid, conmonPid }, "container created");
        return { pid, conmonPid };
      } catch (err) {
        for (const step of undo.reverse()) {
          await step().catch((e: unknown) =>
            this.log.warn({ err: e, containerId: o.id }, "create rollback step failed"),
          );
        }
        throw wrap(err, `create container ${o.id}`);
      }
    });
  }

  /** Starts a created container (`runc start`). */
  async start(id: string, options: { signal?: AbortSignal } = {}): Promise<void> {
    await this.locks.run(id, async () => {
      const { runc } = await this.handlerOf(id);
      await runc.start(id, options).catch((err: unknown) => {
        throw wrap(err, `start container ${id}`);
      });
    });
  }

  /**
   * Stops a container: `stopSignal` (default SIGTERM) to init, up to `timeoutSec` for it to exit, then
   * SIGKILL to every process. A timeout of 0 kills at once. Returns once conmon has recorded the exit.
   * Idempotent: stopping a stopped container does nothing.
   */
  async stop(
    id: string,
    options: { timeoutSec?: number; stopSignal?: string | number; signal?: AbortSignal } = {},
  ): Promise<void> {
    await this.locks.run(id, async () => {
      const runc = await this.runcOrDefault(id);
      if (!runc || (await this.exited(id, runc))) return;
      const timeoutSec = options.timeoutSec ?? 0;
      if (timeoutSec > 0) {
        await this.signalContainer(runc, id, { sig: options.stopSignal ?? "SIGTERM", all: false });
        if (await this.waitExit(id, runc, { timeoutMs: timeoutSec * 1000, signal: options.signal })) return;
        this.log.info({ containerId: id, timeoutSec }, "container ignored its stop signal; killing");
      }
      await this.signalContainer(runc, id, { sig: "KILL", all: true });
      if (!(await this.waitExit(id, runc, { timeoutMs: KILL_GRACE_MS, signal: options.signal }))) {
        throw new RuntimeError(
          "DeadlineExceeded",
          `stop container ${id}: still running ${KILL_GRACE_MS / 1000}s after SIGKILL`,
        );
      }
    });
  }

  /**
   * Removes a container: `runc delete --force` (killing it if still running), waits for its conmon to
   * finish (SIGKILL after 5 s), then removes its state directory and exit file. Idempotent.
   */
  async delete(id: string, options: { signal?: AbortSignal } = {}): Promise<void> {
    const p = this.layout.container(id);
    await this.locks.run(id, async () => {
      const runc = await this.runcOrDefault(id);
      if (runc) {
        await runc.delete(id, { force: true, ...options }).catch((err: unknown) => {
          if (!isKind(err, "NotFound")) throw wrap(err, `delete container ${id}`);
        });
      }
      const gone = await this.waitFor(async () => (await this.conmonPid(id)) === undefined, {
        timeoutMs: 5_000,
        signal: options.signal,
      });
      if (!gone) await this.killConmon(id);
      await releaseReadOnlyTrees(p.readOnlyTrees);
      // rm does not follow a symlinked bundle: only our link goes, the caller's directory stays.
      await rm(p.dir, { recursive: true, force: true });
      await rm(p.exitFile, { force: true });
      await rm(p.attachLink, { force: true });
      this.records.delete(id);
      this.reported.delete(id);
    });
  }

  /**
   * Current status. While runc reports the container alive, that is the answer. Once stopped, the exit
   * code and finish time come from conmon's exit file, waited for up to ~5 s while conmon is still
   * draining output; if conmon is gone without writing it, the exit code is 255 (CRI-O's convention).
   * NotFound for an unknown ID.
   */
  async status(id: string, options: { signal?: AbortSignal } = {}): Promise<ContainerStatus> {
    const { runc } = await this.handlerOf(id);
    let st: Awaited<ReturnType<Runc["state"]>> | undefined;
    try {
      st = await runc.state(id, options);
    } catch (err) {
      if (!isKind(err, "NotFound")) throw wrap(err, `status of container ${id}`);
    }
    const createdAt = st ? new Date(st.created) : undefined;
    if (st && st.status !== "stopped") {
      return {
        id,
        state: st.status === "creating" ? "created" : st.status,
        pid: st.pid,
        ...(createdAt ? { createdAt } : {}),
        oomKilled: false,
      };
    }
    // conmon writes the exit file only after draining the container's output.
    const recorded = async () =>
      (await pathExists(this.layout.container(id).exitFile)) || (await this.conmonPid(id)) === undefined;
    await this.waitFor(recorded, { timeoutMs: 5_000, signal: options.signal });
    const exit = await this.readExit(id);
    const base = {
      id,
      state: "stopped" as const,
      ...(createdAt ? { createdAt } : {}),
      oomKilled: await this.oomKilled(id),
    };
    if (exit) return { ...base, ...exit };
    return { ...base, exitCode: 255, finishedAt: new Date(), message: "conmon exited without recording an exit code" };
  }

  /**
   * Prepares an interactive `runc exec` of `cmd` with the container's process settings (env, plus
   * TERM=xterm on a terminal if the env has no TERM; user, capabilities; its cgroup and namespaces
   * come with runc exec), for a caller that runs
   * it in the foreground with its own stdio or pseudo-terminal. runc records the exec'd PID in
   * `pidFile`, so the caller can kill the process itself when its client goes away. `cleanup()`
   * removes the temporary files.
   */
  async prepareExec(
    id: string,
    cmd: readonly string[],
    options: { tty: boolean; consoleSize?: { width: number; height: number } },
  ): Promise<{ file: string; args: string[]; env: NodeJS.ProcessEnv; pidFile: string; cleanup(): Promise<void> }> {
    const { runc, env } = await this.handlerOf(id);
    const p = this.layout.container(id);
    const spec = JSON.parse(await readFile(p.config, "utf8")) as Spec;
    if (!spec.process) throw new RuntimeError("FailedPrecondition", `exec in container ${id}: spec has no process`);
    if (cmd.length === 0) throw new RuntimeError("InvalidArgument", `exec in container ${id}: empty command`);
    const proc: Process = { ...spec.process, args: [...cmd], terminal: options.tty };
    delete proc.consoleSize;
    // Programs on a terminal need TERM (containerd sets it for exec -t); the container's own wins.
    if (options.tty && !proc.env?.some((e) => e.startsWith("TERM="))) proc.env = [...(proc.env ?? []), "TERM=xterm"];
    // The terminal has the client's size from the first byte, not 0x0 until a resize arrives.
    if (options.tty && options.consoleSize)
      proc.consoleSize = { width: options.consoleSize.width, height: options.consoleSize.height };
    const dir = await mkdtemp(join(this.layout.exec, `${id.slice(0, 12)}-`));
    const processPath = join(dir, "process.json");
    const pidFile = join(dir, "pidfile");
    await writeFile(processPath, JSON.stringify(proc));
    const [file, ...args] = runc.execArgv(id, { processPath, tty: options.tty, pidFile });
    return {
      file: file as string,
      args,
      env: { ...process.env, ...env },
      pidFile,
      cleanup: () => rm(dir, { recursive: true, force: true }),
    };
  }

  /**
   * Runs `cmd` in the container under a short-lived conmon (`--exec`), with the container's process
   * settings, and returns its separate stdout/stderr (parsed from conmon's CRI-format log, capped at 16 MiB)
   * and exit code. With `timeoutSec` > 0, once that long has passed the command and every process it
   * started are killed (see `killProcessTree`) and the call throws DeadlineExceeded, as containerd answers;
   * an aborted `signal` kills them too. A command that cannot be started throws.
   */
  async execSync(
    id: string,
    cmd: readonly string[],
    options: { timeoutSec?: number; signal?: AbortSignal } = {},
  ): Promise<ExecSyncResult> {
    const { runc, env } = await this.handlerOf(id);
    const p = this.layout.container(id);
    const spec = JSON.parse(await readFile(p.config, "utf8")) as Spec;
    if (!spec.process) throw new RuntimeError("FailedPrecondition", `exec in container ${id}: spec has no process`);
    if (cmd.length === 0) throw new RuntimeError("InvalidArgument", `exec in container ${id}: empty command`);
    const proc: Process = { ...spec.process, args: [...cmd], terminal: false };
    delete proc.consoleSize;
    const dir = await mkdtemp(join(this.layout.exec, `${id.slice(0, 12)}-`));
    const pidFile = join(dir, "pidfile");
    const timeoutSec = options.timeoutSec ?? 0;
    let timedOut = false;
    let killing: Promise<void> | undefined;
    // Not conmon's --timeout: conmon kills only the command's own pid, and whatever it forked lives on
    // (re-parented to the container's init) holding the output pipe, so the exec outlived its answer.
    const killTree = () => {
      killing ??= this.killExec(id, pidFile);
      return killing;
    };
    const timer =
      timeoutSec > 0
        ? setTimeout(() => {
            timedOut = true;
            void killTree();
          }, timeoutSec * 1000)
        : undefined;
    const onAbort = () => void killTree();
    options.signal?.addEventListener("abort", onAbort, { once: true });
    try {
      const processSpec = join(dir, "process.json");
      const logPath = join(dir, "exec.log");
      await writeFile(processSpec, JSON.stringify(proc));
      const argv = conmonExecArgv({
        id,
        runtimePath: runc.config.path,
        runtimeArgs: runc.globalArgs(),
        processSpec,
        pidFile,
        logPath,
        socketDir: this.layout.attach,
        logLevel: this.options.conmonLogLevel ?? "warn",
      });
      // A backstop in case killing the tree does not end conmon (a process stuck in D state).
      const run = await runConmon(this.conmonPath, argv, {
        cwd: dir,
        env,
        ...(timeoutSec > 0 ? { timeoutMs: (timeoutSec + 30) * 1000 } : {}),
        ...(options.signal ? { signal: options.signal } : {}),
      })
        .catch(async (err: unknown) => {
          if (isKind(err, "DeadlineExceeded")) timedOut = true;
          await killTree();
          throw wrap(err, `exec in container ${id}`);
        })
        .finally(() => clearTimeout(timer));
      if (timedOut) {
        // The tree is dead before the answer goes out: a caller never sees the command still running.
        await killTree();
        throw new RuntimeError("DeadlineExceeded", `exec in container ${id}: ${TIMED_OUT} after ${timeoutSec}s`);
      }
      // conmon stops writing at the same cap, so nothing it wrote is dropped here.
      const log = await readCriLogStreams(logPath, { maxBytes: EXEC_LOG_MAX_BYTES });
      const msg = run.messages.findLast((m) => m.exit_code !== undefined);
      if (msg?.exit_code === undefined) {
        throw new RuntimeError(
          "Internal",
          `exec in container ${id}: conmon exited (${run.code}) without an exit code${run.stderr ? `: ${run.stderr}` : ""}`,
        );
      }
      if (msg.exit_code < 0) {
        // runc exec itself failed (no such executable, container stopped, ...); the message is runc's stderr.
        const detail = runcMessage(msg.message ?? "");
        throw new RuntimeError(
          /stopped|not running/.test(detail) ? "FailedPrecondition" : "Internal",
          `exec in container ${id}: ${detail}`,
        );
      }
      return { stdout: log.stdout.toString("utf8"), stderr: log.stderr.toString("utf8"), exitCode: msg.exit_code };
    } catch (err) {
      if (timedOut && !isKind(err, "DeadlineExceeded")) {
        throw new RuntimeError("DeadlineExceeded", `exec in container ${id}: ${TIMED_OUT} after ${timeoutSec}s`);
      }
      throw err;
    } finally {
      clearTimeout(timer);
      options.signal?.removeEventListener("abort", onAbort);
      await rm(dir, { recursive: true, force: true });
    }
  }

  /**
   * Kills an exec'd command and everything it started. runc writes the command's pid to `pidFile` once
   * it runs; until then (runc exec still starting) this waits for it, briefly.
   */
  private async killExec(id: string, pidFile: string): Promise<void> {
    let pid = Number.NaN;
    await this.waitFor(
      async () => {
        pid = Number.parseInt(await readFile(pidFile, "utf8").catch(() => ""), 10);
        return pid > 0;
      },
      { timeoutMs: 5_000, signal: undefined, pollMs: 20 },
    );
    if (!(pid > 0)) {
      this.log.warn(
        { containerId: id },
        "exec timed out before runc recorded its pid; conmon is killed at the backstop",
      );
      return;
    }
    const killed = await killProcessTree(pid).catch((err: unknown) => {
      this.log.warn({ err, containerId: id, pid }, "kill exec process tree");
      return [];
    });
    this.log.debug({ containerId: id, pid, killed }, "exec killed with its process tree");
  }

  /**
   * Makes conmon reopen the container's log file (after the kubelet renamed it): writes "2 0 0\n" to the
   * ctl FIFO and waits until a new file is at the log path. FailedPrecondition when the container's
   * conmon is gone (the container is not running); DeadlineExceeded if the file does not reappear.
   */
  async reopenLog(id: string, options: { signal?: AbortSignal; timeoutMs?: number } = {}): Promise<void> {
    const rec = await this.readRecord(id);
    const p = this.layout.container(id);
    const notRunning = () =>
      new RuntimeError("FailedPrecondition", `reopen log of container ${id}: container is not running`);
    // An exited container's conmon may still hold the FIFO for a moment, but will never reopen anything.
    if (await pathExists(p.exitFile)) throw notRunning();
    const current = await stat(rec.logPath).catch(() => undefined);
    // conmon reopens by creating `<path>.tmp` and renaming it over the path: on a device such as /dev/null
    // that would replace the host's node with a regular file.
    if (current && !current.isFile()) {
      throw new RuntimeError(
        "FailedPrecondition",
        `reopen log of container ${id}: ${rec.logPath} is not a regular file`,
      );
    }
    const before = current?.ino;
    let fh: Awaited<ReturnType<typeof open>>;
    try {
      // Non-blocking: opening a FIFO for writing with no reader (conmon gone) fails with ENXIO instead of hanging.
      fh = await open(p.ctl, fsc.O_WRONLY | fsc.O_NONBLOCK);
    } catch (err) {
      if (errno(err) === "ENXIO" || errno(err) === "ENOENT") throw notRunning();
      throw wrap(err, `reopen log of container ${id}`);
    }
    try {
      await fh.write("2 0 0\n");
    } finally {
      await fh.close();
    }
    const reopened = () =>
      stat(rec.logPath).then(
        (s) => s.ino !== before,
        () => false,
      );
    const monitorGone = async () => (await this.conmonPid(id)) === undefined;
    const settled = async () => (await reopened()) || (await monitorGone());
    await this.waitFor(settled, { timeoutMs: options.timeoutMs ?? 5_000, signal: options.signal, pollMs: 20 });
    if (await reopened()) return;
    if (await monitorGone()) throw notRunning();
    throw new RuntimeError("DeadlineExceeded", `reopen log of container ${id}: ${rec.logPath} did not reappear`);
  }

  /**
   * Applies new cgroup limits to a running container (`runc update`) and records them in config.json so
   * later execs and restarts see the same spec. Device rules are not changed.
   */
  async updateResources(id: string, resources: LinuxResources, options: { signal?: AbortSignal } = {}): Promise<void> {
    await this.locks.run(id, async () => {
      const { runc } = await this.handlerOf(id);
      const { devices: _ignored, ...limits } = resources;
      await runc.update(id, limits, options).catch((err: unknown) => {
        throw wrap(err, `update resources of container ${id}`);
      });
      const p = this.layout.container(id);
      const spec = JSON.parse(await readFile(p.config, "utf8")) as Spec;
      spec.linux ??= {};
      const old = spec.linux.resources ?? {};
      spec.linux.resources = {
        ...old,
        ...limits,
        ...(limits.cpu ? { cpu: { ...old.cpu, ...limits.cpu } } : {}),
        ...(limits.memory ? { memory: { ...old.memory, ...limits.memory } } : {}),
        ...(limits.unified ? { unified: { ...old.unified, ...limits.unified } } : {}),
      };
      await writeFileAtomic(p.config, JSON.stringify(spec));
    });
  }

  /**
   * After a daemon restart: the status of every container the store knows (running ones are reconnected
   * simply by being found: conmon never depended on us), which known IDs have no state left, and which
   * containers on disk the store does not know. Exits found here are not reported again by `onExit`.
   */
  async recover(knownIds: Iterable<string>, options: { signal?: AbortSignal } = {}): Promise<RecoverResult> {
    const known = new Set(knownIds);
    const onDisk = new Set(await readdir(this.layout.containers).catch(() => [] as string[]));
    const statuses = new Map<string, ContainerStatus>();
    const missing = [...known].filter((id) => !onDisk.has(id));
    const present = [...known].filter((id) => onDisk.has(id));
    // A few at a time: each status is a runc process.
    for (let i = 0; i < present.length; i += 8) {
      await Promise.all(
        present.slice(i, i + 8).map(async (id) => {
          const st = await this.status(id, options).catch((err: unknown): ContainerStatus => {
            this.log.warn({ err, containerId: id }, "recover: status failed");
            return {
              id,
              state: "stopped",
              exitCode: 255,
              finishedAt: new Date(),
              oomKilled: false,
              message: String(err),
            };
          });
          if (st.state === "stopped") this.reported.add(id);
          statuses.set(id, st);
        }),
      );
    }
    return { statuses, missing, unknown: [...onDisk].filter((id) => !known.has(id)) };
  }

  // ---- internals ---------------------------------------------------------------------------------------

  private async readRecord(id: string): Promise<MonitorRecord> {
    const cached = this.records.get(id);
    if (cached) return cached;
    const path = this.layout.container(id).monitor;
    let rec: MonitorRecord;
    try {
      rec = JSON.parse(await readFile(path, "utf8")) as MonitorRecord;
    } catch (err) {
      if (errno(err) === "ENOENT" || errno(err) === "ENOTDIR") throw notFound(`container ${id}`);
      throw wrap(err, `read ${path}`);
    }
    this.records.set(id, rec);
    return rec;
  }

  /**
   * The container's runc, or the default handler's when its monitor record is gone (state removed under
   * us): stop and delete must still reach a container runc knows, and finish when it knows none.
   */
  private async runcOrDefault(id: string): Promise<Runc | undefined> {
    const rec = await this.readRecord(id).catch(() => undefined);
    return this.runcs.get(rec?.handler ?? this.defaultHandler)?.runc;
  }

  private async handlerOf(id: string): Promise<{ runc: Runc; env: Readonly<Record<string, string>> }> {
    const rec = await this.readRecord(id);
    const h = this.runcs.get(rec.handler);
    if (!h)
      throw new RuntimeError(
        "FailedPrecondition",
        `container ${id}: runtime handler ${JSON.stringify(rec.handler)} is not configured`,
      );
    return h;
  }

  /** conmon's pid if that process is alive and is this container's conmon (guards against pid reuse). */
  private async conmonPid(id: string): Promise<number | undefined> {
    const pid = Number.parseInt(await readFile(this.layout.container(id).conmonPid, "utf8").catch(() => ""), 10);
    if (!(pid > 0)) return undefined;
    // A zombie (no subreaper reaped it yet) has an empty cmdline, so it counts as gone.
    const argv = (await readFile(`/proc/${pid}/cmdline`, "utf8").catch(() => "")).split("\0");
    const conmon = argv[0] !== undefined && basename(argv[0]).includes("conmon");
    return conmon && argv.includes(id) ? pid : undefined;
  }

  private async killConmon(id: string): Promise<void> {
    const pid = await this.conmonPid(id);
    if (pid === undefined) return;
    try {
      process.kill(pid, "SIGKILL");
    } catch (err) {
      if (errno(err) !== "ESRCH") throw err;
    }
  }

  private async signalContainer(runc: Runc, id: string, o: { sig: string | number; all: boolean }): Promise<void> {
    await runc.kill(id, o.sig, { all: o.all }).catch((err: unknown) => {
      // Already exited, or already deleted: the goal of the signal is met.
      if (!isKind(err, "NotFound") && !isKind(err, "FailedPrecondition")) throw wrap(err, `stop container ${id}`);
    });
  }

  /** True once the container's init has exited: conmon's exit file, or (no conmon left) runc says so. */
  private async exited(id: string, runc: Runc): Promise<boolean> {
    if (await pathExists(this.layout.container(id).exitFile)) return true;
    if ((await this.conmonPid(id)) !== undefined) return false;
    try {
      return (await runc.state(id)).status === "stopped";
    } catch (err) {
      if (isKind(err, "NotFound")) return true;
      throw err;
    }
  }

  private waitExit(
    id: string,
    runc: Runc,
    o: { timeoutMs: number; signal?: AbortSignal | undefined },
  ): Promise<boolean> {
    return this.waitFor(() => this.exited(id, runc), o);
  }

  /**
   * Polls `check` until true (→ true) or `timeoutMs` passes (→ false); woken early by exit-dir events.
   * Throws Canceled if `signal` aborts.
   */
  private async waitFor(
    check: () => Promise<boolean>,
    o: { timeoutMs: number; signal?: AbortSignal | undefined; pollMs?: number },
  ): Promise<boolean> {
    const { timeoutMs, signal, pollMs = POLL_MS } = o;
    const end = Date.now() + timeoutMs;
    for (;;) {
      if (signal?.aborted) throw new RuntimeError("Canceled", "canceled");
      if (await check()) return true;
      const left = end - Date.now();
      if (left <= 0) return false;
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        this.wakeUp.promise,
        new Promise<void>((resolve) => {
          timer = setTimeout(resolve, Math.min(pollMs, left));
        }),
      ]);
      clearTimeout(timer);
    }
  }

  private wake(): void {
    const w = this.wakeUp;
    this.wakeUp = deferred();
    w.resolve();
  }

  /** Exit code and finish time from `exits/<id>`, if conmon wrote it. */
  private async readExit(id: string): Promise<{ exitCode: number; finishedAt: Date } | undefined> {
    const path = this.layout.container(id).exitFile;
    try {
      const [text, st] = await Promise.all([readFile(path, "utf8"), stat(path)]);
      const exitCode = Number.parseInt(text.trim(), 10);
      return { exitCode: Number.isFinite(exitCode) ? exitCode : 255, finishedAt: st.mtime };
    } catch (err) {
      if (errno(err) === "ENOENT") return undefined;
      throw err;
    }
  }

  private oomKilled(id: string): Promise<boolean> {
    return pathExists(this.layout.container(id).oom);
  }

  private async handleExitEvent(name: string): Promise<void> {
    // conmon writes `<id>.XXXXXX` and renames it to `<id>`; either name may be what we are told about.
    const candidates = new Set([name, name.replace(/\.[A-Za-z0-9]{6}$/, "")]);
    for (const id of candidates) {
      try {
        validateId(id);
        if (this.reported.has(id) || this.listeners.size === 0) continue;
        const exit = await this.readExit(id);
        if (!exit || !(await pathExists(this.layout.container(id).dir)) || this.reported.has(id)) continue;
        this.reported.add(id);
        const event: ContainerExit = { id, ...exit, oomKilled: await this.oomKilled(id) };
        this.log.debug({ containerId: id, exitCode: exit.exitCode }, "container exited");
        for (const cb of this.listeners) {
          try {
            cb(event);
          } catch (err) {
            this.log.error({ err, containerId: id }, "exit listener failed");
          }
        }
      } catch {
        // Not a container's exit file (or it vanished while we looked).
      }
    }
  }
}

function deferred(): { promise: Promise<void>; resolve: () => void } {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => {
    resolve = r;
  });
  return { promise, resolve };
}
