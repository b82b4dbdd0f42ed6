import type { Socket } from "node:net";
import { Duplex, Transform, type TransformCallback } from "node:stream";
import hpack from "hpack.js";

/**
 * Kubelets, crictl and critest before Kubernetes 1.31 dial a unix socket with grpc-go's default
 * authority: the socket path (`:authority: /run/berth/berth.sock`). Node's HTTP/2 server rejects
 * a `/` in `:authority` as a protocol error before any handler runs, so those clients could not
 * talk to berthd at all. This module rewrites that header on the way in.
 *
 * The rewrite keeps every byte count unchanged — each `/` becomes `-`, whose HPACK Huffman code
 * has the same length — so frame lengths stay valid and the dynamic tables of the client's
 * encoder and the server's decoder stay identical (entry sizes match), while only header blocks
 * are parsed and nothing is re-encoded.
 */

const PREFACE = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "latin1");
const FRAME_HEADER = 9;
const HEADERS = 0x1;
const GOAWAY = 0x7;
const CONTINUATION = 0x9;
const END_HEADERS = 0x4;
const PADDED = 0x8;
const PRIORITY = 0x20;
/** HPACK static table index of `:authority`. */
const AUTHORITY_INDEX = 1;

/** Longest encoded `:authority` value considered for the rewrite (a unix socket path is at most 107 bytes). */
const MAX_AUTHORITY_TO_REWRITE = 256;

const SLASH = 0x2f;
const DASH = 0x2d;

/** HTTP/2 error codes of the GOAWAY we send before hanging up (RFC 9113, section 7). */
const PROTOCOL_ERROR = 0x1;
const FRAME_SIZE_ERROR = 0x6;
const ENHANCE_YOUR_CALM = 0xb;

/**
 * Limits on what the rewriter holds per connection. Everything it buffers is bounded by them:
 * the unparsed tail (at most one frame header plus `maxFrameSize`) and one header block (at most
 * `maxHeaderBlock` bytes in at most `1 + maxContinuations` frames). A client that exceeds one gets
 * a GOAWAY and the connection is closed; other connections are not affected.
 */
export interface AuthorityFixOptions {
  /**
   * Largest frame payload accepted (default 16 384). The HTTP/2 server behind the rewriter
   * announces no SETTINGS_MAX_FRAME_SIZE, so the protocol's initial 16 KiB is what clients may
   * send; a longer frame is a FRAME_SIZE_ERROR either way. Raise it with the server's setting.
   */
  maxFrameSize?: number;
  /**
   * Largest header block (HEADERS plus its CONTINUATIONs, encoded) held while waiting for
   * END_HEADERS (default 65 536): nghttp2's default maximum header list size, 64 KiB. gRPC's
   * own metadata limit is 8 KiB by default, so real clients stay far below it.
   */
  maxHeaderBlock?: number;
  /**
   * Most CONTINUATION frames in one header block (default 8, nghttp2's default since the
   * CONTINUATION-flood advisories of 2024): empty CONTINUATIONs cost a frame each but no bytes.
   */
  maxContinuations?: number;
  /** How long a new connection has to send the client preface (default 10 000 ms). */
  prefaceTimeoutMs?: number;
  /** Called once when a connection is refused for breaking a limit or the protocol, with why. */
  onRefused?: (reason: string) => void;
}

/**
 * Serves one accepted connection through the rewriter. There is no look-ahead: grpc-go clients
 * wait for the server's SETTINGS frame before they send a request, so the HTTP/2 server must get
 * the connection at once. The rewriter only parses frame headers and header blocks; other bytes
 * pass through untouched.
 */
export function acceptWithAuthorityFix(
  socket: Socket,
  serve: (stream: Duplex) => void,
  options: AuthorityFixOptions = {},
): void {
  const fixer = new AuthorityRewriter(options, (reason, code, lastStreamId) => {
    options.onRefused?.(reason);
    // Our GOAWAY goes between two of the server's writes, each of which is whole frames.
    socket.end(goAwayFrame(lastStreamId, code));
    setTimeout(() => socket.destroy(), 1000).unref();
  });
  // The server reads the (rewritten) client bytes and writes straight to the client's socket.
  const duplex = Duplex.from({ readable: fixer, writable: socket });
  socket.once("close", () => duplex.destroy());
  socket.on("error", () => duplex.destroy());
  // A peer that hangs up mid-write fails the duplex (premature close); the server learns of it by
  // the close, and the error itself must never go uncaught.
  duplex.on("error", () => undefined);
  // A connection that never sends its preface would otherwise be held forever.
  const prefaceTimer = setTimeout(() => {
    if (!fixer.prefaceSeen) fixer.refuse("no client preface in time", PROTOCOL_ERROR);
  }, options.prefaceTimeoutMs ?? 10_000);
  prefaceTimer.unref();
  socket.once("close", () => clearTimeout(prefaceTimer));
  socket.pipe(fixer);
  serve(duplex);
}

