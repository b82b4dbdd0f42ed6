import { constants as fsc } from "node:fs";
import { type FileHandle, open, stat } from "node:fs/promises";
import { setTimeout as sleep } from "node:timers/promises";
import { RuntimeError } from "../errdefs/index.js";
import { type CriLogRecord, parseCriLogRecord } from "./format.js";
import { LineSplitter } from "./lines.js";

/** Bytes read from the file at a time: the most parsing done between two turns of the event loop. */
const CHUNK_BYTES = 64 * 1024;

/**
 * The longest line of a file kept, in bytes (1 MiB): conmon writes records of a few KiB, so anything
 * longer is garbled, and only its beginning is parsed.
 */
export const MAX_RECORD_BYTES = 1024 * 1024;

/** Options of {@link CriLogReader.open}. */
export interface CriLogReaderOptions {
  /** Start at the end of the file as it is now: only records written from now on are read. */
  fromEnd?: boolean;
  /**
   * A missing file is waited for (read from its start once it appears) instead of being NotFound: the
   * container may not have written yet, or the file is between rotation and reopening.
   */
  waitForFile?: boolean;
  /** Bytes kept of one line of the file (default {@link MAX_RECORD_BYTES}). */
  maxRecordBytes?: number;
}

/** Options of {@link CriLogReader.follow}. */
export interface FollowOptions {
  /** Ends the following at once (nothing more is read). */
  signal?: AbortSignal;
  /** Whether the container can still write; once it says no, the file is drained and following ends. */
  isRunning?: () => boolean | Promise<boolean>;
  /** Once this settles, the file is drained and following ends. */
  until?: Promise<unknown>;
  /** How often to look for new data (default 100 ms). */
  pollMs?: number;
  /** How often to ask `isRunning` (default 1 s). */
  checkMs?: number;
}

/**
 * A container's CRI log file, read once or followed like `tail -F`.
 *
 * Lifecycle: `open(path)` → `read()` as often as wanted (each call yields the records written since the
 * last) and/or `follow()` → `close()`. Following notices the kubelet's rotation (the file renamed to
 * `<name>.<timestamp>` and a fresh one created by ReopenContainerLog: the old file is read to its end
 * before the new one, so no record is lost or repeated) and copytruncate (the file shrinks: read again
 * from its start).
 *
 * The file is the container's output, so reading it is bounded: it is opened O_NONBLOCK|O_NOFOLLOW and
 * must be a regular file (a FIFO or device put at the path cannot hold a libuv thread, a symbolic link
 * cannot redirect the read), it is read in chunks of {@link CHUNK_BYTES} (each parsed between turns of the
 * event loop), and a line longer than `maxRecordBytes` is cut.
 */
export class CriLogReader {
  #fh: FileHandle | undefined;
  #ino = -1;
  #pos = 0;
  readonly #splitter: LineSplitter;
  readonly #chunk = Buffer.alloc(CHUNK_BYTES);

  private constructor(
    readonly path: string,
    maxRecordBytes: number,
  ) {
    this.#splitter = new LineSplitter(maxRecordBytes);
  }

  /** Opens `path`. A missing file is NotFound unless `waitForFile`; anything but a regular file is InvalidArgument. */
  static async open(path: string, options: CriLogReaderOptions = {}): Promise<CriLogReader> {
    const reader = new CriLogReader(path, options.maxRecordBytes ?? MAX_RECORD_BYTES);
    const opened = await openLogFile(path);
    if (opened === undefined) {
      if (!options.waitForFile) throw new RuntimeError("NotFound", `log file ${path} does not exist (yet)`);
      return reader;
    }
    reader.#use(opened.fh, opened.ino, options.fromEnd ? opened.size : 0);
    return reader;
  }

  /** The records written since the last read, to the current end of the file; with `final`, an unterminated last line too. */
  async *read(options: { final?: boolean } = {}): AsyncGenerator<CriLogRecord, void> {
    if (this.#fh === undefined) yield* this.#switchIfRotated();
    yield* this.#drain();
    if (options.final) yield* this.#rest();
  }

  /**
   * Yields records as they are written, across rotation, until `signal` aborts, or until `until` settles
   * or `isRunning` says no, after which what the file still holds is read (with an unterminated last line).
   */
  async *follow(options: FollowOptions = {}): AsyncGenerator<CriLogRecord, void> {
    const pollMs = options.pollMs ?? 100;
    const checkMs = options.checkMs ?? 1000;
    let stopping = false;
    void options.until?.then(
      () => {
        stopping = true;
      },
      () => {
        stopping = true;
      },
    );
    let lastCheck = 0;
    while (!options.signal?.aborted) {
      // Decided before the read: a stop that comes during it still gets one more read.
      const lastRound = stopping;
      if (yield* this.#drain()) continue;
      if (yield* this.#switchIfRotated()) continue;
      if (lastRound) {
        yield* this.#rest();
        return;
      }
      if (options.isRunning && Date.now() - lastCheck >= checkMs) {
        lastCheck = Date.now();
        // One more read after the container stopped: it may have written its last lines since this one.
        if (!(await options.isRunning())) {
          stopping = true;
          continue;
        }
      }
      try {
        await sleep(pollMs, undefined, options.signal ? { signal: options.signal } : {});
      } catch {
        return; // aborted
      }
    }
  }

  async close(): Promise<void> {
    const fh = this.#fh;
    this.#fh = undefined;
    await fh?.close();
  }

  #use(fh: FileHandle, ino: number, pos: number): void {
    this.#fh = fh;
    this.#ino = ino;
    this.#pos = pos;
  }

  /** Reads to the current end of the file; returns whether any byte came. */
  async *#drain(): AsyncGenerator<CriLogRecord, boolean> {
    let any = false;
    while (this.#fh !== undefined) {
      const { bytesRead } = await this.#fh.read(this.#chunk, 0, CHUNK_BYTES, this.#pos);
      if (bytesRead === 0) break;
      any = true;
      this.#pos += bytesRead;
      for (const line of this.#splitter.push(this.#chunk.subarray(0, bytesRead))) {
        const rec = parseCriLogRecord(line);
        if (rec) yield rec;
      }
    }
    return any;
  }

  *#rest(): Generator<CriLogRecord, void> {
    const rest = this.#splitter.rest();
    const rec = rest && parseCriLogRecord(rest);
    if (rec) yield rec;
  }

