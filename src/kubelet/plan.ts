/**
 * The pod worker's planner: what one sync pass must do to move CRI towards the pod's spec, as a
 * pure function of what was observed (the kubelet's computePodActions). No I/O, no clock reads,
 * no state: the worker gathers the input, calls {@link computePodActions}, then carries the
 * actions out in order.
 *
 * ```
 * sandbox ready? ──no──▶ none: create attempt 0 │ not ready: recreate with attempt+1 (SandboxChanged)
 *      │                 (either way the pod starts over: no containers, init containers first)
 *      ▼
 * not initialized: the first init container that has not succeeded, one per pass:
 *      absent → start; running → adopt; exited 0 → next; failed → restart with back-off
 *      (restartPolicy Never: the pod is Failed, nothing more starts)
 *      ▼ (all exited 0, or a regular container exists already)
 * containers, each: absent → start; running → adopt, and kill it when a liveness/startup
 *      probe failed; exited → restart per restartPolicy (created-but-never-started: replace)
 * restart: in crash-loop back-off → wait; a pull/create retry pending → wait; else start attempt+1
 * deleting: nothing starts; kill the pod within its grace period (or the one the deletion gave)
 * ```
 */
import { ContainerState, type ContainerStatus } from "../api/gen/runtime/v1/api_pb.js";
import type { ContainerSpec, Pod } from "./types.js";

/** What the worker remembers of one container (by name) across passes. */
export interface TrackedContainer {
  /** CRI ID of the attempt the worker started or adopted ("" when none). */
  id: string;
  /** Its attempt number (-1 before the first). */
  attempt: number;
  /** A liveness or startup probe failed for attempt `id`: kill it. */
  kill?: { id: string; message: string; gracePeriodSeconds: number } | undefined;
  /** A failed pull or create: the next start must wait until then (ms since the epoch). */
  retryAt?: number | undefined;
  /** The exited ID whose exit was already reported. */
  exitNoted?: string | undefined;
}

/** The crash-loop back-off, read only (the planner decides; the worker records restarts). */
export interface BackoffView {
  remaining(key: string, finishedAt: number): number;
  current(key: string): number;
}

/** Everything one pass decides on. */
export interface PlanInput {
  pod: Pod;
  /** The pod's sandbox as observed: undefined when it has none yet. */
  sandbox: { ready: boolean; attempt: number } | undefined;
  /** Every container status of that sandbox (all attempts). */
  containers: readonly ContainerStatus[];
  /** The init containers have all succeeded in this sandbox (the worker keeps it across passes). */
  initialized: boolean;
  tracked: ReadonlyMap<string, TrackedContainer>;
  now: number;
  backoff: BackoffView;
  /**
   * The pod is being deleted (Ctrl-C, `berth down`, a removed static manifest): stop everything,
   * with this grace period instead of the pod's terminationGracePeriodSeconds when given.
   */
  deleting?: { gracePeriodSeconds?: number | undefined } | undefined;
}

/** One step on one container; `init` says which list of the spec it is from. */
export type ContainerAction =
  /**
   * Start attempt `attempt` (pull, create, start). `restartKey`: a restart, to record in the
   * crash-loop back-off; `removeId`: a container created but never started, to remove first.
   */
  | {
      kind: "start";
      spec: ContainerSpec;
      init: boolean;
      attempt: number;
      restartKey?: string;
      removeId?: string;
    }
  /** A running attempt the worker does not track yet (adopted, or started before a runner restart). */
  | { kind: "adopt"; spec: ContainerSpec; init: boolean; status: ContainerStatus }
  /** Stop a running attempt a probe condemned (preStop hook, grace period). */
  | { kind: "kill"; spec: ContainerSpec; id: string; message: string; gracePeriodSeconds: number }
  /** The exited attempt `id` must wait `remainingMs` more before its restart (CrashLoopBackOff). */
  | { kind: "crashLoopBackOff"; spec: ContainerSpec; init: boolean; id: string; remainingMs: number; delayMs: number }
  /** A failed pull or create is retried in `remainingMs`. */
  | { kind: "retryLater"; spec: ContainerSpec; init: boolean; remainingMs: number };

/** The plan of one pass. */
export interface PodActions {
  /** Keep the sandbox, create the first one, or kill a dead one and create the next attempt. */
  sandbox: { kind: "keep" } | { kind: "create"; attempt: number } | { kind: "recreate"; attempt: number };
  /** The new value of the worker's `initialized`. */
  initialized: boolean;
  /** An init container failed under restartPolicy Never: the pod is Failed. */
  initFailed: boolean;
  /** In the order they must run. */
  containers: ContainerAction[];
  /** The pod is being deleted: stop its containers (preStop hooks first) within this grace, then remove it. */
  killPod?: { gracePeriodSeconds: number };
}

/** The back-off key of a container's crash-loop restarts. */
export function restartKey(pod: Pod, name: string): string {
  return `${pod.metadata.uid}/${name}`;
}

