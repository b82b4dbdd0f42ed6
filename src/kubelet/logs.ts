/**
 * Container logs in the CRI format conmon writes (`<RFC3339Nano> <stdout|stderr> <P|F> <content>`):
 * a parser that joins partial (`P`) lines, a reader for whole files, and a follower that tails a
 * file as it grows — the pod runner reads log files directly, as the kubelet does, since pods run
 * on this machine.
 */
import { open, readFile } from "node:fs/promises";
import { setTimeout as delay } from "node:timers/promises";

/** One complete log line. */
export interface LogLine {
  /** RFC 3339 timestamp of the line's first part. */
  time: string;
  stream: "stdout" | "stderr";
  content: string;
}

const LINE = /^(\S+) (stdout|stderr) (F|P) (.*)$/;

/** Incremental parser: feed it text in any chunks, get complete lines back. */
export class CriLogParser {
  private rest = "";
  private partial: { time: string; stream: "stdout" | "stderr"; content: string } | undefined;

  push(text: string): LogLine[] {
    const data = this.rest + text;
    const lines = data.split("\n");
    this.rest = lines.pop() ?? "";
    const out: LogLine[] = [];
    for (const raw of lines) {
      const m = LINE.exec(raw);
      if (!m) continue;
      const [, time = "", stream, tag, content = ""] = m;
      const s = stream as "stdout" | "stderr";
      if (this.partial && this.partial.stream === s) {
        this.partial.content += content;
      } else {
        if (this.partial) out.push(this.partial);
        this.partial = { time, stream: s, content };
      }
      if (tag === "F") {
        out.push(this.partial);
        this.partial = undefined;
      }
    }
    return out;
  }

  /** Whatever is left (a partial line at the end of a finished log). */
  end(): LogLine[] {
    const out = this.rest ? this.push("\n") : [];
    if (this.partial) out.push(this.partial);
    this.partial = undefined;
    return out;
  }
}

/** Every line of a log file. */
export async function readLogLines(path: string): Promise<LogLine[]> {
  const p = new CriLogParser();
  return [...p.push(await readFile(path, "utf8")), ...p.end()];
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
 * Yields the lines of a log file as they are written, waiting for the file to appear.
 * Ends when `until` settles (after draining) or `signal` aborts (at once).
 */
export async function* followLog(path: string, o: FollowLogOptions = {}): AsyncIterable<LogLine> {
  const pollMs = o.pollMs ?? 150;
  let finished = false;
  void o.until?.then(
    () => {
      finished = true;
    },
    () => {
      finished = true;
    },
  );
  const parser = new CriLogParser();
  const decoder = new TextDecoder();
  let fh: Awaited<ReturnType<typeof open>> | undefined;
  let position = 0;
  try {
    while (!o.signal?.aborted) {
      const lastRound = finished;
      if (!fh) {
        fh = await open(path, "r").catch(() => undefined);
        if (fh && o.fromEnd) position = (await fh.stat()).size;
      }
      if (fh) {
        const buf = Buffer.alloc(64 * 1024);
        for (;;) {
          const { bytesRead } = await fh.read(buf, 0, buf.length, position);
          if (bytesRead === 0) break;
          position += bytesRead;
          for (const line of parser.push(decoder.decode(buf.subarray(0, bytesRead), { stream: true }))) yield line;
        }
      }
      if (lastRound) {
        for (const line of parser.end()) yield line;
        return;
      }
      // An abort ends the wait; the loop then sees the signal and stops.
      await delay(pollMs, undefined, o.signal ? { signal: o.signal } : {}).catch(() => {});
    }
  } finally {
    await fh?.close();
  }
}
