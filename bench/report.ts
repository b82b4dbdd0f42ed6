/**
 * Reporting: the one table (metric, berth, containerd, berth/containerd, floor), each figure the median over
 * rounds of that round's figure, and the raw JSON (every round, machine info, versions) written under
 * `bench/results/<timestamp>.json`.
 */
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import os from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import type { ConcurrentResult } from "./concurrency.js";
import type { FloorResult } from "./floor.js";
import { commandOutput } from "./host.js";
import type { SequentialResult } from "./latency.js";
import type { MemoryResult } from "./memory.js";
import type { PullResult } from "./pull.js";
import type { RuntimeName } from "./runtime.js";
import { median } from "./stats.js";
import type { TeardownResult } from "./teardown.js";

const exec = promisify(execFile);
const REPO = join(dirname(fileURLToPath(import.meta.url)), "..");

/** Everything one runtime produced in one round. */
export interface RuntimeRound {
  sequential: SequentialResult;
  memory: MemoryResult;
  teardown: TeardownResult;
  concurrent: ConcurrentResult;
  concurrentTeardown: TeardownResult;
  pull: PullResult;
}

/** One round: the floor, then both runtimes in `order`. */
export interface Round {
  round: number;
  order: RuntimeName[];
  floor: FloorResult;
  runtimes: Partial<Record<RuntimeName, RuntimeRound>>;
}

/** One line of the table. */
export interface Row {
  metric: string;
  berth: number;
  containerd: number;
  floor?: number;
  /** Digits after the point. */
  digits: number;
}

interface RowSpec {
  metric: string;
  digits: number;
  value: (r: RuntimeRound) => number;
  floor?: (f: FloorResult) => number;
  /** Sum over rounds instead of the median (counts). */
  sum?: boolean;
}

function specs(pods: number, inFlight: number): RowSpec[] {
  const ms = (metric: string, value: (r: RuntimeRound) => number, floor?: (f: FloorResult) => number): RowSpec => ({
    metric,
    digits: 0,
    value,
    ...(floor ? { floor } : {}),
  });
  const podFloor = (f: FloorResult): number => f.cniAddMs + f.runcRunMs;
  return [
    ms("pod start p50, ms (sandbox+create+start)", (r) => r.sequential.total.p50, podFloor),
    ms("pod start p90, ms", (r) => r.sequential.total.p90),
    ms("pod start max, ms", (r) => r.sequential.total.max),
    ms(
      "RunPodSandbox p50, ms",
      (r) => r.sequential.sandbox.p50,
      (f) => f.cniAddMs,
    ),
    ms("RunPodSandbox p90, ms", (r) => r.sequential.sandbox.p90),
    ms("RunPodSandbox max, ms", (r) => r.sequential.sandbox.max),
    ms("CreateContainer p50, ms", (r) => r.sequential.create.p50),
    ms("CreateContainer p90, ms", (r) => r.sequential.create.p90),
    ms("CreateContainer max, ms", (r) => r.sequential.create.max),
    ms("StartContainer p50, ms", (r) => r.sequential.start.p50),
    ms("StartContainer p90, ms", (r) => r.sequential.start.p90),
    ms("StartContainer max, ms", (r) => r.sequential.start.max),
    ms(
      "Create+Start p50, ms",
      (r) => createStartP50(r.sequential),
      (f) => f.runcRunMs,
    ),
    {
      metric: `sequential, ${pods} pods: total s`,
      digits: 2,
      value: (r) => r.sequential.wallMs / 1000,
      floor: (f) => (pods * podFloor(f)) / 1000,
    },
    {
      metric: `concurrent, ${pods} pods (${inFlight} in flight): wall s`,
      digits: 2,
      value: (r) => r.concurrent.wallMs / 1000,
    },
    { metric: "concurrent: pods/s", digits: 1, value: (r) => r.concurrent.podsPerSecond },
    { metric: `daemon RSS with ${pods} pods, MiB`, digits: 1, value: (r) => r.memory.daemonRssKiB / 1024 },
    {
      metric: "per-pod runtime Pss, KiB (monitor/shim + infra)",
      digits: 0,
      value: (r) => r.memory.perPodOverheadPssKiB,
    },
    { metric: "runtime processes per pod", digits: 1, value: (r) => r.memory.processesPerPod },
    { metric: `teardown, ${pods} pods: wall s`, digits: 2, value: (r) => r.teardown.wallMs / 1000 },
    {
      metric: "leaked objects after teardown (all rounds)",
      digits: 0,
      value: (r) => r.teardown.leakCount + r.concurrentTeardown.leakCount,
      sum: true,
    },
    { metric: "cold pull ~100 MB, s", digits: 2, value: (r) => r.pull.seconds, floor: (f) => f.downloadSeconds },
    {
      metric: "cold pull: until all blobs fetched, s",
      digits: 2,
      value: (r) => r.pull.fetchedSeconds,
      floor: (f) => f.downloadSeconds,
    },
    { metric: "cold pull, MB/s", digits: 1, value: (r) => r.pull.mbPerSecond, floor: (f) => f.downloadMbPerSecond },
  ];
}

