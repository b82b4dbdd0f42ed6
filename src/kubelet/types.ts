/**
 * The pod runner's model of a Kubernetes `v1` Pod: the subset of the API berth runs, after
 * validation and defaulting (`manifest.ts`). Field names and meanings are Kubernetes'; every
 * optional field the runner acts on has its default filled in, so the rest of the module never
 * re-derives a default. A Pod is serialised into its sandbox's annotations (`ANNOTATIONS.pod`),
 * which is how `berth get`/`describe`/`down` in another process learn its spec from CRI alone.
 */

/** A validated pod, ready to run. */
export interface Pod {
  metadata: PodMetadata;
  spec: PodSpec;
  /** Where the pod was declared. */
  source: PodSource;
}

export interface PodSource {
  /** Absolute path of the manifest file ("" for a manifest read from stdin or a string). */
  path: string;
  /** Index of the YAML document in the file (0-based). */
  document: number;
  /** Short hash of `path` (the `berth.io/manifest` label value). */
  manifestHash: string;
}

export interface PodMetadata {
  name: string;
  namespace: string;
  /** Deterministic: derived from the manifest path, namespace, name and the document's content. */
  uid: string;
  labels: Record<string, string>;
  annotations: Record<string, string>;
}

export type RestartPolicy = "Always" | "OnFailure" | "Never";
export type PullPolicy = "Always" | "IfNotPresent" | "Never";
export type DnsPolicy = "ClusterFirst" | "ClusterFirstWithHostNet" | "Default" | "None";

export interface PodSpec {
  hostname: string;
  hostNetwork: boolean;
  hostPID: boolean;
  hostIPC: boolean;
  shareProcessNamespace: boolean;
  dnsPolicy: DnsPolicy;
  dnsConfig?: PodDnsConfig;
  restartPolicy: RestartPolicy;
  terminationGracePeriodSeconds: number;
  securityContext: PodSecurityContext;
  initContainers: ContainerSpec[];
  containers: ContainerSpec[];
  volumes: Volume[];
  /** RuntimeClass name, passed to RunPodSandbox as the runtime handler. */
  runtimeClassName?: string;
}

export interface PodDnsConfig {
  nameservers: string[];
  searches: string[];
  options: { name: string; value?: string }[];
}

export interface SeccompProfile {
  type: "RuntimeDefault" | "Unconfined" | "Localhost";
  localhostProfile?: string;
}

export interface PodSecurityContext {
  runAsUser?: number;
  runAsGroup?: number;
  runAsNonRoot?: boolean;
  supplementalGroups: number[];
  /** Added to every container's supplemental groups (berth does not chown volumes). */
  fsGroup?: number;
  /** Merge (the default) adds the image's /etc/group entries for the user; Strict does not. */
  supplementalGroupsPolicy?: "Merge" | "Strict";
  sysctls: { name: string; value: string }[];
  seccompProfile?: SeccompProfile;
}

export interface ContainerSecurityContext {
  runAsUser?: number;
  runAsGroup?: number;
  runAsNonRoot?: boolean;
  privileged: boolean;
  readOnlyRootFilesystem: boolean;
  /** false → no_new_privs. */
  allowPrivilegeEscalation?: boolean;
  capabilities: { add: string[]; drop: string[] };
  seccompProfile?: SeccompProfile;
}

export interface ContainerPort {
  name?: string;
  containerPort: number;
  hostPort: number;
  hostIP: string;
  protocol: "TCP" | "UDP" | "SCTP";
}

/** `valueFrom.fieldRef.fieldPath` values the runner resolves. */
export type FieldPath = string;

export interface EnvVar {
  name: string;
  value?: string;
  /** `valueFrom.fieldRef.fieldPath`, e.g. `metadata.name`, `status.podIP`, `metadata.labels['app']`. */
  fieldRef?: FieldPath;
  /** `valueFrom.resourceFieldRef`: the container's own resource, e.g. `limits.memory`, with its divisor. */
  resourceFieldRef?: { resource: string; divisor: string; containerName?: string };
}

