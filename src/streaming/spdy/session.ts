/**
 * A SPDY/3.1 session over one connection, usable as server (the streaming server) or client (the
 * test client). Streams are Node Duplexes: reading gives the peer's data frames and ends at its FIN;
 * writing sends data frames, and `end()` sends our FIN.
 *
 * Stream lifecycle (either side may reset at any point, which closes both directions at once):
 *
 *   SYN_STREAM ─▶ open ─┬─ our FIN (end()) ───▶ half-closed (local) ──┐
 *   (+ SYN_REPLY)       └─ peer FIN ──────────▶ half-closed (remote) ─┴─▶ closed (forgotten by the session)
 *
 * Flow control. SPDY/3.1 has a window per stream and one per session, both 64 KiB at the start.
 * We grant the peer more window (WINDOW_UPDATE) as our readers consume, so a slow reader throttles
 * only its own stream. When sending we respect the peer's windows, with one exception we must make:
 * moby/spdystream, the library behind kubectl, the kubelet and crictl, implements no flow control at
 * all. It never sends WINDOW_UPDATE and ignores ours, so enforcing its windows would stall every
 * session after 64 KiB of output. So a peer that sends SETTINGS or WINDOW_UPDATE is flow-controlled;
 * one that overruns a window we granted is not, and we stop enforcing its windows at once; and when
 * a send blocks on a window of a peer that has shown neither, we PING it: a reply that comes back
 * still without a WINDOW_UPDATE means no flow control, for the rest of the session. Overrunning
 * data is accepted; past a hard per-stream buffer limit we stop reading the socket until that
 * stream drains (which is what spdystream itself does).
 */

import { performance } from "node:perf_hooks";
import { Duplex } from "node:stream";
import { RuntimeError } from "../../errdefs/index.js";
import { type Logger, silentLogger } from "../../log/index.js";
import {
  DEFAULT_WINDOW_SIZE,
  encodeData,
  encodeGoAway,
  encodePing,
  encodeRstStream,
  encodeSettings,
  encodeSynReply,
  encodeSynStream,
  encodeWindowUpdate,
  type Frame,
  FrameParser,
  GoAwayStatus,
  HeaderCompressor,
  HeaderDecompressor,
  MAX_WINDOW_SIZE,
  RstStatus,
  SettingsId,
  type SpdyHeaders,
  SpdyProtocolError,
} from "./framing.js";

/** Which end of the connection this session is; decides stream and ping id parity. */
export type SpdyRole = "server" | "client";

/**
 * `auto`: grant windows as data is consumed and respect the peer's (see the module comment).
 * `off`: behave like moby/spdystream, sending no WINDOW_UPDATE and ignoring windows (test clients
 * use it to reproduce kubectl).
 */
export type FlowControlMode = "auto" | "off";

/** Options of a SpdySession. */
export interface SpdySessionOptions {
  role: SpdyRole;
  /**
   * Called for each stream the peer opens, before it is accepted. Return false to refuse it
   * (RST_STREAM REFUSED_STREAM); otherwise a SYN_REPLY goes out before anything written to it.
   */
  onStream?: (stream: SpdyStream) => boolean | undefined;
  /** Close the session after this long without a frame in either direction (default: never). */
  idleTimeoutMs?: number;
  flowControl?: FlowControlMode;
  /** Our receive window per stream; a SETTINGS frame announces it when not 64 KiB. */
  initialWindowSize?: number;
  /** How long `close()` waits for the peer to hang up after our GOAWAY (default 2 s). */
  closeTimeoutMs?: number;
  /**
   * Most streams the peer may have open at once (default 1000). One more is refused with
   * REFUSED_STREAM, and counts towards `maxRefusedStreams`. Each open stream may buffer up to
   * 1 MiB of unread data, so this bounds what a peer can make us hold.
   */
  maxPeerStreams?: number;
  /**
   * Most streams refused over the session's life, by `onStream` or the cap above (default 32).
   * Past it the peer is misbehaving on purpose or by bug: GOAWAY PROTOCOL_ERROR, then the
   * session ends. Real clients never have a stream refused.
   */
  maxRefusedStreams?: number;
  /**
   * Longest frame accepted (default 1 MiB, data and control alike). SPDY allows 16 MiB, but every
   * client in the field (moby/spdystream, via Go's io.Copy) sends at most 32 KiB per data frame,
   * and a longer announced length would make us buffer it whole.
   */
  maxFrameLength?: number;
  logger?: Logger;
}

