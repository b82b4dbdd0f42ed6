/**
 * The Kubernetes channel protocol over one WebSocket (`k8s.io/apimachinery/.../wsstream/conn.go`).
 *
 * Every message, in both directions, starts with a channel number and carries that channel's bytes:
 *
 *   binary subprotocols ("", channel.k8s.io, v4.channel.k8s.io, v5.channel.k8s.io):
 *     [channel byte][raw payload]
 *   base64 subprotocols (base64.channel.k8s.io, v4.base64.channel.k8s.io), text messages:
 *     ['0' + channel][base64 payload]
 *   v5 only: [255][channel] from the client half-closes that channel (its stdin, in practice).
 *
 * The WebSocket itself has no per-channel flow control: when a channel's reader falls behind we
 * pause the whole socket until it catches up, exactly as Go's io.Pipe-based channels block their
 * reader loop.
 */

import { Readable, Writable } from "node:stream";
import { WebSocket } from "ws";
import { type Logger, silentLogger } from "../log/index.js";

/** How one WebSocket subprotocol frames channels. */
export interface ChannelProtocol {
  /** The Sec-WebSocket-Protocol value; "" is chosen when the client offers none. */
  readonly name: string;
  /** Text messages with a '0'-based channel digit and base64 payload. */
  readonly base64: boolean;
  /** The client may half-close a channel with [255, channel] (v5). */
  readonly closeSignal: boolean;
}

const protocol = (name: string, base64 = false, closeSignal = false): ChannelProtocol => ({
  name,
  base64,
  closeSignal,
});

/** Subprotocols for exec and attach, in the kubelet's order of preference. */
export const REMOTE_COMMAND_WS_PROTOCOLS: readonly ChannelProtocol[] = [
  protocol("v5.channel.k8s.io", false, true),
  protocol("v4.channel.k8s.io"),
  protocol("v4.base64.channel.k8s.io", true),
  protocol("channel.k8s.io"),
  protocol("base64.channel.k8s.io", true),
  protocol(""),
];

/** Subprotocols for port-forward (`portforward/websocket.go`). */
export const PORT_FORWARD_WS_PROTOCOLS: readonly ChannelProtocol[] = [
  protocol("v4.channel.k8s.io"),
  protocol("v4.base64.channel.k8s.io", true),
  protocol(""),
];

/** The client's offered subprotocols, from a Sec-WebSocket-Protocol header (comma lists allowed). */
export function offeredProtocols(header: string | undefined): string[] {
  if (header === undefined) return [];
  return header
    .split(",")
    .map((p) => p.trim())
    .filter((p) => p.length > 0);
}

/**
 * Picks the first subprotocol the client offers that we support, as wsstream's handshake does.
 * No offer selects "". Undefined means no match: the caller answers 403.
 */
export function selectProtocol(
  offered: readonly string[],
  supported: readonly ChannelProtocol[],
): ChannelProtocol | undefined {
  if (offered.length === 0) return supported.find((p) => p.name === "");
  for (const name of offered) {
    const match = supported.find((p) => p.name === name && name !== "");
    if (match !== undefined) return match;
  }
  return undefined;
}

/** Options of a ChannelConn. */
export interface ChannelConnOptions {
  protocol: ChannelProtocol;
  /** Terminate after this long without a message either way (default: never). */
  idleTimeoutMs?: number;
  /** How long `close()` waits for the client's close frame before terminating (default 2 s). */
  closeTimeoutMs?: number;
  logger?: Logger;
}

const CLOSE_SIGNAL = 255;

/**
 * Numbered byte channels over one server-side WebSocket. Declare the channels the client writes to
 * with `readable()` right after the upgrade, before any message can arrive; messages on other
 * channels are dropped, as wsstream drops them for ignored channels.
 */
export class ChannelConn {
  /** Aborted when the WebSocket closes, whoever closed it. */
  readonly signal: AbortSignal;
  /** Resolves once the WebSocket is closed. Never rejects. */
  readonly closed: Promise<void>;
  readonly protocol: ChannelProtocol;

  readonly #ws: WebSocket;
  readonly #log: Logger;
  readonly #closeTimeoutMs: number;
  readonly #abort = new AbortController();
  readonly #readers = new Map<number, Readable>();
  // Channels whose reader is over its high-water mark; the socket is paused while any is.
  readonly #full = new Set<number>();
  #resolveClosed!: () => void;
  #idleTimer: NodeJS.Timeout | undefined;
  #closeTimer: NodeJS.Timeout | undefined;