/** Computes one pass's actions. Pure: the same input always gives the same plan. */
export function computePodActions(input: PlanInput): PodActions {
  const { pod } = input;
  if (input.deleting) {
    const gracePeriodSeconds = input.deleting.gracePeriodSeconds ?? pod.spec.terminationGracePeriodSeconds;
    return {
      sandbox: { kind: "keep" },
      initialized: input.initialized,
      initFailed: false,
      containers: [],
      killPod: { gracePeriodSeconds },
    };
  }
  let sandbox: PodActions["sandbox"] = { kind: "keep" };
  let containers = input.containers;
  let initialized = input.initialized;
  if (!input.sandbox) {
    sandbox = { kind: "create", attempt: 0 };
  } else if (!input.sandbox.ready) {
    sandbox = { kind: "recreate", attempt: input.sandbox.attempt + 1 };
  }
  if (sandbox.kind !== "keep") {
    // A new sandbox has no containers: the pod starts over, init containers first.
    containers = [];
    initialized = false;
  }
  const byName = groupLatest(containers);
  const latest = (name: string) => byName.get(name)?.[0];
  const actions: ContainerAction[] = [];
  const spec = pod.spec;

  if (!initialized && spec.containers.some((c) => byName.has(c.name))) initialized = true;
  let initFailed = false;
  if (!initialized) {
    for (const ctr of spec.initContainers) {
      const c = latest(ctr.name);
      if (!c) {
        actions.push(start(input, ctr, true, undefined));
        break;
      }
      if (c.state === ContainerState.CONTAINER_RUNNING) {
        if (input.tracked.get(ctr.name)?.id !== c.id) actions.push({ kind: "adopt", spec: ctr, init: true, status: c });
        break;
      }
      if (c.state === ContainerState.CONTAINER_EXITED && c.exitCode === 0) continue;
      if (c.state === ContainerState.CONTAINER_EXITED && spec.restartPolicy === "Never") {
        initFailed = true;
        break;
      }
      actions.push(restart(input, ctr, true, c));
      break;
    }
    initialized = spec.initContainers.every((ctr) => {
      const c = latest(ctr.name);
      return c?.state === ContainerState.CONTAINER_EXITED && c.exitCode === 0;
    });
  }
  if (initialized) {
    for (const ctr of spec.containers) {
      const c = latest(ctr.name);
      const t = input.tracked.get(ctr.name);
      if (!c) {
        actions.push(start(input, ctr, false, undefined));
      } else if (c.state === ContainerState.CONTAINER_RUNNING) {
        if (t?.id !== c.id) actions.push({ kind: "adopt", spec: ctr, init: false, status: c });
        if (t?.kill && t.kill.id === c.id) actions.push({ kind: "kill", spec: ctr, ...t.kill });
      } else if (shouldRestart(pod, c)) {
        actions.push(restart(input, ctr, false, c));
      }
    }
  }
  return { sandbox, initialized, initFailed, containers: actions };
}

/** Whether a container's latest attempt `c` is to be restarted under the pod's restartPolicy. */
export function shouldRestart(pod: Pod, c: ContainerStatus): boolean {
  if (c.state === ContainerState.CONTAINER_CREATED) return true; // created but never started: replace it
  if (c.state !== ContainerState.CONTAINER_EXITED) return false;
  const policy = pod.spec.restartPolicy;
  return policy === "Always" || (policy === "OnFailure" && c.exitCode !== 0);
}

/** The next attempt of a container whose latest attempt `c` is done, unless a back-off holds it. */
function restart(input: PlanInput, ctr: ContainerSpec, init: boolean, c: ContainerStatus): ContainerAction {
  const key = restartKey(input.pod, ctr.name);
  const finishedAt = c.finishedAt > 0n ? ns2ms(c.finishedAt) : input.now;
  const remaining = input.backoff.remaining(key, finishedAt);
  if (remaining > 0) {
    return {
      kind: "crashLoopBackOff",
      spec: ctr,
      init,
      id: c.id,
      remainingMs: remaining,
      delayMs: input.backoff.current(key),
    };
  }
  const action = start(input, ctr, init, c);
  if (action.kind !== "start") return action;
  return {
    ...action,
    restartKey: key,
    ...(c.state === ContainerState.CONTAINER_CREATED ? { removeId: c.id } : {}),
  };
}

function start(
  input: PlanInput,
  ctr: ContainerSpec,
  init: boolean,
  previous: ContainerStatus | undefined,
): ContainerAction {
  const t = input.tracked.get(ctr.name);
  if (t?.retryAt !== undefined && input.now < t.retryAt) {
    return { kind: "retryLater", spec: ctr, init, remainingMs: t.retryAt - input.now };
  }
  const attempt = Math.max(previous ? (previous.metadata?.attempt ?? 0) + 1 : 0, (t?.attempt ?? -1) + 1);
  return { kind: "start", spec: ctr, init, attempt };
}

/** Exits not reported yet: the latest attempt of each container, exited, with an ID not noted. */
export function newExits(
  containers: readonly ContainerStatus[],
  tracked: ReadonlyMap<string, TrackedContainer>,
): { name: string; id: string; exitCode: number }[] {
  const exits: { name: string; id: string; exitCode: number }[] = [];
  for (const [name, attempts] of groupLatest(containers)) {
    const c = attempts[0];
    if (!c || c.state !== ContainerState.CONTAINER_EXITED) continue;
    if (tracked.get(name)?.exitNoted === c.id) continue;
    exits.push({ name, id: c.id, exitCode: c.exitCode });
  }
  return exits;
}

/** Statuses by container name, latest attempt first. */
export function groupLatest(containers: readonly ContainerStatus[]): Map<string, ContainerStatus[]> {
  const m = new Map<string, ContainerStatus[]>();
  for (const c of containers) {
    const name = c.metadata?.name ?? "";
    m.set(name, [...(m.get(name) ?? []), c]);
  }
  for (const list of m.values()) list.sort((a, b) => (b.metadata?.attempt ?? 0) - (a.metadata?.attempt ?? 0));
  return m;
}

const ns2ms = (ns: bigint) => Number(ns / 1_000_000n);
