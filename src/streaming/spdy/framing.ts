/**
 * SPDY/3 framing (draft 3, as spoken by moby/spdystream): frame layouts, an incremental parser,
 * encoders, and the zlib-compressed name/value header blocks. SPDY/3.1 only adds session-level
 * flow control (WINDOW_UPDATE on stream 0), which lives in session.ts; the frames are version 3.
 *
 * Control frame:                         Data frame:
 *   +-+-------------+-----------------+    +-+-------------------------------+
 *   |1| version (3) | type (16)       |    |0| stream id (31)                |
 *   +-+-------------+-----------------+    +-+-------------+-----------------+
 *   | flags (8)     | length (24)     |    | flags (8)     | length (24)     |
 *   +---------------+-----------------+    +---------------+-----------------+
 *   | type-specific payload ...       |    | data ...                        |
 *
 * Header blocks (SYN_STREAM, SYN_REPLY, HEADERS) are `u32 count, (u32 len, name, u32 len, value)*`
 * with lowercase names and multiple values joined by NUL, compressed with one zlib context per
 * direction per connection, primed with the SPDY/3 dictionary and flushed with Z_SYNC_FLUSH after
 * every block. The contexts are stateful, so blocks must be compressed in the order they hit the wire
 * and every received block must be inflated, even for a stream that is then refused.
 */

import { constants, createDeflate, createInflate, type Deflate, type Inflate } from "node:zlib";
import { SPDY3_DICTIONARY } from "./dictionary.js";

/** The frame version this implementation speaks (SPDY/3.1 keeps version 3 on the wire). */
export const SPDY_VERSION = 3;

/** Control frame types. */
export const FrameType = {
  SynStream: 1,
  SynReply: 2,
  RstStream: 3,
  Settings: 4,
  Ping: 6,
  GoAway: 7,
  Headers: 8,
  WindowUpdate: 9,
} as const;

/** FIN: the sender will send nothing more on this stream (data, SYN_STREAM, SYN_REPLY, HEADERS). */
export const FLAG_FIN = 0x01;
/** SYN_STREAM only: the recipient may not send on this stream. */
export const FLAG_UNIDIRECTIONAL = 0x02;
/** SETTINGS only: forget persisted settings. */
export const FLAG_SETTINGS_CLEAR = 0x01;

/** RST_STREAM status codes. */
export const RstStatus = {
  ProtocolError: 1,
  InvalidStream: 2,
  RefusedStream: 3,
  UnsupportedVersion: 4,
  Cancel: 5,
  InternalError: 6,
  FlowControlError: 7,
  StreamInUse: 8,
  StreamAlreadyClosed: 9,
  FrameTooLarge: 11,
} as const;

/** GOAWAY status codes. */
export const GoAwayStatus = { Ok: 0, ProtocolError: 1, InternalError: 2 } as const;

/** SETTINGS ids this implementation acts on. */
export const SettingsId = { MaxConcurrentStreams: 4, InitialWindowSize: 7 } as const;

/** Initial stream and session flow-control window of SPDY/3.1. */
export const DEFAULT_WINDOW_SIZE = 65_536;
/** Largest frame payload the 24-bit length allows. */
export const MAX_FRAME_LENGTH = 0xff_ffff;
/** Largest window a WINDOW_UPDATE may produce (2^31 - 1). */
export const MAX_WINDOW_SIZE = 0x7fff_ffff;

/** A decoded frame; header blocks are still compressed (see HeaderDecompressor). */
export type Frame =
  | { type: "data"; streamId: number; fin: boolean; data: Buffer }
  | {
      type: "syn_stream";
      streamId: number;
      associatedTo: number;
      priority: number;
      fin: boolean;
      unidirectional: boolean;
      headerBlock: Buffer;
    }
  | { type: "syn_reply"; streamId: number; fin: boolean; headerBlock: Buffer }
  | { type: "rst_stream"; streamId: number; status: number }
  | { type: "settings"; clear: boolean; entries: SettingsEntry[] }
  | { type: "ping"; id: number }
  | { type: "goaway"; lastGoodStreamId: number; status: number }
  | { type: "headers"; streamId: number; fin: boolean; headerBlock: Buffer }
  | { type: "window_update"; streamId: number; delta: number }
  // Unknown control frame types must be ignored (draft 3, 2.2.1).
  | { type: "unknown"; frameType: number };

