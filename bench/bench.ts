/**
 * `npm run bench -- --build` runs only the build bench (build.ts). `npm run bench [-- --quick] [-- --pods N --rounds R --in-flight K] [-- --only PARTS] [-- --runtimes NAMES]`:
 * berth side by side with containerd. PARTS (comma-separated, default all): `pods` (the rounds below), `cli`
 * (CLI start-up) and `exec-load` (10 pod starts and 100 ExecSync at once, see exec-load.ts) and `pull`
 * (cold pulls of the 100 MB, 200,000-file and 1 GiB images, see pulls.ts; small stand-ins under --quick); NAMES limits the
 * runtimes started (`berth`, `containerd`; default both), for a quick look at one side.
 *
 * Set-up (not measured): a plain-HTTP registry on 127.0.0.1 with the fixture images and a pause image;
 * berthd and containerd started on private directories below one temporary directory, each with its own CNI
 * bridge and subnet; in each, the busybox image pulled and one warm-up pod run and removed, after which the
 * leak-check baseline is taken. Then R rounds; each round measures the floor, then both runtimes one after
 * the other, the order alternating between rounds so that machine noise hits both alike. A runtime's round:
 * N pods started sequentially (latency), memory with those N running, their teardown (with the leak check),
 * N pods started with K in flight, their teardown, and a cold pull of the big image. Every figure in the
 * table is the median over rounds.
 *
 * Everything started is stopped by PID and everything created removed, on success, failure or Ctrl-C
 * (see cleanup.ts): pods, daemons and their monitors, the registry, bridges, NAT rules, cgroups, mounts,
 * the temporary directory.
 *
 *   <tmp>/berth-bench-XXXXXX/
 *   ├── certs.d/<registry>/hosts.toml   plain HTTP for the fixture registry (both runtimes read it)
 *   ├── pause/                          the pause image's blobs (images.ts)
 *   ├── berth/                          berthd's config, root, state, socket, CNI config (berth.ts)
 *   ├── containerd/                     containerd's (containerd.ts)
 *   ├── floor/                          the runc bundle and the floor's CNI state (floor.ts)
 *   └── logs/<runtime>/                 the pods' log directories
 */
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { removeTestDir } from "../test/support/berthd.js";
import { startBerth } from "./berth.js";
import { runBuildBench } from "./build.js";
import { type Cleanup, createCleanup } from "./cleanup.js";
import { measureConcurrent } from "./concurrency.js";
import { startContainerd } from "./containerd.js";
import { cliStartupRows, execLoadRows, idleRssRows } from "./extras.js";
import { type FloorResult, prepareFloor } from "./floor.js";
import { deleteLink, killAll, primaryHierarchy, procsUnder, removeCgroupTree, removeNatRules, rssKiB } from "./host.js";
import { type BenchImages, prepareImages } from "./images.js";
import { measureSequential } from "./latency.js";
import { measureMemory } from "./memory.js";
import { measureColdPull } from "./pull.js";
import { preparePullImages, runPullRows } from "./pulls.js";
import {
  formatTable,
  machineInfo,
  type Round,
  type Row,
  type RuntimeRound,
  summarize,
  versions,
  writeResults,
} from "./report.js";
import type { BenchNetwork, RuntimeName, RuntimeUnderTest } from "./runtime.js";
import { median } from "./stats.js";
import { type HostSnapshot, measureTeardown, snapshot } from "./teardown.js";
import { removePod, startPod } from "./workload.js";

interface Options {
  quick: boolean;
  /** `--build`: only the build bench (build.ts), berth beside buildah. */
  build: boolean;
  pods: number;
  rounds: number;
  inFlight: number;
  /** Repetitions of each floor measurement per round. */
  floorReps: number;
  only: ReadonlySet<Part>;
  runtimes: readonly RuntimeName[];
}

const PARTS = ["pods", "cli", "exec-load", "pull"] as const;
type Part = (typeof PARTS)[number];

