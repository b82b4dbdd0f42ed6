/**
 * Container logs as the pod runner shows them: whole lines of a container's CRI log file, read once or
 * followed as it grows (the runner reads log files directly, as the kubelet does, since pods run on this
 * machine). Parsing, joining and following are the crilog module's; this only shapes its lines.
 */
import { type LogLine as CriLogLine, CriLogReader, followCriLog, joinLines } from "../crilog/index.js";

/** One complete log line. */
export interface LogLine {
  /** RFC 3339 timestamp of the line's first part. */
  time: string;
  stream: "stdout" | "stderr";
  content: string;
}

const toLine = (l: CriLogLine): LogLine => ({ time: l.timestamp, stream: l.stream, content: l.content });

/** Every line of a log file; a missing file is NotFound. */
export async function readLogLines(path: string): Promise<LogLine[]> {
  const reader = await CriLogReader.open(path);
  try {
    const out: LogLine[] = [];
    for await (const line of joinLines(reader.read({ final: true }))) out.push(toLine(line));
    return out;
  } finally {
    await reader.close();
  }
}

/** Options of {@link followLog}. */
export interface FollowLogOptions {
  signal?: AbortSignal;
  /** Start at the current end of the file instead of its beginning. */
  fromEnd?: boolean;
  /** When this settles, the rest of the file is read and the iteration ends. */
  until?: Promise<unknown>;
  /** How often to look for new data (default 150 ms). */
  pollMs?: number;
}

/**
 * Yields the lines of a log file as they are written, waiting for the file to appear and following
 * rotation. Ends when `until` settles (after draining) or `signal` aborts (at once).
 */
export async function* followLog(path: string, o: FollowLogOptions = {}): AsyncIterable<LogLine> {
  const records = followCriLog(path, {
    pollMs: o.pollMs ?? 150,
    ...(o.signal ? { signal: o.signal } : {}),
    ...(o.fromEnd ? { fromEnd: true } : {}),
    ...(o.until ? { until: o.until } : {}),
  });
  for await (const line of joinLines(records)) yield toLine(line);
}
