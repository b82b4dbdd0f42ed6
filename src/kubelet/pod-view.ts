/**
 * What `berth get pods` and `berth describe pod` show, computed from CRI state (the sandbox and
 * every attempt of every container), the Pod the runner stored in the sandbox's annotations, and
 * what only the runner knows (readiness, waiting reasons like CrashLoopBackOff), which it
 * persists as a small status file per pod. The same function serves the runner itself, so the
 * foreground `berth run` and `berth get` from another shell agree.
 *
 * The STATUS column follows kubectl's printer: `Init:1/2`, `Init:Error`, `PodInitializing`,
 * `ContainerCreating`, `Running`, `Completed`, `Error`, `CrashLoopBackOff`, `ErrImagePull`,
 * `Terminating`, ...
 */
import {
  ContainerState,
  type ContainerStatus,
  PodSandboxState,
  type PodSandboxStatus,
} from "../api/gen/runtime/v1/api_pb.js";
import { ANNOTATIONS, type ContainerSpec, LABELS, type Pod, RESERVED_PREFIXES } from "./types.js";

export type PodPhase = "Pending" | "Running" | "Succeeded" | "Failed" | "Unknown";

/** Facts only the pod's runner knows, persisted as `Layout.statusFile` (atomic writes). */
export interface RunnerStatus {
  version: 1;
  /** The runner process (its liveness decides whether waiting reasons are current). */
  pid: number;
  updatedAt: number;
  /** Set while the runner is stopping the pod. */
  terminating?: boolean;
  containers: Record<string, RunnerContainerStatus>;
}

export interface RunnerContainerStatus {
  /** The container attempt the verdicts below are about. */
  id: string;
  ready: boolean;
  /** The startup probe has succeeded (true without one). */
  started: boolean;
  waiting?: { reason: string; message: string };
}

export type ContainerStateView =
  | { kind: "waiting"; reason: string; message: string }
  | { kind: "running"; startedAt: number }
  | { kind: "terminated"; exitCode: number; reason: string; message: string; startedAt: number; finishedAt: number };

export interface ContainerView {
  name: string;
  init: boolean;
  image: string;
  imageId: string;
  /** CRI ID of the latest attempt ("" before the first). */
  id: string;
  state: ContainerStateView;
  lastState?: Extract<ContainerStateView, { kind: "terminated" }>;
  ready: boolean;
  started: boolean;
  restartCount: number;
  logPath: string;
  spec?: ContainerSpec;
}

export interface PodView {
  name: string;
  namespace: string;
  uid: string;
  sandboxId: string;
  sandboxReady: boolean;
  attempt: number;
  /** ms since the epoch. */
  createdAt: number;
  ip: string;
  /** The pod's own labels and annotations (without the runner's). */
  labels: Record<string, string>;
  annotations: Record<string, string>;
  manifestPath: string;
  owner: string;
  stateDir: string;
  pod?: Pod;
  phase: PodPhase;
  /** kubectl's STATUS column. */
  status: string;
  readyCount: number;
  total: number;
  restarts: number;
  /** When the most recent restart's previous attempt finished (ms), for "3 (2m ago)". */
  lastRestartAt?: number;
  conditions: { initialized: boolean; containersReady: boolean; ready: boolean };
  initContainers: ContainerView[];
  containers: ContainerView[];
}

/** Inputs of {@link computePodView}. */
export interface PodViewInput {
  sandbox: Pick<PodSandboxStatus, "id" | "metadata" | "state" | "createdAt" | "network" | "labels" | "annotations">;
  /** Every container of the sandbox, all attempts. */
  containers: Pick<
    ContainerStatus,
    | "id"
    | "metadata"
    | "state"
    | "createdAt"
    | "startedAt"
    | "finishedAt"
    | "exitCode"
    | "reason"
    | "message"
    | "image"
    | "imageRef"
    | "imageId"
    | "annotations"
    | "logPath"
  >[];
  /** The runner's status file, when there is one. */
  runner?: RunnerStatus;
  /** Whether the runner that wrote `runner` is still running (waiting reasons are stale otherwise). */
  runnerAlive: boolean;
  /** IP to show for hostNetwork pods. */
  hostIP: string;
}