/** A comma-separated subset of `all`, every one of them when absent. */
function subset<T extends string>(v: string | undefined, all: readonly T[], name: string): T[] {
  if (v === undefined) return [...all];
  const picked = v.split(",").filter(Boolean);
  const bad = picked.filter((x) => !(all as readonly string[]).includes(x));
  if (bad.length > 0 || picked.length === 0) throw new Error(`--${name}: a list of ${all.join(", ")}, not ${v}`);
  return picked as T[];
}

function parseOptions(argv: string[]): Options {
  const { values } = parseArgs({
    args: argv,
    options: {
      quick: { type: "boolean", default: false },
      pods: { type: "string" },
      rounds: { type: "string" },
      "in-flight": { type: "string", default: "10" },
      only: { type: "string" },
      runtimes: { type: "string" },
      build: { type: "boolean", default: false },
    },
    strict: true,
  });
  const int = (v: string | undefined, fallback: number, name: string): number => {
    if (v === undefined) return fallback;
    const n = Number(v);
    if (!Number.isInteger(n) || n < 1) throw new Error(`--${name}: a positive integer, not ${v}`);
    return n;
  };
  const quick = values.quick === true;
  return {
    quick,
    build: values.build === true,
    pods: int(values.pods, quick ? 5 : 50, "pods"),
    rounds: int(values.rounds, quick ? 2 : 5, "rounds"),
    inFlight: int(values["in-flight"], 10, "in-flight"),
    floorReps: quick ? 3 : 10,
    // TODO(#11): the pull part stays out of --quick (the test command's smoke run) until the RemoveImage
    // hang seen once after the exec-load part (no worker alive, a lock never released) is found.
    only: new Set(
      values.only === undefined && quick ? PARTS.filter((p) => p !== "pull") : subset(values.only, PARTS, "only"),
    ),
    runtimes: subset(values.runtimes, ["berth", "containerd"] as const, "runtimes"),
  };
}

const log = (line: string): void => {
  process.stderr.write(`${line}\n`);
};

/** Names chosen not to collide with berth's defaults (berth0, 10.88.0.0/16) or the tests'. */
function networks(dir: string): Record<RuntimeName | "floor", BenchNetwork> {
  const net = (key: string, third: number): BenchNetwork => ({
    name: `bbench-${key}`,
    // Interface names have at most 15 characters.
    bridge: `bbench-${key.slice(0, 1)}0`,
    subnet: `10.237.${third}.0/24`,
    ipamDir: join(dir, key === "floor" ? "floor" : key, "ipam"),
  });
  return { berth: net("berth", 1), containerd: net("containerd", 2), floor: net("floor", 3) };
}

const cgroupRoot = (key: RuntimeName | "floor"): string => `/berth-bench-${key}`;