/** One id/value pair of a SETTINGS frame. */
export interface SettingsEntry {
  id: number;
  flags: number;
  value: number;
}

/** A connection-level protocol violation: the session answers with GOAWAY and closes. */
export class SpdyProtocolError extends Error {
  constructor(message: string) {
    super(`spdy: ${message}`);
    this.name = "SpdyProtocolError";
  }
}

const FRAME_HEADER_LENGTH = 8;
// Kubernetes header blocks are a few dozen bytes; a megabyte of compressed headers is an attack.
const MAX_CONTROL_FRAME_LENGTH = 1024 * 1024;
const STREAM_ID_MASK = 0x7fff_ffff;

/**
 * Splits a byte stream into frames. Feed it socket chunks with `push`, then drain `next()` until it
 * returns undefined. Holds at most one partial frame.
 */
export class FrameParser {
  #buffered: Buffer[] = [];
  #length = 0;
  readonly #maxFrameLength: number;

  readonly #maxControlLength: number;

  constructor(options: { maxFrameLength?: number; maxControlFrameLength?: number } = {}) {
    this.#maxFrameLength = options.maxFrameLength ?? MAX_FRAME_LENGTH;
    this.#maxControlLength = options.maxControlFrameLength ?? MAX_CONTROL_FRAME_LENGTH;
  }

  push(chunk: Buffer): void {
    if (chunk.length === 0) return;
    this.#buffered.push(chunk);
    this.#length += chunk.length;
  }

