import { type CriLogRecord, type LogStream, parseCriLogRecord } from "./format.js";
import { splitLines } from "./lines.js";

/** One line of the container's output, joined from its records. */
export interface LogLine {
  /** The timestamp of the line's first record, as written. */
  timestamp: string;
  timeMs: number;
  stream: LogStream;
  /** The line without its newline, decoded as UTF-8. */
  content: string;
  /** False when the log ended inside the line (its last record was `P`). */
  complete: boolean;
  /** True when the line was longer than the joiner's cap: `content` is its beginning, the rest was dropped. */
  truncated: boolean;
}

/**
 * The longest line a joiner keeps, in bytes (16 MiB). conmon writes a long line as many `P` records, so
 * without a cap one line that never ends would grow without bound in memory.
 */
export const MAX_LINE_BYTES = 16 * 1024 * 1024;

/** Options of {@link LineJoiner}. */
export interface LineJoinerOptions {
  /** Bytes kept of one line (default {@link MAX_LINE_BYTES}); more is dropped and the line marked truncated. */
  maxLineBytes?: number;
}

interface OpenLine {
  first: CriLogRecord;
  parts: Buffer[];
  bytes: number;
  truncated: boolean;
}

/**
 * Joins records into lines, per stream: a `P` record of stdout continues with stdout's next record,
 * whatever stderr wrote in between. `push` returns the line an `F` record completes; `flush` returns the
 * lines still open (the log ended inside them), marked incomplete, oldest first.
 */
export class LineJoiner {
  readonly #open = new Map<LogStream, OpenLine>();
  readonly #max: number;

  constructor(options: LineJoinerOptions = {}) {
    this.#max = options.maxLineBytes ?? MAX_LINE_BYTES;
  }

  push(rec: CriLogRecord): LogLine | undefined {
    let open = this.#open.get(rec.stream);
    if (!open) {
      open = { first: rec, parts: [], bytes: 0, truncated: false };
      this.#open.set(rec.stream, open);
    }
    const room = this.#max - open.bytes;
    if (rec.content.length > room) open.truncated = true;
    const kept = rec.content.length > room ? rec.content.subarray(0, room) : rec.content;
    if (kept.length > 0) {
      open.parts.push(kept);
      open.bytes += kept.length;
    }
    if (rec.partial) return undefined;
    this.#open.delete(rec.stream);
    return lineOf(open, true);
  }

  flush(): LogLine[] {
    const out = [...this.#open.values()].map((open) => lineOf(open, false));
    this.#open.clear();
    return out.sort((a, b) => a.timeMs - b.timeMs);
  }
}

function lineOf(open: OpenLine, complete: boolean): LogLine {
  return {
    timestamp: open.first.timestamp,
    timeMs: open.first.timeMs,
    stream: open.first.stream,
    content: Buffer.concat(open.parts, open.bytes).toString("utf8"),
    complete,
    truncated: open.truncated,
  };
}

/** The lines of a stream of records; lines still open when the records end come last, incomplete. */
export async function* joinLines(
  records: AsyncIterable<CriLogRecord>,
  options: LineJoinerOptions = {},
): AsyncIterable<LogLine> {
  const joiner = new LineJoiner(options);
  for await (const rec of records) {
    const line = joiner.push(rec);
    if (line) yield line;
  }
  yield* joiner.flush();
}

/**
 * Parses and joins a whole log held in memory (small logs, tests). Lines not in the format are skipped;
 * with `flush: false` a line the log ends inside is left out.
 */
export function parseCriLog(text: string | Buffer, options: LineJoinerOptions & { flush?: boolean } = {}): LogLine[] {
  const joiner = new LineJoiner(options);
  const out: LogLine[] = [];
  const { lines, rest } = splitLines(typeof text === "string" ? Buffer.from(text) : text);
  for (const raw of rest.length > 0 ? [...lines, rest] : lines) {
    const rec = parseCriLogRecord(raw);
    const line = rec && joiner.push(rec);
    if (line) out.push(line);
  }
  if (options.flush ?? true) out.push(...joiner.flush());
  return out;
}