  /**
   * Moves to the file now at the path when it is another one (after reading the old one to its end), or
   * to the start of the file when it shrank. Returns whether it did either.
   */
  async *#switchIfRotated(): AsyncGenerator<CriLogRecord, boolean> {
    const st = await stat(this.path).catch(() => undefined);
    // Between the rename and ReopenContainerLog there is no file: the old one is still the one written.
    if (st === undefined) return false;
    if (st.ino !== this.#ino) {
      yield* this.#drain();
      yield* this.#rest();
      // Replaced by something that is not a regular file, or gone again: keep to the old file.
      const opened = await openLogFile(this.path).catch(() => undefined);
      if (opened === undefined) return false;
      await this.#fh?.close();
      this.#use(opened.fh, opened.ino, 0);
      return true;
    }
    if (st.size < this.#pos) {
      this.#pos = 0;
      this.#splitter.reset();
      return true;
    }
    return false;
  }
}

/** Opens a log file for reading without blocking or following a link; undefined when it does not exist. */
async function openLogFile(path: string): Promise<{ fh: FileHandle; ino: number; size: number } | undefined> {
  let fh: FileHandle;
  try {
    // libuv adds O_CLOEXEC itself.
    fh = await open(path, fsc.O_RDONLY | fsc.O_NONBLOCK | fsc.O_NOFOLLOW);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "ENOENT") return undefined;
    if (code === "ELOOP") throw new RuntimeError("InvalidArgument", `log file ${path} is a symbolic link`);
    throw new RuntimeError("Internal", `open log file ${path}: ${(err as Error).message}`);
  }
  try {
    const st = await fh.stat();
    if (!st.isFile()) throw new RuntimeError("InvalidArgument", `log file ${path} is not a regular file`);
    return { fh, ino: st.ino, size: st.size };
  } catch (err) {
    await fh.close();
    throw err;
  }
}

/**
 * Yields the records of the log file at `path` as they are written (see {@link CriLogReader.follow}),
 * then closes it. The file need not exist yet.
 */
export async function* followCriLog(
  path: string,
  options: FollowOptions & Omit<CriLogReaderOptions, "waitForFile">,
): AsyncGenerator<CriLogRecord, void> {
  const reader = await CriLogReader.open(path, { ...options, waitForFile: true });
  try {
    yield* reader.follow(options);
  } finally {
    await reader.close();
  }
}

/** Options of {@link readCriLogStreams}. */
export interface ReadStreamsOptions {
  /** Bytes kept of each stream; more is dropped. */
  maxBytes: number;
  signal?: AbortSignal;
}

/**
 * The bytes each stream carried, rebuilt from a finished log file: `F` records end in a newline, `P`
 * records are joined to what follows. A missing file carried nothing.
 */
export async function readCriLogStreams(
  path: string,
  options: ReadStreamsOptions,
): Promise<{ stdout: Buffer; stderr: Buffer; truncated: boolean }> {
  const kept = { stdout: [] as Buffer[], stderr: [] as Buffer[] };
  const bytes = { stdout: 0, stderr: 0 };
  let truncated = false;
  const keep = (stream: "stdout" | "stderr", b: Buffer) => {
    const room = options.maxBytes - bytes[stream];
    if (b.length > room) truncated = true;
    const part = b.length > room ? b.subarray(0, room) : b;
    if (part.length === 0) return;
    kept[stream].push(part);
    bytes[stream] += part.length;
  };
  const reader = await CriLogReader.open(path, { waitForFile: true });
  try {
    for await (const rec of reader.read({ final: true })) {
      if (options.signal?.aborted) throw new RuntimeError("Canceled", `read log file ${path}: canceled`);
      keep(rec.stream, rec.content);
      if (!rec.partial) keep(rec.stream, NEWLINE);
      // Both full: the rest of the file would only be parsed to be dropped.
      if (bytes.stdout >= options.maxBytes && bytes.stderr >= options.maxBytes) {
        truncated = true;
        break;
      }
    }
  } finally {
    await reader.close();
  }
  return {
    stdout: Buffer.concat(kept.stdout, bytes.stdout),
    stderr: Buffer.concat(kept.stderr, bytes.stderr),
    truncated,
  };
}

const NEWLINE = Buffer.from("\n");
