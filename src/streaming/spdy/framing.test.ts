import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { describe, test } from "node:test";
import { constants, deflateSync, inflateSync } from "node:zlib";
import { SPDY3_DICTIONARY } from "./dictionary.js";
import {
  decodeHeaderBlock,
  encodeData,
  encodeGoAway,
  encodeHeaderBlock,
  encodeHeaders,
  encodePing,
  encodeRstStream,
  encodeSettings,
  encodeSynReply,
  encodeSynStream,
  encodeWindowUpdate,
  type Frame,
  FrameParser,
  HeaderCompressor,
  HeaderDecompressor,
  SpdyProtocolError,
} from "./framing.js";

function parseAll(...chunks: Buffer[]): Frame[] {
  const parser = new FrameParser();
  const frames: Frame[] = [];
  for (const chunk of chunks) {
    parser.push(chunk);
    for (let f = parser.next(); f !== undefined; f = parser.next()) frames.push(f);
  }
  return frames;
}

describe("spdy framing", () => {
  test("the header dictionary is byte for byte the SPDY/3 one (moby/spdystream's)", () => {
    assert.equal(SPDY3_DICTIONARY.length, 1423);
    assert.equal(
      createHash("sha256").update(SPDY3_DICTIONARY).digest("hex"),
      "51d27341373f923f3cd88e1eb7162aeaa3723d7585ff2399201dc06498407f02",
    );
    // zlib puts the dictionary's Adler-32 (its DICTID) in the stream header; peers check it.
    const compressed = deflateSync(Buffer.from("x"), { dictionary: SPDY3_DICTIONARY });
    assert.equal(compressed.readUInt32BE(2), 0xe3c6a7c2);
  });

  test("control frames round-trip through the parser, even split byte by byte", () => {
    const block = Buffer.from("compressed-headers");
    const wire = Buffer.concat([
      encodeSynStream(1, block, { fin: true, priority: 3 }),
      encodeSynReply(2, block, true),
      encodeRstStream(3, 5),
      encodeSettings([{ id: 7, flags: 0, value: 4096 }]),
      encodePing(7),
      encodeGoAway(9, 1),
      encodeHeaders(11, block),
      encodeWindowUpdate(0, 12345),
      encodeData(13, Buffer.from("payload"), true),
      encodeData(15, Buffer.alloc(0), false),
    ]);
    const expected: Frame[] = [
      {
        type: "syn_stream",
        streamId: 1,
        associatedTo: 0,
        priority: 3,
        fin: true,
        unidirectional: false,
        headerBlock: block,
      },
      { type: "syn_reply", streamId: 2, fin: true, headerBlock: block },
      { type: "rst_stream", streamId: 3, status: 5 },
      { type: "settings", clear: false, entries: [{ id: 7, flags: 0, value: 4096 }] },
      { type: "ping", id: 7 },
      { type: "goaway", lastGoodStreamId: 9, status: 1 },
      { type: "headers", streamId: 11, fin: false, headerBlock: block },
      { type: "window_update", streamId: 0, delta: 12345 },
      { type: "data", streamId: 13, fin: true, data: Buffer.from("payload") },
      { type: "data", streamId: 15, fin: false, data: Buffer.alloc(0) },
    ];
    assert.deepEqual(parseAll(wire), expected);
    const bytes = [...wire].map((b) => Buffer.of(b));
    assert.deepEqual(parseAll(...bytes), expected);
  });

  test("the frame layout matches the draft: control bit, version 3, flags and 24-bit length", () => {
    const ping = encodePing(1);
    assert.deepEqual([...ping], [0x80, 0x03, 0x00, 0x06, 0x00, 0x00, 0x00, 0x04, 0, 0, 0, 1]);
    const data = encodeData(5, Buffer.from("ab"), true);
    assert.deepEqual([...data], [0, 0, 0, 5, 0x01, 0, 0, 2, 0x61, 0x62]);
  });

  test("unknown control frame types are ignored, other versions are a protocol error", () => {
    const unknown = Buffer.from([0x80, 0x03, 0x00, 0x0a, 0, 0, 0, 1, 0xff]);
    assert.deepEqual(parseAll(unknown), [{ type: "unknown", frameType: 10 }]);
    const v2 = Buffer.from([0x80, 0x02, 0x00, 0x06, 0, 0, 0, 4, 0, 0, 0, 1]);
    assert.throws(() => parseAll(v2), SpdyProtocolError);
  });

  test("an oversized control frame is refused before it is buffered", () => {
    const header = Buffer.from([0x80, 0x03, 0x00, 0x01, 0x00, 0xff, 0xff, 0xff]);
    assert.throws(() => parseAll(header), /too large/);
  });

  test("header blocks: lowercase names, NUL-joined values; uppercase or duplicate names are refused", () => {
    const block = encodeHeaderBlock({ StreamType: "error", port: ["80", "81"] });
    assert.deepEqual({ ...decodeHeaderBlock(block) }, { streamtype: ["error"], port: ["80", "81"] });
    const u32 = (n: number) => Buffer.from([n >>> 24, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff]);
    const raw = (...pairs: [string, string][]) =>
      Buffer.concat([
        u32(pairs.length),
        ...pairs.flatMap(([k, v]) => [u32(k.length), Buffer.from(k), u32(v.length), Buffer.from(v)]),
      ]);
    assert.throws(() => decodeHeaderBlock(raw(["Port", "1"])), /not lowercase/);
    assert.throws(() => decodeHeaderBlock(raw(["port", "1"], ["port", "2"])), /duplicate/);
    assert.throws(() => decodeHeaderBlock(raw(["port", "1"]).subarray(0, 10)), /truncated/);
  });

  test("compression shares one zlib context per direction, flushed per block", async () => {
    const compressor = new HeaderCompressor();
    const decompressor = new HeaderDecompressor();
    const blocks = [{ streamtype: "error" }, { streamtype: "stdin" }, { streamtype: "stdout", port: "8080" }];
    const compressed = await Promise.all(blocks.map((b) => compressor.compress(b)));
    // Later blocks reuse the history: identical prefixes compress to almost nothing.
    assert.ok(compressed[1]!.length < compressed[0]!.length);
    for (const [i, c] of compressed.entries()) {
      const headers = await decompressor.decompress(c);
      assert.deepEqual({ ...headers }, Object.fromEntries(Object.entries(blocks[i]!).map(([k, v]) => [k, [v]])));
    }
    // The first block stands alone: any zlib with the dictionary inflates it (as Go's does).
    const alone = inflateSync(compressed[0]!, { dictionary: SPDY3_DICTIONARY, finishFlush: constants.Z_SYNC_FLUSH });
    assert.deepEqual(alone, encodeHeaderBlock(blocks[0]!));
    compressor.close();
    decompressor.close();
  });

  test("a corrupt header block is a protocol error", async () => {
    const decompressor = new HeaderDecompressor();
    await assert.rejects(decompressor.decompress(Buffer.from("not zlib at all")), SpdyProtocolError);
    decompressor.close();
  });
});