/** Median over pods of create + start (the part `runc run` is the floor of). */
function createStartP50(s: SequentialResult): number {
  return median(s.samples.map((x) => x.createMs + x.startMs));
}

/** The table's rows: per metric, the median (or sum) over rounds for each runtime and for the floor. */
export function summarize(rounds: readonly Round[], pods: number, inFlight: number): Row[] {
  return specs(pods, inFlight).map((spec) => {
    const of = (name: RuntimeName): number => {
      const values = rounds.flatMap((r) => {
        const rr = r.runtimes[name];
        return rr ? [spec.value(rr)] : [];
      });
      return spec.sum ? values.reduce((a, b) => a + b, 0) : median(values);
    };
    const row: Row = { metric: spec.metric, berth: of("berth"), containerd: of("containerd"), digits: spec.digits };
    if (spec.floor) row.floor = median(rounds.map((r) => (spec.floor as (f: FloorResult) => number)(r.floor)));
    return row;
  });
}

/** The rows as a Markdown table. */
export function formatTable(rows: readonly Row[]): string {
  const fmt = (v: number | undefined, digits: number): string =>
    v === undefined || !Number.isFinite(v) ? "—" : v.toFixed(digits);
  const lines = ["| metric | berth | containerd | berth/containerd | floor |", "| --- | ---: | ---: | ---: | ---: |"];
  for (const r of rows) {
    const ratio = r.containerd !== 0 ? r.berth / r.containerd : Number.NaN;
    lines.push(
      `| ${r.metric} | ${fmt(r.berth, r.digits)} | ${fmt(r.containerd, r.digits)} | ${fmt(ratio, 2)} | ${fmt(r.floor, r.digits)} |`,
    );
  }
  return lines.join("\n");
}

/** The machine, for the JSON. */
export async function machineInfo(): Promise<Record<string, unknown>> {
  const cgroup = existsSync("/sys/fs/cgroup/cgroup.controllers")
    ? "v2"
    : existsSync("/sys/fs/cgroup/unified")
      ? "v1 (hybrid)"
      : "v1";
  return {
    nproc: os.availableParallelism(),
    cpu: os.cpus()[0]?.model ?? "",
    memTotalMiB: Math.round(os.totalmem() / 2 ** 20),
    kernel: `${os.type()} ${os.release()}`,
    cgroup,
    // Other jobs on the machine show here: the figures are only as quiet as the machine was.
    loadavgAtEnd: os.loadavg(),
  };
}

/** Versions of everything measured, for the JSON. */
export async function versions(berth: string, containerd: string): Promise<Record<string, string>> {
  const first = (s: string): string => s.split("\n")[0] ?? "";
  const pkg = JSON.parse(await readFile(join(REPO, "package.json"), "utf8")) as { version: string };
  let commit = "";
  try {
    commit = (await exec("git", ["-C", REPO, "describe", "--always", "--dirty"])).stdout.trim();
  } catch {
    // not a git checkout
  }
  return {
    berth: `${berth} (package ${pkg.version}${commit ? `, ${commit}` : ""})`,
    containerd: `${containerd} (${first(await commandOutput("containerd", ["--version"]))})`,
    runc: first(await commandOutput("runc", ["--version"])),
    conmon: first(await commandOutput("conmon", ["--version"])),
    catatonit: first(await commandOutput("catatonit", ["--version"])),
    // dpkg-query's own ${Version} field syntax, not a template.
    cniPlugins: first(await commandOutput("dpkg-query", ["-W", `-f=$\{Version}`, "containernetworking-plugins"])),
    node: process.version,
  };
}

/**
 * Writes the raw results to `bench/results/<timestamp>.json` (or under `$BERTH_BENCH_RESULTS`, which
 * the test command sets so its smoke run leaves nothing in the tree); returns the path.
 */
export async function writeResults(startedAt: Date, data: Record<string, unknown>): Promise<string> {
  const dir = process.env.BERTH_BENCH_RESULTS || join(REPO, "bench", "results");
  await mkdir(dir, { recursive: true });
  const path = join(dir, `${startedAt.toISOString().replace(/[:.]/g, "-")}.json`);
  await writeFile(path, `${JSON.stringify(data, null, 2)}\n`);
  return path;
}