/** Counters for tests and debugging. */
export interface SpdySessionStats {
  /** What we learned about the peer's flow control. */
  peerFlowControl: "unknown" | "on" | "off";
  /** Data frames that arrived beyond the window we had granted. */
  windowOverruns: number;
  /** Frames written to the connection. */
  framesSent: number;
}

/** Rejects `stream.reply` when a stream we opened is refused or reset before the peer accepted it. */
export class SpdyStreamResetError extends Error {
  constructor(
    readonly streamId: number,
    readonly status: number,
  ) {
    super(`spdy: stream ${streamId} reset (status ${status})`);
    this.name = "SpdyStreamResetError";
  }
}

// Frames are cut at 32 KiB: Go's io.Copy buffer size, and small enough to interleave streams.
const MAX_DATA_FRAME = 32 * 1024;
// Past this much unread data on one stream (only reachable when the peer ignores our window),
// stop reading the connection until the stream's reader catches up.
const HARD_BUFFER_LIMIT = 1024 * 1024;
const DEFAULT_MAX_PEER_STREAMS = 1000;
const DEFAULT_MAX_REFUSED_STREAMS = 32;
const DEFAULT_MAX_FRAME_LENGTH = 1024 * 1024;
const EMPTY = Buffer.alloc(0);

/** The session's side of a stream, given to SpdyStream so it never touches session internals. */
interface StreamLink {
  sendData(data: Buffer, fin: boolean): Promise<void>;
  consumed(): void;
  reset(status: number): void;
  destroyed(): void;
  resetStatus(): number | undefined;
}

/**
 * One SPDY stream. Reading ends at the peer's FIN; `end()` sends ours. Destroying a stream that is
 * still open resets it (RST_STREAM CANCEL); note that a plain `for await` destroys a Duplex when it
 * ends, so read with `stream.iterator({ destroyOnReturn: false })` to keep writing afterwards.
 * Streams are destroyed without an error when the peer resets them or the session ends, so a
 * pipeline into or out of one fails with a premature close rather than an unhandled 'error' event.
 */
export class SpdyStream extends Duplex {
  /** The stream id: odd when opened by the client, even when opened by the server. */
  readonly id: number;
  /** The headers of the SYN_STREAM that opened the stream. */
  readonly headers: SpdyHeaders;
  /**
   * The SYN_REPLY headers: settles when the peer accepts a stream we opened, rejects with
   * SpdyStreamResetError when it refuses. Already resolved for streams the peer opened.
   */
  readonly reply: Promise<SpdyHeaders>;
  readonly #link: StreamLink;

  /** @internal Streams are created by SpdySession. */
  constructor(id: number, headers: SpdyHeaders, reply: Promise<SpdyHeaders>, link: StreamLink, highWaterMark: number) {
    super({ readableHighWaterMark: highWaterMark, allowHalfOpen: true });
    this.id = id;
    this.headers = headers;
    this.reply = reply;
    this.#link = link;
    // Nobody may be waiting on reply; a refusal must not become an unhandled rejection.
    reply.catch(() => undefined);
  }

  /** The RST_STREAM status if either side reset the stream. */
  get resetStatus(): number | undefined {
    return this.#link.resetStatus();
  }

  /** Resets the stream (both directions) with `status` (default CANCEL) and destroys it. */
  reset(status: number = RstStatus.Cancel): void {
    this.#link.reset(status);
  }

  // Window credit follows consumption. _read cannot tell us (Node calls it before taking the chunk
  // out of the buffer, and not again until the next push), so watch read(), which both paused
  // readers and pipe/flowing mode go through; chunks emitted straight from push() are counted there.
  override read(size?: number): Buffer | null {
    const chunk = super.read(size) as Buffer | null;
    if (chunk !== null) this.#link.consumed();
    return chunk;
  }