  constructor(ws: WebSocket, options: ChannelConnOptions) {
    this.#ws = ws;
    this.protocol = options.protocol;
    this.#log = options.logger ?? silentLogger();
    this.#closeTimeoutMs = options.closeTimeoutMs ?? 2000;
    this.signal = this.#abort.signal;
    this.closed = new Promise((resolve) => {
      this.#resolveClosed = resolve;
    });
    ws.on("message", (data: Buffer) => this.#onMessage(data));
    ws.on("error", (err) => this.#log.debug({ err }, "websocket: connection error"));
    ws.on("close", () => this.#onClose());
    if (options.idleTimeoutMs !== undefined && options.idleTimeoutMs > 0) {
      this.#idleTimer = setTimeout(() => {
        this.#log.debug({ idleTimeoutMs: options.idleTimeoutMs }, "websocket: idle timeout, closing connection");
        this.terminate();
      }, options.idleTimeoutMs);
    }
    if (ws.readyState !== WebSocket.OPEN) this.#onClose();
  }

  /**
   * The bytes the client sends on `channel`. Ends (EOF) on a v5 close signal or when the WebSocket
   * closes, as wsstream closes its pipes.
   */
  readable(channel: number): Readable {
    const existing = this.#readers.get(channel);
    if (existing !== undefined) return existing;
    const reader = new Readable({ read: () => this.#drained(channel) });
    // A reader destroyed while full (its session ended) must not keep the socket paused.
    reader.once("close", () => this.#drained(channel));
    if (this.signal.aborted) reader.push(null);
    else this.#readers.set(channel, reader);
    return reader;
  }

  /**
   * A writer of `channel`. Writes after the WebSocket closed are dropped (the session's `signal`
   * says so), never an 'error' event; `end()` sends nothing: channels have no server-side close.
   */
  writable(channel: number): Writable {
    return new Writable({
      write: (chunk: Buffer, _encoding, callback) => {
        this.send(channel, chunk).then(() => callback());
      },
    });
  }

  /** Sends one message on `channel`; resolves once it is handed to the socket (or dropped after close). */
  send(channel: number, data: Uint8Array): Promise<void> {
    if (this.#ws.readyState !== WebSocket.OPEN) return Promise.resolve();
    this.#idleTimer?.refresh();
    const message = this.protocol.base64
      ? String.fromCharCode(48 + channel) + Buffer.from(data).toString("base64")
      : Buffer.concat([Buffer.of(channel), data]);
    return new Promise((resolve) => this.#ws.send(message, { binary: !this.protocol.base64 }, () => resolve()));
  }

  /** Closes normally (1000) and resolves when the socket is gone, terminating it after `closeTimeoutMs`. */
  close(): Promise<void> {
    if (this.#ws.readyState === WebSocket.OPEN) {
      this.#ws.close(1000);
      this.#closeTimer = setTimeout(() => this.terminate(), this.#closeTimeoutMs);
    } else if (this.#ws.readyState !== WebSocket.CLOSED) {
      this.terminate();
    }
    return this.closed;
  }

  /** Drops the connection at once. */
  terminate(): void {
    this.#ws.terminate();
  }

  #onMessage(data: Buffer): void {
    this.#idleTimer?.refresh();
    if (data.length === 0) return;
    const first = data[0]!;
    if (this.protocol.closeSignal && first === CLOSE_SIGNAL) {
      if (data.length >= 2) this.#endReader(data[1]!);
      return;
    }
    const channel = this.protocol.base64 ? first - 48 : first;
    const reader = this.#readers.get(channel);
    if (reader === undefined || reader.destroyed) return;
    // Buffer.from(…, "base64") skips invalid characters where Go would drop the message; either way
    // a broken client gets garbage, not a crash.
    const payload = this.protocol.base64 ? Buffer.from(data.toString("latin1", 1), "base64") : data.subarray(1);
    if (payload.length === 0) return;
    if (!reader.push(payload)) {
      this.#full.add(channel);
      this.#ws.pause();
    }
  }

  /** EOF on a channel; later messages for it are dropped (pushing after EOF would throw). */
  #endReader(channel: number): void {
    const reader = this.#readers.get(channel);
    if (reader === undefined) return;
    this.#readers.delete(channel);
    if (!reader.destroyed) reader.push(null);
    this.#drained(channel);
  }

  /** `channel` no longer holds the socket back; resume it when no channel does. */
  #drained(channel: number): void {
    if (this.#full.delete(channel) && this.#full.size === 0 && !this.signal.aborted) this.#ws.resume();
  }

  #onClose(): void {
    if (this.signal.aborted) return;
    clearTimeout(this.#idleTimer);
    clearTimeout(this.#closeTimer);
    for (const channel of [...this.#readers.keys()]) this.#endReader(channel);
    this.#full.clear();
    this.#abort.abort(new Error("websocket closed"));
    this.#resolveClosed();
  }
}
