import { closeSync, constants, openSync, readdirSync, readSync, rmSync } from "node:fs";
import { join } from "node:path";
import { parentPort } from "node:worker_threads";
import { type ErrorKind, kindOf, messageOf, RuntimeError } from "../errdefs/index.js";
import { type ApplyOptions, applyLayerHere, fixImpliedDirs } from "./apply.js";
import type { ToMain, ToWorker, WireApplyOptions } from "./protocol.js";

/**
 * The unpack worker's entry point (see unpacker.ts): runs one job at a time — decompress, parse
 * and apply a layer tar, hashing it for its diff ID, finish implied directories, or empty a
 * failed layer's tree — with
 * synchronous fs calls that would stall berthd's event loop. It holds no state between jobs, so
 * the pool may end it whenever it is idle.
 */

const port = parentPort;
if (port === null) throw new Error("the unpack worker runs only as a worker thread");

/** What the main thread has said about the bytes of the running job. */
interface Feed {
  /** Bytes known to be in the file (Infinity: a complete file, read to its end). */
  available: number;
  /** The path that holds the complete blob, once it is complete. */
  finalPath?: string;
  error?: { kind: ErrorKind; message: string };
  /** Chunks posted by the main thread (an in-memory source). */
  chunks: Uint8Array[];
  ended: boolean;
  wake?: (() => void) | undefined;
}

interface Job {
  id: number;
  abort: AbortController;
  feed: Feed;
}

let job: Job | undefined;

const post = (m: ToMain) => port.postMessage(m);

port.on("message", (m: ToWorker) => {
  switch (m.op) {
    case "apply":
    case "fix":
    case "clear":
      void run(m);
      return;
  }
  if (job === undefined || job.id !== m.id) return; // A late message of a finished job.
  const feed = job.feed;
  switch (m.op) {
    case "grow":
      feed.available = Math.max(feed.available, m.bytes);
      if (m.finalPath !== undefined) feed.finalPath = m.finalPath;
      if (m.error !== undefined) feed.error = m.error;
      break;
    case "chunk":
      feed.chunks.push(m.data);
      break;
    case "end":
      feed.ended = true;
      if (m.error !== undefined) feed.error = m.error;
      break;
    case "abort":
      job.abort.abort(new Error("canceled"));
      break;
  }
  feed.wake?.();
});

async function run(m: Extract<ToWorker, { op: "apply" | "fix" | "clear" }>): Promise<void> {
  const feed: Feed = { available: 0, chunks: [], ended: false };
  const current: Job = { id: m.id, abort: new AbortController(), feed };
  job = current;
  try {
    if (m.op === "fix" || m.op === "clear") {
      if (m.op === "fix") fixImpliedDirs(m.target, m.implied, m.parents);
      else for (const name of readdirSync(m.target)) rmSync(join(m.target, name), { recursive: true, force: true });
      post({ op: "done", id: m.id, result: undefined });
      return;
    }
    if (m.source.kind === "file") feed.available = m.source.complete ? Number.POSITIVE_INFINITY : 0;
    if (m.source.kind === "file" && m.source.complete) feed.finalPath = m.source.path;
    const source =
      m.source.kind === "file"
        ? readFile(m.source.path, feed, current.abort.signal)
        : readChunks(m.id, feed, current.abort.signal);
    const result = await applyLayerHere(m.target, source, optionsOf(m.options, current.abort.signal));
    post({ op: "done", id: m.id, result });
  } catch (err) {
    post({ op: "error", id: m.id, kind: kindOf(err), message: messageOf(err) });
  } finally {
    if (job === current) job = undefined;
  }
}

function optionsOf(o: WireApplyOptions, signal: AbortSignal): ApplyOptions {
  const out: ApplyOptions = { signal };
  if (o.mediaType !== undefined) out.mediaType = o.mediaType;
  if (o.digest !== undefined) out.digest = o.digest;
  if (o.parents !== undefined) out.parents = o.parents;
  if (o.allowDevices !== undefined) out.allowDevices = o.allowDevices;
  if (o.syncFs !== undefined) out.syncFs = o.syncFs;
  if (o.maxBytes !== undefined) out.maxBytes = o.maxBytes;
  if (o.maxEntries !== undefined) out.maxEntries = o.maxEntries;
  if (o.deferImplied !== undefined) out.deferImplied = o.deferImplied;
  return out;
}

/** Resolves at the next message about the job's bytes. */
function next(feed: Feed): Promise<void> {
  return new Promise((resolve) => {
    feed.wake = () => {
      feed.wake = undefined;
      resolve();
    };
  });
}

const READ_SIZE = 256 * 1024;

/**
 * The bytes of a blob file, read as far as the main thread says they are written: a blob still
 * being downloaded is unpacked while it grows (its ingest file), then read from its final path.
 */
async function* readFile(path: string, feed: Feed, signal: AbortSignal): AsyncGenerator<Uint8Array> {
  let fd: number | undefined;
  try {
    let pos = 0;
    for (;;) {
      signal.throwIfAborted();
      if (feed.error !== undefined) throw new RuntimeError(feed.error.kind, feed.error.message);
      if (fd === undefined) {
        const p = feed.finalPath ?? path;
        try {
          fd = openSync(p, constants.O_RDONLY | constants.O_NOFOLLOW);
        } catch (err) {
          // The ingest file was renamed into the store just now: the final path is on its way.
          if ((err as NodeJS.ErrnoException).code !== "ENOENT" || feed.finalPath !== undefined) throw err;
          await next(feed);
          continue;
        }
      }
      const want = Math.min(READ_SIZE, feed.available - pos);
      if (want > 0) {
        const buf = Buffer.allocUnsafe(want);
        const n = readSync(fd, buf, 0, want, pos);
        if (n === 0) {
          if (feed.available === Number.POSITIVE_INFINITY) return;
          throw new Error(`blob file ${feed.finalPath ?? path} ends at ${pos} bytes, ${feed.available} announced`);
        }
        pos += n;
        yield buf.subarray(0, n);
        continue;
      }
      if (feed.finalPath !== undefined) return; // Everything written has been read.
      await next(feed);
    }
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

/** Chunks posted by the main thread, acknowledged as they are taken so it can send more. */
async function* readChunks(id: number, feed: Feed, signal: AbortSignal): AsyncGenerator<Uint8Array> {
  for (;;) {
    signal.throwIfAborted();
    const chunk = feed.chunks.shift();
    if (chunk !== undefined) {
      post({ op: "ack", id, bytes: chunk.length });
      yield chunk;
      continue;
    }
    if (feed.error !== undefined) throw new RuntimeError(feed.error.kind, feed.error.message);
    if (feed.ended) return;
    await next(feed);
  }
}
