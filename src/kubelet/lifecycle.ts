/**
 * Stopping containers and pods the kubelet's way, shared by the pod worker (liveness restarts,
 * `berth run` on Ctrl-C, a deleted static manifest) and `berth down` in a process that has no
 * worker for the pod:
 *
 *   1. the preStop hook runs (exec through ExecSync, httpGet, or sleep), within the grace period;
 *   2. StopContainer with what is left of the grace period (at least 2 s, as the kubelet gives);
 *   3. for a pod: every container at once, then StopPodSandbox and RemovePodSandbox, then the
 *      pod's volumes, state and log directories.
 *
 * Nothing here throws for a pod or container that is already gone.
 */
import { Code, ConnectError } from "@connectrpc/connect";
import { ContainerState, type ContainerStatus } from "../api/gen/runtime/v1/api_pb.js";
import type { CriClient } from "../client/index.js";
import type { Clock } from "./clock.js";
import type { EventRecorder } from "./events.js";
import type { Layout } from "./layout.js";
import { podFromAnnotations } from "./pod-view.js";
import { type ProbeOutcome, type ProbeTarget, runProbe } from "./probe.js";
import { ANNOTATIONS, type ContainerSpec, type Handler, LABELS, type Pod } from "./types.js";
import { removePodDirs } from "./volumes.js";

/** The kubelet's floor for the time StopContainer gets after a preStop hook. */
export const MIN_GRACE_AFTER_HOOK_SECONDS = 2;

/** Runs a lifecycle handler against a container; resolves with its outcome (never throws). */
export async function runHandler(
  handler: Handler,
  target: ProbeTarget,
  timeoutSeconds: number,
  clock: Clock,
): Promise<ProbeOutcome> {
  if (handler.sleep) {
    await clock.sleep(Math.min(handler.sleep.seconds, timeoutSeconds) * 1000);
    return { ok: true, message: "" };
  }
  return runProbe(handler, target, Math.max(1, timeoutSeconds));
}

/** A ProbeTarget whose exec goes through CRI ExecSync. */
export function criTarget(client: CriClient, containerId: string, host: string, ctr?: ContainerSpec): ProbeTarget {
  const decoder = new TextDecoder();
  return {
    containerId,
    host,
    ports: ctr?.ports ?? [],
    exec: async (id, cmd, timeoutSeconds) => {
      const r = await client.runtime.execSync(
        { containerId: id, cmd, timeout: BigInt(timeoutSeconds) },
        { timeoutMs: (timeoutSeconds + 10) * 1000 },
      );
      return { exitCode: r.exitCode, output: decoder.decode(r.stdout) + decoder.decode(r.stderr) };
    },
  };
}

/** True for the gRPC NotFound a CRI call gives for a container or sandbox that is gone. */
export function isNotFound(err: unknown): boolean {
  return err instanceof ConnectError && err.code === Code.NotFound;
}

/** Options of {@link stopContainer}. */
export interface StopContainerOptions {
  client: CriClient;
  clock: Clock;
  gracePeriodSeconds: number;
  /** The container's spec (for its preStop hook); none → no hook. */
  spec?: ContainerSpec;
  /** Probe/hook host: pod IP, or 127.0.0.1 for hostNetwork pods. */
  host: string;
  events?: EventRecorder;
  /** Event message; default `Stopping container <name>`. */
  message?: string;
}

/** preStop hook, then StopContainer with the rest of the grace period. */
export async function stopContainer(containerId: string, name: string, o: StopContainerOptions): Promise<void> {
  const object = `spec.containers{${name}}`;
  o.events?.record("Normal", "Killing", o.message ?? `Stopping container ${name}`, object);
  const start = o.clock.now();
  let grace = o.gracePeriodSeconds;
  const preStop = o.spec?.lifecycle.preStop;
  if (preStop && grace > 0) {
    const outcome = await runHandler(preStop, criTarget(o.client, containerId, o.host, o.spec), grace, o.clock);
    if (!outcome.ok) o.events?.record("Warning", "FailedPreStopHook", `PreStopHook failed: ${outcome.message}`, object);
    const used = Math.ceil((o.clock.now() - start) / 1000);
    grace = Math.max(MIN_GRACE_AFTER_HOOK_SECONDS, grace - used);
  }
  try {
    await o.client.runtime.stopContainer({ containerId, timeout: BigInt(grace) }, { timeoutMs: (grace + 60) * 1000 });
  } catch (err) {
    if (!isNotFound(err)) throw err;
  }
}

