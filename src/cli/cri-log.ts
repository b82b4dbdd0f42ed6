/**
 * The CRI container log format, as conmon (and the kubelet's other runtimes) write it:
 *
 *   <RFC3339Nano timestamp> <stdout|stderr> <P|F> <content>\n
 *
 * `F` ends a line of the container's output; `P` marks a partial line (conmon splits long lines
 * and flushes unterminated output) whose continuation follows in later entries of the same stream.
 * A joiner glues partial entries back into the line the container wrote. Pure: no I/O here.
 */
import { parseRfc3339 } from "./duration.js";

/** One line of a CRI log file. */
export interface CriLogEntry {
  /** The timestamp as written (printed by --timestamps). */
  timestamp: string;
  /** The timestamp in milliseconds since the epoch. */
  timeMs: number;
  stream: "stdout" | "stderr";
  /** True for `P` (the line continues in the next entry of this stream). */
  partial: boolean;
  content: string;
}

/** One line of the container's output, joined from its partial entries. */
export interface LogLine {
  /** Timestamp of the line's first entry. */
  timestamp: string;
  timeMs: number;
  stream: "stdout" | "stderr";
  /** The line without its newline. */
  content: string;
  /** False when the line was cut short (the log ended inside a partial line). */
  complete: boolean;
}

/** Parses one line of a CRI log file (without its newline); undefined when it is not in the format. */
export function parseCriLogLine(line: string): CriLogEntry | undefined {
  const s1 = line.indexOf(" ");
  if (s1 < 0) return undefined;
  const s2 = line.indexOf(" ", s1 + 1);
  if (s2 < 0) return undefined;
  const stream = line.slice(s1 + 1, s2);
  if (stream !== "stdout" && stream !== "stderr") return undefined;
  const timestamp = line.slice(0, s1);
  const timeMs = parseRfc3339(timestamp);
  if (Number.isNaN(timeMs)) return undefined;
  // The tag field may carry more tags after a colon in future versions (P:xxx); only the first counts.
  const s3 = line.indexOf(" ", s2 + 1);
  const tags = s3 < 0 ? line.slice(s2 + 1) : line.slice(s2 + 1, s3);
  const tag = tags.split(":")[0];
  if (tag !== "P" && tag !== "F") return undefined;
  return { timestamp, timeMs, stream, partial: tag === "P", content: s3 < 0 ? "" : line.slice(s3 + 1) };
}

/**
 * Joins partial entries per stream. `push` returns the line an `F` entry completes (or none);
 * `flush` returns the lines still open, marked incomplete (at the end of a non-followed log).
 */
export class LogJoiner {
  readonly #open = new Map<"stdout" | "stderr", { first: CriLogEntry; parts: string[] }>();

  push(entry: CriLogEntry): LogLine | undefined {
    const open = this.#open.get(entry.stream);
    if (entry.partial) {
      if (open) open.parts.push(entry.content);
      else this.#open.set(entry.stream, { first: entry, parts: [entry.content] });
      return undefined;
    }
    if (!open)
      return {
        timestamp: entry.timestamp,
        timeMs: entry.timeMs,
        stream: entry.stream,
        content: entry.content,
        complete: true,
      };
    this.#open.delete(entry.stream);
    const { first, parts } = open;
    return {
      timestamp: first.timestamp,
      timeMs: first.timeMs,
      stream: entry.stream,
      content: parts.join("") + entry.content,
      complete: true,
    };
  }

  flush(): LogLine[] {
    const out: LogLine[] = [];
    for (const { first, parts } of this.#open.values()) {
      out.push({
        timestamp: first.timestamp,
        timeMs: first.timeMs,
        stream: first.stream,
        content: parts.join(""),
        complete: false,
      });
    }
    this.#open.clear();
    return out.sort((a, b) => a.timeMs - b.timeMs);
  }
}

/** Parses and joins a whole log text (tests and small logs); lines that are not CRI entries are skipped. */
export function parseCriLog(text: string, options: { flush?: boolean } = {}): LogLine[] {
  const joiner = new LogJoiner();
  const out: LogLine[] = [];
  for (const raw of text.split("\n")) {
    const entry = parseCriLogLine(raw);
    if (!entry) continue;
    const line = joiner.push(entry);
    if (line) out.push(line);
  }
  if (options.flush ?? true) out.push(...joiner.flush());
  return out;
}

/** What `logs` prints for one line: the content (and with `timestamps` the entry's timestamp first), newline-terminated when complete. */
export function formatLogLine(line: LogLine, options: { timestamps?: boolean } = {}): string {
  const prefix = options.timestamps ? `${line.timestamp} ` : "";
  return `${prefix}${line.content}${line.complete ? "\n" : ""}`;
}

/** Keeps the last `n` items pushed (the --tail window); n < 0 keeps all. */
export class TailBuffer<T> {
  readonly #items: T[] = [];
  constructor(readonly n: number) {}

  push(item: T): void {
    if (this.n === 0) return;
    this.#items.push(item);
    if (this.n > 0 && this.#items.length > this.n) this.#items.shift();
  }

  items(): readonly T[] {
    return this.#items;
  }
}
