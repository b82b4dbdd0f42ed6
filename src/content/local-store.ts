import { createHash, randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { chmod, mkdir, open, readdir, readFile, rename, rm, stat } from "node:fs/promises";
import { join } from "node:path";
import { pipeline } from "node:stream/promises";
import { invalidArgument, notFound, RuntimeError, wrap } from "../errdefs/index.js";
import { ensureDir, fsyncDir, KeyedMutex, signalOption, untilAborted } from "../util/index.js";
import type { BlobInfo, ContentStore } from "./types.js";

/**
 * A filesystem content store. On-disk layout:
 *
 * ```
 * <root>/content/
 *   blobs/sha256/<hex>      committed blobs, mode 0444, never modified once renamed in
 *   ingest/<random>         ingests in progress; a crash leaves them behind and the next open deletes them
 *   ingest/<random>.d/      staging directories (stagingDir), likewise
 * ```
 *
 * Both directories live on one filesystem so that committing is a rename: a blob path either
 * does not exist or holds the complete, verified bytes.
 */
export interface ContentStoreOptions {
  /** The daemon's root directory; the store owns `<root>/content`. */
  root: string;
}

/** `sha256:<64 lowercase hex>`; the only algorithm OCI registries use in practice. */
const DIGEST_RE = /^sha256:([a-f0-9]{64})$/;

/** The digest (`sha256:<hex>`) of `data`. */
export function digestOf(data: Uint8Array): string {
  return `sha256:${createHash("sha256").update(data).digest("hex")}`;
}

function hexOf(digest: string): string {
  const m = DIGEST_RE.exec(digest);
  if (!m?.[1]) throw invalidArgument(`invalid digest ${JSON.stringify(digest)}: want sha256:<64 hex digits>`);
  return m[1];
}

/**
 * Opens (creating if needed) the content store under `<root>/content` and deletes ingests
 * left by a crash. Only one store may be open on a root at a time: opening wipes `ingest/`.
 */
export async function createContentStore(options: ContentStoreOptions): Promise<ContentStore> {
  const base = join(options.root, "content");
  const blobsDir = join(base, "blobs", "sha256");
  const ingestDir = join(base, "ingest");
  // The one function that builds blob paths.
  const pathOf = (digest: string): string => join(blobsDir, hexOf(digest));

  // Root-only, as containerd's: blobs are image layers, which may hold secrets or setuid binaries.
  await ensureDir(base, 0o700);
  await mkdir(blobsDir, { recursive: true, mode: 0o700 });
  // Interrupted ingests cannot be resumed (the hash state is gone), so they are discarded.
  await rm(ingestDir, { recursive: true, force: true });
  await mkdir(ingestDir, { recursive: true, mode: 0o700 });

  // One writer per digest: a second ingest of the same digest waits and then finds the blob.
  // Deletes take the same lock, so a blob never vanishes under a running ingest's existence check.
  const locks = new KeyedMutex();

  async function info(digest: string): Promise<BlobInfo | undefined> {
    try {
      const st = await stat(pathOf(digest));
      return { digest, size: st.size };
    } catch (err) {
      if (isErrno(err, "ENOENT")) return undefined;
      throw wrap(err, `stat blob ${digest}`);
    }
  }

  async function write(
    expected: BlobInfo,
    source: AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
    signal: AbortSignal | undefined,
    onProgress: ((bytes: number) => void) | undefined,
    onOpen?: (path: string) => void,
  ): Promise<BlobInfo> {
    signal?.throwIfAborted();
    const existing = await info(expected.digest);
    if (existing) {
      await closeSource(source);
      return existing;
    }
    const tmp = join(ingestDir, randomBytes(8).toString("hex"));
    const hash = createHash("sha256");
    let size = 0;
    const fh = await open(tmp, "wx", 0o600);
    onOpen?.(tmp);
    try {
      try {
        // Hashes and counts on the way to disk, failing as soon as the blob is longer than announced.
        // (A plain write loop: fh.createWriteStream({ autoClose: false }) keeps fh.close() pending forever.)
        const sink = async (chunks: AsyncIterable<Uint8Array>) => {
          for await (const chunk of chunks) {
            size += chunk.length;
            if (size > expected.size) throw sizeMismatch(expected, `more than ${expected.size}`);
            hash.update(chunk);
            // FileHandle.write may write less than asked.
            for (let off = 0; off < chunk.length; )
              off += (await fh.write(chunk, off, chunk.length - off)).bytesWritten;
            onProgress?.(size);
          }
        };
        await pipeline(source, sink, signalOption(signal));
        await fh.sync();
      } finally {
        await fh.close();
      }
      if (size !== expected.size) throw sizeMismatch(expected, String(size));
      const actual = `sha256:${hash.digest("hex")}`;
      if (actual !== expected.digest) {
        throw invalidArgument(`digest ${expected.digest} mismatch: content hashes to ${actual}`);
      }
      await chmod(tmp, 0o444);
      await rename(tmp, pathOf(expected.digest));
      await fsyncDir(blobsDir);
      return { digest: expected.digest, size };
    } catch (err) {
      await rm(tmp, { force: true });
      if (err instanceof RuntimeError) throw err;
      if (signal?.aborted) throw new RuntimeError("Canceled", `ingest ${expected.digest}: canceled`, { cause: err });
      throw wrap(err, `ingest ${expected.digest}`);
    }
  }

  return {
    info: async (digest) => info(digest),

    async readBlob(digest) {
      try {
        return await readFile(pathOf(digest));
      } catch (err) {
        if (isErrno(err, "ENOENT")) throw notFound(`blob ${digest}`);
        throw wrap(err, `read blob ${digest}`);
      }
    },

    // A generator so that NotFound surfaces on first iteration, where a stream consumer looks for errors.
    async *readStream(digest) {
      let fh: Awaited<ReturnType<typeof open>>;
      try {
        fh = await open(pathOf(digest), "r");
      } catch (err) {
        if (isErrno(err, "ENOENT")) throw notFound(`blob ${digest}`);
        throw wrap(err, `read blob ${digest}`);
      }
      // The stream owns the handle from here: it closes it at the end, on error, or when the consumer stops early.
      yield* fh.createReadStream();
    },

    blobPath(digest) {
      const path = pathOf(digest);
      if (!existsSync(path)) throw notFound(`blob ${digest}`);
      return path;
    },

    async ingest(expected, source, opts = {}) {
      hexOf(expected.digest);
      if (!Number.isSafeInteger(expected.size) || expected.size < 0) {
        throw invalidArgument(`ingest ${expected.digest}: invalid size ${expected.size}`);
      }
      const { signal, onProgress, onOpen } = opts;
      let writing = false;
      const work = locks.run(expected.digest, () => {
        writing = true;
        return write(expected, source, signal, onProgress, onOpen);
      });
      // Waiting for the lock ends at once on abort; a write that has begun is awaited instead: it stops on the
      // signal and removes its temp file, so a canceled ingest leaves nothing in ingest/ once it rejects.
      return untilAborted(work, signal, {
        error: () => new RuntimeError("Canceled", `ingest ${expected.digest}: canceled`),
        early: () => !writing,
      });
    },

    async writeBlob(data, digest) {
      const actual = digestOf(data);
      if (digest !== undefined && digest !== actual) {
        hexOf(digest);
        throw invalidArgument(`digest ${digest} mismatch: content hashes to ${actual}`);
      }
      return locks.run(actual, () => write({ digest: actual, size: data.length }, [data], undefined, undefined));
    },

    async stagingDir() {
      const dir = join(ingestDir, `${randomBytes(8).toString("hex")}.d`);
      await mkdir(dir, { mode: 0o700 });
      return dir;
    },

    async importFile(path, expected) {
      hexOf(expected.digest);
      return locks.run(expected.digest, async () => {
        const existing = await info(expected.digest);
        if (existing) {
          await rm(path, { force: true });
          return existing;
        }
        const st = await stat(path);
        if (!st.isFile() || st.size !== expected.size) {
          await rm(path, { force: true });
          throw sizeMismatch(expected, String(st.size));
        }
        await chmod(path, 0o444);
        await rename(path, pathOf(expected.digest));
        await fsyncDir(blobsDir);
        return { digest: expected.digest, size: expected.size };
      });
    },

    async delete(digest) {
      const path = pathOf(digest);
      await locks.run(digest, async () => {
        try {
          await rm(path);
        } catch (err) {
          if (isErrno(err, "ENOENT")) throw notFound(`blob ${digest}`);
          throw wrap(err, `delete blob ${digest}`);
        }
        await fsyncDir(blobsDir);
      });
    },

    async list() {
      const out: BlobInfo[] = [];
      for (const name of await readdir(blobsDir)) {
        if (!/^[a-f0-9]{64}$/.test(name)) continue;
        const b = await info(`sha256:${name}`);
        if (b) out.push(b);
      }
      return out;
    },

    async usage() {
      let bytes = 0;
      let inodes = 0;
      for (const name of await readdir(blobsDir)) {
        try {
          const st = await stat(join(blobsDir, name));
          // Disk usage, as `du` reports it: allocated blocks, not apparent size.
          bytes += st.blocks * 512;
          inodes += 1;
        } catch (err) {
          if (!isErrno(err, "ENOENT")) throw wrap(err, "content usage");
        }
      }
      return { bytes, inodes };
    },
  };
}

function sizeMismatch(expected: BlobInfo, got: string): RuntimeError {
  return invalidArgument(`digest ${expected.digest} size mismatch: expected ${expected.size} bytes, got ${got}`);
}

/** Closes a source we will not read (e.g. the second of two concurrent ingests), releasing its socket. */
async function closeSource(source: AsyncIterable<Uint8Array> | Iterable<Uint8Array>): Promise<void> {
  if (!(Symbol.asyncIterator in source)) return;
  try {
    await source[Symbol.asyncIterator]().return?.();
  } catch {
    // The source's own close error is not the ingest's concern: the blob is already present.
  }
}

function isErrno(err: unknown, code: string): boolean {
  return typeof err === "object" && err !== null && (err as NodeJS.ErrnoException).code === code;
}
