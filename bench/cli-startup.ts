/**
 * Measurement 6, CLI start-up: wall time and peak RSS of one short CLI command, start to exit, against a
 * serving daemon. berth runs as installed (`dist/src/bin/berth.js` under node with its `#!` line's flags); crictl
 * runs against containerd when it is on PATH (Debian's containerd package does not ship it, so it is often
 * absent and the row says so). The floor is Node's own start (`node -e 0`): what any JavaScript CLI pays.
 * Peak RSS comes from GNU time (`/usr/bin/time -f %M`, the kernel's ru_maxrss); each figure is the median of
 * `runs` runs after one unmeasured warm-up run (page cache).
 */
import { execFile } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { median } from "./stats.js";

const exec = promisify(execFile);
const REPO = join(dirname(fileURLToPath(import.meta.url)), "..");
const GNU_TIME = "/usr/bin/time";

/** Median wall time (ms) and peak RSS (MiB) of one command. */
export interface StartupFigures {
  wallMs: number;
  maxRssMiB: number;
}

/** Start-up of the commands measured, per CLI; absent where that CLI is not installed. */
export interface CliStartupResult {
  berth: { version: StartupFigures; ps: StartupFigures };
  crictl?: { version: StartupFigures; ps: StartupFigures };
  /** `node -e 0`. */
  node: StartupFigures;
}

/** The berth CLI as installed: node with the flags of the built entry point's `#!` line, then the entry point. */
export function berthCli(): string[] {
  const entry = join(REPO, "dist", "src", "bin", "berth.js");
  const first = readFileSync(entry, "utf8").split("\n", 1)[0] ?? "";
  const flags = (/^#!.*\bnode\b(.*)$/.exec(first)?.[1] ?? "").split(/\s+/).filter((f) => f.startsWith("--"));
  return [process.execPath, ...flags, entry];
}

/** Measures both CLIs; `sockets` are the daemons' CRI sockets. */
export async function measureCliStartup(
  sockets: { berth: string; containerd?: string },
  runs = 10,
): Promise<CliStartupResult> {
  const [node, ...pre] = berthCli() as [string, ...string[]];
  const of = (args: string[]) => timeCommand(node, [...pre, ...args], runs);
  const result: CliStartupResult = {
    berth: {
      version: await of(["--socket", sockets.berth, "version"]),
      ps: await of(["--socket", sockets.berth, "ps", "-a"]),
    },
    node: await timeCommand(process.execPath, ["-e", "0"], runs),
  };
  const crictl = onPath("crictl");
  if (crictl && sockets.containerd) {
    const endpoint = `unix://${sockets.containerd}`;
    const c = (args: string[]) => timeCommand(crictl, ["--runtime-endpoint", endpoint, ...args], runs);
    result.crictl = { version: await c(["version"]), ps: await c(["ps", "-a"]) };
  }
  return result;
}

/** Runs `file args` `runs` times (after one warm-up); each run must exit 0. */
async function timeCommand(file: string, args: readonly string[], runs: number): Promise<StartupFigures> {
  const walls: number[] = [];
  const rss: number[] = [];
  const timed = existsSync(GNU_TIME);
  for (let i = 0; i <= runs; i++) {
    const t = performance.now();
    const { stderr } = timed
      ? await exec(GNU_TIME, ["-f", "maxrss=%M", file, ...args])
      : await exec(file, [...args], { encoding: "utf8" });
    const wall = performance.now() - t;
    if (i === 0) continue;
    walls.push(wall);
    const m = /maxrss=(\d+)/.exec(stderr);
    if (m) rss.push(Number(m[1]) / 1024);
  }
  return { wallMs: median(walls), maxRssMiB: median(rss) };
}

function onPath(name: string): string | undefined {
  for (const dir of (process.env.PATH ?? "").split(":")) {
    if (dir && existsSync(join(dir, name))) return join(dir, name);
  }
  return undefined;
}
