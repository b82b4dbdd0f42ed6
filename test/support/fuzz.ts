/**
 * Bad input for a gRPC server, built from the CRI descriptors: random but reproducible (a seeded PRNG) messages
 * with hostile field values, malformed protobuf bodies, malformed gRPC framing, and garbage HTTP/2 frames. Used
 * by test/e2e/fuzz.test.ts; nothing here knows berth, only protobuf, gRPC and HTTP/2.
 */
import { type ClientHttp2Session, constants as h2, connect as h2connect } from "node:http2";
import { connect as netConnect } from "node:net";
import {
  create,
  type DescEnum,
  type DescField,
  type DescMessage,
  type Message,
  ScalarType,
  toBinary,
} from "@bufbuild/protobuf";

/** A small, fast, seedable PRNG (mulberry32): the same seed gives the same run. */
export interface Rng {
  /** A float in [0, 1). */
  next(): number;
  /** An integer in [0, n). */
  int(n: number): number;
  /** True with probability p. */
  chance(p: number): boolean;
  pick<T>(items: readonly T[]): T;
  bytes(n: number): Buffer;
}

export function createRng(seed: number): Rng {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const int = (n: number) => Math.floor(next() * n);
  return {
    next,
    int,
    chance: (p) => next() < p,
    pick: (items) => items[int(items.length)] as (typeof items)[number],
    bytes: (n) => {
      const b = Buffer.allocUnsafe(n);
      for (let i = 0; i < n; i++) b[i] = int(256);
      return b;
    },
  };
}

const NASTY_STRINGS = [
  "",
  " ",
  "a\0b",
  "\0",
  "-F/etc/x",
  "--help",
  "../../../../../etc/passwd",
  "/",
  ".",
  "..",
  "%s%n%x",
  "ñ✓😀",
  "\uD800",
  "\r\n\t",
  "sha256:",
  "sha256:0000000000000000000000000000000000000000000000000000000000000000",
  "UPPER_case.name",
  "$HOME`id`$(id)",
];

/** A hostile string: empty, NUL bytes, option-like, traversal, unicode, random, occasionally huge. */
export function randomString(rng: Rng): string {
  const r = rng.next();
  if (r < 0.35) return rng.pick(NASTY_STRINGS);
  if (r < 0.999) {
    let s = "";
    const n = rng.int(40);
    for (let i = 0; i < n; i++) s += String.fromCharCode(rng.chance(0.9) ? 32 + rng.int(95) : rng.int(0x3000));
    return s;
  }
  // Huge, within reason: 64 KiB to 512 KiB.
  return rng.pick(["x", "/", "\0", "é"]).repeat(65536 + rng.int(1 << 19));
}

const INT32 = [0, 1, -1, 2147483647, -2147483648, 42];
const UINT32 = [0, 1, 4294967295, 65535, 65536];
const INT64 = [0n, 1n, -1n, 9223372036854775807n, -9223372036854775808n, 1000000000000n];
const UINT64 = [0n, 1n, 18446744073709551615n, 9223372036854775808n];
const DOUBLE = [0, -0, Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY, 1e308, -1, 0.5];

function scalarValue(rng: Rng, t: ScalarType): unknown {
  switch (t) {
    case ScalarType.STRING:
      return randomString(rng);
    case ScalarType.BYTES:
      return rng.bytes(rng.chance(0.002) ? 200_000 : rng.int(64));
    case ScalarType.BOOL:
      return rng.chance(0.5);
    case ScalarType.DOUBLE:
    case ScalarType.FLOAT:
      return rng.chance(0.7) ? rng.pick(DOUBLE) : (rng.next() - 0.5) * 1e6;
    case ScalarType.INT64:
    case ScalarType.SINT64:
    case ScalarType.SFIXED64:
      return rng.chance(0.7) ? rng.pick(INT64) : BigInt(rng.int(2 ** 31)) * (rng.chance(0.5) ? -1n : 1n);
    case ScalarType.UINT64:
    case ScalarType.FIXED64:
      return rng.chance(0.7) ? rng.pick(UINT64) : BigInt(rng.int(2 ** 31));
    case ScalarType.UINT32:
    case ScalarType.FIXED32:
      return rng.chance(0.7) ? rng.pick(UINT32) : rng.int(2 ** 32);
    default:
      return rng.chance(0.7) ? rng.pick(INT32) : rng.int(2 ** 31) * (rng.chance(0.5) ? -1 : 1);
  }
}