  /** The next complete frame, or undefined when more bytes are needed. Throws SpdyProtocolError. */
  next(): Frame | undefined {
    if (this.#length < FRAME_HEADER_LENGTH) return undefined;
    const head = this.#peek(FRAME_HEADER_LENGTH);
    const length = head.readUIntBE(5, 3);
    const limit = (head[0]! & 0x80) !== 0 ? this.#maxControlLength : this.#maxFrameLength;
    if (length > limit) throw new SpdyProtocolError(`frame of ${length} bytes is too large`);
    if (this.#length < FRAME_HEADER_LENGTH + length) return undefined;
    const frame = this.#take(FRAME_HEADER_LENGTH + length);
    return decodeFrame(frame);
  }

  #peek(n: number): Buffer {
    const first = this.#buffered[0]!;
    if (first.length >= n) return first;
    const joined = Buffer.concat(this.#buffered);
    this.#buffered = [joined];
    return joined;
  }

  #take(n: number): Buffer {
    const all = this.#peek(n);
    const out = all.subarray(0, n);
    const rest = all.subarray(n);
    this.#buffered = rest.length > 0 ? [rest] : [];
    this.#length -= n;
    return out;
  }
}

function decodeFrame(buf: Buffer): Frame {
  const flags = buf[4]!;
  const payload = buf.subarray(FRAME_HEADER_LENGTH);
  if ((buf[0]! & 0x80) === 0) {
    return {
      type: "data",
      streamId: buf.readUInt32BE(0) & STREAM_ID_MASK,
      fin: (flags & FLAG_FIN) !== 0,
      data: payload,
    };
  }
  const version = buf.readUInt16BE(0) & 0x7fff;
  if (version !== SPDY_VERSION) throw new SpdyProtocolError(`unsupported version ${version}`);
  const type = buf.readUInt16BE(2);
  const need = (n: number, what: string) => {
    if (payload.length < n) throw new SpdyProtocolError(`short ${what} frame (${payload.length} bytes)`);
  };
  const fin = (flags & FLAG_FIN) !== 0;
  switch (type) {
    case FrameType.SynStream:
      need(10, "SYN_STREAM");
      return {
        type: "syn_stream",
        streamId: payload.readUInt32BE(0) & STREAM_ID_MASK,
        associatedTo: payload.readUInt32BE(4) & STREAM_ID_MASK,
        priority: payload[8]! >> 5,
        fin,
        unidirectional: (flags & FLAG_UNIDIRECTIONAL) !== 0,
        headerBlock: payload.subarray(10),
      };
    case FrameType.SynReply:
      need(4, "SYN_REPLY");
      return {
        type: "syn_reply",
        streamId: payload.readUInt32BE(0) & STREAM_ID_MASK,
        fin,
        headerBlock: payload.subarray(4),
      };
    case FrameType.RstStream:
      need(8, "RST_STREAM");
      return {
        type: "rst_stream",
        streamId: payload.readUInt32BE(0) & STREAM_ID_MASK,
        status: payload.readUInt32BE(4),
      };
    case FrameType.Settings: {
      need(4, "SETTINGS");
      const count = payload.readUInt32BE(0);
      need(4 + count * 8, "SETTINGS");
      const entries: SettingsEntry[] = [];
      for (let i = 0; i < count; i++) {
        const at = 4 + i * 8;
        entries.push({ flags: payload[at]!, id: payload.readUIntBE(at + 1, 3), value: payload.readUInt32BE(at + 4) });
      }
      return { type: "settings", clear: (flags & FLAG_SETTINGS_CLEAR) !== 0, entries };
    }
    case FrameType.Ping:
      need(4, "PING");
      return { type: "ping", id: payload.readUInt32BE(0) };
    case FrameType.GoAway:
      need(4, "GOAWAY");
      // SPDY/2 peers send no status; SPDY/3 always does.
      return {
        type: "goaway",
        lastGoodStreamId: payload.readUInt32BE(0) & STREAM_ID_MASK,
        status: payload.length >= 8 ? payload.readUInt32BE(4) : GoAwayStatus.Ok,
      };
    case FrameType.Headers:
      need(4, "HEADERS");
      return {
        type: "headers",
        streamId: payload.readUInt32BE(0) & STREAM_ID_MASK,
        fin,
        headerBlock: payload.subarray(4),
      };
    case FrameType.WindowUpdate:
      need(8, "WINDOW_UPDATE");
      return {
        type: "window_update",
        streamId: payload.readUInt32BE(0) & STREAM_ID_MASK,
        delta: payload.readUInt32BE(4) & STREAM_ID_MASK,
      };
    default:
      return { type: "unknown", frameType: type };
  }
}

function controlFrame(type: number, flags: number, payloadLength: number): Buffer {
  if (payloadLength > MAX_FRAME_LENGTH) throw new RangeError(`spdy: control frame of ${payloadLength} bytes`);
  const buf = Buffer.allocUnsafe(FRAME_HEADER_LENGTH + payloadLength);
  buf.writeUInt16BE(0x8000 | SPDY_VERSION, 0);
  buf.writeUInt16BE(type, 2);
  buf.writeUInt32BE((flags & 0xff) * 0x100_0000 + payloadLength, 4);
  return buf;
}

/** A DATA frame; `data` may be empty (a bare FIN). */
export function encodeData(streamId: number, data: Uint8Array, fin: boolean): Buffer {
  if (data.length > MAX_FRAME_LENGTH) throw new RangeError(`spdy: data frame of ${data.length} bytes`);
  const buf = Buffer.allocUnsafe(FRAME_HEADER_LENGTH + data.length);
  buf.writeUInt32BE(streamId & STREAM_ID_MASK, 0);
  buf.writeUInt32BE((fin ? FLAG_FIN : 0) * 0x100_0000 + data.length, 4);
  buf.set(data, FRAME_HEADER_LENGTH);
  return buf;
}

/** A SYN_STREAM around an already compressed header block. */
export function encodeSynStream(
  streamId: number,
  headerBlock: Buffer,
  options: { fin?: boolean; unidirectional?: boolean; priority?: number; associatedTo?: number } = {},
): Buffer {
  const flags = (options.fin ? FLAG_FIN : 0) | (options.unidirectional ? FLAG_UNIDIRECTIONAL : 0);
  const buf = controlFrame(FrameType.SynStream, flags, 10 + headerBlock.length);
  buf.writeUInt32BE(streamId & STREAM_ID_MASK, 8);
  buf.writeUInt32BE((options.associatedTo ?? 0) & STREAM_ID_MASK, 12);
  buf[16] = ((options.priority ?? 0) & 0x7) << 5;
  buf[17] = 0; // credential slot, unused
  headerBlock.copy(buf, 18);
  return buf;
}

/** A SYN_REPLY around an already compressed header block. */
export function encodeSynReply(streamId: number, headerBlock: Buffer, fin = false): Buffer {
  const buf = controlFrame(FrameType.SynReply, fin ? FLAG_FIN : 0, 4 + headerBlock.length);
  buf.writeUInt32BE(streamId & STREAM_ID_MASK, 8);
  headerBlock.copy(buf, 12);
  return buf;
}

/** A HEADERS frame around an already compressed header block. */
export function encodeHeaders(streamId: number, headerBlock: Buffer, fin = false): Buffer {
  const buf = controlFrame(FrameType.Headers, fin ? FLAG_FIN : 0, 4 + headerBlock.length);
  buf.writeUInt32BE(streamId & STREAM_ID_MASK, 8);
  headerBlock.copy(buf, 12);
  return buf;
}

/** A RST_STREAM frame. */
export function encodeRstStream(streamId: number, status: number): Buffer {
  const buf = controlFrame(FrameType.RstStream, 0, 8);
  buf.writeUInt32BE(streamId & STREAM_ID_MASK, 8);
  buf.writeUInt32BE(status, 12);
  return buf;
}

/** A SETTINGS frame. */
export function encodeSettings(entries: readonly SettingsEntry[], clear = false): Buffer {
  const buf = controlFrame(FrameType.Settings, clear ? FLAG_SETTINGS_CLEAR : 0, 4 + entries.length * 8);
  buf.writeUInt32BE(entries.length, 8);
  entries.forEach((e, i) => {
    const at = 12 + i * 8;
    buf[at] = e.flags;
    buf.writeUIntBE(e.id, at + 1, 3);
    buf.writeUInt32BE(e.value, at + 4);
  });
  return buf;
}

/** A PING frame. */
export function encodePing(id: number): Buffer {
  const buf = controlFrame(FrameType.Ping, 0, 4);
  buf.writeUInt32BE(id >>> 0, 8);
  return buf;
}

/** A GOAWAY frame. */
export function encodeGoAway(lastGoodStreamId: number, status: number): Buffer {
  const buf = controlFrame(FrameType.GoAway, 0, 8);
  buf.writeUInt32BE(lastGoodStreamId & STREAM_ID_MASK, 8);
  buf.writeUInt32BE(status, 12);
  return buf;
}

/** A WINDOW_UPDATE frame; stream 0 updates the session window (SPDY/3.1). */
export function encodeWindowUpdate(streamId: number, delta: number): Buffer {
  const buf = controlFrame(FrameType.WindowUpdate, 0, 8);
  buf.writeUInt32BE(streamId & STREAM_ID_MASK, 8);
  buf.writeUInt32BE(delta & STREAM_ID_MASK, 12);
  return buf;
}

/**
 * Name/value headers of a stream: lowercase names, each with one or more values. Go's `http.Header`
 * on the other end canonicalises names, so `streamtype` here is `StreamType` there.
 */
export type SpdyHeaders = Readonly<Record<string, readonly string[]>>;

/** The first value of header `name` (case-insensitive), or undefined. */
export function headerValue(headers: SpdyHeaders, name: string): string | undefined {
  return headers[name.toLowerCase()]?.[0];
}

/** Serialises headers into an uncompressed SPDY/3 name/value block. Names are lowercased. */
export function encodeHeaderBlock(headers: Readonly<Record<string, string | readonly string[]>>): Buffer {
  const parts: Buffer[] = [];
  const u32 = (n: number) => {
    const b = Buffer.allocUnsafe(4);
    b.writeUInt32BE(n);
    return b;
  };
  const names = Object.keys(headers);
  parts.push(u32(names.length));
  for (const name of names) {
    const raw = headers[name]!;
    const value = Buffer.from(typeof raw === "string" ? raw : raw.join("\0"), "utf8");
    const key = Buffer.from(name.toLowerCase(), "utf8");
    parts.push(u32(key.length), key, u32(value.length), value);
  }
  return Buffer.concat(parts);
}

/**
 * Parses an uncompressed name/value block. Rejects what moby/spdystream rejects: uppercase or
 * duplicate names, and lengths that run past the block.
 */
export function decodeHeaderBlock(block: Buffer): SpdyHeaders {
  let at = 0;
  const u32 = () => {
    if (at + 4 > block.length) throw new SpdyProtocolError("truncated header block");
    const n = block.readUInt32BE(at);
    at += 4;
    return n;
  };
  const bytes = (n: number) => {
    if (at + n > block.length) throw new SpdyProtocolError("truncated header block");
    const s = block.toString("utf8", at, at + n);
    at += n;
    return s;
  };
  const count = u32();
  const headers: Record<string, string[]> = Object.create(null);
  for (let i = 0; i < count; i++) {
    const name = bytes(u32());
    if (name.length === 0) throw new SpdyProtocolError("empty header name");
    if (name !== name.toLowerCase())
      throw new SpdyProtocolError(`header name ${JSON.stringify(name)} is not lowercase`);
    if (name in headers) throw new SpdyProtocolError(`duplicate header ${JSON.stringify(name)}`);
    headers[name] = bytes(u32()).split("\0");
  }
  return headers;
}

/** Largest header block we inflate; a zlib bomb in a SYN_STREAM must not exhaust memory. */
const MAX_HEADER_BLOCK = 256 * 1024;

/**
 * One zlib stream of a connection (either direction). Operations run one at a time, in call order,
 * because the zlib state carries over from block to block.
 */
class ZlibContext {
  readonly #z: Deflate | Inflate;
  #out: Buffer[] = [];
  #outLength = 0;
  #chain: Promise<unknown> = Promise.resolve();
  #failure: Error | undefined;
  // The operation in flight: a zlib error or close() settles it, since no flush callback follows.
  #pendingReject: ((err: Error) => void) | undefined;

