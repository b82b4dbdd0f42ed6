/**
 * Domain types of pod sandboxes and containers: what berth records and acts on, free of
 * protobuf. `src/cri/convert.ts` maps the CRI messages onto these and back.
 */
import type { ResourceLimits } from "../oci/index.js";

/** How cgroups are named and created: plain paths (cgroupfs) or systemd units (see cgroup-paths.ts). */
export type CgroupDriver = "cgroupfs" | "systemd";

/** Identity the kubelet gives a pod; unique per (namespace, name, uid, attempt). */
export interface PodMetadata {
  name: string;
  uid: string;
  namespace: string;
  attempt: number;
}

/** Whose namespace a pod or container uses (CRI's NamespaceMode). */
export type NamespaceMode = "pod" | "container" | "node" | "target";

/** How a container's supplementary groups are computed: with the image's /etc/group entries, or without. */
export type SupplementalGroupsPolicy = "merge" | "strict";

export interface NamespaceOptions {
  network: NamespaceMode;
  pid: NamespaceMode;
  ipc: NamespaceMode;
  /** With pid "target": the container whose PID namespace to join. */
  targetId: string;
}

export interface PortMapping {
  protocol: "tcp" | "udp" | "sctp";
  containerPort: number;
  hostPort: number;
  hostIp: string;
}

export interface DnsConfig {
  servers: string[];
  searches: string[];
  options: string[];
}

/** Security profile choice (seccomp, AppArmor): CRI's SecurityProfile. */
export interface SecurityProfile {
  type: "runtime-default" | "unconfined" | "localhost";
  localhostRef: string;
}

/** What a pod asks for, taken from RunPodSandbox's PodSandboxConfig. */
export interface SandboxConfig {
  metadata: PodMetadata;
  hostname: string;
  logDirectory: string;
  dns?: DnsConfig;
  portMappings: PortMapping[];
  labels: Record<string, string>;
  annotations: Record<string, string>;
  cgroupParent: string;
  sysctls: Record<string, string>;
  namespaces: NamespaceOptions;
  privileged: boolean;
  runAsUser?: number;
  runAsGroup?: number;
  supplementalGroups: number[];
  readonlyRootfs: boolean;
  seccomp?: SecurityProfile;
  overheadAndResources?: ResourceLimits;
}

/** Sandbox life: created -> ready -> notready (stopped); `creating` marks an unfinished RunPodSandbox. */
export type SandboxState = "creating" | "ready" | "notready";

/** The persisted record of a sandbox. Timestamps are nanoseconds since the epoch, as decimal strings. */
export interface SandboxRecord {
  id: string;
  state: SandboxState;
  config: SandboxConfig;
  runtimeHandler: string;
  /** The cgroup driver the pod's cgroups were made with (absent in records older than the option: cgroupfs). */
  cgroupDriver?: CgroupDriver;
  createdAt: string;
  /** Pinned namespace files (absent for host namespaces). */
  netnsPath?: string;
  ipcPath?: string;
  utsPath?: string;
  /** PID of the infra process holding a shared PID namespace (pid mode "pod"). */
  infraId?: string;
  infraPid?: number;
  ip: string;
  additionalIps: string[];
  /** CNI set up and not torn down yet. */
  networkUp: boolean;
  /** Directory with the pod's hostname, hosts and resolv.conf, and its /dev/shm mount. */
  dir: string;
  shmMounted: boolean;
}

export interface Mount {
  containerPath: string;
  hostPath: string;
  readonly: boolean;
  /** Every submount of the bind read-only too (CRI recursive_read_only; implies readonly and private). */
  recursiveReadOnly: boolean;
  propagation: "private" | "rslave" | "rshared";
  selinuxRelabel: boolean;
  /** An image volume: this image (ID or reference, already pulled) mounted read-only instead of hostPath. */
  image?: string;
  /** With `image`: the directory of the image to mount instead of its root. */
  imageSubPath?: string;
}

export interface Device {
  containerPath: string;
  hostPath: string;
  permissions: string;
}

/** What a container asks for, taken from CreateContainer's ContainerConfig. */
export interface ContainerConfig {
  name: string;
  attempt: number;
  image: string;
  command: string[];
  args: string[];
  workingDir: string;
  envs: { key: string; value: string }[];
  mounts: Mount[];
  devices: Device[];
  labels: Record<string, string>;
  annotations: Record<string, string>;
  logPath: string;
  stdin: boolean;
  stdinOnce: boolean;
  tty: boolean;
  resources: ResourceLimits & { oomScoreAdj?: number };
  privileged: boolean;
  capabilities: { add: string[]; drop: string[] };
  namespaces: NamespaceOptions;
  runAsUser?: number;
  runAsUsername: string;
  runAsGroup?: number;
  supplementalGroups: number[];
  supplementalGroupsPolicy: SupplementalGroupsPolicy;
  readonlyRootfs: boolean;
  noNewPrivs: boolean;
  maskedPaths: string[];
  readonlyPaths: string[];
  seccomp?: SecurityProfile;
  apparmor?: SecurityProfile;
  selinuxRequested: boolean;
  stopSignal: string;
}

/** Container life: created -> running -> exited; `creating` marks an unfinished CreateContainer. */
export type ContainerState = "creating" | "created" | "running" | "exited" | "unknown";

/** The persisted record of a container. Timestamps are nanoseconds since the epoch, as decimal strings ("0" = unset). */
export interface ContainerRecord {
  id: string;
  sandboxId: string;
  state: ContainerState;
  config: ContainerConfig;
  /** The image as the kubelet named it, and the resolved image ID (`sha256:<config digest>`). */
  imageRef: string;
  imageId: string;
  createdAt: string;
  startedAt: string;
  finishedAt: string;
  exitCode: number;
  reason: string;
  message: string;
  pid: number;
  /** Absolute path of the CRI log file. */
  logPath: string;
  /** Signal used by StopContainer (from the image's STOPSIGNAL or the CRI field), e.g. "SIGTERM". */
  stopSignal: string;
  /** uid/gid the container runs as (ContainerStatus.user). */
  uid: number;
  gid: number;
  supplementalGids: number[];
}

/** Filters of ListPodSandbox. */
export interface SandboxFilter {
  id?: string;
  state?: "ready" | "notready";
  labels?: Record<string, string>;
}

/** Filters of ListContainers. */
export interface ContainerFilter {
  id?: string;
  state?: "created" | "running" | "exited" | "unknown";
  sandboxId?: string;
  labels?: Record<string, string>;
}

let lastNs = 0n;

/**
 * Nanoseconds since the epoch as a decimal string (JSON cannot carry bigint). Strictly increasing within
 * the process: the sub-millisecond digits come from a different clock than the milliseconds, so two calls
 * in the same millisecond could otherwise go backwards (a container "started" before it was created).
 */
export function nowNs(): string {
  const now = BigInt(Date.now()) * 1_000_000n + (process.hrtime.bigint() % 1_000_000n);
  lastNs = now > lastNs ? now : lastNs + 1n;
  return lastNs.toString();
}
