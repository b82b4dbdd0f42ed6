/**
 * What the streaming server asks of the runtime, and the requests it carries.
 *
 * The server knows nothing of CRI messages or of how processes are run: the CRI adapter turns an
 * ExecRequest/AttachRequest/PortForwardRequest into the plain requests below, the daemon injects a
 * `StreamingBackend`, and the server moves bytes between the client's streams and the backend.
 *
 * Lifecycle of one session, as the backend sees it:
 *
 *   client dials the URL ──▶ streams negotiated ──▶ backend.exec/attach/portForward(...)
 *                                                      │  io.stdin ends when the client closes stdin
 *                                                      │  io.resize yields terminal sizes (tty only)
 *                                                      │  io.signal aborts when the client goes away,
 *                                                      │  the idle timeout fires or the server closes
 *                                                      ▼
 *                             promise settles ──▶ server ends stdout/stderr, writes the status, hangs up
 */

import type { Duplex, Readable, Writable } from "node:stream";

/** A terminal size change sent by the client (`{"Width":w,"Height":h}` on the wire). */
export interface TerminalSize {
  width: number;
  height: number;
}

/** A command to run in a container, as cached from CRI Exec. */
export interface ExecRequest {
  containerId: string;
  cmd: readonly string[];
  tty: boolean;
  stdin: boolean;
  stdout: boolean;
  stderr: boolean;
}

/** An attach to a running container's stdio, as cached from CRI Attach. */
export interface AttachRequest {
  containerId: string;
  tty: boolean;
  stdin: boolean;
  stdout: boolean;
  stderr: boolean;
}

/**
 * A port-forward session into a pod, as cached from CRI PortForward. `ports` may be empty: SPDY
 * clients name the port per stream, and only WebSocket clients need the list up front.
 */
export interface PortForwardRequest {
  podSandboxId: string;
  ports: readonly number[];
}

/** One forwarded TCP connection: the backend dials `port` on localhost inside the pod's netns. */
export interface PortForwardTarget {
  podSandboxId: string;
  port: number;
}

/**
 * The client's stdio for one exec or attach. A stream is present exactly when the request asked for
 * it. The backend may end stdout/stderr itself; the server ends them after the backend settles.
 */
export interface StreamIO {
  /** Bytes typed by the client; ends when the client closes stdin. */
  stdin?: Readable;
  stdout?: Writable;
  stderr?: Writable;
  /** Terminal size changes (tty sessions only; empty otherwise). Ends with the session. */
  resize: AsyncIterable<TerminalSize>;
  /** Aborted when the client disconnects, the session idles out or the server closes: kill the process. */
  signal: AbortSignal;
}

/** How an exec'd process ended. Exit codes are 0-255; the backend maps signals (e.g. 128+n). */
export interface ExecResult {
  exitCode: number;
}

/**
 * The runtime side of streaming, injected by the daemon. Every method must settle soon after
 * `signal` aborts, and must not settle before all of the process's output has been written to
 * `io.stdout`/`io.stderr` (await your pipelines): the server ends those streams right after.
 * A thrown error becomes an InternalError status (exec/attach) or an error-stream message
 * (port-forward); it is not rethrown.
 */
export interface StreamingBackend {
  /** Runs `req.cmd` in the container and reports its exit code. */
  exec(req: ExecRequest, io: StreamIO): Promise<ExecResult>;
  /** Connects to the container's stdio until the client detaches, stdin ends or the signal aborts. */
  attach(req: AttachRequest, io: StreamIO): Promise<void>;
  /**
   * Copies bytes between `stream` and `localhost:<port>` inside the pod: reading `stream` gives what
   * the client sends (it ends when the client half-closes), writing it sends to the client. Settle
   * when the pod side has closed; the server then ends `stream` if the backend has not.
   */
  portForward(target: PortForwardTarget, stream: Duplex, options: { signal: AbortSignal }): Promise<void>;
}

/**
 * A streaming session being served, as the server tracks it (internal to this module).
 * `done` settles, never rejects, once the connection is gone and the backend call has returned.
 */
export interface ServingSession {
  readonly done: Promise<void>;
  /** Drops the connection now; the backend's signal aborts. */
  terminate(): void;
}