  constructor(z: Deflate | Inflate) {
    this.#z = z;
    z.on("data", (chunk: Buffer) => {
      this.#outLength += chunk.length;
      // Past the limit the block is rejected anyway; stop holding on to its bytes.
      if (this.#outLength <= MAX_HEADER_BLOCK) this.#out.push(chunk);
    });
    z.on("error", (err: Error) => this.#fail(err));
  }

  /** Feeds `input` and returns everything produced up to a Z_SYNC_FLUSH. */
  run(input: Buffer): Promise<Buffer> {
    const result = this.#chain.then(() => this.#runOne(input));
    this.#chain = result.catch(() => undefined);
    return result;
  }

  #runOne(input: Buffer): Promise<Buffer> {
    return new Promise((resolve, reject) => {
      if (this.#failure) {
        reject(this.#failure);
        return;
      }
      this.#pendingReject = reject;
      this.#out = [];
      this.#outLength = 0;
      this.#z.write(input);
      this.#z.flush(constants.Z_SYNC_FLUSH, () => {
        this.#pendingReject = undefined;
        if (this.#failure) reject(this.#failure);
        else if (this.#outLength > MAX_HEADER_BLOCK) reject(new SpdyProtocolError("header block too large"));
        else resolve(Buffer.concat(this.#out, this.#outLength));
      });
    });
  }

  #fail(err: Error): void {
    this.#failure ??= err;
    this.#pendingReject?.(this.#failure);
    this.#pendingReject = undefined;
  }

  close(): void {
    this.#fail(new Error("zlib context closed"));
    this.#z.close();
  }
}

/** Compresses outgoing header blocks: one per connection, blocks in wire order. */
export class HeaderCompressor {
  readonly #ctx = new ZlibContext(createDeflate({ dictionary: SPDY3_DICTIONARY, level: constants.Z_BEST_COMPRESSION }));

  /** The compressed form of `headers`, ready to follow a SYN_STREAM/SYN_REPLY/HEADERS prefix. */
  compress(headers: Readonly<Record<string, string | readonly string[]>>): Promise<Buffer> {
    return this.#ctx.run(encodeHeaderBlock(headers));
  }

  close(): void {
    this.#ctx.close();
  }
}

/** Decompresses incoming header blocks: one per connection, blocks in wire order. */
export class HeaderDecompressor {
  readonly #ctx = new ZlibContext(createInflate({ dictionary: SPDY3_DICTIONARY }));

  /** Inflates and parses one header block. Throws SpdyProtocolError on corrupt input. */
  async decompress(compressed: Buffer): Promise<SpdyHeaders> {
    let block: Buffer;
    try {
      block = await this.#ctx.run(compressed);
    } catch (err) {
      if (err instanceof SpdyProtocolError) throw err;
      throw new SpdyProtocolError(`header block: ${(err as Error).message}`);
    }
    return decodeHeaderBlock(block);
  }

  close(): void {
    this.#ctx.close();
  }
}
