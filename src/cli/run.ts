/**
 * `berth run FILE [-d]` and `berth down FILE`.
 *
 * Foreground `run` keeps the manifest's pods in this process: it streams every container's log
 * prefixed `[pod/container]`, prints the pods' events to stderr, and on Ctrl-C or SIGTERM stops
 * and removes the pods (preStop hooks, grace period; a second signal exits at once and leaves
 * them). When every pod has finished (restartPolicy OnFailure/Never), it removes them and exits
 * 0 if all succeeded, 1 otherwise.
 *
 * `run -d` starts the same runner as a detached process (`run --supervise`, output in
 * `<state>/runners/<hash>.log`) and returns once every pod is running with all containers ready
 * (or has completed). The detached runner keeps applying restart policies and probes; when all
 * its pods have finished it exits and leaves them for `berth get`/`describe`.
 *
 * `down` asks the manifest's runner to stop (SIGTERM: it removes its pods gracefully), then
 * removes whatever is left itself, reading grace periods and preStop hooks from the pods'
 * sandbox annotations — so it works without the file, and without a runner.
 */
import { spawn } from "node:child_process";
import { closeSync, openSync } from "node:fs";
import { mkdir, readFile, rm } from "node:fs/promises";
import { dirname, resolve } from "node:path";
import { setTimeout as delay } from "node:timers/promises";
import { type Command, Option } from "commander";
import type { CriClient } from "../client/index.js";
import {
  claimRunner,
  followLog,
  LABELS,
  type Layout,
  listPodViews,
  loadManifest,
  ManifestError,
  manifestHash,
  type ParsedManifest,
  type Pod,
  type PodEvent,
  PodSet,
  type PodView,
  type PodWorkerHooks,
  pidAlive,
  readHostInfo,
  readRunner,
  realClock,
  releaseRunner,
  removePod,
} from "../kubelet/index.js";
import { type GlobalOptions, withClient } from "./context.js";
import {
  backoffOf,
  colorize,
  err,
  type LayoutOpts,
  layoutOf,
  out,
  positive,
  type TimingOpts,
  withLayoutOptions,
  withTimingOptions,
} from "./pod-runner.js";

interface RunOpts extends LayoutOpts, TimingOpts {
  detach?: boolean;
  supervise?: boolean;
  waitTimeout: string;
  events: boolean;
}

export function registerRun(program: Command): void {
  withTimingOptions(
    withLayoutOptions(
      program
        .command("run")
        .description("run the pods of a Kubernetes Pod manifest (streams logs; Ctrl-C stops and removes them)")
        .argument("<manifest>", "a v1 Pod manifest, or a multi-document YAML of Pods")
        .option("-d, --detach", "run in the background and return once the pods are running and ready")
        .addOption(
          new Option("--wait-timeout <seconds>", "with -d: how long to wait for the pods to become ready").default(
            "300",
          ),
        )
        .option("--no-events", "do not print the pods' events to stderr")
        .addOption(new Option("--supervise", "internal: the detached runner of run -d").hideHelp()),
    ),
  ).action(async (file: string, opts: RunOpts, cmd: Command) => {
    const manifest = await loadManifest(file).catch((e: unknown) => {
      // The warnings of a manifest that does not parse still help fix it.
      if (e instanceof ManifestError) for (const w of e.warnings) err(`warning: ${w}`);
      throw e;
    });
    for (const w of manifest.warnings) err(`warning: ${w}`);
    await withClient(cmd, (client, g) =>
      opts.detach && !opts.supervise
        ? runDetached(client, g, { file, manifest, opts })
        : runForeground(client, manifest, opts),
    );
  });

  withLayoutOptions(
    program
      .command("down")
      .description("stop and remove the pods of a manifest (preStop hooks and grace periods first)")
      .argument("<manifest>", "the manifest given to berth run (it need not exist any more)")
      .option("--grace-period <seconds>", "override the pods' terminationGracePeriodSeconds")
      .option("--force", "no grace period: kill at once"),
  ).action(async (file: string, opts: LayoutOpts & { gracePeriod?: string; force?: boolean }, cmd: Command) => {
    await withClient(cmd, (client) =>
      down(
        client,
        file,
        layoutOf(opts),
        opts.force ? 0 : opts.gracePeriod !== undefined ? Number(opts.gracePeriod) : undefined,
      ),
    );
  });
}

