/**
 * The pod worker: one per pod, a sync loop that drives CRI towards the pod's spec, the way the
 * kubelet's syncPod does. Each pass (every `syncPeriodMs`, or at once when a probe result
 * changes or a back-off expires):
 *
 * ```
 * sandbox ready? ──no──▶ (first pass) adopt a ready sandbox with this pod's uid label
 *      │                 (later) SandboxChanged: kill it, recreate with attempt+1, rerun init
 *      ▼
 * init containers, in order: absent → pull + create + start; running → wait;
 *      exited 0 → next; failed → restart with back-off (restartPolicy Never: pod Failed)
 *      ▼
 * containers: absent → start; running → kill if liveness/startup failed;
 *      exited → restart per restartPolicy with back-off (10 s doubling to 5 min, reset after 10 min)
 *      ▼
 * persist readiness and waiting reasons (status.json); notify watchers
 * ```
 * Probes run in their own workers (probe.ts) per running container and feed back into the loop.
 * A worker started for a pod that already has a ready sandbox adopts it and its containers
 * (restart counts from container attempts, probes restarted), so restarting the runner never
 * duplicates a pod.
 *
 * Lifecycle: `start()` → `terminate()` (stop and remove the pod) or `detach()` (stop supervising,
 * leave the pod running). Both wait for the loop to finish its current step.
 */
import { mkdir } from "node:fs/promises";
import {
  ContainerState,
  type ContainerStatus,
  PodSandboxState,
  type PodSandboxStatus,
} from "../api/gen/runtime/v1/api_pb.js";
import type { CriClient } from "../client/index.js";
import { writeFileAtomic } from "../util/index.js";
import { Backoff, type BackoffOptions } from "./backoff.js";
import { type Clock, realClock } from "./clock.js";
import { containerConfig, type HostInfo, sandboxConfig } from "./convert.js";
import { EventRecorder, type PodEvent } from "./events.js";
import type { Layout } from "./layout.js";
import { criTarget, isNotFound, listStatuses, removePod, runHandler, stopContainer } from "./lifecycle.js";
import { computePodView, type PodView, type RunnerStatus } from "./pod-view.js";
import { type ProbeResult, ProbeWorker, runProbe } from "./probe.js";
import { type ContainerSpec, LABELS, type Pod, type ProbeKind } from "./types.js";
import { preparePodVolumes, prepareSubPaths, prepareTerminationMessageFile } from "./volumes.js";

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

/** What the worker tracks per container name (across attempts). */
interface ContainerTrack {
  /** CRI ID of the attempt probes and verdicts are about. */
  id: string;
  attempt: number;
  probes: ProbeWorker[];
  ready: boolean;
  started: boolean;
  /** Set by a failed liveness/startup probe: kill the attempt with this message. */
  kill?: { message: string; gracePeriodSeconds: number } | undefined;
  waiting?: { reason: string; message: string } | undefined;
  /** The ID whose exit was already reported. */
  exitNoted?: string;
  /** Next start must wait for this (pull or create failures), ms. */
  retryAt?: number | undefined;
  /** The exited ID a BackOff event was recorded for. */
  backoffNoted?: string;
}

const ns2ms = (ns: bigint) => Number(ns / 1_000_000n);

