/**
 * The pod worker: one per pod, a sync loop that drives CRI towards the pod's spec, the way the
 * kubelet's syncPod does. Each pass (every `syncPeriodMs`, or at once when a probe verdict
 * changes or a back-off expires) is
 *
 * ```
 * observe (pod-sandbox.ts: the sandbox and its containers)
 *   ─▶ plan (plan.ts computePodActions: pure, from spec + observed + back-off + clock)
 *   ─▶ act, in order: sandbox (create / SandboxChanged), then per container
 *        start   ─ image-puller.ts (imagePullPolicy, pull back-off)
 *                ─ container-starter.ts (create, start, prune old attempts, postStart)
 *        adopt / kill ─ prober.ts (probe workers and their verdicts)
 *        wait    ─ CrashLoopBackOff / ImagePullBackOff reasons, wake when the back-off ends
 *   ─▶ status (status-writer.ts: status.json, the PodView for waiters)
 * ```
 * A worker started for a pod that already has a ready sandbox adopts it and its containers
 * (restart counts from container attempts, probes restarted), so restarting the runner never
 * duplicates a pod. What the worker keeps between passes is small: the sandbox, `initialized`,
 * and per container its attempt, waiting reason, retry time and which exit/back-off it reported.
 *
 * Lifecycle: `start()` → `terminate()` (stop and remove the pod) or `detach()` (stop supervising,
 * leave the pod running). Both wait for the loop to finish its current step.
 */
import type { ContainerStatus, PodSandboxStatus } from "../api/gen/runtime/v1/api_pb.js";
import type { CriClient } from "../client/index.js";
import { Backoff, type BackoffOptions } from "./backoff.js";
import { type Clock, realClock } from "./clock.js";
import { ContainerStarter, type SandboxRef } from "./container-starter.js";
import { type HostInfo, sandboxConfig } from "./convert.js";
import { EventRecorder, type PodEvent } from "./events.js";
import { errorMessage, formatDelay, ImagePuller, type StepResult } from "./image-puller.js";
import type { Layout } from "./layout.js";
import { criTarget, removePod, stopContainer } from "./lifecycle.js";
import { type ContainerAction, computePodActions, newExits, type PodActions, type TrackedContainer } from "./plan.js";
import { adoptSandbox, createSandbox, killSandbox, type ObservedPod, observePod, sandboxReady } from "./pod-sandbox.js";
import { computePodView, type PodView, type RunnerStatus } from "./pod-view.js";
import { Prober } from "./prober.js";
import { StatusWriter } from "./status-writer.js";
import type { ContainerSpec, Pod } from "./types.js";

/** Notifications for the front end (log streaming, event printing). */
export interface PodWorkerHooks {
  onEvent?(pod: Pod, event: PodEvent): void;
  /** A container attempt started (or was adopted running, with `adopted`). `logPath` is absolute. */
  onContainerStarted?(
    pod: Pod,
    c: { name: string; id: string; logPath: string; init: boolean; restartCount: number; adopted: boolean },
  ): void;
  /** A container attempt was seen exited. */
  onContainerExited?(pod: Pod, c: { name: string; id: string; exitCode: number }): void;
  /** A sync pass failed (it is retried on the next pass). */
  onError?(pod: Pod, err: unknown): void;
}

/** Options of {@link PodWorker}. */
export interface PodWorkerOptions {
  client: CriClient;
  layout: Layout;
  host: HostInfo;
  /** `berth.io/owner` label value: `run` or `kubelet-<dir hash>`. */
  owner: string;
  clock?: Clock;
  /** A back-off shared by several workers, or options for the worker's own. */
  backoff?: Backoff | BackoffOptions;
  /** Time between sync passes (default 1000 ms: how soon an exit is noticed). */
  syncPeriodMs?: number;
  /** Deadline of one PullImage (default 10 min). */
  pullTimeoutMs?: number;
  hooks?: PodWorkerHooks;
}

/** What the worker keeps per container name across passes (the prober keeps the attempt's ID and verdicts). */
interface ContainerTrack {
  attempt: number;
  waiting?: { reason: string; message: string } | undefined;
  /** The exited ID whose exit was already reported. */
  exitNoted?: string;
  /** A failed pull or create: the next start waits until then (ms). */
  retryAt?: number | undefined;
  /** The exited ID a BackOff event was recorded for. */
  backoffNoted?: string;
}

const EMPTY: ObservedPod = { status: undefined, containers: [] };
const ns2ms = (ns: bigint) => Number(ns / 1_000_000n);

