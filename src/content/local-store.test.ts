import assert from "node:assert/strict";
import { mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, test } from "node:test";
import { isKind } from "../errdefs/index.js";
import { createContentStore, digestOf } from "./index.js";

let root: string;
beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), "berth-content-"));
});
afterEach(async () => {
  await rm(root, { recursive: true, force: true });
});

async function* chunks(...parts: string[]): AsyncIterable<Uint8Array> {
  for (const p of parts) yield Buffer.from(p);
}

const ingestDir = () => join(root, "content", "ingest");

describe("content store", () => {
  test("an ingested blob is readable by digest, listed and counted", async () => {
    const cs = await createContentStore({ root });
    const digest = digestOf(Buffer.from("hello world"));
    const seen: number[] = [];
    const got = await cs.ingest({ digest, size: 11 }, chunks("hello ", "world"), { onProgress: (n) => seen.push(n) });
    assert.deepEqual(got, { digest, size: 11 });
    assert.deepEqual(seen, [6, 11]);
    assert.deepEqual(await cs.info(digest), { digest, size: 11 });
    assert.equal((await cs.readBlob(digest)).toString(), "hello world");
    const streamed: Buffer[] = [];
    for await (const c of cs.readStream(digest)) streamed.push(Buffer.from(c));
    assert.equal(Buffer.concat(streamed).toString(), "hello world");
    assert.equal(cs.blobPath(digest), join(root, "content", "blobs", "sha256", digest.slice(7)));
    assert.deepEqual(await cs.list(), [{ digest, size: 11 }]);
    const usage = await cs.usage();
    assert.equal(usage.inodes, 1);
    assert.ok(usage.bytes > 0);
    assert.deepEqual(await readdir(ingestDir()), []);
  });

  test("a digest mismatch is InvalidArgument naming the digest and leaves nothing", async () => {
    const cs = await createContentStore({ root });
    const digest = digestOf(Buffer.from("expected"));
    await assert.rejects(cs.ingest({ digest, size: 8 }, chunks("tampered")), (err) => {
      assert.ok(isKind(err, "InvalidArgument"));
      assert.match((err as Error).message, new RegExp(`digest ${digest} mismatch`));
      return true;
    });
    assert.equal(await cs.info(digest), undefined);
    assert.deepEqual(await readdir(ingestDir()), []);
  });

  test("a size mismatch (short or long) is InvalidArgument and leaves nothing", async () => {
    const cs = await createContentStore({ root });
    const digest = digestOf(Buffer.from("abc"));
    await assert.rejects(
      cs.ingest({ digest, size: 3 }, chunks("ab")),
      /digest sha256:[a-f0-9]{64} size mismatch: expected 3 bytes, got 2/,
    );
    await assert.rejects(cs.ingest({ digest, size: 3 }, chunks("abc", "d")), /size mismatch/);
    assert.equal(await cs.info(digest), undefined);
    assert.deepEqual(await readdir(ingestDir()), []);
  });

  test("an ingest aborted mid-stream is Canceled and has removed its temp file when it rejects", async () => {
    const cs = await createContentStore({ root });
    const ac = new AbortController();
    async function* slow(): AsyncIterable<Uint8Array> {
      yield Buffer.from("first");
      ac.abort();
      await new Promise((r) => setTimeout(r, 20));
      yield Buffer.from("second");
    }
    const digest = digestOf(Buffer.from("firstsecond"));
    await assert.rejects(cs.ingest({ digest, size: 11 }, slow(), { signal: ac.signal }), (err) =>
      isKind(err, "Canceled"),
    );
    assert.equal(await cs.info(digest), undefined);
    assert.deepEqual(await readdir(ingestDir()), []);
  });

  test("an ingest waiting behind another of the same digest is Canceled at once", async () => {
    const cs = await createContentStore({ root });
    const digest = digestOf(Buffer.from("slowdata"));
    let release!: () => void;
    const gate = new Promise<void>((r) => {
      release = r;
    });
    async function* held(): AsyncIterable<Uint8Array> {
      yield Buffer.from("slow");
      await gate;
      yield Buffer.from("data");
    }
    const first = cs.ingest({ digest, size: 8 }, held());
    const ac = new AbortController();
    const second = cs.ingest({ digest, size: 8 }, chunks("slowdata"), { signal: ac.signal });
    ac.abort();
    await assert.rejects(second, (err) => isKind(err, "Canceled"));
    release();
    assert.deepEqual(await first, { digest, size: 8 });
  });

  test("concurrent ingests of one digest write it once", async () => {
    const cs = await createContentStore({ root });
    const data = Buffer.alloc(256 * 1024, 7);
    const digest = digestOf(data);
    const reads = [0, 0];
    async function* source(i: 0 | 1): AsyncIterable<Uint8Array> {
      for (let off = 0; off < data.length; off += 16 * 1024) {
        reads[i] = (reads[i] ?? 0) + 1;
        await new Promise((r) => setImmediate(r));
        yield data.subarray(off, off + 16 * 1024);
      }
    }
    const [a, b] = await Promise.all([
      cs.ingest({ digest, size: data.length }, source(0)),
      cs.ingest({ digest, size: data.length }, source(1)),
    ]);
    assert.deepEqual(a, { digest, size: data.length });
    assert.deepEqual(b, { digest, size: data.length });
    assert.equal(reads[0], 16);
    assert.equal(reads[1], 0, "the second ingest must reuse the first one's blob without reading its source");
    assert.deepEqual(await cs.list(), [{ digest, size: data.length }]);
  });

  test("a failed first ingest does not fail a concurrent second one with good bytes", async () => {
    const cs = await createContentStore({ root });
    const digest = digestOf(Buffer.from("good"));
    const [bad, good] = await Promise.allSettled([
      cs.ingest({ digest, size: 4 }, chunks("evil")),
      cs.ingest({ digest, size: 4 }, chunks("good")),
    ]);
    assert.equal(bad.status, "rejected");
    assert.equal(good.status, "fulfilled");
    assert.equal((await cs.readBlob(digest)).toString(), "good");
  });

  test("stale ingests left by a crash are removed at open", async () => {
    await createContentStore({ root });
    await writeFile(join(ingestDir(), "deadbeef"), "half a blob");
    await createContentStore({ root });
    assert.deepEqual(await readdir(ingestDir()), []);
  });

  test("writeBlob verifies a given digest and is idempotent", async () => {
    const cs = await createContentStore({ root });
    const data = Buffer.from('{"schemaVersion":2}');
    const digest = digestOf(data);
    assert.deepEqual(await cs.writeBlob(data, digest), { digest, size: data.length });
    assert.deepEqual(await cs.writeBlob(data), { digest, size: data.length });
    await assert.rejects(cs.writeBlob(Buffer.from("other"), digest), (err) => isKind(err, "InvalidArgument"));
  });

  test("absent blobs are NotFound; malformed digests are InvalidArgument", async () => {
    const cs = await createContentStore({ root });
    const digest = digestOf(Buffer.from("nothing"));
    assert.equal(await cs.info(digest), undefined);
    await assert.rejects(cs.readBlob(digest), (err) => isKind(err, "NotFound"));
    await assert.rejects(
      async () => {
        for await (const _ of cs.readStream(digest)) break;
      },
      (err) => isKind(err, "NotFound"),
    );
    assert.throws(
      () => cs.blobPath(digest),
      (err) => isKind(err, "NotFound"),
    );
    await assert.rejects(cs.delete(digest), (err) => isKind(err, "NotFound"));
    await assert.rejects(cs.info("sha256:../../etc/passwd"), (err) => isKind(err, "InvalidArgument"));
    await assert.rejects(cs.ingest({ digest: "md5:abc", size: 1 }, chunks("x")), (err) =>
      isKind(err, "InvalidArgument"),
    );
  });

  test("delete removes a blob", async () => {
    const cs = await createContentStore({ root });
    const { digest } = await cs.writeBlob(Buffer.from("bye"));
    await cs.delete(digest);
    assert.equal(await cs.info(digest), undefined);
    assert.deepEqual(await cs.list(), []);
  });
});
