/**
 * The CRI container log format, as conmon's k8s-file driver (and every CRI runtime) writes it:
 *
 *   <RFC 3339 timestamp, nanoseconds> <stdout|stderr> <P|F>[:more tags] <content>\n
 *
 * `F` ends a line of the container's output (conmon drops the line's own newline); `P` is a chunk of a line
 * that had not ended when it was written (conmon splits long lines at its buffer size and flushes
 * unterminated output), continued by the next records of the same stream. An empty line may be written
 * without the space before its (empty) content.
 */

/** Which of the container's outputs a record came from. */
export type LogStream = "stdout" | "stderr";

/** One record (one line of the file). */
export interface CriLogRecord {
  /** The timestamp as written (what `--timestamps` prints). */
  timestamp: string;
  /** The timestamp in milliseconds since the epoch. */
  timeMs: number;
  stream: LogStream;
  /** True for `P`: the line goes on in the stream's next record. */
  partial: boolean;
  /** The bytes as the container wrote them: not necessarily UTF-8 (a terminal's output holds any byte). */
  content: Buffer;
}

const SPACE = 0x20;
const COLON = 0x3a;
const EMPTY = Buffer.alloc(0);

/**
 * Parses one line of a log file (without its newline); `undefined` for anything not in the format (a
 * garbled or truncated line, another format), which readers skip. `content` shares memory with `line`.
 */
export function parseCriLogRecord(line: Buffer | string): CriLogRecord | undefined {
  const buf = typeof line === "string" ? Buffer.from(line) : line;
  const s1 = buf.indexOf(SPACE);
  if (s1 <= 0) return undefined;
  const s2 = buf.indexOf(SPACE, s1 + 1);
  if (s2 < 0) return undefined;
  const stream = buf.toString("latin1", s1 + 1, s2);
  if (stream !== "stdout" && stream !== "stderr") return undefined;
  const s3 = buf.indexOf(SPACE, s2 + 1);
  const tagsEnd = s3 < 0 ? buf.length : s3;
  // More tags may follow the first after a colon (`P:x`); only the first has a meaning today.
  const colon = buf.indexOf(COLON, s2 + 1);
  const tag = buf.toString("latin1", s2 + 1, colon >= 0 && colon < tagsEnd ? colon : tagsEnd);
  if (tag !== "P" && tag !== "F") return undefined;
  const timestamp = buf.toString("latin1", 0, s1);
  const timeMs = parseRfc3339(timestamp);
  if (Number.isNaN(timeMs)) return undefined;
  return { timestamp, timeMs, stream, partial: tag === "P", content: s3 < 0 ? EMPTY : buf.subarray(s3 + 1) };
}

const RFC3339 = /^(\d{4}-\d\d-\d\d)[Tt ](\d\d:\d\d:\d\d)(?:\.(\d+))?([Zz]|[+-]\d\d:\d\d)$/;

/**
 * Milliseconds since the epoch of an RFC 3339 time with any number of fraction digits (CRI logs write
 * nanoseconds, which `Date.parse` does not take); NaN when `value` is not one.
 */
export function parseRfc3339(value: string): number {
  const m = RFC3339.exec(value);
  if (!m) return Number.NaN;
  const fraction = (m[3] ?? "").padEnd(3, "0").slice(0, 3);
  const zone = m[4] === "z" ? "Z" : m[4];
  return Date.parse(`${m[1]}T${m[2]}.${fraction}${zone}`);
}
