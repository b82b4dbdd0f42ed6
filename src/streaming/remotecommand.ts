/**
 * Exec and attach sessions over SPDY or WebSocket (`cri-streaming/.../remotecommand`).
 *
 * Both transports end up as the same five streams: stdin, stdout, stderr, error and resize.
 * The session waits for them, runs the backend, then reports on the error stream:
 *
 *   streams ready ──▶ backend.exec/attach ──▶ end stdout/stderr ──▶ status on error ──▶ hang up
 *        │ (SPDY: within the stream-creation timeout, else give up)
 *        └─ client hangs up at any point ──▶ signal aborts, nothing more is written
 *
 * Error stream formats: v4 and v5 carry a JSON metav1.Status (client-go's errorDecoderV4 reads
 * the exit code from its causes); v1-v3 carry the failure message as text, and nothing on success.
 */

import type { Duplex, Readable, Writable } from "node:stream";
import { finished } from "node:stream/promises";
import type { WebSocket } from "ws";
import { messageOf } from "../errdefs/index.js";
import type { Logger } from "../log/index.js";
import { headerValue } from "./spdy/framing.js";
import { SpdySession, type SpdyStream } from "./spdy/session.js";
import type { ServingSession, StreamIO, TerminalSize } from "./types.js";
import { ChannelConn, type ChannelProtocol } from "./websocket.js";

/** SPDY exec/attach protocols, most preferred first. v5 over SPDY is v4 (its close signal is WebSocket-only). */
export const REMOTE_COMMAND_SPDY_PROTOCOLS: readonly string[] = [
  "v5.channel.k8s.io",
  "v4.channel.k8s.io",
  "v3.channel.k8s.io",
  "v2.channel.k8s.io",
  "channel.k8s.io",
];

/** Which of stdin/stdout/stderr the session carries, and whether it is a terminal. */
export interface CommandStreams {
  stdin: boolean;
  stdout: boolean;
  stderr: boolean;
  tty: boolean;
}

/** Runs the backend for one session: an exit code (exec) or undefined (attach). */
export type CommandRunner = (io: StreamIO) => Promise<number | undefined>;

/** What every exec/attach session needs, whatever the transport. */
export interface CommandSessionOptions {
  streams: CommandStreams;
  run: CommandRunner;
  /** Prefix of an InternalError status: "error executing command in container" or "error attaching to container". */
  failureContext: string;
  idleTimeoutMs: number;
  logger: Logger;
}

/** A Kubernetes metav1.Status as written on the v4 error stream. */
export interface KubeStatus {
  metadata: Record<string, never>;
  status: "Success" | "Failure";
  message?: string;
  reason?: string;
  details?: { causes: { reason?: string; message: string }[] };
  code?: number;
}

/** The status of a session that ended well: exit code 0, or an attach that ended. */
export function successStatus(): KubeStatus {
  return { metadata: {}, status: "Success" };
}

/**
 * The status for an exit code. Non-zero codes become NonZeroExitCode with an ExitCode cause, which
 * kubectl turns into its own exit code; client-go parses it as a uint8, hence the 0-255 check.
 */
export function exitStatus(exitCode: number): KubeStatus {
  if (exitCode === 0) return successStatus();
  if (!Number.isInteger(exitCode) || exitCode < 0 || exitCode > 255) {
    return internalErrorStatus(`invalid exit code ${exitCode}`);
  }
  return {
    metadata: {},
    status: "Failure",
    message: `command terminated with non-zero exit code: exit code ${exitCode}`,
    reason: "NonZeroExitCode",
    details: { causes: [{ reason: "ExitCode", message: String(exitCode) }] },
  };
}

/** The status of a backend failure, shaped like apierrors.NewInternalError. */
export function internalErrorStatus(message: string): KubeStatus {
  return {
    metadata: {},
    status: "Failure",
    message: `Internal error occurred: ${message}`,
    reason: "InternalError",
    details: { causes: [{ message }] },
    code: 500,
  };
}