  override _read(): void {
    // Data arrives with frames; nothing to fetch.
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    this.#link.sendData(chunk, false).then(() => callback());
  }

  override _final(callback: (error?: Error | null) => void): void {
    this.#link.sendData(EMPTY, true).then(() => callback());
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.#link.destroyed();
    callback(error);
  }
}

interface StreamState {
  readonly id: number;
  stream: SpdyStream;
  /** How much more we may send before the peer's next WINDOW_UPDATE for this stream. */
  sendWindow: number;
  /** Bytes received, and bytes granted back to the peer (beyond the initial window). */
  received: number;
  credited: number;
  localClosed: boolean;
  remoteClosed: boolean;
  resetStatus: number | undefined;
  replied: boolean;
  resolveReply: (headers: SpdyHeaders) => void;
  rejectReply: (err: Error) => void;
  /** Settles once our SYN_STREAM or SYN_REPLY is queued: data may not overtake it. */
  ready: Promise<void>;
  markReady: () => void;
  /** Resolves a read loop blocked on this stream's unread data. */
  drained: (() => void) | undefined;
}

type Outgoing = Buffer | (() => Promise<Buffer>);

/**
 * A SPDY/3.1 session. It starts reading as soon as it is constructed and owns the socket from then
 * on: `close()` hangs up gracefully (GOAWAY, resets of unfinished streams, FIN), `destroy()` at once.
 * `signal` aborts and `closed` resolves when the connection is gone, whoever ended it.
 */
export class SpdySession {
  readonly role: SpdyRole;
  /** Aborted when the session ends (peer hang-up, idle timeout, protocol error, close/destroy). */
  readonly signal: AbortSignal;
  /** Resolves when the session has ended and the socket is destroyed. Never rejects. */
  readonly closed: Promise<void>;

  readonly #socket: Duplex;
  readonly #log: Logger;
  readonly #onStream: ((stream: SpdyStream) => boolean | undefined) | undefined;
  readonly #flowControl: FlowControlMode;
  readonly #recvWindow: number;
  readonly #closeTimeoutMs: number;
  readonly #maxPeerStreams: number;
  readonly #maxRefusedStreams: number;
  readonly #maxFrameLength: number;
  #peerStreams = 0;
  #refusedStreams = 0;
  readonly #abort = new AbortController();
  readonly #deflate = new HeaderCompressor();
  readonly #inflate = new HeaderDecompressor();
  readonly #streams = new Map<number, StreamState>();
  readonly #pings = new Map<number, { resolve: () => void; reject: (err: Error) => void }>();
  readonly #windowWaiters = new Set<() => void>();
  readonly #stats: SpdySessionStats = { peerFlowControl: "unknown", windowOverruns: 0, framesSent: 0 };
  #resolveClosed!: () => void;

  #nextStreamId: number;
  #nextPingId: number;
  #lastPeerStreamId = 0;
  #peerInitialWindow = DEFAULT_WINDOW_SIZE;
  #sessionSendWindow = DEFAULT_WINDOW_SIZE;
  #sessionUncredited = 0;
  #probing = false;
  #closing = false;
  #peerGoneAway = false;
  #destroyed = false;
  #socketClosed = false;
  #queue: Outgoing[] = [];
  #pumping = false;
  #flushWaiters: (() => void)[] = [];
  #drainWaiters: (() => void)[] = [];
  #idleTimer: NodeJS.Timeout | undefined;
  #closeTimer: NodeJS.Timeout | undefined;