async function runForeground(client: CriClient, manifest: ParsedManifest, opts: RunOpts): Promise<void> {
  const layout = layoutOf(opts);
  const supervise = opts.supervise === true;
  const host = await readHostInfo();
  const tty = process.stdout.isTTY === true;
  const streams = new LogStreams(tty);
  const exitWaiters = new Map<string, () => void>();
  const hooks: PodWorkerHooks = {
    ...(opts.events ? { onEvent: (pod: Pod, e: PodEvent) => printEvent(pod, e, process.stderr.isTTY === true) } : {}),
    onError: (pod, e) => err(`[pod/${pod.metadata.name}] sync: ${(e as Error).message}`),
    ...(supervise
      ? {}
      : {
          onContainerStarted: (pod: Pod, c: { name: string; id: string; logPath: string; adopted: boolean }) => {
            const exited = new Promise<void>((r) => exitWaiters.set(c.id, r));
            streams.add(`${pod.metadata.name}/${c.name}`, c.logPath, {
              fromEnd: c.adopted,
              until: exited.then(() => delay(300)),
            });
          },
          onContainerExited: (_pod: Pod, c: { id: string }) => exitWaiters.get(c.id)?.(),
        }),
  };
  let set: PodSet | undefined;
  let claimed = false;
  try {
    await claimRunner(layout, manifest.manifestHash, {
      pid: process.pid,
      manifest: manifest.path,
      mode: supervise ? "detached" : "foreground",
      startedAt: Date.now(),
    });
    claimed = true;
    set = new PodSet(manifest, {
      client,
      layout,
      host,
      owner: "run",
      backoff: backoffOf(opts),
      syncPeriodMs: positive(opts.syncPeriodMs, "--sync-period-ms"),
      hooks,
    });
    for (const name of await set.reconcile())
      err(`pod/${name.split("/")[1]}: removed the earlier version of this manifest's pod`);
    set.start();
    for (const p of manifest.pods)
      err(`pod/${p.metadata.name}: starting${supervise ? "" : " (Ctrl-C stops and removes it)"}`);
    const outcome = await untilDoneOrSignal(set);
    if (outcome.kind === "signal") {
      err(`${outcome.signal}: stopping ${podList(manifest)} (a second signal exits at once and leaves them running)`);
      await set.terminate();
      await streams.close();
      for (const p of manifest.pods) err(`pod/${p.metadata.name}: removed`);
      return;
    }
    // Every pod has finished.
    await streams.close();
    for (const v of outcome.views)
      err(`pod/${v.name}: ${v.phase}${v.phase === "Failed" ? ` (${failureSummary(v)})` : ""}`);
    if (supervise) {
      await set.detach();
    } else {
      await set.terminate();
      for (const p of manifest.pods) err(`pod/${p.metadata.name}: removed`);
    }
    if (outcome.views.some((v) => v.phase !== "Succeeded")) process.exitCode = 1;
  } catch (e) {
    // Stop supervising so the process can exit; pods that exist stay for `berth down` (an error
    // before start() — a name conflict, a runner already there — has created nothing).
    await set?.detach().catch(() => {});
    throw e;
  } finally {
    await streams.close();
    // The claim file is also released by the next run that finds its process gone.
    if (claimed) await releaseRunner(layout, manifest.manifestHash).catch(() => {});
  }
}

type Outcome = { kind: "signal"; signal: string } | { kind: "done"; views: PodView[] };