type StatusFormat = "json" | "text";

/** The error-stream bytes for `status`, or undefined when the format writes nothing (text success). */
function encodeStatus(status: KubeStatus, format: StatusFormat): Buffer | undefined {
  if (format === "json") return Buffer.from(JSON.stringify(status));
  return status.status === "Success" ? undefined : Buffer.from(status.message ?? "");
}

// ---- resize events ----

// Resize JSON objects are a few dozen bytes; a longer unfinished value is garbage, not a resize.
const MAX_RESIZE_PENDING = 4096;

/**
 * Decodes a stream of concatenated JSON objects `{"Width":w,"Height":h}` (Go's json.Decoder on
 * remotecommand.TerminalSize: field names match case-insensitively, values are uint16). Objects may
 * be split across chunks. Stops at the first malformed value, as the kubelet's decode loop does.
 */
export async function* decodeResizeEvents(source: AsyncIterable<Buffer | string>): AsyncGenerator<TerminalSize> {
  const decoder = new TextDecoder();
  let pending = "";
  for await (const chunk of source) {
    pending += typeof chunk === "string" ? chunk : decoder.decode(chunk, { stream: true });
    for (;;) {
      pending = pending.trimStart();
      if (pending.length === 0) break;
      if (pending[0] !== "{") return;
      const end = objectEnd(pending);
      if (end < 0) break;
      const size = toTerminalSize(pending.slice(0, end));
      if (size === undefined) return;
      pending = pending.slice(end);
      yield size;
    }
    if (pending.length > MAX_RESIZE_PENDING) return;
  }
}

/** Index just past the JSON object that starts `text`, or -1 when it is incomplete. */
function objectEnd(text: string): number {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (inString) {
      if (c === "\\") i++;
      else if (c === '"') inString = false;
    } else if (c === '"') inString = true;
    else if (c === "{") depth++;
    else if (c === "}" && --depth === 0) return i + 1;
  }
  return -1;
}

function toTerminalSize(json: string): TerminalSize | undefined {
  let value: unknown;
  try {
    value = JSON.parse(json);
  } catch {
    return undefined;
  }
  if (typeof value !== "object" || value === null) return undefined;
  const size = { width: 0, height: 0 };
  for (const [key, v] of Object.entries(value)) {
    const field = key.toLowerCase();
    if (field !== "width" && field !== "height") continue;
    if (typeof v !== "number" || !Number.isInteger(v) || v < 0 || v > 0xffff) return undefined;
    size[field] = v;
  }
  return size;
}

/**
 * Resize events between the transport and the backend. We drain the transport ourselves so a
 * backend that never reads resizes cannot stall the connection; if it falls behind, the oldest
 * sizes are dropped, since only the latest one matters to a terminal.
 */
class ResizeQueue implements AsyncIterable<TerminalSize> {
  static readonly MAX_PENDING = 32;
  #items: TerminalSize[] = [];
  #ended = false;
  #wake: (() => void) | undefined;

  /** Drains `source` into the queue in the background and ends the queue with it. */
  static from(source: AsyncIterable<Buffer | string> | undefined, log: Logger): ResizeQueue {
    const queue = new ResizeQueue();
    if (source === undefined) {
      queue.end();
      return queue;
    }
    void (async () => {
      try {
        for await (const size of decodeResizeEvents(source)) queue.push(size);
      } catch (err) {
        log.debug({ err }, "resize stream ended");
      } finally {
        queue.end();
      }
    })();
    return queue;
  }