function goAwayFrame(lastStreamId: number, code: number): Buffer {
  const frame = Buffer.alloc(FRAME_HEADER + 8);
  frame.writeUIntBE(8, 0, 3);
  frame[3] = GOAWAY;
  frame.writeUInt32BE(lastStreamId & 0x7fff_ffff, FRAME_HEADER);
  frame.writeUInt32BE(code, FRAME_HEADER + 4);
  return frame;
}

/** The header block fragment inside a HEADERS or CONTINUATION payload (a view: edits reach the frame). */
function fragmentOf(type: number, flags: number, payload: Buffer): Buffer {
  if (type !== HEADERS) return payload;
  let start = 0;
  let end = payload.length;
  if (flags & PADDED) {
    end -= payload[0] as number;
    start += 1;
  }
  if (flags & PRIORITY) start += 5;
  return payload.subarray(start, Math.max(start, end));
}

/**
 * Walks an HPACK header block and calls `onAuthority` with the decoded bytes of each literal
 * `:authority` value (by static name index). When `rewrite` is set, the callback's returned bytes
 * (same length, same Huffman length) replace the value in place.
 */
function walkHeaderBlock(block: Buffer, onAuthority: (value: Buffer) => Buffer | undefined, rewrite = false): void {
  let i = 0;
  const int = (prefixBits: number): number => {
    const mask = (1 << prefixBits) - 1;
    let v = (block[i] as number) & mask;
    i++;
    if (v < mask) return v;
    let m = 0;
    let b: number;
    do {
      b = block[i++] as number;
      v += (b & 0x7f) * 2 ** m;
      m += 7;
    } while (b & 0x80 && i < block.length);
    return v;
  };
  const skipString = () => {
    const len = int(7);
    i += len;
  };
  while (i < block.length) {
    const b = block[i] as number;
    if (b & 0x80) {
      int(7); // indexed header field
      continue;
    }
    if ((b & 0xe0) === 0x20) {
      int(5); // dynamic table size update
      continue;
    }
    const nameIndex = (b & 0xc0) === 0x40 ? int(6) : int(4);
    if (nameIndex === 0) skipString();
    const huffman = ((block[i] as number) & 0x80) !== 0;
    const start = i;
    const len = int(7);
    const valueAt = i;
    i += len;
    // A socket path fits in sun_path (108 bytes), so longer values are never ours to rewrite; not
    // decoding them keeps a hostile 64 KiB value from costing the event loop a bit-by-bit decode.
    if (nameIndex !== AUTHORITY_INDEX || start >= block.length || len > MAX_AUTHORITY_TO_REWRITE) continue;
    const raw = block.subarray(valueAt, valueAt + len);
    const value = huffman ? huffmanDecode(raw) : Buffer.from(raw);
    if (value === undefined) continue;
    const replacement = onAuthority(value);
    if (!rewrite || !replacement) continue;
    const encoded = huffman ? huffmanEncode(replacement) : replacement;
    if (encoded.length === raw.length) encoded.copy(block, valueAt);
  }
}

const CODES = hpack.huffman.encode as [number, number][];
const BY_CODE = new Map<string, number>(CODES.map(([bits, code], sym) => [`${bits}:${code}`, sym]));

function huffmanDecode(data: Buffer): Buffer | undefined {
  const out: number[] = [];
  let code = 0;
  let bits = 0;
  for (const byte of data) {
    for (let k = 7; k >= 0; k--) {
      code = code * 2 + ((byte >> k) & 1);
      bits++;
      const sym = BY_CODE.get(`${bits}:${code}`);
      if (sym !== undefined) {
        if (sym === 256) return undefined; // EOS inside a string is an error
        out.push(sym);
        code = 0;
        bits = 0;
      }
      if (bits > 30) return undefined;
    }
  }
  return Buffer.from(out);
}

function huffmanEncode(data: Buffer): Buffer {
  const out: number[] = [];
  let acc = 0;
  let n = 0;
  for (const sym of data) {
    const [bits, code] = CODES[sym] as [number, number];
    for (let k = bits - 1; k >= 0; k--) {
      acc = (acc << 1) | ((code >> k) & 1);
      n++;
      if (n === 8) {
        out.push(acc);
        acc = 0;
        n = 0;
      }
    }
  }
  if (n > 0) out.push((acc << (8 - n)) | ((1 << (8 - n)) - 1)); // pad with the EOS prefix
  return Buffer.from(out);
}

type Refuse = (reason: string, code: number, lastStreamId: number) => void;

/**
 * Rewrites `/` to `-` in every `:authority` of the client's header blocks; other bytes pass
 * unchanged. A client that breaks a limit of `AuthorityFixOptions` or interleaves frames into a
 * header block (RFC 9113, 6.10) is refused: nothing more reaches the server, `refuse` hangs up.
 */
