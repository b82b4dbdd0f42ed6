/**
 * The pod worker's sandbox steps over CRI: observe a sandbox with its containers, adopt the
 * ready sandbox a pod already has (after a runner restart), create one, kill a dead one.
 */
import { mkdir } from "node:fs/promises";
import { type ContainerStatus, PodSandboxState, type PodSandboxStatus } from "../api/gen/runtime/v1/api_pb.js";
import type { CriClient } from "../client/index.js";
import type { SandboxRef } from "./container-starter.js";
import { type HostInfo, sandboxConfig } from "./convert.js";
import type { EventRecorder } from "./events.js";
import { errorMessage } from "./image-puller.js";
import type { Layout } from "./layout.js";
import { isNotFound, listStatuses } from "./lifecycle.js";
import { LABELS, type Pod } from "./types.js";
import { preparePodVolumes } from "./volumes.js";

/** A sandbox as one pass sees it: undefined status when it is gone. */
export interface ObservedPod {
  status: PodSandboxStatus | undefined;
  containers: ContainerStatus[];
}

/** PodSandboxStatus with every container status (falling back to ListContainers for other runtimes). */
export async function observePod(client: CriClient, sandboxId: string): Promise<ObservedPod> {
  try {
    const r = await client.runtime.podSandboxStatus({ podSandboxId: sandboxId });
    const containers = r.containersStatuses.length > 0 ? r.containersStatuses : await listStatuses(client, sandboxId);
    return { status: r.status, containers };
  } catch (err) {
    if (isNotFound(err)) return { status: undefined, containers: [] };
    throw err;
  }
}

/** Whether an observed sandbox can keep the pod's containers. */
export function sandboxReady(o: ObservedPod): boolean {
  return o.status?.state === PodSandboxState.SANDBOX_READY;
}

/**
 * The ready sandbox of pod `uid` with the highest attempt, if any; every other sandbox of the pod
 * (stale attempts, dead ones) is stopped and removed.
 */
export async function adoptSandbox(client: CriClient, uid: string): Promise<SandboxRef | undefined> {
  const { items } = await client.runtime.listPodSandbox({ filter: { labelSelector: { [LABELS.podUid]: uid } } });
  const ready = items
    .filter((s) => s.state === PodSandboxState.SANDBOX_READY)
    .sort((a, b) => (b.metadata?.attempt ?? 0) - (a.metadata?.attempt ?? 0));
  const keep = ready[0];
  for (const s of items) if (s !== keep) await killSandbox(client, s.id);
  if (!keep) return undefined;
  const status = await client.runtime.podSandboxStatus({ podSandboxId: keep.id });
  return { id: keep.id, attempt: keep.metadata?.attempt ?? 0, ip: status.status?.network?.ip ?? "" };
}

/** Stops and removes a sandbox, best effort. */
export async function killSandbox(client: CriClient, id: string): Promise<void> {
  // Best effort: a sandbox left behind is retried on the next sync and by `berth down`.
  await client.runtime.stopPodSandbox({ podSandboxId: id }).catch(() => {});
  await client.runtime.removePodSandbox({ podSandboxId: id }).catch(() => {});
}

/**
 * Prepares the pod's log directory and volumes, then runs sandbox attempt `attempt`. `created` is
 * called as soon as the sandbox exists, so that a failure after it still leaves it known.
 */
export async function createSandbox(
  client: CriClient,
  pod: Pod,
  o: {
    attempt: number;
    layout: Layout;
    host: HostInfo;
    owner: string;
    events: EventRecorder;
    created(sandbox: SandboxRef): void;
  },
): Promise<PodSandboxStatus> {
  const { layout, host, owner, events } = o;
  const m = pod.metadata;
  try {
    await mkdir(layout.podLogDir(m.namespace, m.name, m.uid), { recursive: true, mode: 0o755 });
    await preparePodVolumes(pod, layout);
  } catch (err) {
    events.record("Warning", "FailedMount", `Unable to prepare volumes: ${errorMessage(err)}`);
    throw err;
  }
  const config = sandboxConfig(pod, { layout, attempt: o.attempt, owner, host });
  let id: string;
  try {
    const r = await client.runtime.runPodSandbox(
      { config, runtimeHandler: pod.spec.runtimeClassName ?? "" },
      { timeoutMs: 120_000 },
    );
    id = r.podSandboxId;
  } catch (err) {
    events.record("Warning", "FailedCreatePodSandBox", `Failed to create pod sandbox: ${errorMessage(err)}`);
    throw err;
  }
  const status = await client.runtime.podSandboxStatus({ podSandboxId: id });
  o.created({ id, attempt: o.attempt, ip: status.status?.network?.ip ?? "" });
  if (!status.status) throw new Error(`pod sandbox ${id} has no status`);
  return status.status;
}