  push(size: TerminalSize): void {
    if (this.#ended) return;
    this.#items.push(size);
    if (this.#items.length > ResizeQueue.MAX_PENDING) this.#items.shift();
    this.#wake?.();
  }

  end(): void {
    this.#ended = true;
    this.#wake?.();
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<TerminalSize> {
    for (;;) {
      const next = this.#items.shift();
      if (next !== undefined) {
        yield next;
        continue;
      }
      if (this.#ended) return;
      await new Promise<void>((resolve) => {
        this.#wake = resolve;
      });
      this.#wake = undefined;
    }
  }
}

// ---- the transport-independent part ----

/** The streams of one session once the transport has set them up. */
interface CommandTransport {
  stdin: Readable | undefined;
  stdout: Writable | undefined;
  stderr: Writable | undefined;
  error: Writable | undefined;
  resize: ResizeQueue;
  statusFormat: StatusFormat;
  signal: AbortSignal;
  /** Hangs up after everything written has gone out. */
  close(): Promise<void>;
  /** Hangs up now. */
  destroy(): void;
}

/** Ends `w` and waits until its data is handed to the connection (or the connection is gone). */
async function finish(w: Writable | undefined, signal: AbortSignal): Promise<void> {
  if (w === undefined || w.destroyed) return;
  if (!w.writableEnded) w.end();
  // Our writers are Duplexes whose readable side the client never ends: watch the writable side only.
  await finished(w as Duplex, { readable: false, signal }).catch(() => undefined);
}

async function runCommand(t: CommandTransport, options: CommandSessionOptions): Promise<void> {
  const log = options.logger;
  let status: KubeStatus | undefined;
  try {
    const io: StreamIO = { resize: t.resize, signal: t.signal };
    if (t.stdin !== undefined) io.stdin = t.stdin;
    if (t.stdout !== undefined) io.stdout = t.stdout;
    if (t.stderr !== undefined) io.stderr = t.stderr;
    const exitCode = await options.run(io);
    status = exitCode === undefined ? successStatus() : exitStatus(exitCode);
  } catch (err) {
    if (!t.signal.aborted) {
      const message = `${options.failureContext}: ${messageOf(err)}`;
      log.error({ err }, message);
      status = internalErrorStatus(message);
    }
  }
  t.resize.end();
  t.stdin?.destroy();
  if (t.signal.aborted || status === undefined) {
    // The client is gone (or the server is closing): there is nobody to report to.
    t.destroy();
    return;
  }
  await Promise.all([finish(t.stdout, t.signal), finish(t.stderr, t.signal)]);
  const payload = encodeStatus(status, t.statusFormat);
  if (t.error !== undefined && payload !== undefined && !t.signal.aborted) t.error.write(payload);
  await finish(t.error, t.signal);
  await t.close();
}

// ---- SPDY ----

/** Options of a SPDY exec/attach session. */
export interface SpdyCommandOptions extends CommandSessionOptions {
  /** The negotiated X-Stream-Protocol-Version. */
  protocol: string;
  /** How long the client has to open all its streams. */
  streamCreationTimeoutMs: number;
}

const STREAM_TYPES = new Set(["error", "stdin", "stdout", "stderr", "resize"]);

/** 5, 4, 3, 2 or 1 for a negotiated SPDY remote-command protocol. */
function spdyVersion(protocol: string): number {
  const m = /^v(\d)\.channel\.k8s\.io$/.exec(protocol);
  return m ? Number(m[1]) : 1;
}

/**
 * Serves an exec or attach on an upgraded SPDY connection (the 101 response already written).
 * The client opens the streams: error first, then stdin, stdout, stderr and resize as requested.
 */
export function serveSpdyCommand(socket: Duplex, options: SpdyCommandOptions): ServingSession {
  const log = options.logger;
  const version = spdyVersion(options.protocol);
  const { stdin, stdout, stderr, tty } = options.streams;
  // Go counts the streams the same way (`createHTTPStreamStreams`); v1 and v2 have no resize.
  const expected = 1 + Number(stdin) + Number(stdout) + Number(stderr) + Number(tty && version >= 3);
  const streams = new Map<string, SpdyStream>();
  let received = 0;
  let allArrived!: () => void;
  const arrived = new Promise<"ready">((resolve) => {
    allArrived = () => resolve("ready");
  });

  const session = new SpdySession(socket, {
    role: "server",
    idleTimeoutMs: options.idleTimeoutMs,
    logger: log,
    onStream: (stream) => {
      // The kubelet never reads streams past the expected count (its handler would block); refuse them.
      if (received >= expected) return false;
      const type = headerValue(stream.headers, "streamtype") ?? "";
      // An unknown or repeated type is refused rather than accepted and left unread (the kubelet
      // accepts and ignores it): nobody would read it, so its data would sit in our buffers. The
      // session counts refusals and hangs up on a client that keeps sending such streams.
      if (!STREAM_TYPES.has(type) || streams.has(type)) {
        log.warn({ streamType: type }, "unexpected stream type, refused");
        return false;
      }
      streams.set(type, stream);
      if (++received === expected) allArrived();
      return undefined;
    },
  });

  const done = (async () => {
    let timer: NodeJS.Timeout | undefined;
    const outcome = await Promise.race([
      arrived,
      session.closed.then(() => "closed" as const),
      new Promise<"timeout">((resolve) => {
        timer = setTimeout(() => resolve("timeout"), options.streamCreationTimeoutMs);
      }),
    ]);
    clearTimeout(timer);
    if (outcome !== "ready") {
      if (outcome === "timeout") log.warn("timed out waiting for client to create streams");
      session.destroy();
      return;
    }
    const stdinStream = stdin ? streams.get("stdin") : undefined;
    // v1 quirk kept by the kubelet for 1.0.x clients: our side of stdin is closed at once.
    if (version === 1) stdinStream?.end();
    await runCommand(
      {
        stdin: stdinStream,
        stdout: stdout ? streams.get("stdout") : undefined,
        stderr: stderr ? streams.get("stderr") : undefined,
        error: streams.get("error"),
        resize: ResizeQueue.from(tty ? streams.get("resize") : undefined, log),
        statusFormat: version >= 4 ? "json" : "text",
        signal: session.signal,
        close: () => session.close(),
        destroy: () => session.destroy(),
      },
      options,
    );
    await session.closed;
  })();
  return { done, terminate: () => session.destroy() };
}

// ---- WebSocket ----

/** Options of a WebSocket exec/attach session. */
export interface WebSocketCommandOptions extends CommandSessionOptions {
  /** The negotiated subprotocol. */
  protocol: ChannelProtocol;
}

const CHANNEL = { stdin: 0, stdout: 1, stderr: 2, error: 3, resize: 4 } as const;

/**
 * Serves an exec or attach on an accepted WebSocket. Channels: 0 stdin, 1 stdout, 2 stderr,
 * 3 error, 4 resize. An empty message on the lowest writable channel tells the client we are ready.
 */
export function serveWebSocketCommand(ws: WebSocket, options: WebSocketCommandOptions): ServingSession {
  const { stdin, stdout, stderr, tty } = options.streams;
  const conn = new ChannelConn(ws, {
    protocol: options.protocol,
    idleTimeoutMs: options.idleTimeoutMs,
    logger: options.logger,
  });
  const transport: CommandTransport = {
    stdin: stdin ? conn.readable(CHANNEL.stdin) : undefined,
    stdout: stdout ? conn.writable(CHANNEL.stdout) : undefined,
    stderr: stderr ? conn.writable(CHANNEL.stderr) : undefined,
    error: conn.writable(CHANNEL.error),
    // Resizes without a terminal are dropped unread rather than left to pile up.
    resize: ResizeQueue.from(tty ? conn.readable(CHANNEL.resize) : undefined, options.logger),
    statusFormat: /^v[45]\./.test(options.protocol.name) ? "json" : "text",
    signal: conn.signal,
    close: () => conn.close(),
    destroy: () => conn.terminate(),
  };
  void conn.send(stdout ? CHANNEL.stdout : stderr ? CHANNEL.stderr : CHANNEL.error, Buffer.alloc(0));
  const done = (async () => {
    await runCommand(transport, options);
    await conn.closed;
  })();
  return { done, terminate: () => conn.terminate() };
}