/** CPU in millicores and memory in bytes, already parsed from Kubernetes quantities. */
export interface ResourceList {
  cpuMillis?: number;
  memoryBytes?: number;
}

export interface Resources {
  requests: ResourceList;
  limits: ResourceList;
}

export interface VolumeMount {
  name: string;
  mountPath: string;
  readOnly: boolean;
  /** recursiveReadOnly Enabled or IfPossible: submounts read-only too. */
  recursiveReadOnly: boolean;
  subPath: string;
  mountPropagation: "None" | "HostToContainer" | "Bidirectional";
}

/** One handler of a probe or lifecycle hook (exactly one kind is set). */
export interface Handler {
  exec?: { command: string[] };
  httpGet?: HttpGetAction;
  tcpSocket?: { host: string; port: number | string };
  /** Lifecycle hooks only. */
  sleep?: { seconds: number };
}

export interface HttpGetAction {
  host: string;
  path: string;
  /** A number, or the name of one of the container's ports. */
  port: number | string;
  scheme: "HTTP" | "HTTPS";
  httpHeaders: { name: string; value: string }[];
}

export type ProbeKind = "liveness" | "readiness" | "startup";

export interface Probe extends Handler {
  initialDelaySeconds: number;
  periodSeconds: number;
  timeoutSeconds: number;
  successThreshold: number;
  failureThreshold: number;
  /** Overrides the pod's grace period when this probe kills the container. */
  terminationGracePeriodSeconds?: number;
}

export interface ContainerSpec {
  name: string;
  image: string;
  imagePullPolicy: PullPolicy;
  command: string[];
  args: string[];
  workingDir: string;
  env: EnvVar[];
  ports: ContainerPort[];
  resources: Resources;
  securityContext: ContainerSecurityContext;
  volumeMounts: VolumeMount[];
  terminationMessagePath: string;
  terminationMessagePolicy: "File" | "FallbackToLogsOnError";
  tty: boolean;
  lifecycle: { postStart?: Handler; preStop?: Handler };
  livenessProbe?: Probe;
  readinessProbe?: Probe;
  startupProbe?: Probe;
}

export type HostPathType =
  | ""
  | "DirectoryOrCreate"
  | "Directory"
  | "FileOrCreate"
  | "File"
  | "Socket"
  | "CharDevice"
  | "BlockDevice";

export interface Volume {
  name: string;
  emptyDir?: { medium: "" | "Memory"; sizeLimitBytes?: number };
  hostPath?: { path: string; type: HostPathType };
}

/**
 * Labels and annotations the runner puts on sandboxes and containers. The `io.kubernetes.*`
 * ones are the kubelet's own keys (so tools that know the kubelet's conventions read berth's
 * pods too); the `berth.io/*` ones are the runner's.
 */
export const LABELS = {
  podName: "io.kubernetes.pod.name",
  podNamespace: "io.kubernetes.pod.namespace",
  podUid: "io.kubernetes.pod.uid",
  containerName: "io.kubernetes.container.name",
  /** Short hash of the manifest's absolute path: `berth down FILE` finds a file's pods by it. */
  manifest: "berth.io/manifest",
  /** Who keeps the pod running: `run` (berth run) or `kubelet-<dir hash>` (berth kubelet). */
  owner: "berth.io/owner",
} as const;

export const ANNOTATIONS = {
  /** The validated Pod as JSON. */
  pod: "berth.io/pod",
  manifestPath: "berth.io/manifest-path",
  /** The runner's state directory (events, readiness), for `describe` from another process. */
  stateDir: "berth.io/state-dir",
  gracePeriod: "io.kubernetes.pod.terminationGracePeriod",
  containerHash: "io.kubernetes.container.hash",
  restartCount: "io.kubernetes.container.restartCount",
  terminationMessagePath: "io.kubernetes.container.terminationMessagePath",
  terminationMessagePolicy: "io.kubernetes.container.terminationMessagePolicy",
  /** `init` or `regular`. */
  containerType: "berth.io/container-type",
} as const;

/** Label and annotation prefixes a manifest may not set itself (the runner owns them). */
export const RESERVED_PREFIXES = ["berth.io/", "io.kubernetes."] as const;