const ns2ms = (ns: bigint) => Number(ns / 1_000_000n);

/** The pod stored in a sandbox's annotations, if it is one of the runner's. */
export function podFromAnnotations(annotations: Record<string, string>): Pod | undefined {
  const raw = annotations[ANNOTATIONS.pod];
  if (!raw) return undefined;
  try {
    return JSON.parse(raw) as Pod;
  } catch {
    return undefined;
  }
}

export function computePodView(input: PodViewInput): PodView {
  const sb = input.sandbox;
  const pod = podFromAnnotations(sb.annotations);
  const byName = new Map<string, PodViewInput["containers"]>();
  for (const c of input.containers) {
    const name = c.metadata?.name ?? "";
    byName.set(name, [...(byName.get(name) ?? []), c]);
  }
  for (const list of byName.values())
    list.sort((a, b) => (b.metadata?.attempt ?? 0) - (a.metadata?.attempt ?? 0) || Number(b.createdAt - a.createdAt));
  const runner = input.runner;
  const runnerLive = input.runnerAlive ? runner : undefined;

  const view = (name: string, init: boolean, spec: ContainerSpec | undefined, initPending: boolean): ContainerView => {
    const attempts = byName.get(name) ?? [];
    const [latest, previous] = attempts;
    const rs = runner?.containers[name];
    const waiting = runnerLive?.containers[name]?.waiting;
    let state: ContainerStateView;
    let lastState: ContainerView["lastState"];
    if (!latest)
      state = { kind: "waiting", reason: initPending ? "PodInitializing" : "ContainerCreating", message: "" };
    else state = criState(latest);
    if (state.kind === "terminated" && previous === undefined) lastState = undefined;
    else if (previous && state.kind !== "terminated") {
      const prev = criState(previous);
      if (prev.kind === "terminated") lastState = prev;
    }
    if (waiting && state.kind !== "running") {
      if (state.kind === "terminated") lastState = state;
      state = { kind: "waiting", reason: waiting.reason, message: waiting.message };
    }
    const running = state.kind === "running";
    const verdict = rs && latest && rs.id === latest.id ? rs : undefined;
    const started = running && (verdict ? verdict.started : !spec?.startupProbe);
    const ready = init
      ? state.kind === "terminated" && state.exitCode === 0
      : running && started && (verdict ? verdict.ready : !spec?.readinessProbe);
    const out: ContainerView = {
      name,
      init,
      image: latest?.image?.image ?? spec?.image ?? "",
      imageId: latest?.imageId || latest?.imageRef || "",
      id: latest?.id ?? "",
      state,
      ready,
      started,
      restartCount: latest?.metadata?.attempt ?? 0,
      logPath: latest?.logPath ?? "",
    };
    if (lastState) out.lastState = lastState;
    if (spec) out.spec = spec;
    return out;
  };

  let initContainers: ContainerView[];
  let containers: ContainerView[];
  const anyRegularCreated = pod ? pod.spec.containers.some((c) => byName.has(c.name)) : true;
  if (pod) {
    initContainers = pod.spec.initContainers.map((c) => view(c.name, true, c, true));
    const initDone =
      anyRegularCreated || initContainers.every((c) => c.state.kind === "terminated" && c.state.exitCode === 0);
    containers = pod.spec.containers.map((c) => view(c.name, false, c, !initDone));
  } else {
    initContainers = [];
    containers = [...byName.keys()].sort().map((n) => view(n, false, undefined, false));
  }

  const restartPolicy = pod?.spec.restartPolicy ?? "Never";
  const initialized =
    anyRegularCreated || initContainers.every((c) => c.state.kind === "terminated" && c.state.exitCode === 0);
  const initFailed = initContainers.some(
    (c) =>
      restartPolicy === "Never" &&
      (c.state.kind === "terminated"
        ? c.state.exitCode !== 0
        : c.state.kind === "waiting" && c.lastState !== undefined && c.lastState.exitCode !== 0),
  );
  const phase = podPhase({ containers, initialized, initFailed, restartPolicy, hasSpec: pod !== undefined });
  const readyCount = containers.filter((c) => c.ready).length;
  const containersReady = containers.length > 0 && readyCount === containers.length;
  const sandboxReady = sb.state === PodSandboxState.SANDBOX_READY;
  const userLabels = stripReserved(sb.labels);
  const userAnnotations = stripReserved(sb.annotations);
  const hostNetwork = pod?.spec.hostNetwork ?? false;
  const { status, restarts, lastRestartAt } = kubectlStatus({
    phase,
    initContainers,
    containers,
    terminating: runnerLive?.terminating === true,
  });
  const out: PodView = {
    name: sb.metadata?.name ?? "",
    namespace: sb.metadata?.namespace ?? "",
    uid: sb.metadata?.uid ?? "",
    sandboxId: sb.id,
    sandboxReady,
    attempt: sb.metadata?.attempt ?? 0,
    createdAt: ns2ms(sb.createdAt),
    ip: sb.network?.ip || (hostNetwork && sandboxReady ? input.hostIP : ""),
    labels: userLabels,
    annotations: userAnnotations,
    manifestPath: sb.annotations[ANNOTATIONS.manifestPath] ?? "",
    owner: sb.labels[LABELS.owner] ?? "",
    stateDir: sb.annotations[ANNOTATIONS.stateDir] ?? "",
    phase,
    status,
    readyCount,
    total: containers.length,
    restarts,
    conditions: { initialized, containersReady, ready: containersReady && sandboxReady },
    initContainers,
    containers,
  };
  if (pod) out.pod = pod;
  if (lastRestartAt !== undefined) out.lastRestartAt = lastRestartAt;
  return out;
}