  constructor(socket: Duplex, options: SpdySessionOptions) {
    this.role = options.role;
    this.#socket = socket;
    this.#log = options.logger ?? silentLogger();
    this.#onStream = options.onStream;
    this.#flowControl = options.flowControl ?? "auto";
    this.#recvWindow = options.initialWindowSize ?? DEFAULT_WINDOW_SIZE;
    this.#closeTimeoutMs = options.closeTimeoutMs ?? 2000;
    this.#maxPeerStreams = options.maxPeerStreams ?? DEFAULT_MAX_PEER_STREAMS;
    this.#maxRefusedStreams = options.maxRefusedStreams ?? DEFAULT_MAX_REFUSED_STREAMS;
    this.#maxFrameLength = options.maxFrameLength ?? DEFAULT_MAX_FRAME_LENGTH;
    this.#nextStreamId = this.role === "client" ? 1 : 2;
    this.#nextPingId = this.role === "client" ? 1 : 2;
    this.signal = this.#abort.signal;
    this.closed = new Promise((resolve) => {
      this.#resolveClosed = resolve;
    });

    if ("setNoDelay" in socket && typeof socket.setNoDelay === "function") socket.setNoDelay(true);
    socket.on("error", (err) => this.#log.debug({ err }, "spdy: connection error"));
    socket.on("drain", () => this.#wake(this.#drainWaiters));
    // No destroy() here: 'close' can come while the read loop is still working through the last
    // chunk (a header block being inflated), and its frames must not be lost. The loop ends by
    // itself once the socket is done; only unblock it if it waits on a slow stream reader.
    socket.on("close", () => {
      this.#socketClosed = true;
      for (const st of this.#streams.values()) st.drained?.();
    });
    if (options.idleTimeoutMs !== undefined && options.idleTimeoutMs > 0) {
      this.#idleTimer = setTimeout(() => {
        this.#log.debug({ idleTimeoutMs: options.idleTimeoutMs }, "spdy: idle timeout, closing connection");
        this.destroy();
      }, options.idleTimeoutMs);
    }
    if (this.#recvWindow !== DEFAULT_WINDOW_SIZE && this.#flowControl === "auto") {
      this.#enqueue(encodeSettings([{ id: SettingsId.InitialWindowSize, flags: 0, value: this.#recvWindow }]));
    }
    void this.#readLoop();
  }

  /** Counters for tests and debugging. */
  get stats(): Readonly<SpdySessionStats> {
    return { ...this.#stats };
  }

  /** Streams not yet closed in both directions. */
  get streamCount(): number {
    return this.#streams.size;
  }

  /**
   * Opens a stream with `headers` (names are lowercased). Await `stream.reply` to know the peer
   * accepted it. Throws Unavailable once the session is closing or the peer sent GOAWAY.
   */
  openStream(
    headers: Readonly<Record<string, string | readonly string[]>>,
    options: { fin?: boolean; priority?: number } = {},
  ): SpdyStream {
    if (this.#destroyed || this.#closing || this.#peerGoneAway) {
      throw new RuntimeError("Unavailable", "spdy: session is closed");
    }
    const id = this.#nextStreamId;
    this.#nextStreamId += 2;
    const normalized: Record<string, string[]> = {};
    for (const [name, value] of Object.entries(headers)) {
      normalized[name.toLowerCase()] = typeof value === "string" ? [value] : [...value];
    }
    const st = this.#createStream(id, normalized, { localClosed: options.fin === true, replied: false });
    const fin = options.fin === true;
    const priority = options.priority ?? 0;
    this.#enqueue(() =>
      this.#deflate.compress(normalized).then((block) => encodeSynStream(id, block, { fin, priority })),
    );
    st.markReady();
    return st.stream;
  }

  /** Round-trip time of a PING in milliseconds. Rejects when the session ends first. */
  ping(): Promise<number> {
    if (this.#destroyed) return Promise.reject(new RuntimeError("Unavailable", "spdy: session is closed"));
    const id = this.#nextPingId;
    const next = this.#nextPingId + 2;
    this.#nextPingId = next > 0xffff_ffff ? (this.role === "client" ? 1 : 2) : next;
    const start = performance.now();
    return new Promise((resolve, reject) => {
      this.#pings.set(id, { resolve: () => resolve(performance.now() - start), reject });
      this.#enqueue(encodePing(id));
    });
  }

  /**
   * Hangs up gracefully: resets streams we have not finished (as Go's httpstream does), sends
   * GOAWAY and our FIN once everything queued is written, then waits for the peer to close (at most
   * `closeTimeoutMs`). Reading continues meanwhile so the peer's last frames are not answered with a
   * TCP reset. Resolves when the session has ended.
   */
  async close(): Promise<void> {
    if (this.#destroyed || this.#closing) return this.closed;
    this.#closing = true;
    for (const st of [...this.#streams.values()]) {
      if (!st.localClosed) this.#resetStream(st, RstStatus.Cancel);
      else this.#forget(st, true);
    }
    this.#enqueue(encodeGoAway(this.#lastPeerStreamId, GoAwayStatus.Ok));
    await this.#flushed();
    if (this.#destroyed) return this.closed;
    this.#closeTimer = setTimeout(() => this.destroy(), this.#closeTimeoutMs);
    this.#socket.end();
    return this.closed;
  }

  /** Ends the session at once: every stream is destroyed, the socket too. Idempotent. */
  destroy(): void {
    if (this.#destroyed) return;
    this.#destroyed = true;
    clearTimeout(this.#idleTimer);
    clearTimeout(this.#closeTimer);
    const gone = new RuntimeError("Unavailable", "spdy: session closed");
    for (const st of this.#streams.values()) {
      st.localClosed = true;
      st.remoteClosed = true;
      st.rejectReply(gone);
      st.drained?.();
      st.stream.destroy();
    }
    this.#streams.clear();
    this.#peerStreams = 0;
    for (const ping of this.#pings.values()) ping.reject(gone);
    this.#pings.clear();
    this.#queue = [];
    this.#wake(this.#windowWaiters);
    this.#wake(this.#drainWaiters);
    this.#wake(this.#flushWaiters);
    this.#socket.destroy();
    this.#deflate.close();
    this.#inflate.close();
    this.#abort.abort(gone);
    this.#resolveClosed();
  }

  // ---- reading ----

  async #readLoop(): Promise<void> {
    const parser = new FrameParser({
      maxFrameLength: this.#maxFrameLength,
      maxControlFrameLength: this.#maxFrameLength,
    });
    try {
      for await (const chunk of this.#socket) {
        this.#idleTimer?.refresh();
        parser.push(chunk as Buffer);
        for (let frame = parser.next(); frame !== undefined; frame = parser.next()) {
          await this.#handleFrame(frame);
          if (this.#destroyed) return;
        }
      }
    } catch (err) {
      if (err instanceof SpdyProtocolError && !this.#destroyed) {
        this.#log.warn({ err: err.message }, "spdy: protocol error, closing connection");
        this.#enqueue(encodeGoAway(this.#lastPeerStreamId, GoAwayStatus.ProtocolError));
        await this.#flushed();
      } else if (!this.#destroyed) {
        this.#log.debug({ err }, "spdy: read failed");
      }
    } finally {
      this.destroy();
    }
  }

  async #handleFrame(frame: Frame): Promise<void> {
    switch (frame.type) {
      case "data":
        return this.#onData(frame.streamId, frame.data, frame.fin);
      case "syn_stream": {
        // Inflate every block, even of a stream we refuse: the zlib context must stay in step.
        const headers = await this.#inflate.decompress(frame.headerBlock);
        return this.#onSynStream(frame.streamId, headers, frame.fin, frame.unidirectional);
      }
      case "syn_reply": {
        const headers = await this.#inflate.decompress(frame.headerBlock);
        const st = this.#streams.get(frame.streamId);
        if (st === undefined || st.replied) return;
        st.replied = true;
        st.resolveReply(headers);
        if (frame.fin) this.#remoteFin(st);
        return;
      }
      case "headers": {
        await this.#inflate.decompress(frame.headerBlock);
        const st = this.#streams.get(frame.streamId);
        if (st !== undefined && frame.fin) this.#remoteFin(st);
        return;
      }
      case "rst_stream": {
        const st = this.#streams.get(frame.streamId);
        if (st === undefined) return;
        this.#log.debug({ streamId: st.id, status: frame.status }, "spdy: stream reset by peer");
        st.resetStatus = frame.status;
        st.rejectReply(new SpdyStreamResetError(st.id, frame.status));
        this.#forget(st, true);
        return;
      }
      case "settings":
        this.#stats.peerFlowControl = "on";
        for (const entry of frame.entries) {
          if (entry.id !== SettingsId.InitialWindowSize) continue;
          // A new initial window applies to open streams too, by the difference (draft 3, 2.6.8).
          const delta = entry.value - this.#peerInitialWindow;
          this.#peerInitialWindow = entry.value;
          for (const st of this.#streams.values()) st.sendWindow += delta;
        }
        this.#wake(this.#windowWaiters);
        return;
      case "window_update":
        this.#stats.peerFlowControl = "on";
        if (frame.streamId === 0) {
          this.#sessionSendWindow = Math.min(this.#sessionSendWindow + frame.delta, MAX_WINDOW_SIZE);
        } else {
          const st = this.#streams.get(frame.streamId);
          if (st !== undefined) st.sendWindow = Math.min(st.sendWindow + frame.delta, MAX_WINDOW_SIZE);
        }
        this.#wake(this.#windowWaiters);
        return;
      case "ping": {
        const mine = frame.id % 2 === (this.role === "client" ? 1 : 0);
        if (!mine) {
          this.#enqueue(encodePing(frame.id));
          return;
        }
        const pending = this.#pings.get(frame.id);
        this.#pings.delete(frame.id);
        pending?.resolve();
        return;
      }
      case "goaway":
        this.#peerGoneAway = true;
        // Streams we opened above the peer's last good id were never seen by it.
        for (const st of [...this.#streams.values()]) {
          if (this.#isOurs(st.id) && st.id > frame.lastGoodStreamId) {
            st.rejectReply(new SpdyStreamResetError(st.id, RstStatus.RefusedStream));
            st.resetStatus = RstStatus.RefusedStream;
            this.#forget(st, true);
          }
        }
        return;
      case "unknown":
        return;
    }
  }

  async #onData(streamId: number, data: Buffer, fin: boolean): Promise<void> {
    this.#creditSession(data.length);
    const st = this.#streams.get(streamId);
    // Data for a stream already reset or closed is in flight from before the peer knew; drop it.
    if (st === undefined || st.remoteClosed) return;
    st.received += data.length;
    if (st.received - st.credited > this.#recvWindow) {
      this.#stats.windowOverruns++;
      // Only a peer without flow control overruns a window; stop enforcing its windows now. Waiting
      // for the PING probe could deadlock: our reader may be about to block on this very stream.
      if (this.#stats.peerFlowControl === "unknown") this.#peerHasNoFlowControl();
    }
    if (data.length > 0) st.stream.push(data);
    if (fin) this.#remoteFin(st);
    this.#creditStream(st);
    if (st.stream.readableLength > HARD_BUFFER_LIMIT && !st.stream.destroyed && !this.#socketClosed) {
      await new Promise<void>((resolve) => {
        st.drained = resolve;
      });
      st.drained = undefined;
    }
  }

  #onSynStream(id: number, headers: SpdyHeaders, fin: boolean, unidirectional: boolean): void {
    if (id === 0 || this.#isOurs(id) || id <= this.#lastPeerStreamId) {
      throw new SpdyProtocolError(`invalid stream id ${id} in SYN_STREAM`);
    }
    this.#lastPeerStreamId = id;
    if (this.#closing) {
      this.#enqueue(encodeRstStream(id, RstStatus.RefusedStream));
      return;
    }
    if (this.#peerStreams >= this.#maxPeerStreams) {
      this.#log.warn({ streamId: id, max: this.#maxPeerStreams }, "spdy: too many open streams, refusing stream");
      this.#enqueue(encodeRstStream(id, RstStatus.RefusedStream));
      this.#countRefused();
      return;
    }
    const st = this.#createStream(id, headers, { localClosed: unidirectional, replied: true });
    if (fin) this.#remoteFin(st);
    let accepted: boolean;
    try {
      accepted = this.#onStream?.(st.stream) !== false;
    } catch (err) {
      this.#log.warn({ err, streamId: id }, "spdy: stream handler failed, refusing stream");
      accepted = false;
    }
    if (!accepted) {
      this.#resetStream(st, RstStatus.RefusedStream);
      this.#countRefused();
      return;
    }
    if (st.resetStatus !== undefined) return;
    this.#enqueue(() => this.#deflate.compress({}).then((block) => encodeSynReply(id, block)));
    st.markReady();
  }

  /** One more refused stream; past the limit the session is ended with a protocol error. */
  #countRefused(): void {
    if (++this.#refusedStreams > this.#maxRefusedStreams) {
      throw new SpdyProtocolError(`more than ${this.#maxRefusedStreams} streams refused`);
    }
  }

  #remoteFin(st: StreamState): void {
    if (st.remoteClosed) return;
    st.remoteClosed = true;
    st.stream.push(null);
    if (st.localClosed) this.#forget(st, false);
  }

  // ---- flow control, receiving side ----

  #creditSession(n: number): void {
    if (this.#flowControl === "off" || n === 0) return;
    // The session window is granted back on receipt: per-stream windows already bound what each
    // reader buffers, and a session window tied to the slowest reader would stall the others.
    this.#sessionUncredited += n;
    if (this.#sessionUncredited >= DEFAULT_WINDOW_SIZE / 2) {
      this.#enqueue(encodeWindowUpdate(0, this.#sessionUncredited));
      this.#sessionUncredited = 0;
    }
  }

  #creditStream(st: StreamState): void {
    if (this.#flowControl === "off" || st.remoteClosed || this.#destroyed) return;
    const consumed = st.received - st.stream.readableLength;
    const uncredited = consumed - st.credited;
    // Batch updates to half a window, as browsers and Go's http2 do: one frame per 32 KiB read.
    if (uncredited >= this.#recvWindow / 2) {
      st.credited += uncredited;
      this.#enqueue(encodeWindowUpdate(st.id, uncredited));
    }
  }

  // ---- flow control, sending side ----

  #allowance(st: StreamState): number {
    if (this.#flowControl === "off" || this.#stats.peerFlowControl === "off") return Number.POSITIVE_INFINITY;
    const allowance = Math.min(st.sendWindow, this.#sessionSendWindow);
    if (allowance <= 0 && this.#stats.peerFlowControl === "unknown") this.#probePeer();
    return allowance;
  }

  /** Tells a peer that never grants window (moby/spdystream) from one that is just slow. */
  #probePeer(): void {
    if (this.#probing) return;
    this.#probing = true;
    this.ping().then(
      () => {
        if (this.#stats.peerFlowControl === "unknown") this.#peerHasNoFlowControl();
      },
      () => undefined,
    );
  }

  #peerHasNoFlowControl(): void {
    this.#log.debug("spdy: peer does no flow control (moby/spdystream); not enforcing its windows");
    this.#stats.peerFlowControl = "off";
    this.#wake(this.#windowWaiters);
  }

  async #sendData(st: StreamState, data: Buffer, fin: boolean): Promise<void> {
    await st.ready;
    if (data.length === 0 && !fin) return;
    let offset = 0;
    do {
      // A reset stream or dead session swallows writes; its reader already saw the end.
      if (st.localClosed || this.#destroyed) return;
      const remaining = data.length - offset;
      let n = Math.min(remaining, MAX_DATA_FRAME);
      if (remaining > 0) {
        const allowance = this.#allowance(st);
        if (allowance <= 0) {
          await new Promise<void>((resolve) => this.#windowWaiters.add(resolve));
          continue;
        }
        n = Math.min(n, allowance);
      }
      const last = offset + n === data.length;
      this.#enqueue(encodeData(st.id, data.subarray(offset, offset + n), fin && last));
      st.sendWindow -= n;
      this.#sessionSendWindow -= n;
      offset += n;
      if (fin && last) {
        st.localClosed = true;
        if (st.remoteClosed) this.#forget(st, false);
      }
    } while (offset < data.length);
    // Backpressure: hold the writer while the socket's buffer is full.
    if (this.#socket.writableNeedDrain && !this.#destroyed) {
      await new Promise<void>((resolve) => this.#drainWaiters.push(resolve));
    }
  }

  // ---- writing ----

  /**
   * Queues a frame. Frames carrying header blocks are compressed when they reach the head of the
   * queue, so compression order is wire order. A ready frame with nothing ahead goes straight out.
   */
  #enqueue(frame: Outgoing): void {
    if (this.#destroyed) return;
    if (!this.#pumping && this.#queue.length === 0 && Buffer.isBuffer(frame)) {
      this.#write(frame);
      return;
    }
    this.#queue.push(frame);
    if (!this.#pumping) void this.#pump();
  }

  async #pump(): Promise<void> {
    this.#pumping = true;
    try {
      for (let next = this.#queue.shift(); next !== undefined; next = this.#queue.shift()) {
        const frame = Buffer.isBuffer(next) ? next : await next();
        if (this.#destroyed) return;
        this.#write(frame);
      }
    } catch (err) {
      this.#log.debug({ err }, "spdy: header compression failed");
      this.destroy();
    } finally {
      this.#pumping = false;
      this.#wake(this.#flushWaiters);
    }
  }

  #write(frame: Buffer): void {
    this.#stats.framesSent++;
    this.#idleTimer?.refresh();
    this.#socket.write(frame);
  }

  #flushed(): Promise<void> {
    if (!this.#pumping && this.#queue.length === 0) return Promise.resolve();
    return new Promise((resolve) => this.#flushWaiters.push(resolve));
  }

  // ---- stream bookkeeping ----

  #isOurs(id: number): boolean {
    return id % 2 === (this.role === "client" ? 1 : 0);
  }

  #createStream(id: number, headers: SpdyHeaders, init: { localClosed: boolean; replied: boolean }): StreamState {
    let resolveReply!: (h: SpdyHeaders) => void;
    let rejectReply!: (e: Error) => void;
    const reply = new Promise<SpdyHeaders>((resolve, reject) => {
      resolveReply = resolve;
      rejectReply = reject;
    });
    let markReady!: () => void;
    const ready = new Promise<void>((resolve) => {
      markReady = resolve;
    });
    if (init.replied) resolveReply({});
    const st: StreamState = {
      id,
      stream: undefined as unknown as SpdyStream,
      sendWindow: this.#peerInitialWindow,
      received: 0,
      credited: 0,
      localClosed: init.localClosed,
      remoteClosed: false,
      resetStatus: undefined,
      replied: init.replied,
      resolveReply,
      rejectReply,
      ready,
      markReady,
      drained: undefined,
    };
    const link: StreamLink = {
      sendData: (data, fin) => this.#sendData(st, data, fin),
      consumed: () => {
        st.drained?.();
        this.#creditStream(st);
      },
      reset: (status) => this.#resetStream(st, status),
      destroyed: () => {
        st.drained?.();
        // Destroyed by its user while still open: tell the peer.
        if (st.resetStatus === undefined && !(st.localClosed && st.remoteClosed) && !this.#destroyed) {
          this.#resetStream(st, RstStatus.Cancel);
        }
      },
      resetStatus: () => st.resetStatus,
    };
    st.stream = new SpdyStream(id, headers, reply, link, this.#recvWindow);
    this.#streams.set(id, st);
    if (!this.#isOurs(id)) this.#peerStreams++;
    return st;
  }

  /** Resets a stream from our side: RST_STREAM to the peer, then the stream is gone. */
  #resetStream(st: StreamState, status: number): void {
    if (st.resetStatus !== undefined) return;
    st.resetStatus = status;
    if (!this.#destroyed && !(st.localClosed && st.remoteClosed)) this.#enqueue(encodeRstStream(st.id, status));
    st.rejectReply(new SpdyStreamResetError(st.id, status));
    this.#forget(st, true);
  }

  /** Drops a closed stream from the session; `destroy` also destroys the Duplex (reset/close). */
  #forget(st: StreamState, destroy: boolean): void {
    st.localClosed = true;
    st.remoteClosed = true;
    st.drained?.();
    st.markReady();
    if (this.#streams.delete(st.id) && !this.#isOurs(st.id)) this.#peerStreams--;
    // A writer of this stream blocked on its window must see that the stream is gone.
    this.#wake(this.#windowWaiters);
    if (destroy && !st.stream.destroyed) st.stream.destroy();
  }

  #wake(waiters: Set<() => void> | (() => void)[]): void {
    const all = [...waiters];
    if (Array.isArray(waiters)) waiters.length = 0;
    else waiters.clear();
    for (const w of all) w();
  }
}
