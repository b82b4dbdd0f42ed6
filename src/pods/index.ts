export { cgroupDir, cgroupsPath, sliceDir } from "./cgroup-paths.js";
export { checkpointContainer } from "./checkpoint.js";
export { type ImageRuntimeConfig, processArgs, processEnv, stopSignalOf } from "./container-spec.js";
export {
  type ContainerEvent,
  type ContainerImage,
  type ContainerImages,
  ContainerManager,
  type ContainerManagerOptions,
  type ContainerRootfs,
  type ContainerSandboxes,
  type ContainerStatsRecord,
} from "./containers.js";
export { hostsFile, resolvConf } from "./files.js";
export { createSandboxInfra, type InfraOptions, type SandboxInfra } from "./infra.js";
export {
  CONTAINER_TRANSITIONS,
  SANDBOX_TRANSITIONS,
  START_ERROR_EXIT_CODE,
  START_ERROR_REASON,
  transitionContainer,
  transitionSandbox,
} from "./lifecycle.js";
export {
  collectPodMetrics,
  type MetricDescriptor,
  type MetricSample,
  metricDescriptors,
  type PodMetrics,
  type PodMetricsSource,
  podMetrics,
} from "./pod-metrics.js";
export { applyPodResources } from "./pod-resources.js";
export type { Runtime } from "./runtime.js";
export { createSandboxHost, type SandboxHost } from "./sandbox-host.js";
export { type SandboxStatsRecord, sandboxStats } from "./sandbox-stats.js";
export {
  type SandboxContainers,
  SandboxManager,
  type SandboxManagerOptions,
  type SandboxNetwork,
} from "./sandboxes.js";
export {
  createStreamSessions,
  type PortForwarder,
  type StreamSessions,
  type StreamSessionsOptions,
} from "./sessions.js";
export type {
  CgroupDriver,
  ContainerConfig,
  ContainerFilter,
  ContainerRecord,
  ContainerState,
  Device,
  DnsConfig,
  Mount,
  NamespaceMode,
  NamespaceOptions,
  PodMetadata,
  PortMapping,
  SandboxConfig,
  SandboxFilter,
  SandboxRecord,
  SandboxState,
  SecurityProfile,
} from "./types.js";