type Elem =
  | { kind: "scalar"; scalar: ScalarType }
  | { kind: "enum"; values: number[] }
  | { kind: "message"; message: DescMessage };

function elemValue(rng: Rng, e: Elem, depth: number): unknown {
  if (e.kind === "scalar") return scalarValue(rng, e.scalar);
  if (e.kind === "enum") return rng.chance(0.8) ? rng.pick(e.values) : rng.pick([-1, 99, 2147483647, -2147483648]);
  return randomInit(rng, e.message, depth + 1);
}

/** The element type of a repeated or map field. */
function elemOf(f: DescField & { fieldKind: "list" | "map" }): Elem {
  const kind = f.fieldKind === "list" ? f.listKind : f.mapKind;
  if (kind === "scalar") return { kind, scalar: f.scalar as ScalarType };
  if (kind === "enum") return { kind, values: (f.enum as DescEnum).values.map((v) => v.number) };
  return { kind, message: f.message as DescMessage };
}

function fieldValue(rng: Rng, f: DescField, depth: number): unknown {
  switch (f.fieldKind) {
    case "scalar":
      return scalarValue(rng, f.scalar);
    case "enum":
      return elemValue(rng, { kind: "enum", values: f.enum.values.map((v) => v.number) }, depth);
    case "message":
      return randomInit(rng, f.message, depth + 1);
    case "list": {
      const e = elemOf(f);
      // Huge repeated fields, within reason: thousands of small elements.
      const n = rng.chance(0.01) && e.kind !== "message" ? 1000 + rng.int(4000) : rng.int(4);
      return Array.from({ length: n }, () => elemValue(rng, e, depth));
    }
    case "map": {
      const e = elemOf(f);
      const out: Record<string, unknown> = {};
      const n = rng.chance(0.01) ? 2000 : rng.int(4);
      for (let i = 0; i < n; i++) {
        const k = f.mapKey === ScalarType.STRING ? `${randomString(rng).slice(0, 200)}${n > 4 ? i : ""}` : String(i);
        out[k] = elemValue(rng, e, depth);
      }
      return out;
    }
  }
}

/** A random init object for `desc` (each field set with probability ½; nesting stops at depth 6). */
export function randomInit(rng: Rng, desc: DescMessage, depth = 0): Record<string, unknown> {
  const init: Record<string, unknown> = {};
  if (depth > 6) return init;
  for (const f of desc.fields) {
    if (f.oneof !== undefined || !rng.chance(0.5)) continue;
    init[f.localName] = fieldValue(rng, f, depth);
  }
  for (const o of desc.oneofs) {
    if (!rng.chance(0.5)) continue;
    const f = rng.pick(o.fields);
    init[o.localName] = { case: f.localName, value: fieldValue(rng, f, depth) };
  }
  return init;
}

/** A random message of type `desc`. */
export function randomMessage(rng: Rng, desc: DescMessage): Message {
  return create(desc, randomInit(rng, desc));
}

/** Offsets of the top-level field tags in a protobuf encoding (empty when it does not parse). */
function topLevelTags(bytes: Uint8Array): number[] {
  const tags: number[] = [];
  let i = 0;
  const varint = (): bigint => {
    let v = 0n;
    let shift = 0n;
    for (;;) {
      if (i >= bytes.length || shift > 63n) throw new Error("bad varint");
      const b = bytes[i++] as number;
      v |= BigInt(b & 0x7f) << shift;
      if ((b & 0x80) === 0) return v;
      shift += 7n;
    }
  };
  try {
    while (i < bytes.length) {
      tags.push(i);
      const tag = Number(varint());
      switch (tag & 7) {
        case 0:
          varint();
          break;
        case 1:
          i += 8;
          break;
        case 2:
          i += Number(varint());
          break;
        case 5:
          i += 4;
          break;
        default:
          return tags;
      }
    }
  } catch {
    // keep what was found
  }
  return tags;
}

