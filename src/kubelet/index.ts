/**
 * The pod runner: the kubelet's job for Kubernetes Pod manifests on one machine, over berthd's
 * CRI socket (src/client only). A library: its commands (`berth run`, `down`, `get`, `describe`,
 * `pod-logs`, `kubelet`) live in src/cli/ and use what is exported here.
 *
 *   manifest ─▶ PodSet (one per file; ManifestDirAgent keeps one per file of a directory)
 *                 └─ PodWorker per pod: a loop of plan (computePodActions, pure) then act
 *                    (image puller, container starter, prober, status writer)
 *   pod-query / pod-view: pods as CRI shows them, for get/describe, from any process
 */

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
export { followLog, readLogLines } from "./logs.js";
export { loadManifest, ManifestError, manifestHash, type ParsedManifest, parseManifest } from "./manifest.js";
export { computePodActions, type PlanInput, type PodActions } from "./plan.js";
export { listPodViews, pidAlive, podView } from "./pod-query.js";
export { claimRunner, PodSet, type PodSetOptions, readRunner, releaseRunner } from "./pod-set.js";
export {
  type ContainerView,
  computePodView,
  humanDuration,
  POD_HEADERS,
  type PodPhase,
  type PodView,
  podRow,
} from "./pod-view.js";
export { describeProbe, ProbeState, ProbeWorker, runProbe } from "./probe.js";
export {
  bytesOf,
  cpuMillis,
  formatBytes,
  formatCpu,
  milliCpuToQuota,
  milliCpuToShares,
  parseQuantity,
} from "./quantity.js";
export { ANNOTATIONS, LABELS, type Pod } from "./types.js";
export { PodWorker, type PodWorkerHooks, type PodWorkerOptions } from "./worker.js";
