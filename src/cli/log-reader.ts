/**
 * Reading a container's CRI log file, once or following it like `tail -F`.
 *
 * Lifecycle: `LogFileReader.open(path)` → `read()` as often as wanted (each call delivers the whole
 * lines written since the last one) → `close()`. While following, `reopenIfRotated()` notices the
 * kubelet's rotation (the file renamed to `<name>.<timestamp>`, a fresh file created by
 * ReopenContainerLog) and the copytruncate style (the file shrinks); the old file is read to its
 * end before the new one is opened, so no line is lost or repeated.
 */
import { type FileHandle, open, stat } from "node:fs/promises";
import { setTimeout as sleep } from "node:timers/promises";

const CHUNK = 64 * 1024;

/** A log file read line by line from where the last read stopped. */
export class LogFileReader {
  #fh: FileHandle;
  #ino: number;
  #pos = 0;
  #rest: Buffer = Buffer.alloc(0);
  readonly #chunk = Buffer.alloc(CHUNK);

  private constructor(
    readonly path: string,
    fh: FileHandle,
    ino: number,
  ) {
    this.#fh = fh;
    this.#ino = ino;
  }

  /** Opens `path`; a missing file is an error that says so. */
  static async open(path: string): Promise<LogFileReader> {
    let fh: FileHandle;
    try {
      fh = await open(path, "r");
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") throw new Error(`log file ${path} does not exist (yet)`);
      throw err;
    }
    const st = await fh.stat();
    return new LogFileReader(path, fh, st.ino);
  }

  /** Delivers every complete line up to the current end of the file; returns how many bytes were read. */
  async read(onLine: (line: string) => void): Promise<number> {
    let total = 0;
    for (;;) {
      const { bytesRead } = await this.#fh.read(this.#chunk, 0, CHUNK, this.#pos);
      if (bytesRead === 0) return total;
      this.#pos += bytesRead;
      total += bytesRead;
      let data = Buffer.concat([this.#rest, this.#chunk.subarray(0, bytesRead)]);
      for (let nl = data.indexOf(10); nl >= 0; nl = data.indexOf(10)) {
        onLine(data.subarray(0, nl).toString("utf8"));
        data = data.subarray(nl + 1);
      }
      this.#rest = Buffer.from(data);
    }
  }

  /** Bytes after the last newline (a line still being written), delivered as a line and forgotten. */
  flushRest(onLine: (line: string) => void): void {
    if (this.#rest.length > 0) onLine(this.#rest.toString("utf8"));
    this.#rest = Buffer.alloc(0);
  }

  /**
   * Switches to the file now at `path` if it is another file (rotation), or rewinds if the file
   * shrank (truncation). Call after `read()` returned 0. Returns true when it did either.
   */
  async reopenIfRotated(onLine: (line: string) => void): Promise<boolean> {
    const st = await stat(this.path).catch(() => undefined);
    // Between the rename and ReopenContainerLog there is no file: keep reading the old one.
    if (st === undefined) return false;
    if (st.ino !== this.#ino) {
      await this.read(onLine);
      this.flushRest(onLine);
      const fh = await open(this.path, "r").catch(() => undefined);
      if (fh === undefined) return false;
      await this.#fh.close();
      this.#fh = fh;
      this.#ino = (await fh.stat()).ino;
      this.#pos = 0;
      return true;
    }
    if (st.size < this.#pos) {
      this.#pos = 0;
      this.#rest = Buffer.alloc(0);
      return true;
    }
    return false;
  }

  async close(): Promise<void> {
    await this.#fh.close();
  }
}

/** Options of {@link followLog}. */
export interface FollowOptions {
  signal?: AbortSignal;
  /** Whether the container can still write; following ends once it cannot and the file is drained. */
  isRunning: () => Promise<boolean>;
  /** How often to look for new data (default 200 ms). */
  pollMs?: number;
  /** How often to ask isRunning (default 1 s). */
  checkMs?: number;
}

/**
 * Delivers new lines of an opened reader until the container stops (then drains the file) or
 * `signal` aborts. Survives rotation.
 */
export async function followLog(
  reader: LogFileReader,
  onLine: (line: string) => void,
  options: FollowOptions,
): Promise<void> {
  const pollMs = options.pollMs ?? 200;
  const checkMs = options.checkMs ?? 1000;
  let lastCheck = 0;
  let stopping = false;
  while (!options.signal?.aborted) {
    if ((await reader.read(onLine)) > 0) continue;
    if (await reader.reopenIfRotated(onLine)) continue;
    if (stopping) break;
    if (Date.now() - lastCheck >= checkMs) {
      lastCheck = Date.now();
      // One more pass after the container stopped: it may have written its last lines since the read.
      if (!(await options.isRunning())) {
        stopping = true;
        continue;
      }
    }
    try {
      await sleep(pollMs, undefined, options.signal ? { signal: options.signal } : {});
    } catch {
      break;
    }
  }
  reader.flushRest(onLine);
}
