/**
 * The pod worker's container starter (the kubelet's startContainer): creates and starts one
 * attempt of a container in the pod's sandbox, then, once the front end has been told, prunes old
 * attempts and runs the postStart hook. Events follow the kubelet (Created, Started, Failed,
 * FailedPostStartHook).
 *
 * A failed create or start is not retried here: the result carries the waiting reason
 * (CreateContainerError, RunContainerError) and when to retry (back-off keyed
 * `<pod uid>/<container>/create`, doubling per failure, forgotten on success).
 */
import type { PodSandboxConfig } from "../api/gen/runtime/v1/api_pb.js";
import type { CriClient } from "../client/index.js";
import type { Backoff } from "./backoff.js";
import type { Clock } from "./clock.js";
import { containerConfig, type HostInfo } from "./convert.js";
import type { EventRecorder } from "./events.js";
import { errorMessage, type StepResult } from "./image-puller.js";
import type { Layout } from "./layout.js";
import { criTarget, runHandler, stopContainer } from "./lifecycle.js";
import { type ContainerSpec, LABELS, type Pod } from "./types.js";
import { prepareSubPaths, prepareTerminationMessageFile } from "./volumes.js";

/** Options of {@link ContainerStarter}. */
export interface ContainerStarterOptions {
  client: CriClient;
  clock: Clock;
  backoff: Backoff;
  events: EventRecorder;
  layout: Layout;
  host: HostInfo;
  owner: string;
  pod: Pod;
}

/** The sandbox a container goes into. */
export interface SandboxRef {
  id: string;
  attempt: number;
  ip: string;
}

/** A started attempt. */
export interface StartedContainer {
  id: string;
  /** Absolute path of its CRI log. */
  logPath: string;
}

export class ContainerStarter {
  constructor(private readonly o: ContainerStarterOptions) {}

  /** Creates and starts attempt `attempt` of `ctr` (its image is present). */
  async start(
    ctr: ContainerSpec,
    o: { init: boolean; attempt: number; sandbox: SandboxRef; sandboxConfig: PodSandboxConfig; object: string },
  ): Promise<StepResult & { started?: StartedContainer }> {
    const { client, events, backoff, layout, pod } = this.o;
    const uid = pod.metadata.uid;
    const createKey = `${uid}/${ctr.name}/create`;
    const fail = (reason: string, err: unknown): StepResult => {
      const message = errorMessage(err);
      events.record("Warning", "Failed", `Error: ${message}`, o.object);
      backoff.restarted(createKey);
      return { ok: false, waiting: { reason, message }, retryInMs: backoff.current(createKey) };
    };
    let id: string;
    try {
      await prepareSubPaths(pod, ctr, layout);
      const msgFile = layout.terminationMessageFile(uid, ctr.name, o.attempt);
      await prepareTerminationMessageFile(msgFile);
      const config = containerConfig(pod, ctr, {
        layout,
        restartCount: o.attempt,
        init: o.init,
        podIP: o.sandbox.ip,
        host: this.o.host,
        terminationMessageFile: msgFile,
        owner: this.o.owner,
      });
      const r = await client.runtime.createContainer({
        podSandboxId: o.sandbox.id,
        config,
        sandboxConfig: o.sandboxConfig,
      });
      id = r.containerId;
    } catch (err) {
      return fail("CreateContainerError", err);
    }
    events.record("Normal", "Created", `Created container ${ctr.name}`, o.object);
    try {
      await client.runtime.startContainer({ containerId: id });
    } catch (err) {
      return fail("RunContainerError", err);
    }
    events.record("Normal", "Started", `Started container ${ctr.name}`, o.object);
    backoff.forget(createKey);
    const { namespace, name } = pod.metadata;
    const logPath = `${layout.podLogDir(namespace, name, uid)}/${layout.containerLogPath(ctr.name, o.attempt)}`;
    return { ok: true, started: { id, logPath } };
  }

  /**
   * After a start: removes attempts older than the one before it (that one stays for `berth
   * describe`'s Last State and `pod-logs -p`), then runs the postStart hook. False when the hook
   * failed (the attempt is being stopped).
   */
  async afterStart(
    ctr: ContainerSpec,
    o: { id: string; attempt: number; sandboxId: string; probeHost: string; object: string },
  ): Promise<boolean> {
    const { client, clock, events, pod } = this.o;
    const { containers } = await client.runtime.listContainers({
      filter: { podSandboxId: o.sandboxId, labelSelector: { [LABELS.containerName]: ctr.name } },
    });
    for (const c of containers) {
      if ((c.metadata?.attempt ?? 0) < o.attempt - 1)
        // Best effort: an old container left behind is removed again after the next start.
        await client.runtime.removeContainer({ containerId: c.id }).catch(() => {});
    }
    if (!ctr.lifecycle.postStart) return true;
    const outcome = await runHandler(
      ctr.lifecycle.postStart,
      criTarget(client, o.id, o.probeHost, ctr),
      pod.spec.terminationGracePeriodSeconds || 30,
      clock,
    );
    if (outcome.ok) return true;
    events.record("Warning", "FailedPostStartHook", `PostStartHook failed: ${outcome.message}`, o.object);
    await stopContainer(o.id, ctr.name, {
      client,
      clock,
      gracePeriodSeconds: pod.spec.terminationGracePeriodSeconds,
      host: o.probeHost,
      events,
      message: `FailedPostStartHook: stopping container ${ctr.name}`,
    });
    return false;
  }
}