/** Resolves on the first SIGINT/SIGTERM, or when every pod has finished. A second signal exits now. */
function untilDoneOrSignal(set: PodSet): Promise<Outcome> {
  return new Promise((resolve) => {
    let signalled = false;
    const onSignal = (signal: NodeJS.Signals) => {
      if (signalled) {
        err(`${signal}: exiting now; the pods keep running (berth down ${set.manifest.path} removes them)`);
        process.exit(130);
      }
      signalled = true;
      resolve({ kind: "signal", signal });
    };
    process.on("SIGINT", onSignal);
    process.on("SIGTERM", onSignal);
    process.on("SIGHUP", () => {});
    const finished = (v: PodView) => v.phase === "Succeeded" || v.phase === "Failed";
    set.waitAll(finished).then((views) => {
      if (!signalled) resolve({ kind: "done", views });
    });
  });
}

function failureSummary(v: PodView): string {
  const failed = [...v.initContainers, ...v.containers].find((c) => {
    const t = c.state.kind === "terminated" ? c.state : c.lastState;
    return t !== undefined && t.exitCode !== 0;
  });
  if (!failed) return v.status;
  const t = failed.state.kind === "terminated" ? failed.state : failed.lastState;
  return `container ${failed.name} exited with ${t?.exitCode}`;
}

function podList(m: ParsedManifest): string {
  return m.pods.map((p) => `pod/${p.metadata.name}`).join(", ");
}

/** Prints an event to stderr as `[pod/NAME] Reason: message`. */
function printEvent(pod: Pod, e: PodEvent, tty: boolean): void {
  const prefix = colorize(pod.metadata.name, `[pod/${pod.metadata.name}]`, tty);
  err(
    `${prefix} ${e.type === "Warning" ? "Warning " : ""}${e.reason}: ${e.message}${e.count > 1 ? ` (x${e.count})` : ""}`,
  );
}

/** Streams several container logs to stdout, each line prefixed `[pod/container]`. */
class LogStreams {
  private readonly tasks = new Set<Promise<void>>();
  private readonly abort = new AbortController();

  constructor(private readonly tty: boolean) {}

  add(name: string, path: string, o: { fromEnd: boolean; until: Promise<unknown> }): void {
    const prefix = colorize(name.split("/")[0] ?? name, `[${name}]`, this.tty);
    const task = (async () => {
      for await (const line of followLog(path, { signal: this.abort.signal, fromEnd: o.fromEnd, until: o.until })) {
        (line.stream === "stderr" ? process.stderr : process.stdout).write(`${prefix} ${line.content}\n`);
      }
      // A read error on one container's log ends that one stream; the run and the other streams go on.
    })().catch(() => {});
    this.tasks.add(task);
    void task.finally(() => this.tasks.delete(task));
  }

  /** Gives running streams a moment to drain, then stops them. */
  async close(): Promise<void> {
    const pending = Promise.all([...this.tasks]);
    await Promise.race([pending, delay(500)]);
    this.abort.abort();
    await pending;
  }
}

