/**
 * A StreamingBackend that runs commands as host processes and dials ports on 127.0.0.1: enough
 * of a runtime to test the streaming server against real processes and sockets, and to record what
 * the server passed down. Attach echoes stdin to stdout, standing in for a container's console.
 */

import { spawn } from "node:child_process";
import { once } from "node:events";
import { connect, type Socket } from "node:net";
import { constants } from "node:os";
import type { Duplex } from "node:stream";
import { pipeline } from "node:stream/promises";
import type {
  AttachRequest,
  ExecRequest,
  ExecResult,
  PortForwardTarget,
  StreamIO,
  StreamingBackend,
  TerminalSize,
} from "../../src/streaming/index.js";

/** One backend call as the test sees it afterwards. */
export interface RecordedCall<R> {
  request: R;
  /** Resize events received (complete once the session has ended). */
  resizes: TerminalSize[];
  /** True when the call's signal aborted before it returned. */
  aborted: boolean;
  /** Which of the io streams were present. */
  io: { stdin: boolean; stdout: boolean; stderr: boolean };
}

/** Host-process backend with a record of every call (see module comment). */
export class HostProcessBackend implements StreamingBackend {
  readonly execs: RecordedCall<ExecRequest>[] = [];
  readonly attaches: RecordedCall<AttachRequest>[] = [];
  readonly forwards: { target: PortForwardTarget; aborted: boolean }[] = [];
  /** Backend calls that have not returned yet. */
  running = 0;

  async exec(req: ExecRequest, io: StreamIO): Promise<ExecResult> {
    const call = record(this.execs, req, io);
    this.running++;
    try {
      const [file, ...args] = req.cmd;
      const child = spawn(file!, args, {
        stdio: [io.stdin ? "pipe" : "ignore", io.stdout ? "pipe" : "ignore", io.stderr ? "pipe" : "ignore"],
      });
      const kill = () => {
        call.aborted = true;
        child.kill("SIGKILL");
      };
      if (io.signal.aborted) kill();
      else io.signal.addEventListener("abort", kill, { once: true });
      const exited = new Promise<number>((resolve, reject) => {
        child.once("error", reject);
        child.once("exit", (code, signal) => resolve(code ?? 128 + (signal ? constants.signals[signal] : 0)));
      });
      // A child that exits without reading stdin breaks this pipe (EPIPE): not an exec failure.
      if (io.stdin && child.stdin) pipeline(io.stdin, child.stdin).catch(() => undefined);
      // A copy fails when the client goes away; the abort signal already handles that.
      const copies: Promise<void>[] = [];
      if (io.stdout && child.stdout) copies.push(pipeline(child.stdout, io.stdout).catch(() => undefined));
      if (io.stderr && child.stderr) copies.push(pipeline(child.stderr, io.stderr).catch(() => undefined));
      try {
        const exitCode = await exited;
        // All output must be written before we return: the server ends stdout/stderr right after.
        await Promise.all(copies);
        return { exitCode };
      } finally {
        io.signal.removeEventListener("abort", kill);
      }
    } finally {
      this.running--;
    }
  }

  async attach(req: AttachRequest, io: StreamIO): Promise<void> {
    const call = record(this.attaches, req, io);
    this.running++;
    try {
      if (io.stdin && io.stdout) {
        await pipeline(io.stdin, io.stdout, { signal: io.signal }).catch(() => undefined);
      } else if (!io.signal.aborted) {
        await once(io.signal, "abort");
      }
      call.aborted = io.signal.aborted;
    } finally {
      this.running--;
    }
  }

  async portForward(target: PortForwardTarget, stream: Duplex, options: { signal: AbortSignal }): Promise<void> {
    const entry = { target, aborted: false };
    this.forwards.push(entry);
    this.running++;
    let socket: Socket | undefined;
    try {
      socket = connect({ host: "127.0.0.1", port: target.port, allowHalfOpen: true });
      await once(socket, "connect", { signal: options.signal });
      // Client to pod: the client's FIN half-closes the pod connection.
      const upstream = pipeline(stream, socket);
      try {
        // Pod to client: done when the pod closes its side; ending `stream` sends our FIN.
        await pipeline(socket, stream, { signal: options.signal });
      } catch (err) {
        socket.destroy();
        await upstream.catch(() => undefined);
        throw err;
      }
      // The client may keep its side open; client-go resets the stream once ours has ended.
      await upstream.catch(() => undefined);
    } finally {
      entry.aborted = options.signal.aborted;
      socket?.destroy();
      this.running--;
    }
  }
}

function record<R>(calls: RecordedCall<R>[], request: R, io: StreamIO): RecordedCall<R> {
  const call: RecordedCall<R> = {
    request,
    resizes: [],
    aborted: false,
    io: { stdin: io.stdin !== undefined, stdout: io.stdout !== undefined, stderr: io.stderr !== undefined },
  };
  calls.push(call);
  void (async () => {
    for await (const size of io.resize) call.resizes.push(size);
  })();
  return call;
}
