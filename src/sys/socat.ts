import { type ChildProcessWithoutNullStreams, spawn } from "node:child_process";
import { netnsArgv } from "./nsenter.js";

/**
 * socat, for the two relays Node cannot make itself: bytes into a SOCK_SEQPACKET unix socket (conmon's
 * attach socket; Node opens only stream sockets), and a TCP connection made from inside a pod's network
 * namespace (a thread of this process cannot enter one; a child can, through nsenter).
 */

/** Where socat connects. */
export type SocatTarget =
  /** A SOCK_SEQPACKET unix socket, by a path relative to `cwd` when the absolute one is too long for sun_path. */
  | { kind: "unix-seqpacket"; path: string }
  /** A TCP port on a loopback address of the given family (127.0.0.1 or ::1). */
  | { kind: "tcp-loopback"; family: 4 | 6; port: number };

/** Options of {@link startSocat}. */
export interface SocatOptions {
  target: SocatTarget;
  /**
   * `to-target`: our stdin is copied to the target, nothing comes back (socat -u). `both`: stdin to the
   * target and the target to stdout, with socat's progress on stderr (-d -d), so that the caller can see
   * "starting data transfer loop" (connected) or the connect error.
   */
  direction: "to-target" | "both";
  /** Run inside the network namespace at this path (through nsenter). */
  netnsPath?: string;
  cwd?: string;
  socatPath?: string;
  nsenterPath?: string;
}

/** What socat writes on stderr (with `both`) once it is connected and relaying. */
export const SOCAT_CONNECTED = "starting data transfer loop";

function addressOf(t: SocatTarget): string {
  if (t.kind === "unix-seqpacket") return `UNIX-CONNECT:${t.path},type=5`;
  return t.family === 4 ? `TCP4:127.0.0.1:${t.port}` : `TCP6:[::1]:${t.port}`;
}

/** The argv of a socat relay; the one place socat's flags are written. */
export function socatArgv(o: SocatOptions): [string, string[]] {
  const socat = o.socatPath ?? "/usr/bin/socat";
  const args =
    o.direction === "to-target" ? ["-u", "STDIN", addressOf(o.target)] : ["-d", "-d", "STDIO", addressOf(o.target)];
  return o.netnsPath ? netnsArgv(o.netnsPath, [socat, ...args], o.nsenterPath ?? "/usr/bin/nsenter") : [socat, args];
}

/**
 * Starts a socat relay with stdin, stdout and stderr as pipes. A relay streams for as long as its session
 * lasts, so it is started here, on the calling thread, not by the spawn worker (which runs children to
 * completion). The caller owns the child: it must listen for `error` and kill it when the session ends.
 */
export function startSocat(o: SocatOptions): ChildProcessWithoutNullStreams {
  const [file, args] = socatArgv(o);
  return spawn(file, args, { stdio: ["pipe", "pipe", "pipe"], ...(o.cwd !== undefined ? { cwd: o.cwd } : {}) });
}
