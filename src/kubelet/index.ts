/**
 * The pod runner: the kubelet's job for Kubernetes Pod manifests on one machine, over berthd's
 * CRI socket (src/client only). `registerKubelet` adds its commands to the berth CLI:
 *
 *   berth run FILE [-d]         run a manifest's pods (foreground: logs; Ctrl-C removes them)
 *   berth down FILE             stop and remove them (preStop hooks, grace periods)
 *   berth get pods              NAME READY STATUS RESTARTS AGE IP
 *   berth describe pod NAME     containers, probes, conditions, volumes, events
 *   berth pod-logs POD [-c C]   a pod container's log (berth logs takes a container ID)
 *   berth kubelet --manifests DIR   static pods: keep every manifest in DIR running
 *
 * The building blocks are exported for tests and other front ends.
 */
import type { Command } from "commander";
import { registerGet } from "./cmd-get.js";
import { registerKubeletAgent } from "./cmd-kubelet.js";
import { registerRun } from "./cmd-run.js";

export { type AgentOptions, agentOwner, ManifestDirAgent } from "./agent.js";
export { Backoff, type BackoffOptions } from "./backoff.js";
export { type Clock, ManualClock, realClock } from "./clock.js";
export {
  containerConfig,
  containerResources,
  expandVars,
  type HostInfo,
  resolveEnv,
  sandboxConfig,
} from "./convert.js";
export { type PodEvent, readEvents } from "./events.js";
export { readHostInfo } from "./host.js";
export { createLayout, DEFAULT_LOG_ROOT, DEFAULT_STATE_DIR, type Layout } from "./layout.js";
export { removePod } from "./lifecycle.js";
export { loadManifest, ManifestError, manifestHash, type ParsedManifest, parseManifest } from "./manifest.js";
export { listPodViews, podView } from "./pod-query.js";
export { PodSet, type PodSetOptions } from "./pod-set.js";
export { computePodView, type PodPhase, type PodView } from "./pod-view.js";
export { ProbeState, ProbeWorker, runProbe } from "./probe.js";
export { bytesOf, cpuMillis, milliCpuToQuota, milliCpuToShares, parseQuantity } from "./quantity.js";
export { ANNOTATIONS, LABELS, type Pod } from "./types.js";
export { PodWorker, type PodWorkerHooks, type PodWorkerOptions } from "./worker.js";

/** Adds run, down, get, describe, pod-logs and kubelet to the berth program. */
export function registerKubelet(program: Command): void {
  registerRun(program);
  registerGet(program);
  registerKubeletAgent(program);
}