/** Kinds of malformed protobuf body {@link malformedBody} makes. */
export const BODY_KINDS = ["random", "truncated", "wire-type", "trailing", "groups", "length-overflow"] as const;

/** A malformed protobuf body for `desc`, of a random (or the given) kind. */
export function malformedBody(rng: Rng, desc: DescMessage, kind = rng.pick(BODY_KINDS)): Buffer {
  const valid = () => Buffer.from(toBinary(desc, randomMessage(rng, desc)));
  switch (kind) {
    case "random":
      return rng.bytes(rng.chance(0.02) ? 65536 : rng.int(256));
    case "truncated": {
      const v = valid();
      return v.length < 2 ? rng.bytes(3) : v.subarray(0, 1 + rng.int(v.length - 1));
    }
    case "wire-type": {
      const v = valid();
      const tags = topLevelTags(v);
      if (tags.length === 0) return Buffer.from([0x0b]);
      const at = rng.pick(tags);
      const old = (v[at] as number) & 7;
      let wt = rng.int(8);
      if (wt === old) wt = (wt + 1) & 7;
      v[at] = ((v[at] as number) & ~7) | wt;
      return v;
    }
    case "trailing":
      return Buffer.concat([valid(), rng.bytes(1 + rng.int(32))]);
    case "groups": {
      // Deeply nested unknown groups (start-group tags of field 15): decoders that recurse run out of stack.
      const depth = 1000 + rng.int(200_000);
      return Buffer.alloc(depth, 0x7b);
    }
    case "length-overflow":
      // Field 1, length-delimited, with a length far past the end.
      return Buffer.from([0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x41]);
  }
}

/** A gRPC length-prefixed message frame. */
export function grpcFrame(body: Uint8Array, o: { flag?: number; length?: number } = {}): Buffer {
  const head = Buffer.alloc(5);
  head[0] = o.flag ?? 0;
  head.writeUInt32BE(o.length ?? body.length, 1);
  return Buffer.concat([head, body]);
}

/** What a raw gRPC call got back. */
export interface CallOutcome {
  /** The grpc-status (from the trailers, or a trailers-only response), when there was one. */
  grpcStatus?: number;
  grpcMessage?: string;
  httpStatus?: number;
  /** The stream failed (reset, session error) before a status arrived. */
  error?: string;
  /** No answer within the client's deadline. */
  hung?: boolean;
}

/** One HTTP/2 connection to a unix socket, replaced when it dies. */
export class RawGrpc {
  #session: ClientHttp2Session | undefined;
  constructor(readonly socket: string) {}

