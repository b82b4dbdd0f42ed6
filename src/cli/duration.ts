/** Durations and points in time as users type them on the command line (Go's time.ParseDuration, RFC 3339). */
import { parseRfc3339 } from "../crilog/index.js";

const UNIT_MS: Record<string, number> = { ns: 1e-6, us: 1e-3, µs: 1e-3, ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** Milliseconds of a Go duration such as `90s`, `1m30s`, `1.5h` or `250ms`; throws on anything else. */
export function parseDuration(value: string): number {
  const re = /(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)/y;
  if (value === "0") return 0;
  let ms = 0;
  let at = 0;
  while (at < value.length) {
    re.lastIndex = at;
    const m = re.exec(value);
    if (!m) throw new Error(`invalid duration ${JSON.stringify(value)}: expected e.g. 30s, 5m, 1h30m`);
    ms += Number(m[1]) * (UNIT_MS[m[2] as string] as number);
    at = re.lastIndex;
  }
  if (value.length === 0) throw new Error('invalid duration "": expected e.g. 30s, 5m, 1h30m');
  return ms;
}

/**
 * The instant `--since` names, in milliseconds since the epoch: a duration before `nowMs`
 * (`10m`) or an RFC 3339 time (`2024-05-01T10:00:00Z`).
 */
export function parseSince(value: string, nowMs: number = Date.now()): number {
  const t = parseRfc3339(value);
  if (!Number.isNaN(t)) return t;
  try {
    return nowMs - parseDuration(value);
  } catch {
    throw new Error(`--since ${value}: expected a duration (10s, 5m, 2h) or an RFC 3339 time (2024-05-01T10:00:00Z)`);
  }
}
