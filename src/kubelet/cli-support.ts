/**
 * What the pod runner's commands share: the global options (read the way src/cli reads them,
 * without importing it — src/cli imports this module), a CRI client per command, the state and
 * log directory options, and table/JSON/YAML output.
 */
import { type Command, Option } from "commander";
import { stringify as toYaml } from "yaml";
import { type CriClient, createCriClient, DEFAULT_SOCKET } from "../client/index.js";
import { Backoff } from "./backoff.js";
import { realClock } from "./clock.js";
import { createLayout, DEFAULT_LOG_ROOT, DEFAULT_STATE_DIR, type Layout } from "./layout.js";

/** The root command's options (socket, output, timeout, debug). */
export interface Globals {
  socket: string;
  output: "table" | "json" | "yaml";
  timeout: number;
  debug: boolean;
}

export function globalsOf(cmd: Command): Globals {
  const o = cmd.optsWithGlobals<{ socket?: string; output?: string; timeout?: string; debug?: boolean }>();
  const output = o.output === "json" || o.output === "yaml" ? o.output : "table";
  return {
    socket: o.socket ?? process.env.BERTH_SOCKET ?? DEFAULT_SOCKET,
    output,
    timeout: Number(o.timeout ?? 30),
    debug: Boolean(o.debug),
  };
}

/** Adds --state-dir and --pod-log-dir (with their environment variables). */
export function withLayoutOptions(cmd: Command): Command {
  return cmd
    .addOption(
      new Option("--state-dir <dir>", "pod runner state: events, readiness, emptyDir volumes")
        .env("BERTH_KUBELET_DIR")
        .default(DEFAULT_STATE_DIR),
    )
    .addOption(
      new Option("--pod-log-dir <dir>", "root of the pods' log directories")
        .env("BERTH_POD_LOG_DIR")
        .default(DEFAULT_LOG_ROOT),
    );
}

/** Adds the hidden timing knobs tests use (sync period, back-off base and cap). */
export function withTimingOptions(cmd: Command): Command {
  return cmd
    .addOption(new Option("--sync-period-ms <ms>", "time between sync passes").default("1000").hideHelp())
    .addOption(new Option("--backoff-initial-ms <ms>", "first crash-loop back-off delay").default("10000").hideHelp())
    .addOption(new Option("--backoff-max-ms <ms>", "crash-loop back-off cap").default("300000").hideHelp());
}

export interface LayoutOpts {
  stateDir: string;
  podLogDir: string;
}

export interface TimingOpts {
  syncPeriodMs: string;
  backoffInitialMs: string;
  backoffMaxMs: string;
}

export function layoutOf(opts: LayoutOpts): Layout {
  return createLayout({ stateDir: opts.stateDir, logRoot: opts.podLogDir });
}

export function backoffOf(opts: TimingOpts): Backoff {
  return new Backoff(realClock, {
    initialMs: positive(opts.backoffInitialMs, "--backoff-initial-ms"),
    maxMs: positive(opts.backoffMaxMs, "--backoff-max-ms"),
  });
}

export function positive(v: string, name: string): number {
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0) throw new Error(`${name}: must be a positive number, got ${JSON.stringify(v)}`);
  return n;
}

/** A client for the command's socket; `close()` it when done. */
export function clientOf(g: Globals): CriClient {
  return createCriClient({ socket: g.socket, timeoutMs: g.timeout * 1000 });
}

/** Runs `fn` with a client, always closing it. */
export async function withClient<T>(cmd: Command, fn: (client: CriClient, g: Globals) => Promise<T>): Promise<T> {
  const g = globalsOf(cmd);
  const client = clientOf(g);
  try {
    return await fn(client, g);
  } finally {
    client.close();
  }
}

/** A left-aligned table with three spaces between columns (kubectl's and crictl's look). */
export function formatTable(headers: string[], rows: string[][]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i] ?? 0)))
      .join("   ")
      .trimEnd();
  return `${[line(headers), ...rows.map(line)].join("\n")}\n`;
}

/** JSON or YAML of a plain value (bigints as strings). */
export function formatStructured(value: unknown, format: "json" | "yaml"): string {
  const plain = JSON.parse(JSON.stringify(value, (_k, v) => (typeof v === "bigint" ? v.toString() : v)));
  return format === "yaml" ? toYaml(plain) : `${JSON.stringify(plain, null, 2)}\n`;
}

/** A pod (or other object) the user named does not exist. */
export class NotFoundError extends Error {
  override readonly name = "NotFoundError";
}

export const out = (text: string): void => {
  process.stdout.write(text);
};
export const err = (line: string): void => {
  process.stderr.write(line.endsWith("\n") ? line : `${line}\n`);
};

const COLORS = [36, 33, 32, 35, 34, 91, 92, 93, 94, 95, 96];

/** A stable colour per name on a TTY, none otherwise. */
export function colorize(name: string, text: string, tty: boolean): string {
  if (!tty || process.env.NO_COLOR) return text;
  let h = 0;
  for (const ch of name) h = (h * 31 + ch.charCodeAt(0)) >>> 0;
  return `\x1b[${COLORS[h % COLORS.length]}m${text}\x1b[0m`;
}
