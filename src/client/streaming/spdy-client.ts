/**
 * A SPDY/3.1 streaming client, the counterpart of client-go's SPDY executor and port forwarder,
 * used by the CLI's exec, attach and port-forward and by the tests of the streaming server and of
 * berthd. It opens streams in the order client-go does, so the server sees what kubectl would send.
 */

import { request } from "node:http";
import { pipeline } from "node:stream/promises";
import { type FlowControlMode, SpdySession, type SpdyStream } from "../../streaming/index.js";
import {
  collect,
  decodeErrorStream,
  type ExecClientOptions,
  type ExecOutcome,
  encodeResize,
  rejectedFrom,
  stdinSource,
} from "./common.js";

/** Options of a SPDY upgrade request. */
export interface SpdyDialOptions {
  /** X-Stream-Protocol-Version values, one header line each (empty: no header). */
  protocols?: readonly string[];
  method?: "GET" | "POST";
  /** Extra request headers (e.g. to drop or alter Upgrade). */
  headers?: Record<string, string>;
  /** `off` behaves like moby/spdystream: no WINDOW_UPDATE ever (kubectl, the kubelet, crictl). */
  flowControl?: FlowControlMode;
  /** Our receive window per stream; announced with SETTINGS when not 64 KiB. */
  initialWindowSize?: number;
  signal?: AbortSignal;
}

/** An upgraded SPDY connection. */
export interface SpdyConnection {
  session: SpdySession;
  /** The X-Stream-Protocol-Version the server chose. */
  protocol: string;
}

/**
 * Sends the upgrade request and starts a client session on the upgraded socket. Rejects with
 * UpgradeRejectedError when the server answers with anything but 101.
 */
export function dialSpdy(url: string, options: SpdyDialOptions = {}): Promise<SpdyConnection> {
  const headers: Record<string, string | string[]> = { Connection: "Upgrade", Upgrade: "SPDY/3.1", ...options.headers };
  if (options.protocols !== undefined && options.protocols.length > 0) {
    headers["X-Stream-Protocol-Version"] = [...options.protocols];
  }
  return new Promise((resolve, reject) => {
    // agent: false, so no keep-alive pool holds a socket after the test.
    const req = request(url, { method: options.method ?? "POST", headers, agent: false });
    const onAbort = () => req.destroy(new Error("dial aborted"));
    options.signal?.addEventListener("abort", onAbort, { once: true });
    req.on("upgrade", (res, socket, head) => {
      options.signal?.removeEventListener("abort", onAbort);
      if (head.length > 0) socket.unshift(head);
      const session = new SpdySession(socket, {
        role: "client",
        flowControl: options.flowControl ?? "auto",
        ...(options.initialWindowSize !== undefined ? { initialWindowSize: options.initialWindowSize } : {}),
      });
      resolve({ session, protocol: String(res.headers["x-stream-protocol-version"] ?? "") });
    });
    req.on("response", (res) => {
      options.signal?.removeEventListener("abort", onAbort);
      rejectedFrom(res).then(reject, reject);
    });
    req.on("error", reject);
    req.end();
  });
}

/** Opens a stream and waits for the server to accept it, as client-go's CreateStream does. */
export async function openStream(session: SpdySession, headers: Record<string, string>): Promise<SpdyStream> {
  const stream = session.openStream(headers);
  await stream.reply;
  return stream;
}

/** Options of spdyExec: the session's streams and the dial. */
export type SpdyExecOptions = ExecClientOptions & SpdyDialOptions;

/**
 * Runs an exec or attach session like client-go's v4 executor: error, stdin, stdout, stderr and
 * resize streams in that order, stdin closed (FIN) after its last byte, then waits for stdout and
 * stderr to end and reads the error stream. Protocols default to what kubectl offers.
 */
export async function spdyExec(url: string, options: SpdyExecOptions = {}): Promise<ExecOutcome> {
  const { session, protocol } = await dialSpdy(url, {
    protocols: ["v4.channel.k8s.io", "v3.channel.k8s.io", "v2.channel.k8s.io", "channel.k8s.io"],
    ...options,
  });
  try {
    const tty = options.tty ?? false;
    const version = /^v(\d)\./.exec(protocol)?.[1];
    const resizable = tty && version !== undefined && Number(version) >= 3;
    const errorStream = await openStream(session, { streamtype: "error" });
    const error = collect(errorStream);
    const stdin = options.stdin !== undefined ? await openStream(session, { streamtype: "stdin" }) : undefined;
    const stdout = (options.stdout ?? true) ? await openStream(session, { streamtype: "stdout" }) : undefined;
    const stdoutBytes = collect(stdout);
    const stderr = (options.stderr ?? !tty) ? await openStream(session, { streamtype: "stderr" }) : undefined;
    const stderrBytes = collect(stderr);
    const resize = resizable ? await openStream(session, { streamtype: "resize" }) : undefined;
    for (const size of options.resize ?? []) resize?.write(encodeResize(size));
    if (stdin !== undefined && options.stdin !== undefined) {
      pipeline(stdinSource(options.stdin), stdin).catch(() => undefined);
    }
    const [out, err] = await Promise.all([stdoutBytes, stderrBytes]);
    const errorText = (await error).toString();
    return { protocol, stdout: out, stderr: err, error: errorText, ...decodeErrorStream(protocol, errorText) };
  } finally {
    await session.close();
  }
}

/** One forwarded connection: the data stream and what the server wrote on the error stream. */
export interface ForwardedConnection {
  /** Write to send to the pod, end() to half-close; read what the pod sends. */
  data: SpdyStream;
  /** The error stream's text once the server closes it ("" when all went well). */
  error: Promise<string>;
}

/** A SPDY port-forward connection carrying any number of forwarded connections. */
export class SpdyPortForwardClient {
  readonly session: SpdySession;
  #nextRequestId = 0;

  private constructor(session: SpdySession) {
    this.session = session;
  }

  /** Dials a port-forward URL (protocol portforward.k8s.io). */
  static async connect(url: string, options: SpdyDialOptions = {}): Promise<SpdyPortForwardClient> {
    const { session } = await dialSpdy(url, { protocols: ["portforward.k8s.io"], ...options });
    return new SpdyPortForwardClient(session);
  }

  /**
   * Opens the error and data streams of one connection to `port`, as client-go does: the error
   * stream first, half-closed at once, then the data stream. `requestId: null` sends no requestID
   * header (clients before 1.4, paired by stream id).
   */
  async forward(port: number, options: { requestId?: string | null } = {}): Promise<ForwardedConnection> {
    const headers: Record<string, string> = { streamtype: "error", port: String(port) };
    if (options.requestId !== null) headers.requestid = options.requestId ?? String(this.#nextRequestId++);
    const errorStream = await openStream(this.session, headers);
    errorStream.end();
    const error = collect(errorStream).then((b) => b.toString());
    const data = await openStream(this.session, { ...headers, streamtype: "data" });
    return { data, error };
  }

  /** Hangs up. */
  close(): Promise<void> {
    return this.session.close();
  }
}

/** Sends `payload` on a forwarded connection, half-closes, and returns everything the pod sent back. */
export async function roundTrip(conn: ForwardedConnection, payload: string | Uint8Array): Promise<Buffer> {
  const reply = collect(conn.data);
  conn.data.end(payload);
  return reply;
}
