/**
 * Content store interfaces: immutable blobs addressed by digest (`sha256:<hex>`).
 *
 * Lifecycle of a blob: an ingest is opened for an expected digest and size, bytes are
 * written (and hashed) as they stream in, and `commit` makes the blob visible only when
 * the digest and size match. Nothing half-written is ever readable. Removing a blob is
 * the garbage collector's job (images decide which blobs are still referenced).
 */

/** Describes a blob: what OCI calls a descriptor, reduced to what the store needs. */
export interface BlobInfo {
  digest: string;
  size: number;
}

/** Read access to committed blobs. */
export interface Provider {
  /** Info of a committed blob, or undefined when absent. */
  info(digest: string): Promise<BlobInfo | undefined>;
  /** The whole blob (for small blobs: manifests, configs). Throws NotFound when absent. */
  readBlob(digest: string): Promise<Buffer>;
  /** A stream of the blob's bytes. Throws NotFound when absent. */
  readStream(digest: string): AsyncIterable<Uint8Array>;
  /** The blob's path on disk, for tools that need a file (unpack). Throws NotFound when absent. */
  blobPath(digest: string): string;
}

/** Writes blobs: stream bytes in, verified against the expected digest and size. */
export interface Ingester {
  /**
   * Streams `source` into the store and commits it as `expected.digest`.
   * Fails (kind InvalidArgument, message naming the digest) on a digest or size mismatch,
   * leaving nothing visible. A blob already present is not written again.
   * `onProgress` receives the running byte count, called once those bytes are in the file that
   * `onOpen` named (the ingest file, created when the write begins; not called when the blob is
   * already present). A reader may follow that file as it grows: it is renamed to `blobPath()`
   * on commit and deleted on failure, so an open descriptor stays valid either way.
   */
  ingest(
    expected: BlobInfo,
    source: AsyncIterable<Uint8Array>,
    options?: { signal?: AbortSignal; onProgress?: (bytes: number) => void; onOpen?: (path: string) => void },
  ): Promise<BlobInfo>;
  /** Writes a small blob from memory, verifying it when `digest` is given. */
  writeBlob(data: Uint8Array, digest?: string): Promise<BlobInfo>;
  /**
   * A new private directory on the store's filesystem for files written outside the store (an
   * image archive spooled and its blobs staged by a worker thread). The caller removes it; after
   * a crash the next open of the store does.
   */
  stagingDir(): Promise<string>;
  /**
   * Moves a complete file of a {@link stagingDir} in as blob `expected.digest`. Its writer hashed
   * it while writing it (off the event loop), so only the size is checked here. A blob already
   * present wins and the file is removed.
   */
  importFile(path: string, expected: BlobInfo): Promise<BlobInfo>;
}

/** Deletes blobs and lists them, for garbage collection. */
export interface Manager {
  delete(digest: string): Promise<void>;
  list(): Promise<BlobInfo[]>;
  /** Bytes and inodes used by all committed blobs. */
  usage(): Promise<{ bytes: number; inodes: number }>;
}

/** The full content store. */
export interface ContentStore extends Provider, Ingester, Manager {}