  session(): ClientHttp2Session {
    if (this.#session && !this.#session.closed && !this.#session.destroyed) return this.#session;
    const s = h2connect("http://localhost", { createConnection: () => netConnect(this.socket) });
    s.on("error", () => {});
    this.#session = s;
    return s;
  }

  /** Sends one request with a body; resolves when the response ends, fails, or `timeoutMs` passes. */
  call(
    path: string,
    body: Uint8Array,
    o: { timeoutMs: number; headers?: Record<string, string>; grpcTimeout?: string },
  ): Promise<CallOutcome> {
    return new Promise((resolve) => {
      const out: CallOutcome = {};
      let req: ReturnType<ClientHttp2Session["request"]>;
      try {
        req = this.session().request({
          ":method": "POST",
          ":path": path,
          "content-type": "application/grpc",
          te: "trailers",
          "grpc-timeout": o.grpcTimeout ?? `${o.timeoutMs}m`,
          ...o.headers,
        });
      } catch (err) {
        resolve({ error: String(err) });
        return;
      }
      const timer = setTimeout(() => {
        out.hung = true;
        req.close(h2.NGHTTP2_CANCEL);
        resolve(out);
      }, o.timeoutMs + 5_000);
      const status = (h: Record<string, unknown>) => {
        if (h["grpc-message"] !== undefined) out.grpcMessage = String(h["grpc-message"]);
        if (h["grpc-status"] === undefined) return;
        out.grpcStatus = Number(h["grpc-status"]);
        // The call is over. A server may answer before reading the whole request (a bad first message);
        // like grpc-go, stop sending then, rather than wait on a flow-control window it will never open.
        setImmediate(() => req.close(h2.NGHTTP2_CANCEL));
      };
      req.on("response", (h) => {
        out.httpStatus = Number(h[":status"]);
        status(h);
      });
      req.on("trailers", status);
      req.on("data", () => {});
      req.on("error", (err) => {
        out.error = String(err);
      });
      req.on("close", () => {
        clearTimeout(timer);
        resolve(out);
      });
      req.end(body);
    });
  }

  close(): void {
    this.#session?.destroy();
  }
}

const PREFACE = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");

function frame(type: number, flags: number, stream: number, payload: Buffer, length = payload.length): Buffer {
  const h = Buffer.alloc(9);
  h.writeUIntBE(length & 0xffffff, 0, 3);
  h[3] = type;
  h[4] = flags;
  h.writeUInt32BE(stream >>> 0, 5);
  return Buffer.concat([h, payload]);
}

/** Kinds of garbage {@link garbageConnection} writes. */
export const GARBAGE_KINDS = [
  "random",
  "preface-random",
  "random-frames",
  "truncated-frame",
  "bad-hpack",
  "continuations",
  "settings-flood",
  "window-overflow",
] as const;

/** The bytes of one hostile HTTP/2 connection. */
export function garbageBytes(rng: Rng, kind = rng.pick(GARBAGE_KINDS)): Buffer {
  const settings = frame(4, 0, 0, Buffer.alloc(0));
  switch (kind) {
    case "random":
      return rng.bytes(1 + rng.int(4096));
    case "preface-random":
      return Buffer.concat([PREFACE, rng.bytes(1 + rng.int(4096))]);
    case "random-frames": {
      const parts: Buffer[] = [PREFACE, settings];
      for (let i = rng.int(20); i >= 0; i--)
        parts.push(
          frame(
            rng.int(12),
            rng.int(256),
            rng.chance(0.5) ? 1 + 2 * rng.int(8) : rng.int(2 ** 31),
            rng.bytes(rng.int(300)),
          ),
        );
      return Buffer.concat(parts);
    }
    case "truncated-frame": {
      const f = frame(1, 0x5, 1, rng.bytes(200));
      return Buffer.concat([PREFACE, settings, f.subarray(0, 9 + rng.int(150))]);
    }
    case "bad-hpack":
      // A HEADERS frame whose block is random bytes: an invalid HPACK index, a bad Huffman string, etc.
      return Buffer.concat([PREFACE, settings, frame(1, 0x5, 1, rng.bytes(1 + rng.int(200)))]);
    case "continuations": {
      // A header block that never ends, within reason (up to 1 MiB).
      const parts: Buffer[] = [PREFACE, settings, frame(1, 0x1, 1, Buffer.from([0x82]))];
      const n = 16 + rng.int(64);
      for (let i = 0; i < n; i++) parts.push(frame(9, 0, 1, Buffer.alloc(16384, 0x40)));
      return Buffer.concat(parts);
    }
    case "settings-flood": {
      const parts: Buffer[] = [PREFACE];
      for (let i = 0; i < 2000; i++) parts.push(frame(4, 0, 0, rng.bytes(6)));
      return Buffer.concat(parts);
    }
    case "window-overflow":
      return Buffer.concat([
        PREFACE,
        settings,
        frame(8, 0, 0, Buffer.from([0x7f, 0xff, 0xff, 0xff])),
        frame(8, 0, 0, Buffer.from([0x7f, 0xff, 0xff, 0xff])),
      ]);
  }
}

/**
 * Writes `bytes` on a fresh connection to `socket`, then waits until the server closes it or `ms` pass, and
 * closes it. Resolves with whether the server closed it itself.
 */
export function garbageConnection(socket: string, bytes: Buffer, ms: number): Promise<boolean> {
  return new Promise((resolve) => {
    const c = netConnect(socket);
    let closedByServer = false;
    const t = setTimeout(() => c.destroy(), ms);
    c.on("error", () => {});
    c.on("data", () => {});
    c.on("end", () => {
      closedByServer = true;
    });
    c.on("close", () => {
      clearTimeout(t);
      resolve(closedByServer);
    });
    c.write(bytes, () => {
      // Half the time cut the connection mid-stream (a client that vanishes), else wait for the server.
      if (bytes.length % 2 === 0) c.end();
    });
  });
}