export class PodWorker {
  readonly pod: Pod;
  readonly events: EventRecorder;
  private readonly client: CriClient;
  private readonly clock: Clock;
  private readonly backoff: Backoff;
  private readonly syncPeriodMs: number;
  private readonly puller: ImagePuller;
  private readonly starter: ContainerStarter;
  private readonly prober: Prober;
  private readonly status: StatusWriter;
  private readonly tracks = new Map<string, ContainerTrack>();
  private readonly abort = new AbortController();
  private wake_: AbortController | undefined;
  private loop: Promise<void> | undefined;
  private nextWakeMs = 0;
  private sandbox: SandboxRef | undefined;
  private firstPass = true;
  private initialized = false;
  private terminating = false;

  constructor(
    pod: Pod,
    private readonly o: PodWorkerOptions,
  ) {
    this.pod = pod;
    this.client = o.client;
    this.clock = o.clock ?? realClock;
    this.backoff = o.backoff instanceof Backoff ? o.backoff : new Backoff(this.clock, o.backoff ?? {});
    this.syncPeriodMs = o.syncPeriodMs ?? 1000;
    this.events = new EventRecorder(o.layout.eventsFile(pod.metadata.uid), this.clock, {
      onEvent: (e) => o.hooks?.onEvent?.(pod, e),
    });
    const { client, clock, backoff, events } = this;
    this.puller = new ImagePuller({ client, clock, backoff, events, pullTimeoutMs: o.pullTimeoutMs ?? 600_000 });
    this.starter = new ContainerStarter({
      client,
      clock,
      backoff,
      events,
      pod,
      layout: o.layout,
      host: o.host,
      owner: o.owner,
    });
    this.prober = new Prober({
      clock,
      events,
      gracePeriodSeconds: pod.spec.terminationGracePeriodSeconds,
      target: (id, spec) => criTarget(client, id, this.probeHost(), spec),
      onChange: () => this.wake(),
    });
    this.status = new StatusWriter({
      layout: o.layout,
      uid: pod.metadata.uid,
      onError: (err) => o.hooks?.onError?.(pod, err),
    });
  }

  /** Starts the sync loop (idempotent). */
  start(): void {
    this.loop ??= this.run();
  }

  /** The pod as of the last sync pass (undefined before the first). */
  get view(): PodView | undefined {
    return this.status.view;
  }

  /** Runs a sync pass now instead of at the end of the period. */
  wake(): void {
    this.wake_?.abort();
  }

  /** Resolves with the first view (from now on) that satisfies `predicate`. */
  waitFor(predicate: (v: PodView) => boolean, signal?: AbortSignal): Promise<PodView> {
    return this.status.waitFor(predicate, signal);
  }

  /** Stops supervising and leaves the pod as it is (runner shutdown, `berth run -d`'s parent). */
  async detach(): Promise<void> {
    this.abort.abort();
    this.wake();
    await this.loop;
    this.prober.close();
    await this.status.close();
    await this.events.flush();
  }

  /** Stops the loop, then stops (preStop hooks, grace period) and removes the pod and its directories. */
  async terminate(options: { gracePeriodSeconds?: number } = {}): Promise<void> {
    this.terminating = true;
    this.status.write(this.runnerStatus());
    await this.detach();
    const { killPod } = computePodActions({
      pod: this.pod,
      sandbox: this.sandbox ? { ready: true, attempt: this.sandbox.attempt } : undefined,
      containers: [],
      initialized: this.initialized,
      tracked: this.tracked(),
      now: this.clock.now(),
      backoff: this.backoff,
      deleting: { gracePeriodSeconds: options.gracePeriodSeconds },
    });
    await removePod(this.pod.metadata.uid, {
      client: this.client,
      clock: this.clock,
      layout: this.o.layout,
      pod: this.pod,
      events: this.events,
      hostIP: this.o.host.hostIP,
      ...(killPod ? { gracePeriodSeconds: killPod.gracePeriodSeconds } : {}),
    });
    this.backoff.forgetPrefix(`${this.pod.metadata.uid}/`);
  }

  private async run(): Promise<void> {
    const signal = this.abort.signal;
    let errors = 0;
    let lastError = "";
    while (!signal.aborted) {
      this.nextWakeMs = this.syncPeriodMs;
      try {
        await this.sync();
        errors = 0;
        lastError = "";
      } catch (err) {
        if (signal.aborted) break;
        // Retry soon (the daemon may be restarting), then less and less often; report each new error once.
        errors++;
        this.nextWakeMs = Math.min(this.syncPeriodMs * 2 ** (errors - 1), 30_000);
        const message = errorMessage(err);
        if (message !== lastError) this.o.hooks?.onError?.(this.pod, err);
        lastError = message;
      }
      // One controller per wait (detach() aborts the loop's signal, then wakes): no signal is
      // derived from the long-lived one, so a months-long loop accumulates no listeners.
      this.wake_ = new AbortController();
      if (signal.aborted) break;
      // An abort here is the wake-up signal, not an error.
      await this.clock.sleep(Math.max(10, this.nextWakeMs), this.wake_.signal).catch(() => {});
    }
  }

