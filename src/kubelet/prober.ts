/**
 * The pod worker's prober (the kubelet's prober manager): per container of one pod, the probe
 * workers of its current attempt and what they concluded — ready, started, or "kill it" after a
 * liveness or startup failure. Results about an attempt that is no longer the container's
 * current one are dropped. The worker reads the verdicts on its next pass; `onChange` asks it to
 * run that pass now.
 *
 * Lifecycle per container: `track()` (a new current attempt: verdicts reset) → `probe()` (its
 * probe workers start; init containers and attempts whose postStart hook failed skip this) →
 * `stop()` (it exited or is being killed) → `track()` for the next attempt. `forget()` drops the
 * attempt when its sandbox goes; `close()` stops every probe.
 */
import type { Clock } from "./clock.js";
import type { EventRecorder } from "./events.js";
import { type ProbeResult, type ProbeTarget, ProbeWorker, runProbe } from "./probe.js";
import type { ContainerSpec, ProbeKind } from "./types.js";

/** The verdicts about one container's current attempt. */
export interface ProbeVerdict {
  /** The attempt they are about ("" when none). */
  id: string;
  /** Readiness: true without a readiness probe, else once it succeeded. */
  ready: boolean;
  /** The startup probe has succeeded (true without one). */
  started: boolean;
  /** A liveness or startup probe failed: the attempt must be killed. */
  kill?: { id: string; message: string; gracePeriodSeconds: number } | undefined;
}

/** Options of {@link Prober}. */
export interface ProberOptions {
  clock: Clock;
  events: EventRecorder;
  /** The pod's terminationGracePeriodSeconds (a probe's own overrides it for the kill). */
  gracePeriodSeconds: number;
  /** How to reach attempt `id` (exec through CRI, the pod IP for network probes). */
  target(id: string, spec: ContainerSpec): ProbeTarget;
  /** A verdict changed, or a kill was asked for. */
  onChange(): void;
}

interface Entry extends ProbeVerdict {
  workers: ProbeWorker[];
}

export class Prober {
  private readonly entries = new Map<string, Entry>();

  constructor(private readonly o: ProberOptions) {}

  /** The verdicts about container `name` (a fresh "nothing" when it was never tracked). */
  verdict(name: string): ProbeVerdict {
    const e = this.entries.get(name);
    if (!e) return { id: "", ready: false, started: false };
    return { id: e.id, ready: e.ready, started: e.started, ...(e.kill ? { kill: e.kill } : {}) };
  }

  /** A new current attempt `id` of container `spec`: stops the old probes, resets the verdicts. */
  track(spec: ContainerSpec, id: string): void {
    this.stop(spec.name);
    const e = this.entry(spec.name);
    e.id = id;
    e.kill = undefined;
    e.ready = !spec.readinessProbe;
    e.started = !spec.startupProbe;
  }

  /** Starts the probe workers of container `spec`'s current attempt (initialDelaySeconds counts from `startedAt`, ms). */
  probe(spec: ContainerSpec, startedAt: number): void {
    const e = this.entries.get(spec.name);
    if (e?.id) this.startWorkers(spec, e, startedAt);
  }

  /** Stops the probes of container `name` and marks it not ready (it exited or is being stopped). */
  stop(name: string): void {
    const e = this.entries.get(name);
    if (!e) return;
    for (const w of e.workers) w.stop();
    e.workers = [];
    e.ready = false;
  }

  /** Forgets the attempt of container `name` (its sandbox is gone). */
  forget(name: string): void {
    this.stop(name);
    const e = this.entries.get(name);
    if (e) e.id = "";
  }

  /** The kill was carried out: forget it. */
  killed(name: string): void {
    const e = this.entries.get(name);
    if (e) e.kill = undefined;
  }

  /** Stops every probe. */
  close(): void {
    for (const name of this.entries.keys()) this.stop(name);
  }

  private entry(name: string): Entry {
    let e = this.entries.get(name);
    if (!e) {
      e = { id: "", ready: false, started: false, workers: [] };
      this.entries.set(name, e);
    }
    return e;
  }

  private startWorkers(spec: ContainerSpec, e: Entry, startedAt: number): void {
    const kinds: [ProbeKind, NonNullable<ContainerSpec["livenessProbe"]>][] = [];
    if (spec.startupProbe) kinds.push(["startup", spec.startupProbe]);
    if (spec.livenessProbe) kinds.push(["liveness", spec.livenessProbe]);
    if (spec.readinessProbe) kinds.push(["readiness", spec.readinessProbe]);
    const id = e.id;
    const target = this.o.target(id, spec);
    const object = `spec.containers{${spec.name}}`;
    for (const [kind, probe] of kinds) {
      const label = `${kind[0]?.toUpperCase()}${kind.slice(1)}`;
      const worker = new ProbeWorker({
        kind,
        probe,
        clock: this.o.clock,
        startedAt,
        attempt: () => runProbe(probe, target, probe.timeoutSeconds),
        ...(kind !== "startup" ? { gate: () => e.started } : {}),
        onResult: (result: ProbeResult, outcome, changed) => {
          // A late result about an attempt that was replaced.
          if (e.id !== id) return;
          if (!outcome.ok)
            this.o.events.record("Warning", "Unhealthy", `${label} probe failed: ${outcome.message}`, object);
          if (kind === "readiness" && changed) e.ready = result === "success";
          if (kind === "startup" && result === "success") e.started = true;
          if ((kind === "liveness" || kind === "startup") && result === "failure") {
            e.kill = {
              id,
              message: `Container ${spec.name} failed ${kind} probe, will be restarted`,
              gracePeriodSeconds: probe.terminationGracePeriodSeconds ?? this.o.gracePeriodSeconds,
            };
          }
          if (changed || e.kill) this.o.onChange();
        },
      });
      e.workers.push(worker);
    }
  }
}