function criState(c: PodViewInput["containers"][number]): ContainerStateView {
  switch (c.state) {
    case ContainerState.CONTAINER_RUNNING:
      return { kind: "running", startedAt: ns2ms(c.startedAt) };
    case ContainerState.CONTAINER_EXITED:
      return {
        kind: "terminated",
        exitCode: c.exitCode,
        reason: c.reason || (c.exitCode === 0 ? "Completed" : "Error"),
        message: c.message,
        startedAt: ns2ms(c.startedAt),
        finishedAt: ns2ms(c.finishedAt),
      };
    case ContainerState.CONTAINER_CREATED:
      return { kind: "waiting", reason: "ContainerCreating", message: "" };
    default:
      return { kind: "waiting", reason: "Unknown", message: "" };
  }
}

/** The pod phase from its containers, by Kubernetes' rules. */
export function podPhase(o: {
  containers: ContainerView[];
  initialized: boolean;
  initFailed: boolean;
  restartPolicy: "Always" | "OnFailure" | "Never";
  hasSpec: boolean;
}): PodPhase {
  if (o.initFailed) return "Failed";
  if (!o.initialized) return "Pending";
  const cs = o.containers;
  if (cs.length === 0) return "Pending";
  const terminated = (c: ContainerView) =>
    c.state.kind === "terminated" ? c.state : c.state.kind === "waiting" ? c.lastState : undefined;
  if (cs.some((c) => c.state.kind === "running")) return "Running";
  if (cs.some((c) => c.state.kind === "waiting" && c.lastState === undefined)) return "Pending";
  // Every container has run and is not running now.
  const allSucceeded = cs.every((c) => terminated(c)?.exitCode === 0);
  if (o.restartPolicy === "Always") return "Running";
  if (o.restartPolicy === "OnFailure") return allSucceeded ? "Succeeded" : "Running";
  return allSucceeded ? "Succeeded" : "Failed";
}

