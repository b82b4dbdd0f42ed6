/**
 * A WebSocket streaming client speaking the Kubernetes channel protocol (binary, base64 and v5),
 * for the streaming server's tests and berthd's end-to-end tests (the CLI speaks SPDY). It plays the part of kubectl
 * 1.31+ (v5.channel.k8s.io), crictl `--transport websocket` and the legacy web consoles.
 */

import { PassThrough, type Readable } from "node:stream";
import { WebSocket } from "ws";
import {
  collect,
  decodeErrorStream,
  distinctHeaders,
  type ExecClientOptions,
  type ExecOutcome,
  encodeResize,
  rejectedFrom,
  stdinSource,
  UpgradeRejectedError,
} from "./common.js";

/** Options of a WebSocket dial. */
export interface WsDialOptions {
  /** Sec-WebSocket-Protocol values; empty or absent sends none (the "" protocol). */
  protocols?: readonly string[];
  headers?: Record<string, string>;
  /**
   * Port-forward framing: the first message on every channel is the port (uint16 LE); it is kept
   * apart (see `prefix()`) instead of going into the channel's bytes.
   */
  portPrefixed?: boolean;
}

/** The client end of a channel-multiplexed WebSocket. */
export class WsChannelClient {
  readonly ws: WebSocket;
  /** The negotiated subprotocol ("" when none). */
  readonly protocol: string;
  readonly base64: boolean;
  /** Resolves with the close code and reason once the WebSocket is closed. */
  readonly closed: Promise<{ code: number; reason: string }>;
  /** Every message received, in order, as [channel, payload length] (to check the ready message). */
  readonly received: [number, number][] = [];
  readonly #channels = new Map<number, PassThrough>();
  readonly #prefixes = new Map<number, { promise: Promise<Buffer>; resolve: (b: Buffer) => void }>();
  readonly #portPrefixed: boolean;
  readonly #seen = new Set<number>();

  private constructor(ws: WebSocket, portPrefixed: boolean) {
    this.ws = ws;
    this.protocol = ws.protocol;
    this.base64 = ws.protocol.includes("base64");
    this.#portPrefixed = portPrefixed;
    this.closed = new Promise((resolve) => {
      ws.on("close", (code, reason) => {
        for (const channel of this.#channels.values()) channel.end();
        resolve({ code, reason: reason.toString() });
      });
    });
    ws.on("message", (data: Buffer) => this.#onMessage(data));
  }

  /** Opens the WebSocket. Rejects with UpgradeRejectedError when the server answers without 101. */
  static connect(url: string, options: WsDialOptions = {}): Promise<WsChannelClient> {
    const wsUrl = url.replace(/^http/, "ws");
    const protocols = options.protocols !== undefined && options.protocols.length > 0 ? [...options.protocols] : [];
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(wsUrl, protocols, { perMessageDeflate: false, headers: options.headers ?? {} });
      let rejected: Promise<UpgradeRejectedError> | undefined;
      ws.on("unexpected-response", (req, res) => {
        rejected = rejectedFrom(res).catch(
          () => new UpgradeRejectedError(res.statusCode ?? 0, distinctHeaders(res.headers), ""),
        );
        rejected.then(reject, reject).finally(() => req.destroy());
      });
      ws.once("error", (err) => {
        if (rejected === undefined) reject(err);
      });
      ws.once("open", () => resolve(new WsChannelClient(ws, options.portPrefixed ?? false)));
    });
  }

  /** The bytes the server sends on `channel`; ends when the WebSocket closes. */
  channel(channel: number): Readable {
    return this.#channel(channel);
  }