  /** One pass: observe, plan, act, publish. */
  private async sync(): Promise<void> {
    if (this.firstPass) {
      this.firstPass = false;
      this.sandbox = await adoptSandbox(this.client, this.pod.metadata.uid);
      if (this.sandbox) await this.events.load();
    }
    let observed = this.sandbox ? await observePod(this.client, this.sandbox.id) : EMPTY;
    const plan = computePodActions({
      pod: this.pod,
      sandbox: this.sandbox ? { ready: sandboxReady(observed), attempt: this.sandbox.attempt } : undefined,
      containers: observed.containers,
      initialized: this.initialized,
      tracked: this.tracked(),
      now: this.clock.now(),
      backoff: this.backoff,
    });
    if (plan.sandbox.kind === "keep") this.noteExits(observed.containers);
    else observed = { status: await this.replaceSandbox(plan.sandbox), containers: [] };
    this.initialized = plan.initialized;
    for (const action of plan.containers) {
      if (this.abort.signal.aborted) return;
      await this.act(action);
    }
    // Refresh after this pass's changes, for an accurate view.
    const after = this.sandbox ? await observePod(this.client, this.sandbox.id) : EMPTY;
    this.noteExits(after.containers);
    this.publish(after.status ?? observed.status, after.containers, plan.initFailed);
  }

  /** The planner's view of the containers: what this worker keeps plus the prober's verdicts. */
  private tracked(): Map<string, TrackedContainer> {
    const m = new Map<string, TrackedContainer>();
    for (const [name, t] of this.tracks) {
      const v = this.prober.verdict(name);
      m.set(name, { ...t, id: v.id, kill: v.kill });
    }
    return m;
  }

  private track(name: string): ContainerTrack {
    let t = this.tracks.get(name);
    if (!t) {
      t = { attempt: -1 };
      this.tracks.set(name, t);
    }
    return t;
  }

  private wakeWithin(ms: number): void {
    this.nextWakeMs = Math.min(this.nextWakeMs, Math.max(10, ms));
  }

  /** Creates the pod's first sandbox, or replaces a dead one (SandboxChanged: every container starts over). */
  private async replaceSandbox(s: Exclude<PodActions["sandbox"], { kind: "keep" }>): Promise<PodSandboxStatus> {
    const old = this.sandbox;
    if (s.kind === "recreate" && old) {
      this.events.record("Normal", "SandboxChanged", "Pod sandbox changed, it will be killed and re-created.");
      for (const name of this.tracks.keys()) this.prober.forget(name);
      await killSandbox(this.client, old.id);
    }
    this.sandbox = undefined;
    const { layout, host, owner } = this.o;
    return createSandbox(this.client, this.pod, {
      attempt: s.attempt,
      layout,
      host,
      owner,
      events: this.events,
      created: (sandbox) => {
        this.sandbox = sandbox;
      },
    });
  }

  private async act(a: ContainerAction): Promise<void> {
    const name = a.spec.name;
    const t = this.track(name);
    const object = objectOf(name, a.kind === "kill" ? false : a.init);
    switch (a.kind) {
      case "start":
        if (a.restartKey) this.backoff.restarted(a.restartKey);
        // Best effort: an old container left behind is removed again after the next start.
        if (a.removeId) await this.client.runtime.removeContainer({ containerId: a.removeId }).catch(() => {});
        return this.startContainer(a.spec, a.init, a.attempt);
      case "adopt": {
        const c = a.status;
        this.prober.track(a.spec, c.id);
        if (!a.init) this.prober.probe(a.spec, c.startedAt > 0n ? ns2ms(c.startedAt) : this.clock.now());
        t.attempt = c.metadata?.attempt ?? 0;
        t.waiting = undefined;
        this.o.hooks?.onContainerStarted?.(this.pod, {
          name,
          id: c.id,
          logPath: c.logPath,
          init: a.init,
          restartCount: t.attempt,
          adopted: true,
        });
        return;
      }
      case "kill":
        this.prober.killed(name);
        this.prober.stop(name);
        await stopContainer(a.id, name, {
          client: this.client,
          clock: this.clock,
          gracePeriodSeconds: a.gracePeriodSeconds,
          spec: a.spec,
          host: this.probeHost(),
          events: this.events,
          message: a.message,
        });
        this.wakeWithin(0);
        return;
      case "crashLoopBackOff": {
        if (t.backoffNoted !== a.id) {
          t.backoffNoted = a.id;
          const { name: podName, namespace, uid } = this.pod.metadata;
          t.waiting = {
            reason: "CrashLoopBackOff",
            message: `back-off ${formatDelay(a.delayMs)} restarting failed container=${name} pod=${podName}_${namespace}(${uid})`,
          };
          this.events.record(
            "Warning",
            "BackOff",
            `Back-off restarting failed container ${name} in pod ${podName}_${namespace}(${uid})`,
            object,
          );
        }
        this.wakeWithin(a.remainingMs);
        return;
      }
      case "retryLater":
        if (t.waiting?.reason === "ErrImagePull") {
          t.waiting = { reason: "ImagePullBackOff", message: `Back-off pulling image "${a.spec.image}"` };
          this.events.record("Normal", "BackOff", `Back-off pulling image "${a.spec.image}"`, object);
        }
        this.wakeWithin(a.remainingMs);
        return;
    }
  }