/** kubectl's STATUS and RESTARTS columns (printers.printPod). */
export function kubectlStatus(o: {
  phase: PodPhase;
  initContainers: ContainerView[];
  containers: ContainerView[];
  terminating: boolean;
}): { status: string; restarts: number; lastRestartAt?: number } {
  let reason: string = o.phase;
  let restarts = 0;
  let lastRestartAt: number | undefined;
  const noteRestart = (c: ContainerView) => {
    restarts += c.restartCount;
    const at = c.lastState?.finishedAt;
    if (c.restartCount > 0 && at !== undefined && (lastRestartAt === undefined || at > lastRestartAt))
      lastRestartAt = at;
  };
  let initializing = false;
  for (const [i, c] of o.initContainers.entries()) {
    noteRestart(c);
    const s = c.state;
    if (s.kind === "terminated" && s.exitCode === 0) continue;
    if (s.kind === "terminated") reason = `Init:${s.reason || `ExitCode:${s.exitCode}`}`;
    else if (s.kind === "waiting" && s.reason && s.reason !== "PodInitializing") reason = `Init:${s.reason}`;
    else reason = `Init:${i}/${o.initContainers.length}`;
    initializing = true;
    break;
  }
  // Once the regular containers exist, initialization is over even if init records were removed.
  if (initializing && o.containers.some((c) => c.id !== "")) initializing = false;
  if (!initializing) {
    restarts = 0;
    lastRestartAt = undefined;
    let hasRunning = false;
    for (const c of [...o.containers].reverse()) {
      noteRestart(c);
      const s = c.state;
      if (s.kind === "waiting" && s.reason) reason = s.reason;
      else if (s.kind === "terminated") reason = s.reason || `ExitCode:${s.exitCode}`;
      else if (s.kind === "running" && c.ready) hasRunning = true;
    }
    // A pod with a completed container and another still running is Running (or NotReady).
    if (reason === "Completed" && hasRunning) reason = o.containers.every((c) => c.ready) ? "Running" : "NotReady";
  }
  if (o.terminating) reason = "Terminating";
  return lastRestartAt === undefined ? { status: reason, restarts } : { status: reason, restarts, lastRestartAt };
}

function stripReserved(m: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(m).filter(([k]) => !RESERVED_PREFIXES.some((p) => k.startsWith(p))));
}

/**
 * kubectl's human duration (`5s`, `3m20s`, `12m`, `5h3m`, `20h`, `3d4h`, `45d`, `2y`), for AGE.
 */
export function humanDuration(ms: number): string {
  const s = Math.max(0, Math.floor(ms / 1000));
  if (s < 120) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 10) return s % 60 === 0 ? `${m}m` : `${m}m${s % 60}s`;
  if (m < 180) return `${m}m`;
  const h = Math.floor(m / 60);
  if (h < 8) return m % 60 === 0 ? `${h}h` : `${h}h${m % 60}m`;
  if (h < 48) return `${h}h`;
  const d = Math.floor(h / 24);
  if (d < 8) return h % 24 === 0 ? `${d}d` : `${d}d${h % 24}h`;
  if (d < 365 * 2) return `${d}d`;
  return `${Math.floor(d / 365)}y`;
}

/** NAME READY STATUS RESTARTS AGE IP (NAMESPACE first when `withNamespace`). */
export function podRow(v: PodView, now: number, withNamespace: boolean): string[] {
  const restarts =
    v.lastRestartAt !== undefined && v.restarts > 0
      ? `${v.restarts} (${humanDuration(now - v.lastRestartAt)} ago)`
      : String(v.restarts);
  const row = [
    v.name,
    `${v.readyCount}/${v.total}`,
    v.status,
    restarts,
    humanDuration(now - v.createdAt),
    v.ip || "<none>",
  ];
  return withNamespace ? [v.namespace, ...row] : row;
}

export const POD_HEADERS = ["NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP"];