/** `run -d`: start a detached runner, wait for the pods to be running and ready. */
async function runDetached(
  client: CriClient,
  g: GlobalOptions,
  { file, manifest, opts }: { file: string; manifest: ParsedManifest; opts: RunOpts },
): Promise<void> {
  const layout = layoutOf(opts);
  const existing = await readRunner(layout, manifest.manifestHash);
  if (existing) {
    throw new Error(
      `the pods of ${existing.manifest} are already kept by berth run (pid ${existing.pid}): use berth down ${file} first`,
    );
  }
  const logFile = layout.runnerLog(manifest.manifestHash);
  await mkdir(dirname(logFile), { recursive: true });
  const fd = openSync(logFile, "a");
  const argv = [
    ...process.execArgv,
    process.argv[1] ?? "",
    "--socket",
    g.socket,
    "--timeout",
    String(g.timeout),
    "run",
    manifest.path,
    "--supervise",
    "--state-dir",
    layout.stateDir,
    "--pod-log-dir",
    layout.logRoot,
    "--sync-period-ms",
    opts.syncPeriodMs,
    "--backoff-initial-ms",
    opts.backoffInitialMs,
    "--backoff-max-ms",
    opts.backoffMaxMs,
  ];
  const child = spawn(process.execPath, argv, { detached: true, stdio: ["ignore", fd, fd] });
  closeSync(fd);
  let exited: number | undefined;
  child.once("exit", (code, signal) => {
    exited = code ?? (signal ? 128 : 1);
  });
  child.unref();
  const deadline = Date.now() + positive(opts.waitTimeout, "--wait-timeout") * 1000;
  const uids = new Set(manifest.pods.map((p) => p.metadata.uid));
  const host = await readHostInfo();
  for (;;) {
    const views = (
      await listPodViews(client, { hostIP: host.hostIP, labels: { [LABELS.manifest]: manifest.manifestHash } })
    ).filter((v) => uids.has(v.uid));
    const failed = views.find((v) => v.phase === "Failed");
    if (failed)
      throw new Error(
        `pod/${failed.name} failed: ${failureSummary(failed)} (berth describe pod ${failed.name} -n ${failed.namespace})`,
      );
    const done =
      views.length === uids.size &&
      views.every((v) => v.phase === "Succeeded" || (v.phase === "Running" && v.conditions.ready));
    if (done) {
      for (const v of views)
        out(
          `pod/${v.name} ${v.phase === "Succeeded" ? "completed" : `running (ready ${v.readyCount}/${v.total}${v.ip ? `, IP ${v.ip}` : ""})`}\n`,
        );
      return;
    }
    if (exited !== undefined) {
      const log = await readFile(logFile, "utf8").catch(() => "");
      throw new Error(`the detached runner exited with ${exited}:\n${log.trim().split("\n").slice(-10).join("\n")}`);
    }
    if (Date.now() > deadline) {
      const status =
        views.map((v) => `pod/${v.name} ${v.status} ${v.readyCount}/${v.total}`).join(", ") || "no pods yet";
      throw new Error(
        `timed out waiting for the pods to be ready (${status}); they keep starting in the background: berth get pods, berth down ${file}`,
      );
    }
    await delay(250);
  }
}

/** `down`: the runner stops its pods; whatever is left is removed here. */
export async function down(
  client: CriClient,
  file: string,
  layout: Layout,
  gracePeriodSeconds: number | undefined,
): Promise<void> {
  const path = resolve(file);
  const hash = manifestHash(path);
  const host = await readHostInfo();
  const before = await listPodViews(client, { hostIP: host.hostIP, labels: { [LABELS.manifest]: hash } });
  const runner = await readRunner(layout, hash);
  if (runner) {
    if (gracePeriodSeconds === 0) {
      process.kill(runner.pid, "SIGKILL");
    } else {
      process.kill(runner.pid, "SIGTERM");
      const maxGrace = Math.max(30, ...before.map((v) => v.pod?.spec.terminationGracePeriodSeconds ?? 30));
      const deadline = Date.now() + (maxGrace + 60) * 1000;
      while (pidAlive(runner.pid) && Date.now() < deadline) await delay(100);
      if (pidAlive(runner.pid)) process.kill(runner.pid, "SIGKILL");
    }
    while (pidAlive(runner.pid)) await delay(50);
    await releaseStale(layout, hash);
  }
  const left = await listPodViews(client, { hostIP: host.hostIP, labels: { [LABELS.manifest]: hash } });
  for (const v of left) {
    if (v.owner.startsWith("kubelet-"))
      err(
        `warning: pod/${v.name} is a static pod of berth kubelet: it comes back unless ${file} leaves the manifests directory`,
      );
  }
  await Promise.all(
    left.map((v) =>
      removePod(v.uid, {
        client,
        clock: realClock,
        layout,
        hostIP: host.hostIP,
        ...(gracePeriodSeconds !== undefined ? { gracePeriodSeconds } : {}),
      }),
    ),
  );
  const names = [...new Set(before.map((v) => `${v.namespace}/${v.name}`))];
  if (names.length === 0) {
    err(`no pods of ${file} are running`);
    return;
  }
  for (const n of names) out(`pod "${n.split("/")[1]}" deleted\n`);
}

/** The runner record of a process that is gone (it was killed before it could remove it). */
async function releaseStale(layout: Layout, hash: string): Promise<void> {
  await rm(layout.runnerFile(hash), { force: true });
}