class AuthorityRewriter extends Transform {
  prefaceSeen = false;
  private pending: Buffer = Buffer.alloc(0);
  private prefaceBytes = 0;
  private held: Buffer[] = [];
  private heldBytes = 0;
  /** Stream of the open header block (0 when none). */
  private blockStream = 0;
  private lastStreamId = 0;
  private refused = false;
  private readonly maxFrameSize: number;
  private readonly maxHeaderBlock: number;
  private readonly maxContinuations: number;

  constructor(
    options: AuthorityFixOptions,
    private readonly onRefuse: Refuse,
  ) {
    super();
    this.maxFrameSize = options.maxFrameSize ?? 16_384;
    this.maxHeaderBlock = options.maxHeaderBlock ?? 64 * 1024;
    this.maxContinuations = options.maxContinuations ?? 8;
  }

  /** Stops passing bytes to the server, drops what is held, and hangs up once. */
  refuse(reason: string, code: number): void {
    if (this.refused) return;
    this.refused = true;
    this.pending = Buffer.alloc(0);
    this.held = [];
    this.heldBytes = 0;
    this.push(null);
    this.onRefuse(reason, code, this.lastStreamId);
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    if (this.refused) {
      cb();
      return;
    }
    let data = chunk;
    if (!this.prefaceSeen) {
      // Compare as the bytes come: garbage is refused at its first byte, not after 24.
      const n = Math.min(PREFACE.length - this.prefaceBytes, data.length);
      if (!data.subarray(0, n).equals(PREFACE.subarray(this.prefaceBytes, this.prefaceBytes + n))) {
        this.refuse("bad client preface", PROTOCOL_ERROR);
        cb();
        return;
      }
      this.push(data.subarray(0, n));
      this.prefaceBytes += n;
      data = data.subarray(n);
      if (this.prefaceBytes < PREFACE.length) {
        cb();
        return;
      }
      this.prefaceSeen = true;
    }
    this.pending = this.pending.length ? Buffer.concat([this.pending, data]) : data;
    while (this.pending.length >= FRAME_HEADER && !this.refused) {
      const len = this.pending.readUIntBE(0, 3);
      if (len > this.maxFrameSize) {
        this.refuse(`frame of ${len} bytes exceeds ${this.maxFrameSize}`, FRAME_SIZE_ERROR);
        break;
      }
      if (this.pending.length < FRAME_HEADER + len) break;
      const frame = Buffer.from(this.pending.subarray(0, FRAME_HEADER + len));
      this.pending = this.pending.subarray(FRAME_HEADER + len);
      this.onFrame(frame);
    }
    // Never keep a view into a large chunk alive for a short tail.
    if (this.pending.length > 0 && this.pending.buffer.byteLength > 4 * this.pending.length + 4096) {
      this.pending = Buffer.from(this.pending);
    }
    cb();
  }

  private onFrame(frame: Buffer): void {
    const type = frame[3] as number;
    const flags = frame[4] as number;
    const streamId = frame.readUInt32BE(5) & 0x7fff_ffff;
    if (this.blockStream !== 0 && (type !== CONTINUATION || streamId !== this.blockStream)) {
      this.refuse("frame interleaved into a header block", PROTOCOL_ERROR);
      return;
    }
    if (type === CONTINUATION && this.blockStream === 0) {
      this.refuse("CONTINUATION without an open header block", PROTOCOL_ERROR);
      return;
    }
    if (type !== HEADERS && type !== CONTINUATION) {
      this.push(frame);
      return;
    }
    if (type === HEADERS) {
      this.blockStream = streamId;
      this.lastStreamId = Math.max(this.lastStreamId, streamId);
    }
    // Hold a block's frames until its end: the value may straddle a frame boundary.
    this.held.push(frame);
    this.heldBytes += frame.length - FRAME_HEADER;
    if (this.heldBytes > this.maxHeaderBlock) {
      this.refuse(`header block over ${this.maxHeaderBlock} bytes`, ENHANCE_YOUR_CALM);
      return;
    }
    if (this.held.length > 1 + this.maxContinuations) {
      this.refuse(`header block in more than ${this.maxContinuations} CONTINUATION frames`, ENHANCE_YOUR_CALM);
      return;
    }
    if (!(flags & END_HEADERS)) return;
    const fragments = this.held.map((f) => fragmentOf(f[3] as number, f[4] as number, f.subarray(FRAME_HEADER)));
    const whole = Buffer.concat(fragments);
    walkHeaderBlock(
      whole,
      (v) => (v.includes(SLASH) ? Buffer.from(v.map((c) => (c === SLASH ? DASH : c))) : undefined),
      true,
    );
    // Copy the rewritten block back into the held frames' fragments, in order.
    let off = 0;
    for (const [k, frag] of fragments.entries()) {
      whole.copy(frag, 0, off, off + frag.length);
      off += frag.length;
      this.push(this.held[k]);
    }
    this.held = [];
    this.heldBytes = 0;
    this.blockStream = 0;
  }
}
