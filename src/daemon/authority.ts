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

const PREFACE_LENGTH = 24;
const FRAME_HEADER = 9;
const HEADERS = 0x1;
const CONTINUATION = 0x9;
const END_HEADERS = 0x4;
const PADDED = 0x8;
const PRIORITY = 0x20;
/** HPACK static table index of `:authority`. */
const AUTHORITY_INDEX = 1;

const SLASH = 0x2f;
const DASH = 0x2d;

/**
 * Serves one accepted connection through the rewriter. There is no look-ahead: grpc-go clients
 * wait for the server's SETTINGS frame before they send a request, so the HTTP/2 server must get
 * the connection at once. The rewriter only parses frame headers and header blocks; other bytes
 * pass through untouched.
 */
export function acceptWithAuthorityFix(socket: Socket, serve: (stream: Duplex) => void): void {
  const fixer = new AuthorityRewriter();
  // The server reads the (rewritten) client bytes and writes straight to the client's socket.
  const duplex = Duplex.from({ readable: fixer, writable: socket });
  socket.once("close", () => duplex.destroy());
  socket.on("error", () => duplex.destroy());
  socket.pipe(fixer);
  serve(duplex);
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
    if (nameIndex !== AUTHORITY_INDEX || start >= block.length) continue;
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

/** Rewrites `/` to `-` in every `:authority` of the client's header blocks; other bytes pass unchanged. */
class AuthorityRewriter extends Transform {
  private pending: Buffer = Buffer.alloc(0);
  private prefaceSeen = false;
  private block: Buffer[] = [];
  private held: Buffer[] = [];

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.pending = this.pending.length ? Buffer.concat([this.pending, chunk]) : chunk;
    if (!this.prefaceSeen) {
      if (this.pending.length < PREFACE_LENGTH) {
        cb();
        return;
      }
      this.push(this.pending.subarray(0, PREFACE_LENGTH));
      this.pending = this.pending.subarray(PREFACE_LENGTH);
      this.prefaceSeen = true;
    }
    while (this.pending.length >= FRAME_HEADER) {
      const len = this.pending.readUIntBE(0, 3);
      if (this.pending.length < FRAME_HEADER + len) break;
      const frame = Buffer.from(this.pending.subarray(0, FRAME_HEADER + len));
      this.pending = this.pending.subarray(FRAME_HEADER + len);
      const type = frame[3] as number;
      const flags = frame[4] as number;
      if (type !== HEADERS && type !== CONTINUATION) {
        this.push(frame);
        continue;
      }
      // Hold a block's frames until its end: the value may straddle a frame boundary.
      this.held.push(frame);
      this.block.push(fragmentOf(type, flags, frame.subarray(FRAME_HEADER)));
      if (!(flags & END_HEADERS)) continue;
      const whole = Buffer.concat(this.block);
      walkHeaderBlock(
        whole,
        (v) => (v.includes(SLASH) ? Buffer.from(v.map((c) => (c === SLASH ? DASH : c))) : undefined),
        true,
      );
      // Copy the rewritten block back into the held frames' fragments, in order.
      let off = 0;
      for (const [k, f] of this.held.entries()) {
        const frag = fragmentOf(f[3] as number, f[4] as number, f.subarray(FRAME_HEADER));
        whole.copy(frag, 0, off, off + frag.length);
        off += frag.length;
        this.push(this.held[k]);
      }
      this.held = [];
      this.block = [];
    }
    cb();
  }
}