  /** Pull (per policy), create and start attempt `attempt` of a container; then prune, postStart, probes. */
  private async startContainer(ctr: ContainerSpec, init: boolean, attempt: number): Promise<void> {
    const sandbox = this.sandbox;
    if (!sandbox) return;
    const t = this.track(ctr.name);
    const object = objectOf(ctr.name, init);
    const { layout, owner, host } = this.o;
    const sbConfig = () => sandboxConfig(this.pod, { layout, attempt: sandbox.attempt, owner, host });
    const pulled = await this.puller.ensure(this.pod, ctr, {
      object,
      sandboxConfig: sbConfig,
      signal: this.abort.signal,
    });
    if (!pulled.ok) return this.notStarted(t, pulled);
    const r = await this.starter.start(ctr, { init, attempt, sandbox, sandboxConfig: sbConfig(), object });
    if (!r.ok || !r.started) return this.notStarted(t, r);
    const { id, logPath } = r.started;
    t.retryAt = undefined;
    t.waiting = undefined;
    t.attempt = attempt;
    this.prober.track(ctr, id);
    this.o.hooks?.onContainerStarted?.(this.pod, {
      name: ctr.name,
      id,
      logPath,
      init,
      restartCount: attempt,
      adopted: false,
    });
    const hookOk = await this.starter.afterStart(ctr, {
      id,
      attempt,
      sandboxId: sandbox.id,
      probeHost: this.probeHost(),
      object,
    });
    if (hookOk && !init) this.prober.probe(ctr, this.clock.now());
  }

  /** A pull or create that failed: its waiting reason, and a wake-up when it may be retried. */
  private notStarted(t: ContainerTrack, r: StepResult): void {
    if (r.ok) return;
    if (r.waiting) t.waiting = r.waiting;
    if (r.retryInMs !== undefined) {
      t.retryAt = this.clock.now() + r.retryInMs;
      this.wakeWithin(r.retryInMs);
    }
  }

  /** Stops probes of attempts that exited and reports the exits once. */
  private noteExits(containers: readonly ContainerStatus[]): void {
    for (const e of newExits(containers, this.tracked())) {
      this.track(e.name).exitNoted = e.id;
      if (this.prober.verdict(e.name).id === e.id) this.prober.stop(e.name);
      this.o.hooks?.onContainerExited?.(this.pod, e);
    }
  }

  private probeHost(): string {
    return this.pod.spec.hostNetwork ? "127.0.0.1" : this.sandbox?.ip || "127.0.0.1";
  }

  private runnerStatus(): RunnerStatus {
    const containers: RunnerStatus["containers"] = {};
    for (const [name, t] of this.tracks) {
      const { id, ready, started } = this.prober.verdict(name);
      containers[name] = { id, ready, started, ...(t.waiting ? { waiting: t.waiting } : {}) };
    }
    return {
      version: 1,
      pid: process.pid,
      updatedAt: this.clock.now(),
      ...(this.terminating ? { terminating: true } : {}),
      containers,
    };
  }

  private publish(status: PodSandboxStatus | undefined, containers: ContainerStatus[], initFailed: boolean): void {
    if (!status) return;
    const runner = this.runnerStatus();
    const view = computePodView({ sandbox: status, containers, runner, runnerAlive: true, hostIP: this.o.host.hostIP });
    if (initFailed && view.phase !== "Failed") view.phase = "Failed";
    this.status.write(runner);
    this.status.publish(view);
  }
}

function objectOf(name: string, init: boolean): string {
  return `spec.${init ? "initContainers" : "containers"}{${name}}`;
}
