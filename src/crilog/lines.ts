const NEWLINE = 0x0a;

/** The complete lines of a buffer (without their newlines) and the bytes after the last newline. */
export function splitLines(buf: Buffer): { lines: Buffer[]; rest: Buffer } {
  const lines: Buffer[] = [];
  let from = 0;
  for (let nl = buf.indexOf(NEWLINE); nl >= 0; nl = buf.indexOf(NEWLINE, from)) {
    lines.push(buf.subarray(from, nl));
    from = nl + 1;
  }
  return { lines, rest: buf.subarray(from) };
}

/**
 * Cuts chunks read from a file into lines, keeping at most `max` bytes of any line: a record is at most a
 * few KiB (conmon's buffer), so a longer "line" is a garbled or hostile file, and holding all of it would
 * let the file decide how much memory the reader takes. Lines are copies, not views of the chunk.
 */
export class LineSplitter {
  #parts: Buffer[] = [];
  #bytes = 0;

  constructor(readonly max: number) {}

  /** The lines `chunk` completes. */
  push(chunk: Buffer): Buffer[] {
    const { lines, rest } = splitLines(chunk);
    const out = lines.map((line) => {
      this.#take(line);
      return this.#line();
    });
    this.#take(rest);
    return out;
  }

  /** The bytes after the last newline (a line still being written, or a file's unterminated end), forgotten. */
  rest(): Buffer | undefined {
    return this.#bytes > 0 ? this.#line() : undefined;
  }

  /** Forgets the bytes after the last newline (the file was truncated under them). */
  reset(): void {
    this.#parts = [];
    this.#bytes = 0;
  }

  #take(bytes: Buffer): void {
    const kept = bytes.subarray(0, Math.max(0, this.max - this.#bytes));
    if (kept.length === 0) return;
    this.#parts.push(Buffer.from(kept));
    this.#bytes += kept.length;
  }

  #line(): Buffer {
    const line = this.#parts.length === 1 ? (this.#parts[0] as Buffer) : Buffer.concat(this.#parts, this.#bytes);
    this.reset();
    return line;
  }
}