/** Options of {@link removePod}. */
export interface RemovePodOptions {
  client: CriClient;
  clock: Clock;
  layout: Layout;
  /** Overrides the pod's terminationGracePeriodSeconds. */
  gracePeriodSeconds?: number;
  events?: EventRecorder;
  /** IP for hooks of hostNetwork pods' containers. */
  hostIP?: string;
}

/**
 * Stops and removes every sandbox of pod `uid` (all attempts), gracefully, then its directories.
 * The pod's spec comes from `pod` or else from the sandbox annotations. Returns the number of
 * sandboxes removed.
 */
export async function removePod(uid: string, o: RemovePodOptions & { pod?: Pod }): Promise<number> {
  const { items } = await o.client.runtime.listPodSandbox({ filter: { labelSelector: { [LABELS.podUid]: uid } } });
  let meta: { uid: string; namespace: string; name: string } | undefined;
  for (const sb of items) {
    const pod = o.pod ?? podFromAnnotations(sb.annotations);
    meta ??= { uid, namespace: sb.metadata?.namespace ?? "", name: sb.metadata?.name ?? "" };
    const grace =
      o.gracePeriodSeconds ??
      pod?.spec.terminationGracePeriodSeconds ??
      Number(sb.annotations[ANNOTATIONS.gracePeriod] ?? 30);
    const status = await o.client.runtime.podSandboxStatus({ podSandboxId: sb.id }).catch((err: unknown) => {
      if (isNotFound(err)) return undefined;
      throw err;
    });
    if (!status) continue;
    const host = pod?.spec.hostNetwork ? "127.0.0.1" : status.status?.network?.ip || "127.0.0.1";
    const containers =
      status.containersStatuses.length > 0 ? status.containersStatuses : await listStatuses(o.client, sb.id);
    await Promise.all(
      containers
        .filter((c) => c.state === ContainerState.CONTAINER_RUNNING)
        .map((c) => {
          const name = c.metadata?.name ?? "";
          const spec = pod?.spec.containers.find((x) => x.name === name);
          return stopContainer(c.id, name, {
            client: o.client,
            clock: o.clock,
            gracePeriodSeconds: grace,
            host,
            ...(spec ? { spec } : {}),
            ...(o.events ? { events: o.events } : {}),
          });
        }),
    );
    await o.client.runtime.stopPodSandbox({ podSandboxId: sb.id }).catch((err: unknown) => {
      if (!isNotFound(err)) throw err;
    });
    await o.client.runtime.removePodSandbox({ podSandboxId: sb.id });
  }
  await o.events?.close();
  if (o.pod) meta = { uid, namespace: o.pod.metadata.namespace, name: o.pod.metadata.name };
  if (meta) await removePodDirs(meta, o.layout);
  return items.length;
}

/** Every container status of a sandbox through ListContainers + ContainerStatus (runtimes that do not fill PodSandboxStatus.containers_statuses). */
export async function listStatuses(client: CriClient, sandboxId: string): Promise<ContainerStatus[]> {
  const { containers } = await client.runtime.listContainers({ filter: { podSandboxId: sandboxId } });
  const out: ContainerStatus[] = [];
  for (const c of containers) {
    try {
      const s = await client.runtime.containerStatus({ containerId: c.id });
      if (s.status) out.push(s.status);
    } catch (err) {
      if (!isNotFound(err)) throw err;
    }
  }
  return out;
}