async function main(): Promise<number> {
  const options = parseOptions(process.argv.slice(2));
  if (options.build) return runBuildBench(log);
  const startedAt = new Date();
  const loadAtStart = loadavg();
  const cleanup = createCleanup(log);
  const { signal } = cleanup;
  try {
    await takeLock(cleanup);
    const dir = await mkdtemp(join(tmpdir(), "berth-bench-"));
    cleanup.defer("remove the bench directory", () => removeTestDir(dir));
    log(`bench: ${options.quick ? "quick" : "full"} run, ${options.pods} pods, ${options.rounds} rounds, in ${dir}`);
    const nets = networks(dir);
    for (const key of ["berth", "containerd", "floor"] as const) {
      // Host-wide leftovers carry the benchmark's names; a previous run killed with SIGKILL may have left them.
      await cleanHostState(nets[key], cgroupRoot(key));
      cleanup.defer(`remove host state of ${key}`, () => cleanHostState(nets[key], cgroupRoot(key)));
    }

    let t = performance.now();
    const images = await prepareImages(dir, cleanup);
    log(`bench: registry ${images.registry.host} ready with fixtures and pause image (${ms(t)})`);

    t = performance.now();
    const want = (name: RuntimeName) => options.runtimes.includes(name);
    const common = (name: RuntimeName) => ({
      dir: join(dir, name),
      registryHostsDir: images.hostsDir,
      network: nets[name],
      cgroupRoot: cgroupRoot(name),
      image: images.busybox,
      cleanup,
    });
    const berth = want("berth") ? await startBerth(common("berth")) : undefined;
    const containerd = want("containerd")
      ? await startContainerd({ ...common("containerd"), sandboxImage: images.pause })
      : undefined;
    const runtimes: Partial<Record<RuntimeName, RuntimeUnderTest>> = {
      ...(berth ? { berth } : {}),
      ...(containerd ? { containerd } : {}),
    };
    const baselines = {} as Record<RuntimeName, HostSnapshot>;
    const idleRssKiB: Partial<Record<RuntimeName, number>> = {};
    for (const rt of Object.values(runtimes)) {
      baselines[rt.name] = await warmUp(rt, images, join(dir, "logs", rt.name), signal);
      idleRssKiB[rt.name] = await rssKiB(rt.pid);
    }
    log(`bench: ${options.runtimes.join(" and ")} serving and warmed up (${ms(t)})`);

    const rounds = options.only.has("pods")
      ? await measureRounds(runtimes, baselines, images, dir, options, cleanup)
      : [];
    const extras = await measureExtras(runtimes, options, dir, signal);
    let pulls: Awaited<ReturnType<typeof runPullRows>> | undefined;
    if (options.only.has("pull")) {
      if (!berth || !containerd) throw new Error("--only pull: needs both runtimes");
      t = performance.now();
      // --quick keeps the smoke run short: the same rows with a 2,000-file and a 32 MiB image.
      const pullImages = await preparePullImages(
        images,
        signal,
        options.quick ? { files: 2000, bytes: 32 * 1024 ** 2 } : {},
      );
      log(`bench: generated pull images pushed (${ms(t)})`);
      pulls = await runPullRows({ berth, containerd }, pullImages, {
        rounds: options.quick ? 1 : options.rounds,
        signal,
        log,
      });
    }
    const rows = [
      ...(rounds.length > 0 ? summarize(rounds, options.pods, options.inFlight) : []),
      ...idleRssRows(idleRssKiB),
      ...extras.rows,
    ];
    const table = pulls ? `${formatTable(rows)}\n\n${pulls.table}` : formatTable(rows);
    const finishedAt = new Date();
    const path = await writeResults(startedAt, {
      startedAt: startedAt.toISOString(),
      finishedAt: finishedAt.toISOString(),
      durationSeconds: (finishedAt.getTime() - startedAt.getTime()) / 1000,
      options: { ...options, only: [...options.only] },
      machine: { ...(await machineInfo()), loadavgAtStart: loadAtStart },
      versions: await versions((await berth?.version()) ?? "not run", (await containerd?.version()) ?? "not run"),
      method: {
        figure: "median over rounds of each round's figure; latencies are client-side per RPC",
        pod: "sandbox (pod network, pod IPC, PID per container, cgroup parent per pod) + busybox `sleep 3600`",
        memory: "daemon VmRSS; per pod the sum of Pss over the pod's infra processes and their runtime ancestors",
        floor: "runc run --detach of an equivalent bundle; CNI bridge+portmap ADD/DEL exec'd directly; blob download",
        cli: "median of 10 runs after a warm-up; peak RSS from GNU time; floor node -e 0",
        execLoad: "10 pods at once, then 100 ExecSync at once; another client calls Version every 20 ms",
      },
      table: rows,
      // Each daemon's RSS after the warm-up pod, before the first round.
      idleRssKiB,
      rounds,
      extras: extras.raw,
      ...(pulls ? { pulls: pulls.rounds } : {}),
    });
    process.stdout.write(`\n${table}\n\nraw results: ${path}\n`);
    return 0;
  } catch (err) {
    if (signal.aborted) {
      log(`bench: ${signal.reason instanceof Error ? signal.reason.message : "interrupted"}`);
      return 130;
    }
    log(`bench: failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
    return 1;
  } finally {
    log("bench: cleaning up");
    await cleanup.run();
  }
}

/** The `cli` and `exec-load` parts, as selected. */
async function measureExtras(
  runtimes: Partial<Record<RuntimeName, RuntimeUnderTest>>,
  options: Options,
  dir: string,
  signal: AbortSignal,
): Promise<{ rows: Row[]; raw: Record<string, unknown> }> {
  const rows: Row[] = [];
  const raw: Record<string, unknown> = {};
  if (options.only.has("cli")) {
    const cli = await cliStartupRows(runtimes, log);
    rows.push(...cli.rows);
    raw.cliStartup = cli.raw;
  }
  if (options.only.has("exec-load")) {
    const load = await execLoadRows(runtimes, { logRoot: (name) => join(dir, "logs", name), signal, log });
    rows.push(...load.rows);
    raw.execLoad = load.raw;
  }
  return { rows, raw };
}

/** The floor and the pod rounds of every runtime started (the part `--only pods` selects). */
async function measureRounds(
  runtimes: Partial<Record<RuntimeName, RuntimeUnderTest>>,
  baselines: Record<RuntimeName, HostSnapshot>,
  images: BenchImages,
  dir: string,
  options: Options,
  cleanup: Cleanup,
): Promise<Round[]> {
  const { signal } = cleanup;
  const nets = networks(dir);
  let t = performance.now();
  const floor = await prepareFloor(join(dir, "floor"), images, nets.floor, {
    cgroupRoot: cgroupRoot("floor"),
    cleanup,
  });
  const rounds: Round[] = [];
  for (let round = 1; round <= options.rounds; round++) {
    const order = (round % 2 === 1 ? ["berth", "containerd"] : ["containerd", "berth"]).filter(
      (name): name is RuntimeName => runtimes[name as RuntimeName] !== undefined,
    );
    t = performance.now();
    const floorResult = await measureFloor(floor, options.floorReps, round, signal);
    log(
      `round ${round} floor: runc run ${floorResult.runcRunMs.toFixed(0)} ms, CNI ADD ${floorResult.cniAddMs.toFixed(0)} ms / DEL ${floorResult.cniDelMs.toFixed(0)} ms, download ${floorResult.downloadMbPerSecond.toFixed(0)} MB/s (${ms(t)})`,
    );
    const result: Round = { round, order, floor: floorResult, runtimes: {} };
    for (const name of order) {
      result.runtimes[name] = await measureRuntime(runtimes[name] as RuntimeUnderTest, {
        options,
        round,
        images,
        baseline: baselines[name],
        logRoot: join(dir, "logs", name),
        signal,
      });
    }
    rounds.push(result);
  }
  return rounds;
}

/** Pulls the pod image (and for containerd its pause image), runs and removes one pod, returns the baseline. */
async function warmUp(
  rt: RuntimeUnderTest,
  images: BenchImages,
  logRoot: string,
  signal: AbortSignal,
): Promise<HostSnapshot> {
  await rt.client.image.pullImage({ image: { image: images.busybox } }, { signal });
  if (rt.name === "containerd") await rt.client.image.pullImage({ image: { image: images.pause } }, { signal });
  const { pod } = await startPod(rt, "warmup", { logRoot, signal });
  await removePod(rt, pod, signal);
  await removeCgroupTree(pod.cgroupParent);
  // Let asynchronous exits (a shim after its last task) finish before the baseline is taken.
  await new Promise((r) => setTimeout(r, 1000));
  return snapshot(rt);
}

async function measureRuntime(
  rt: RuntimeUnderTest,
  o: {
    options: Options;
    round: number;
    images: BenchImages;
    baseline: HostSnapshot;
    logRoot: string;
    signal: AbortSignal;
  },
): Promise<RuntimeRound> {
  const { pods: n, inFlight } = o.options;
  const tag = `r${o.round}`;
  const t = performance.now();
  const seq = await measureSequential(rt, n, { tag: `${tag}-seq`, logRoot: o.logRoot, signal: o.signal });
  const memory = await measureMemory(rt, seq.pods);
  const teardown = await measureTeardown(rt, seq.pods, o.baseline, { inFlight, signal: o.signal });
  const conc = await measureConcurrent(rt, n, { tag: `${tag}-con`, inFlight, logRoot: o.logRoot, signal: o.signal });
  const concurrentTeardown = await measureTeardown(rt, conc.pods, o.baseline, { inFlight, signal: o.signal });
  const pull = await measureColdPull(
    rt,
    { ref: o.images.big, blobs: o.images.bigBlobs, shared: o.images.bigShared },
    o.signal,
  );
  const leaks = teardown.leakCount + concurrentTeardown.leakCount;
  log(
    `round ${o.round} ${rt.name}: pod start p50 ${seq.result.total.p50.toFixed(0)} ms, ` +
      `concurrent ${conc.result.podsPerSecond.toFixed(1)} pods/s, daemon RSS ${(memory.daemonRssKiB / 1024).toFixed(1)} MiB, ` +
      `per pod ${memory.perPodOverheadPssKiB.toFixed(0)} KiB, teardown ${(teardown.wallMs / 1000).toFixed(2)} s, ` +
      `leaks ${leaks}, pull ${pull.mbPerSecond.toFixed(0)} MB/s${pull.cold ? "" : " (WARM)"} (${ms(t)})`,
  );
  if (leaks > 0)
    log(`round ${o.round} ${rt.name}: leaked ${JSON.stringify([teardown.leaks, concurrentTeardown.leaks])}`);
  return { sequential: seq.result, memory, teardown, concurrent: conc.result, concurrentTeardown, pull };
}

async function measureFloor(
  floor: Awaited<ReturnType<typeof prepareFloor>>,
  reps: number,
  round: number,
  signal: AbortSignal,
): Promise<FloorResult> {
  const run: number[] = [];
  const del: number[] = [];
  const add: number[] = [];
  const cniDel: number[] = [];
  for (let i = 0; i < reps; i++) {
    signal.throwIfAborted();
    const r = await floor.runcRun(`floor-${round}-${i}`);
    run.push(r.runMs);
    del.push(r.deleteMs);
    const c = await floor.cniAddDel(`floor-${round}-${i}`);
    add.push(c.addMs);
    cniDel.push(c.delMs);
  }
  const download = await floor.download();
  return {
    runcRunMs: median(run),
    runcDeleteMs: median(del),
    cniAddMs: median(add),
    cniDelMs: median(cniDel),
    downloadSeconds: download.seconds,
    downloadMbPerSecond: download.mbPerSecond,
  };
}

/**
 * One benchmark at a time: two would share bridge names, subnets and cgroup roots, and the start-up clean-up
 * of one would tear down the other's. The lock file holds the PID of the running one.
 */
async function takeLock(cleanup: Cleanup): Promise<void> {
  const path = join(tmpdir(), "berth-bench.lock");
  const holder = Number((await readFile(path, "utf8").catch(() => "")).trim());
  if (holder > 0 && holder !== process.pid) {
    const cmdline = await readFile(`/proc/${holder}/cmdline`, "utf8").catch(() => "");
    if (cmdline.includes("bench")) throw new Error(`another benchmark is running (pid ${holder}, ${path})`);
  }
  await writeFile(path, `${process.pid}\n`);
  cleanup.defer("release the lock", () => rm(path, { force: true }));
}

/** Removes what a network and a cgroup root of the benchmark may have left on the host (idempotent). */
async function cleanHostState(network: BenchNetwork, root: string): Promise<void> {
  const hierarchy = await primaryHierarchy();
  killAll((await procsUnder(hierarchy, root)).map((p) => p.pid));
  await removeCgroupTree(root);
  await removeNatRules(network.name);
  await deleteLink(network.bridge);
}

function ms(since: number): string {
  return `${((performance.now() - since) / 1000).toFixed(1)} s`;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    log(`bench: ${err instanceof Error ? err.message : String(err)}`);
    process.exit(1);
  },
);