  #channel(channel: number): PassThrough {
    let stream = this.#channels.get(channel);
    if (stream === undefined) {
      stream = new PassThrough();
      if (this.ws.readyState === WebSocket.CLOSED) stream.end();
      this.#channels.set(channel, stream);
    }
    return stream;
  }

  /** The first message of `channel` (port-forward: the port), when `portPrefixed`. */
  prefix(channel: number): Promise<Buffer> {
    return this.#prefixEntry(channel).promise;
  }

  #prefixEntry(channel: number): { promise: Promise<Buffer>; resolve: (b: Buffer) => void } {
    let entry = this.#prefixes.get(channel);
    if (entry === undefined) {
      let resolve!: (b: Buffer) => void;
      const promise = new Promise<Buffer>((r) => {
        resolve = r;
      });
      entry = { promise, resolve };
      this.#prefixes.set(channel, entry);
    }
    return entry;
  }

  /** Sends `data` on `channel` in the negotiated encoding. */
  send(channel: number, data: string | Uint8Array): void {
    const bytes = Buffer.from(data);
    if (this.base64) this.ws.send(String.fromCharCode(48 + channel) + bytes.toString("base64"));
    else this.ws.send(Buffer.concat([Buffer.of(channel), bytes]), { binary: true });
  }

  /** v5 only: half-closes `channel` (the server sees EOF on it). */
  closeChannel(channel: number): void {
    this.ws.send(Buffer.of(255, channel), { binary: true });
  }

  /** Closes normally and waits for the close handshake. */
  async close(): Promise<void> {
    if (this.ws.readyState === WebSocket.OPEN || this.ws.readyState === WebSocket.CONNECTING) this.ws.close(1000);
    await this.closed;
  }

  #onMessage(data: Buffer): void {
    if (data.length === 0) return;
    const channel = this.base64 ? data[0]! - 48 : data[0]!;
    const payload = this.base64 ? Buffer.from(data.toString("latin1", 1), "base64") : Buffer.from(data.subarray(1));
    this.received.push([channel, payload.length]);
    if (this.#portPrefixed && !this.#seen.has(channel)) {
      this.#seen.add(channel);
      this.#prefixEntry(channel).resolve(payload);
      return;
    }
    if (payload.length > 0) this.#channel(channel).write(payload);
  }
}

/** Options of wsExec: the session's streams and the dial. */
export type WsExecOptions = ExecClientOptions & WsDialOptions;

/**
 * Runs an exec or attach session over WebSocket: resize sizes and stdin are sent as channel
 * messages (with v5, stdin is then closed with the close signal; older protocols cannot close
 * it), and the outcome is read once the server closes the WebSocket.
 */
export async function wsExec(url: string, options: WsExecOptions = {}): Promise<ExecOutcome> {
  const client = await WsChannelClient.connect(url, { protocols: ["v4.channel.k8s.io"], ...options });
  const stdout = collect(client.channel(1));
  const stderr = collect(client.channel(2));
  const error = collect(client.channel(3));
  for (const size of options.resize ?? []) client.send(4, encodeResize(size));
  if (options.stdin !== undefined) {
    for await (const chunk of stdinSource(options.stdin)) client.send(0, chunk as Buffer);
    if (client.protocol.startsWith("v5.")) client.closeChannel(0);
  }
  await client.closed;
  const errorText = (await error).toString();
  return {
    protocol: client.protocol,
    stdout: await stdout,
    stderr: await stderr,
    error: errorText,
    ...decodeErrorStream(client.protocol, errorText),
  };
}

/** One forwarded port of a WebSocket port-forward session. */
export interface WsForwardedPort {
  /** The port announced by the server on the data channel. */
  port: Promise<number>;
  /** The port announced by the server on the error channel. */
  errorPort: Promise<number>;
  /** What the pod sends. */
  data: Readable;
  /** Error text; complete once the WebSocket closes. */
  error: Promise<string>;
  /** Sends bytes to the pod. */
  write(data: string | Uint8Array): void;
}

/** A WebSocket port-forward session; port i uses channels 2i (data) and 2i+1 (error). */
export class WsPortForwardClient {
  readonly client: WsChannelClient;

  private constructor(client: WsChannelClient) {
    this.client = client;
  }

  /** Dials a port-forward URL (default subprotocol v4.channel.k8s.io). */
  static async connect(url: string, options: WsDialOptions = {}): Promise<WsPortForwardClient> {
    const client = await WsChannelClient.connect(url, {
      protocols: ["v4.channel.k8s.io"],
      ...options,
      portPrefixed: true,
    });
    return new WsPortForwardClient(client);
  }

  /** The i-th forwarded port. */
  port(i: number): WsForwardedPort {
    const dataChannel = 2 * i;
    const errorChannel = 2 * i + 1;
    return {
      port: this.client.prefix(dataChannel).then((b) => b.readUInt16LE(0)),
      errorPort: this.client.prefix(errorChannel).then((b) => b.readUInt16LE(0)),
      data: this.client.channel(dataChannel),
      error: collect(this.client.channel(errorChannel)).then((b) => b.toString()),
      write: (data) => this.client.send(dataChannel, data),
    };
  }

  /** Closes the WebSocket (the only way to end a forward over WebSocket). */
  close(): Promise<void> {
    return this.client.close();
  }
}