export class PodWorker {
  readonly pod: Pod;
  readonly events: EventRecorder;
  private readonly client: CriClient;
  private readonly clock: Clock;
  private readonly backoff: Backoff;
  private readonly syncPeriodMs: number;
  private readonly tracks = new Map<string, ContainerTrack>();
  private readonly abort = new AbortController();
  private wake_: AbortController | undefined;
  private loop: Promise<void> | undefined;
  private sandbox: { id: string; attempt: number; ip: string } | undefined;
  private firstPass = true;
  private initialized = false;
  private nextWakeMs = 0;
  private terminating = false;
  private lastStatusJson = "";
  private statusWrites: Promise<void> = Promise.resolve();
  private closed = false;
  private view_: PodView | undefined;
  private readonly watchers = new Set<(v: PodView) => void>();

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
  }

  /** Starts the sync loop (idempotent). */
  start(): void {
    this.loop ??= this.run();
  }

  /** The pod as of the last sync pass (undefined before the first). */
  get view(): PodView | undefined {
    return this.view_;
  }

  /** Runs a sync pass now instead of at the end of the period. */
  wake(): void {
    this.wake_?.abort();
  }

  /** Resolves with the first view (from now on) that satisfies `predicate`. */
  waitFor(predicate: (v: PodView) => boolean, signal?: AbortSignal): Promise<PodView> {
    if (this.view_ && predicate(this.view_)) return Promise.resolve(this.view_);
    return new Promise((resolve, reject) => {
      const watcher = (v: PodView) => {
        if (!predicate(v)) return;
        this.watchers.delete(watcher);
        resolve(v);
      };
      this.watchers.add(watcher);
      signal?.addEventListener(
        "abort",
        () => {
          this.watchers.delete(watcher);
          reject(signal.reason);
        },
        { once: true },
      );
    });
  }

  /** Stops supervising and leaves the pod as it is (runner shutdown, `berth run -d`'s parent). */
  async detach(): Promise<void> {
    this.abort.abort();
    this.wake();
    await this.loop;
    for (const t of this.tracks.values()) this.stopProbes(t);
    this.closed = true;
    await this.statusWrites;
    await this.events.flush();
  }

  /** Stops the loop, then stops (preStop hooks, grace period) and removes the pod and its directories. */
  async terminate(options: { gracePeriodSeconds?: number } = {}): Promise<void> {
    this.terminating = true;
    this.queueStatusWrite();
    await this.detach();
    await removePod(this.pod.metadata.uid, {
      client: this.client,
      clock: this.clock,
      layout: this.o.layout,
      pod: this.pod,
      events: this.events,
      hostIP: this.o.host.hostIP,
      ...(options.gracePeriodSeconds !== undefined ? { gracePeriodSeconds: options.gracePeriodSeconds } : {}),
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

  private get uid(): string {
    return this.pod.metadata.uid;
  }

  private wakeWithin(ms: number): void {
    this.nextWakeMs = Math.min(this.nextWakeMs, Math.max(10, ms));
  }

  private track(name: string): ContainerTrack {
    let t = this.tracks.get(name);
    if (!t) {
      t = { id: "", attempt: -1, probes: [], ready: false, started: false };
      this.tracks.set(name, t);
    }
    return t;
  }

  /** One pass of the sync loop. */
  private async sync(): Promise<void> {
    const { status, containers } = await this.ensureSandbox();
    const byName = groupLatest(containers);
    const latest = (name: string) => byName.get(name)?.[0];
    this.noteExits(byName);

    const spec = this.pod.spec;
    if (!this.initialized && spec.containers.some((c) => byName.has(c.name))) this.initialized = true;
    let initFailed = false;
    if (!this.initialized) {
      for (const ctr of spec.initContainers) {
        if (this.abort.signal.aborted) return;
        const c = latest(ctr.name);
        if (!c) {
          await this.startContainer(ctr, true, undefined);
          break;
        }
        if (c.state === ContainerState.CONTAINER_RUNNING) {
          this.adoptRunning(ctr, true, c);
          break;
        }
        if (c.state === ContainerState.CONTAINER_EXITED && c.exitCode === 0) continue;
        if (c.state === ContainerState.CONTAINER_EXITED && spec.restartPolicy === "Never") {
          initFailed = true;
          break;
        }
        await this.restart(ctr, true, c);
        break;
      }
      const done = spec.initContainers.every((ctr) => {
        const c = latest(ctr.name);
        return c?.state === ContainerState.CONTAINER_EXITED && c.exitCode === 0;
      });
      if (done) this.initialized = true;
    }
    if (this.initialized) {
      for (const ctr of spec.containers) {
        if (this.abort.signal.aborted) return;
        const c = latest(ctr.name);
        const t = this.track(ctr.name);
        if (!c) {
          await this.startContainer(ctr, false, undefined);
        } else if (c.state === ContainerState.CONTAINER_RUNNING) {
          this.adoptRunning(ctr, false, c);
          if (t.kill && t.id === c.id) {
            const kill = t.kill;
            t.kill = undefined;
            this.stopProbes(t);
            t.ready = false;
            await stopContainer(c.id, ctr.name, {
              client: this.client,
              clock: this.clock,
              gracePeriodSeconds: kill.gracePeriodSeconds,
              spec: ctr,
              host: this.probeHost(),
              events: this.events,
              message: kill.message,
            });
            this.wakeWithin(0);
          }
        } else if (this.shouldRestart(c)) {
          await this.restart(ctr, false, c);
        }
      }
    }
    // Refresh after this pass's changes, for an accurate view.
    const after = await this.podStatus();
    this.noteExits(groupLatest(after.containers));
    this.publish(after.status ?? status, after.containers, initFailed);
  }

  private shouldRestart(c: ContainerStatus): boolean {
    if (c.state === ContainerState.CONTAINER_CREATED) return true; // created but never started: replace it
    if (c.state !== ContainerState.CONTAINER_EXITED) return false;
    const policy = this.pod.spec.restartPolicy;
    return policy === "Always" || (policy === "OnFailure" && c.exitCode !== 0);
  }

  /** Restarts a container whose latest attempt `c` exited, unless it is in back-off. */
  private async restart(ctr: ContainerSpec, init: boolean, c: ContainerStatus): Promise<void> {
    const key = `${this.uid}/${ctr.name}`;
    const finishedAt = c.finishedAt > 0n ? ns2ms(c.finishedAt) : this.clock.now();
    const remaining = this.backoff.remaining(key, finishedAt);
    const t = this.track(ctr.name);
    if (remaining > 0) {
      if (t.backoffNoted !== c.id) {
        t.backoffNoted = c.id;
        const delay = formatDelay(this.backoff.current(key));
        t.waiting = {
          reason: "CrashLoopBackOff",
          message: `back-off ${delay} restarting failed container=${ctr.name} pod=${this.pod.metadata.name}_${this.pod.metadata.namespace}(${this.uid})`,
        };
        this.events.record(
          "Warning",
          "BackOff",
          `Back-off restarting failed container ${ctr.name} in pod ${this.pod.metadata.name}_${this.pod.metadata.namespace}(${this.uid})`,
          objectOf(ctr.name, init),
        );
      }
      this.wakeWithin(remaining);
      return;
    }
    this.backoff.restarted(key);
    if (c.state === ContainerState.CONTAINER_CREATED) {
      // Best effort: an old container left behind is removed again on the next sync.
      await this.client.runtime.removeContainer({ containerId: c.id }).catch(() => {});
    }
    await this.startContainer(ctr, init, c);
  }

  /** Pull (per policy), create and start the next attempt of a container. */
  private async startContainer(
    ctr: ContainerSpec,
    init: boolean,
    previous: ContainerStatus | undefined,
  ): Promise<void> {
    const t = this.track(ctr.name);
    const object = objectOf(ctr.name, init);
    const now = this.clock.now();
    if (t.retryAt !== undefined && now < t.retryAt) {
      if (t.waiting?.reason === "ErrImagePull") {
        t.waiting = { reason: "ImagePullBackOff", message: `Back-off pulling image "${ctr.image}"` };
        this.events.record("Normal", "BackOff", `Back-off pulling image "${ctr.image}"`, object);
      }
      this.wakeWithin(t.retryAt - now);
      return;
    }
    const sandbox = this.sandbox;
    if (!sandbox) return;
    if (!(await this.ensureImage(ctr, object))) return;
    const attempt = Math.max(previous ? (previous.metadata?.attempt ?? 0) + 1 : 0, t.attempt + 1);
    const createKey = `${this.uid}/${ctr.name}/create`;
    const fail = (reason: string, err: unknown) => {
      const message = errorMessage(err);
      t.waiting = { reason, message };
      this.events.record("Warning", "Failed", `Error: ${message}`, object);
      this.backoff.restarted(createKey);
      t.retryAt = this.clock.now() + this.backoff.current(createKey);
      this.wakeWithin(this.backoff.current(createKey));
    };
    let id: string;
    try {
      await prepareSubPaths(this.pod, ctr, this.o.layout);
      const msgFile = this.o.layout.terminationMessageFile(this.uid, ctr.name, attempt);
      await prepareTerminationMessageFile(msgFile);
      const config = containerConfig(this.pod, ctr, {
        layout: this.o.layout,
        restartCount: attempt,
        init,
        podIP: sandbox.ip,
        host: this.o.host,
        terminationMessageFile: msgFile,
        owner: this.o.owner,
      });
      const sbConfig = sandboxConfig(this.pod, {
        layout: this.o.layout,
        attempt: sandbox.attempt,
        owner: this.o.owner,
        host: this.o.host,
      });
      const r = await this.client.runtime.createContainer({
        podSandboxId: sandbox.id,
        config,
        sandboxConfig: sbConfig,
      });
      id = r.containerId;
    } catch (err) {
      fail("CreateContainerError", err);
      return;
    }
    this.events.record("Normal", "Created", `Created container ${ctr.name}`, object);
    try {
      await this.client.runtime.startContainer({ containerId: id });
    } catch (err) {
      fail("RunContainerError", err);
      return;
    }
    this.events.record("Normal", "Started", `Started container ${ctr.name}`, object);
    this.backoff.forget(createKey);
    t.retryAt = undefined;
    t.waiting = undefined;
    this.stopProbes(t);
    t.id = id;
    t.attempt = attempt;
    t.kill = undefined;
    t.ready = !ctr.readinessProbe;
    t.started = !ctr.startupProbe;
    const logPath = `${this.o.layout.podLogDir(this.pod.metadata.namespace, this.pod.metadata.name, this.uid)}/${this.o.layout.containerLogPath(ctr.name, attempt)}`;
    this.o.hooks?.onContainerStarted?.(this.pod, {
      name: ctr.name,
      id,
      logPath,
      init,
      restartCount: attempt,
      adopted: false,
    });
    await this.removeOldAttempts(ctr.name, attempt);
    if (ctr.lifecycle.postStart) {
      const outcome = await runHandler(
        ctr.lifecycle.postStart,
        criTarget(this.client, id, this.probeHost(), ctr),
        this.pod.spec.terminationGracePeriodSeconds || 30,
        this.clock,
      );
      if (!outcome.ok) {
        this.events.record("Warning", "FailedPostStartHook", `PostStartHook failed: ${outcome.message}`, object);
        await stopContainer(id, ctr.name, {
          client: this.client,
          clock: this.clock,
          gracePeriodSeconds: this.pod.spec.terminationGracePeriodSeconds,
          host: this.probeHost(),
          events: this.events,
          message: `FailedPostStartHook: stopping container ${ctr.name}`,
        });
        return;
      }
    }
    if (!init) this.startProbes(ctr, t, this.clock.now());
  }

  /** Keeps the latest attempt and the one before it (for `berth describe`'s Last State and its log). */
  private async removeOldAttempts(name: string, current: number): Promise<void> {
    const sandbox = this.sandbox;
    if (!sandbox) return;
    const { containers } = await this.client.runtime.listContainers({
      filter: { podSandboxId: sandbox.id, labelSelector: { [LABELS.containerName]: name } },
    });
    for (const c of containers) {
      if ((c.metadata?.attempt ?? 0) < current - 1)
        // Best effort: an old container left behind is removed again on the next sync.
        await this.client.runtime.removeContainer({ containerId: c.id }).catch(() => {});
    }
  }

  /** Image per imagePullPolicy; false (with a waiting reason and events) when the container cannot start yet. */
  private async ensureImage(ctr: ContainerSpec, object: string): Promise<boolean> {
    const t = this.track(ctr.name);
    const image = ctr.image;
    const present = async () => {
      const r = await this.client.image.imageStatus({ image: { image } });
      return r.image !== undefined && r.image.id !== "";
    };
    if (ctr.imagePullPolicy !== "Always" && (await present())) {
      this.events.record("Normal", "Pulled", `Container image "${image}" already present on machine`, object);
      return true;
    }
    if (ctr.imagePullPolicy === "Never") {
      const message = `Container image "${image}" is not present with pull policy of Never`;
      t.waiting = { reason: "ErrImageNeverPull", message };
      this.events.record("Warning", "ErrImageNeverPull", message, object);
      return false;
    }
    const key = `${this.uid}/${ctr.name}/pull`;
    this.events.record("Normal", "Pulling", `Pulling image "${image}"`, object);
    const started = this.clock.now();
    try {
      const sbConfig = sandboxConfig(this.pod, {
        layout: this.o.layout,
        attempt: this.sandbox?.attempt ?? 0,
        owner: this.o.owner,
        host: this.o.host,
      });
      await this.client.image.pullImage(
        { image: { image }, sandboxConfig: sbConfig },
        { timeoutMs: this.o.pullTimeoutMs ?? 600_000, signal: this.abort.signal },
      );
    } catch (err) {
      if (this.abort.signal.aborted) return false;
      const message = errorMessage(err);
      t.waiting = { reason: "ErrImagePull", message };
      this.events.record("Warning", "Failed", `Failed to pull image "${image}": ${message}`, object);
      this.backoff.restarted(key);
      t.retryAt = this.clock.now() + this.backoff.current(key);
      this.wakeWithin(this.backoff.current(key));
      return false;
    }
    this.backoff.forget(key);
    t.retryAt = undefined;
    this.events.record(
      "Normal",
      "Pulled",
      `Successfully pulled image "${image}" in ${formatDelay(this.clock.now() - started)}`,
      object,
    );
    return true;
  }

  /** A running container this worker did not start (adopted, or started before a runner restart). */
  private adoptRunning(ctr: ContainerSpec, init: boolean, c: ContainerStatus): void {
    const t = this.track(ctr.name);
    if (t.id === c.id) return;
    this.stopProbes(t);
    t.id = c.id;
    t.attempt = c.metadata?.attempt ?? 0;
    t.ready = !ctr.readinessProbe;
    t.started = !ctr.startupProbe;
    t.waiting = undefined;
    this.o.hooks?.onContainerStarted?.(this.pod, {
      name: ctr.name,
      id: c.id,
      logPath: c.logPath,
      init,
      restartCount: t.attempt,
      adopted: true,
    });
    if (!init) this.startProbes(ctr, t, c.startedAt > 0n ? ns2ms(c.startedAt) : this.clock.now());
  }

  private startProbes(ctr: ContainerSpec, t: ContainerTrack, startedAt: number): void {
    const kinds: [ProbeKind, NonNullable<ContainerSpec["livenessProbe"]>][] = [];
    if (ctr.startupProbe) kinds.push(["startup", ctr.startupProbe]);
    if (ctr.livenessProbe) kinds.push(["liveness", ctr.livenessProbe]);
    if (ctr.readinessProbe) kinds.push(["readiness", ctr.readinessProbe]);
    const id = t.id;
    const target = criTarget(this.client, id, this.probeHost(), ctr);
    for (const [kind, probe] of kinds) {
      const label = `${kind[0]?.toUpperCase()}${kind.slice(1)}`;
      const worker = new ProbeWorker({
        kind,
        probe,
        clock: this.clock,
        startedAt,
        attempt: () => runProbe(probe, target, probe.timeoutSeconds),
        ...(kind !== "startup" ? { gate: () => t.started } : {}),
        onResult: (result: ProbeResult, outcome, changed) => {
          if (t.id !== id) return;
          if (!outcome.ok)
            this.events.record(
              "Warning",
              "Unhealthy",
              `${label} probe failed: ${outcome.message}`,
              objectOf(ctr.name, false),
            );
          if (kind === "readiness" && changed) t.ready = result === "success";
          if (kind === "startup" && result === "success") t.started = true;
          if ((kind === "liveness" || kind === "startup") && result === "failure") {
            t.kill = {
              message: `Container ${ctr.name} failed ${kind} probe, will be restarted`,
              gracePeriodSeconds: probe.terminationGracePeriodSeconds ?? this.pod.spec.terminationGracePeriodSeconds,
            };
          }
          if (changed || t.kill) this.wake();
        },
      });
      t.probes.push(worker);
    }
  }

  private stopProbes(t: ContainerTrack): void {
    for (const p of t.probes) p.stop();
    t.probes = [];
  }

  /** Stops probes of attempts that exited and reports the exits once. */
  private noteExits(byName: Map<string, ContainerStatus[]>): void {
    for (const [name, attempts] of byName) {
      const c = attempts[0];
      if (!c || c.state !== ContainerState.CONTAINER_EXITED) continue;
      const t = this.track(name);
      if (t.exitNoted === c.id) continue;
      t.exitNoted = c.id;
      if (t.id === c.id) {
        this.stopProbes(t);
        t.ready = false;
      }
      this.o.hooks?.onContainerExited?.(this.pod, { name, id: c.id, exitCode: c.exitCode });
    }
  }

  private probeHost(): string {
    return this.pod.spec.hostNetwork ? "127.0.0.1" : this.sandbox?.ip || "127.0.0.1";
  }

  /** PodSandboxStatus with every container status (falling back to ListContainers for other runtimes). */
  private async podStatus(): Promise<{ status: PodSandboxStatus | undefined; containers: ContainerStatus[] }> {
    const sandbox = this.sandbox;
    if (!sandbox) return { status: undefined, containers: [] };
    try {
      const r = await this.client.runtime.podSandboxStatus({ podSandboxId: sandbox.id });
      const containers =
        r.containersStatuses.length > 0 ? r.containersStatuses : await listStatuses(this.client, sandbox.id);
      return { status: r.status, containers };
    } catch (err) {
      if (isNotFound(err)) return { status: undefined, containers: [] };
      throw err;
    }
  }

  /** Makes sure the pod has a ready sandbox (adopting, or replacing a dead one); returns its status. */
  private async ensureSandbox(): Promise<{ status: PodSandboxStatus; containers: ContainerStatus[] }> {
    if (this.firstPass) {
      this.firstPass = false;
      await this.adopt();
    }
    if (this.sandbox) {
      const { status, containers } = await this.podStatus();
      if (status && status.state === PodSandboxState.SANDBOX_READY) return { status, containers };
      this.events.record("Normal", "SandboxChanged", "Pod sandbox changed, it will be killed and re-created.");
      const old = this.sandbox;
      for (const t of this.tracks.values()) {
        this.stopProbes(t);
        t.ready = false;
        t.id = "";
      }
      // Best effort: a sandbox left behind is retried on the next sync and by `berth down`.
      await this.client.runtime.stopPodSandbox({ podSandboxId: old.id }).catch(() => {});
      await this.client.runtime.removePodSandbox({ podSandboxId: old.id }).catch(() => {});
      this.sandbox = undefined;
      this.initialized = false;
      return this.createSandbox(old.attempt + 1);
    }
    return this.createSandbox(0);
  }

  /** Takes over a ready sandbox of this pod (and its events); removes stale ones. */
  private async adopt(): Promise<void> {
    const { items } = await this.client.runtime.listPodSandbox({
      filter: { labelSelector: { [LABELS.podUid]: this.uid } },
    });
    const ready = items
      .filter((s) => s.state === PodSandboxState.SANDBOX_READY)
      .sort((a, b) => (b.metadata?.attempt ?? 0) - (a.metadata?.attempt ?? 0));
    const keep = ready[0];
    for (const s of items) {
      if (s === keep) continue;
      // Best effort: a sandbox left behind is retried on the next sync and by `berth down`.
      await this.client.runtime.stopPodSandbox({ podSandboxId: s.id }).catch(() => {});
      await this.client.runtime.removePodSandbox({ podSandboxId: s.id }).catch(() => {});
    }
    if (!keep) return;
    const status = await this.client.runtime.podSandboxStatus({ podSandboxId: keep.id });
    this.sandbox = { id: keep.id, attempt: keep.metadata?.attempt ?? 0, ip: status.status?.network?.ip ?? "" };
    await this.events.load();
  }

  private async createSandbox(attempt: number): Promise<{ status: PodSandboxStatus; containers: ContainerStatus[] }> {
    const { layout, host, owner } = this.o;
    const m = this.pod.metadata;
    try {
      await mkdir(layout.podLogDir(m.namespace, m.name, m.uid), { recursive: true, mode: 0o755 });
      await preparePodVolumes(this.pod, layout);
    } catch (err) {
      this.events.record("Warning", "FailedMount", `Unable to prepare volumes: ${errorMessage(err)}`);
      throw err;
    }
    const config = sandboxConfig(this.pod, { layout, attempt, owner, host });
    let id: string;
    try {
      const r = await this.client.runtime.runPodSandbox(
        { config, runtimeHandler: this.pod.spec.runtimeClassName ?? "" },
        { timeoutMs: 120_000 },
      );
      id = r.podSandboxId;
    } catch (err) {
      this.events.record("Warning", "FailedCreatePodSandBox", `Failed to create pod sandbox: ${errorMessage(err)}`);
      throw err;
    }
    const status = await this.client.runtime.podSandboxStatus({ podSandboxId: id });
    this.sandbox = { id, attempt, ip: status.status?.network?.ip ?? "" };
    if (!status.status) throw new Error(`pod sandbox ${id} has no status`);
    return { status: status.status, containers: [] };
  }

  private runnerStatus(): RunnerStatus {
    const containers: RunnerStatus["containers"] = {};
    for (const [name, t] of this.tracks) {
      containers[name] = { id: t.id, ready: t.ready, started: t.started, ...(t.waiting ? { waiting: t.waiting } : {}) };
    }
    return {
      version: 1,
      pid: process.pid,
      updatedAt: this.clock.now(),
      ...(this.terminating ? { terminating: true } : {}),
      containers,
    };
  }

  /** Persists what only this worker knows, when it changed (writes are serialised). */
  private queueStatusWrite(): void {
    if (this.closed) return;
    const status = this.runnerStatus();
    const json = JSON.stringify({ ...status, updatedAt: 0 });
    if (json === this.lastStatusJson) return;
    this.lastStatusJson = json;
    const file = this.o.layout.statusFile(this.uid);
    this.statusWrites = this.statusWrites
      .then(async () => {
        await mkdir(this.o.layout.podDir(this.uid), { recursive: true });
        await writeFileAtomic(file, `${JSON.stringify(status)}\n`);
      })
      .catch((err) => this.o.hooks?.onError?.(this.pod, err));
  }

  private publish(status: PodSandboxStatus | undefined, containers: ContainerStatus[], initFailed: boolean): void {
    if (!status) return;
    const view = computePodView({
      sandbox: status,
      containers,
      runner: this.runnerStatus(),
      runnerAlive: true,
      hostIP: this.o.host.hostIP,
    });
    if (initFailed && view.phase !== "Failed") view.phase = "Failed";
    this.view_ = view;
    this.queueStatusWrite();
    for (const w of [...this.watchers]) w(view);
  }
}

function groupLatest(containers: ContainerStatus[]): Map<string, ContainerStatus[]> {
  const m = new Map<string, ContainerStatus[]>();
  for (const c of containers) {
    const name = c.metadata?.name ?? "";
    m.set(name, [...(m.get(name) ?? []), c]);
  }
  for (const list of m.values()) list.sort((a, b) => (b.metadata?.attempt ?? 0) - (a.metadata?.attempt ?? 0));
  return m;
}

function objectOf(name: string, init: boolean): string {
  return `spec.${init ? "initContainers" : "containers"}{${name}}`;
}

function errorMessage(err: unknown): string {
  if (
    err &&
    typeof err === "object" &&
    "rawMessage" in err &&
    typeof (err as { rawMessage: unknown }).rawMessage === "string"
  ) {
    return (err as { rawMessage: string }).rawMessage;
  }
  return err instanceof Error ? err.message : String(err);
}

/** `10s`, `1m20s`, `350ms`, like Go's time.Duration. */
export function formatDelay(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)}ms`;
  const s = ms / 1000;
  if (s < 60) return `${Number.isInteger(s) ? s : s.toFixed(3).replace(/0+$/, "")}s`;
  const m = Math.floor(s / 60);
  const rest = Math.round(s - m * 60);
  return rest === 0 ? `${m}m0s` : `${m}m${rest}s`;
}
