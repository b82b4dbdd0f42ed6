/**
 * What the pod runner's commands (`run`, `down`, `get`, `describe`, `pod-logs`, `kubelet`) share
 * beyond the global options of context.ts: the state and log directory options, the hidden
 * timing knobs, and their output helpers.
 */
import { type Command, Option } from "commander";
import { notFound } from "../errdefs/index.js";
import {
  Backoff,
  createLayout,
  DEFAULT_LOG_ROOT,
  DEFAULT_STATE_DIR,
  type Layout,
  type PodView,
  realClock,
} from "../kubelet/index.js";

/** The words `get` and `describe` take for pods. */
export const POD_ALIASES = ["pods", "pod", "po"];

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

/** The values of {@link withLayoutOptions}. */
export interface LayoutOpts {
  stateDir: string;
  podLogDir: string;
}

/** The values of {@link withTimingOptions}. */
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

/** A positive number option, or an error naming the option. */
export function positive(v: string, name: string): number {
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0) throw new Error(`${name}: must be a positive number, got ${JSON.stringify(v)}`);
  return n;
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

/** The one pod a name selected, or NotFound. */
export function onePod(views: PodView[], name: string, namespace: string): PodView {
  const v = views[0];
  if (!v) throw notFound(`pods "${name}" not found in namespace ${namespace}`);
  return v;
}
