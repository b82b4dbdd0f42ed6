import { type ErrorKind, RuntimeError } from "../errdefs/index.js";
import type { LinuxResources } from "../oci/index.js";
import { runUnchecked } from "../sys/index.js";

/** How one runtime handler invokes its OCI runtime binary. */
export interface RuncConfig {
  /** The runc-compatible binary. */
  path: string;
  /** `--root`: where this handler's runc keeps container state. */
  root: string;
  /** Use runc's systemd cgroup driver (`--systemd-cgroup`). */
  systemdCgroup?: boolean;
  /** Upper bound for one direct call (default 60 s). */
  timeoutMs?: number;
}

/** `runc state` output. */
export interface RuncState {
  ociVersion: string;
  id: string;
  /** Init pid; 0 once stopped. */
  pid: number;
  status: "creating" | "created" | "running" | "paused" | "stopped";
  bundle: string;
  rootfs: string;
  /** RFC 3339 creation time. */
  created: string;
  owner?: string;
  annotations?: Record<string, string>;
}

/** Options for `runc exec` argv built for another process to run (streaming exec). */
export interface ExecArgvOptions {
  /** path of the process.json. */
  processPath: string;
  tty?: boolean;
  detach?: boolean;
  pidFile?: string;
  consoleSocket?: string;
}

/** Options every call accepts. */
export interface CallOptions {
  signal?: AbortSignal;
}

/**
 * The one typed wrapper around the OCI runtime binary. `create` is not here: conmon runs it so that the
 * container's stdio and exit status belong to conmon. Every failed call throws a RuntimeError carrying runc's
 * message: NotFound when the container does not exist, FailedPrecondition when it is not running.
 */
export interface Runc {
  readonly config: Readonly<RuncConfig>;
  /** The global flags (`--root ...`) every invocation starts with; conmon passes them as `--runtime-arg`. */
  globalArgs(): string[];
  start(id: string, options?: CallOptions): Promise<void>;
  state(id: string, options?: CallOptions): Promise<RuncState>;
  /** Sends `sig` ("TERM", "SIGKILL", 15) to init, or with `all` to every process of the container. */
  kill(id: string, sig: string | number, options?: CallOptions & { all?: boolean }): Promise<void>;
  /** Deletes runc's state and cgroup; `force` kills a running container first. */
  delete(id: string, options?: CallOptions & { force?: boolean }): Promise<void>;
  /** Applies new cgroup limits (`runc update --resources -`, JSON on stdin). */
  update(id: string, resources: LinuxResources, options?: CallOptions): Promise<void>;
  list(options?: CallOptions): Promise<RuncState[]>;
  /** `[file, ...args]` running `runc exec` for a process.json; the caller spawns it with its own stdio. */
  execArgv(id: string, options: ExecArgvOptions): string[];
}

/** Creates the wrapper for one handler. */
export function createRunc(config: RuncConfig): Runc {
  // One element per flag (`--root=<dir>`), so the list can be handed to conmon as `--runtime-arg`s unchanged.
  const globalArgs = (): string[] => [`--root=${config.root}`, ...(config.systemdCgroup ? ["--systemd-cgroup"] : [])];

  /** Runs runc with the global flags plus `args`; `label` names the call in errors (`runc start <id>`). */
  async function call(args: string[], options: CallOptions & { label: string; input?: string }): Promise<string> {
    const res = await runUnchecked(config.path, [...globalArgs(), ...args], {
      name: options.label,
      timeoutMs: config.timeoutMs ?? 60_000,
      ...(options.signal ? { signal: options.signal } : {}),
      ...(options.input !== undefined ? { input: options.input } : {}),
    });
    if (res.code !== 0) {
      const detail = runcMessage(res.stderr || res.stdout);
      throw new RuntimeError(
        kindOfRuncError(detail),
        `${options.label}: exit status ${res.code}${detail ? `: ${detail}` : ""}`,
      );
    }
    return res.stdout;
  }

  return {
    config,
    globalArgs,
    async start(id, options) {
      await call(["start", id], { ...options, label: `runc start ${id}` });
    },
    async state(id, options) {
      return JSON.parse(await call(["state", id], { ...options, label: `runc state ${id}` })) as RuncState;
    },
    async kill(id, sig, options = {}) {
      await call(["kill", ...(options.all ? ["--all"] : []), id, signalArg(sig)], {
        ...options,
        label: `runc kill ${id}`,
      });
    },
    async delete(id, options = {}) {
      await call(["delete", ...(options.force ? ["--force"] : []), id], { ...options, label: `runc delete ${id}` });
    },
    async update(id, resources, options) {
      await call(["update", "--resources", "-", id], {
        ...options,
        label: `runc update ${id}`,
        input: JSON.stringify(resources),
      });
    },
    async list(options) {
      // runc prints `null` when there are no containers.
      const out = await call(["list", "--format", "json"], { ...options, label: "runc list" });
      return (JSON.parse(out) as RuncState[] | null) ?? [];
    },
    execArgv(id, o) {
      return [
        config.path,
        ...globalArgs(),
        "exec",
        "--process",
        o.processPath,
        ...(o.tty ? ["--tty"] : []),
        ...(o.detach ? ["--detach"] : []),
        ...(o.pidFile ? ["--pid-file", o.pidFile] : []),
        ...(o.consoleSocket ? ["--console-socket", o.consoleSocket] : []),
        id,
      ];
    },
  };
}

/** "SIGTERM" → "TERM", 9 → "9": forms runc accepts. */
function signalArg(sig: string | number): string {
  if (typeof sig === "number") return String(sig);
  const s = sig.trim().toUpperCase();
  return s.startsWith("SIG") ? s.slice(3) : s;
}

/**
 * runc logs errors through logrus as `time="..." level=error msg="..."`; keep only the messages, which is
 * what is worth showing a user.
 */
export function runcMessage(stderr: string): string {
  const msgs: string[] = [];
  for (const line of stderr.split("\n")) {
    const m = /\bmsg="((?:[^"\\]|\\.)*)"/.exec(line);
    if (m?.[1] !== undefined) msgs.push(m[1].replace(/\\(.)/g, "$1"));
    else if (line.trim()) msgs.push(line.trim());
  }
  return msgs.join("; ").slice(0, 4000);
}

function kindOfRuncError(message: string): ErrorKind {
  if (/container does not exist|container .* does not exist/.test(message)) return "NotFound";
  if (/container not running|is not running|not in created state|cannot start|stopped/.test(message))
    return "FailedPrecondition";
  return "Internal";
}
