/**
 * The only place where CRI protobuf messages meet berth's domain types. Requests become
 * domain configs here (with the validation that needs protobuf knowledge: enums, wrappers),
 * and domain records become CRI responses.
 */
import type { MessageInitShape } from "@bufbuild/protobuf";
import {
  type ContainerSchema,
  type ContainerStatusSchema,
  type ContainerConfig as CriContainerConfig,
  ContainerState as CriContainerState,
  NamespaceMode as CriNamespaceMode,
  type SecurityProfile as CriSecurityProfile,
  type Int64Value,
  type LinuxContainerResources,
  MountPropagation,
  type NamespaceOption,
  type PodSandboxConfig,
  type PodSandboxSchema,
  PodSandboxState,
  type PodSandboxStatusSchema,
  Protocol,
  SecurityProfile_ProfileType,
  Signal,
  SupplementalGroupsPolicy,
} from "../api/gen/runtime/v1/api_pb.js";
import { invalidArgument, unimplemented } from "../errdefs/index.js";
import type {
  ContainerConfig,
  ContainerRecord,
  ContainerState,
  NamespaceMode,
  NamespaceOptions,
  SandboxConfig,
  SandboxRecord,
  SecurityProfile,
} from "../pods/index.js";

const decoder = new TextDecoder();

function nsMode(m: CriNamespaceMode): NamespaceMode {
  switch (m) {
    case CriNamespaceMode.POD:
      return "pod";
    case CriNamespaceMode.CONTAINER:
      return "container";
    case CriNamespaceMode.NODE:
      return "node";
    case CriNamespaceMode.TARGET:
      return "target";
    default:
      throw invalidArgument(`unknown namespace mode ${m}`);
  }
}

function toCriNsMode(m: NamespaceMode): CriNamespaceMode {
  return {
    pod: CriNamespaceMode.POD,
    container: CriNamespaceMode.CONTAINER,
    node: CriNamespaceMode.NODE,
    target: CriNamespaceMode.TARGET,
  }[m];
}

/**
 * Namespace modes as sent. An unset field is the enum's zero value, POD, as in containerd: a container
 * with pid POD shares the PID namespace of its pod (see pidNamespaceOpt in pods for a pod without one).
 * Only a sandbox sent with no NamespaceOption at all gets pid CONTAINER, so that crictl's bare pods run
 * no infra process; the kubelet always sends pid explicitly (CONTAINER unless shareProcessNamespace).
 */
function namespaces(o: NamespaceOption | undefined): NamespaceOptions {
  // A pod of its own user namespace (`hostUsers: false`) must not run as host root instead: berth reports
  // userNamespaces: false in Status.features and refuses the request until it can honour it (issue #16).
  const userns = o?.usernsOptions?.mode ?? CriNamespaceMode.NODE;
  if (userns !== CriNamespaceMode.NODE) {
    throw unimplemented(
      `namespace_options.userns_options: mode ${CriNamespaceMode[userns] ?? userns} (own user namespace, hostUsers: false) is not supported by this runtime; only NODE (the host's user namespace) is`,
    );
  }
  return {
    network: nsMode(o?.network ?? CriNamespaceMode.POD),
    pid: nsMode(o?.pid ?? CriNamespaceMode.POD),
    ipc: nsMode(o?.ipc ?? CriNamespaceMode.POD),
    targetId: o?.targetId ?? "",
  };
}

function groupsPolicy(p: SupplementalGroupsPolicy): "merge" | "strict" {
  if (p === SupplementalGroupsPolicy.Merge) return "merge";
  if (p === SupplementalGroupsPolicy.Strict) return "strict";
  throw invalidArgument(`linux.security_context.supplemental_groups_policy ${p}: unknown policy (Merge or Strict)`);
}

function int64(v: Int64Value | undefined): number | undefined {
  return v === undefined ? undefined : Number(v.value);
}

/**
 * A seccomp or AppArmor profile: the SecurityProfile message, else the legacy string field that
 * pre-1.19 kubelets send ("" means none). A legacy value berth cannot read is InvalidArgument, as in
 * containerd, rather than silently running the container unconfined.
 */
function profile(
  kind: "seccomp" | "apparmor",
  p: CriSecurityProfile | undefined,
  legacyPath: string,
): SecurityProfile | undefined {
  if (p) {
    const type =
      p.profileType === SecurityProfile_ProfileType.RuntimeDefault
        ? "runtime-default"
        : p.profileType === SecurityProfile_ProfileType.Unconfined
          ? "unconfined"
          : "localhost";
    return { type, localhostRef: p.localhostRef };
  }
  if (legacyPath === "") return undefined;
  if (legacyPath === "runtime/default" || legacyPath === "docker/default")
    return { type: "runtime-default", localhostRef: "" };
  if (legacyPath === "unconfined") return { type: "unconfined", localhostRef: "" };
  if (legacyPath.startsWith("localhost/"))
    return { type: "localhost", localhostRef: legacyPath.slice("localhost/".length) };
  throw invalidArgument(`unsupported ${kind} profile ${JSON.stringify(legacyPath)}`);
}

/** The domain form of CRI resources (int64 become numbers: far below 2^53 in practice). */
export function resources(r: LinuxContainerResources | undefined): ContainerConfig["resources"] {
  if (!r) return {};
  const out: ContainerConfig["resources"] = {
    cpuShares: Number(r.cpuShares),
    cpuQuota: Number(r.cpuQuota),
    cpuPeriod: Number(r.cpuPeriod),
    cpusetCpus: r.cpusetCpus,
    cpusetMems: r.cpusetMems,
    memoryLimitBytes: Number(r.memoryLimitInBytes),
    memorySwapLimitBytes: Number(r.memorySwapLimitInBytes),
    hugepageLimits: r.hugepageLimits.map((h) => ({ pageSize: h.pageSize, limit: Number(h.limit) })),
    unified: { ...r.unified },
  };
  if (r.oomScoreAdj !== 0n) out.oomScoreAdj = Number(r.oomScoreAdj);
  return out;
}

/** A port mapping's protocol; an enum value CRI does not define is InvalidArgument, never TCP by default. */
function portProtocol(p: Protocol, index: number): "tcp" | "udp" | "sctp" {
  if (p === Protocol.TCP) return "tcp";
  if (p === Protocol.UDP) return "udp";
  if (p === Protocol.SCTP) return "sctp";
  throw invalidArgument(`config.port_mappings[${index}].protocol ${p}: unknown protocol`);
}

/** RunPodSandbox's config → domain. Missing config or metadata is InvalidArgument. */
export function toSandboxConfig(c: PodSandboxConfig | undefined): SandboxConfig {
  if (!c) throw invalidArgument("pod sandbox config is required");
  if (!c.metadata) throw invalidArgument("pod sandbox metadata is required");
  const sc = c.linux?.securityContext;
  const ns = namespaces(sc?.namespaceOptions);
  // A bare pod (no NamespaceOption) gets no shared PID namespace, hence no infra process.
  if (!sc?.namespaceOptions) ns.pid = "container";
  const out: SandboxConfig = {
    metadata: {
      name: c.metadata.name,
      uid: c.metadata.uid,
      namespace: c.metadata.namespace,
      attempt: c.metadata.attempt,
    },
    hostname: c.hostname,
    logDirectory: c.logDirectory,
    portMappings: c.portMappings.map((p, i) => ({
      protocol: portProtocol(p.protocol, i),
      containerPort: p.containerPort,
      hostPort: p.hostPort,
      hostIp: p.hostIp,
    })),
    labels: { ...c.labels },
    annotations: { ...c.annotations },
    cgroupParent: c.linux?.cgroupParent ?? "",
    sysctls: { ...(c.linux?.sysctls ?? {}) },
    namespaces: ns,
    privileged: sc?.privileged ?? false,
    supplementalGroups: (sc?.supplementalGroups ?? []).map(Number),
    readonlyRootfs: sc?.readonlyRootfs ?? false,
  };
  if (c.dnsConfig)
    out.dns = {
      servers: [...c.dnsConfig.servers],
      searches: [...c.dnsConfig.searches],
      options: [...c.dnsConfig.options],
    };
  const runAsUser = int64(sc?.runAsUser);
  if (runAsUser !== undefined) out.runAsUser = runAsUser;
  const runAsGroup = int64(sc?.runAsGroup);
  if (runAsGroup !== undefined) out.runAsGroup = runAsGroup;
  const seccomp = profile("seccomp", sc?.seccomp, sc?.seccompProfilePath ?? "");
  if (seccomp) out.seccomp = seccomp;
  return out;
}

/** The OCI/POSIX name (or number, for real-time signals) of a CRI Signal; "" for RUNTIME_DEFAULT. */
export function signalName(s: Signal): string {
  if (s === Signal.RUNTIME_DEFAULT) return "";
  const name = Signal[s];
  if (name === undefined) throw invalidArgument(`unknown stop signal ${s}`);
  const plus = /^SIGRTMINPLUS(\d+)$/.exec(name);
  if (plus) return String(34 + Number(plus[1]));
  const minus = /^SIGRTMAXMINUS(\d+)$/.exec(name);
  if (minus) return String(64 - Number(minus[1]));
  if (name === "SIGRTMIN") return "34";
  if (name === "SIGRTMAX") return "64";
  return name;
}

/** The CRI Signal for a signal name (for ContainerStatus.stop_signal). */
export function toCriSignal(name: string): Signal {
  const v = (Signal as unknown as Record<string, number>)[name];
  return v === undefined ? Signal.RUNTIME_DEFAULT : (v as Signal);
}

/** CreateContainer's config → domain. */
export function toContainerConfig(c: CriContainerConfig | undefined, sandbox: SandboxConfig): ContainerConfig {
  if (!c) throw invalidArgument("container config is required");
  if (!c.metadata?.name) throw invalidArgument("container metadata name is required");
  if (!c.image?.image) throw invalidArgument("container image is required");
  const sc = c.linux?.securityContext;
  const ns = namespaces(sc?.namespaceOptions);
  const out: ContainerConfig = {
    name: c.metadata.name,
    attempt: c.metadata.attempt,
    image: c.image.image,
    command: [...c.command],
    args: [...c.args],
    workingDir: c.workingDir,
    envs: c.envs.map((kv) => ({ key: kv.key, value: decoder.decode(kv.value) })),
    mounts: c.mounts.map((m) => {
      if (!m.image?.image && m.imageSubPath)
        throw invalidArgument(`mount ${m.containerPath}: image_sub_path is only valid with an image volume`);
      if (m.uidMappings.length > 0 || m.gidMappings.length > 0)
        throw invalidArgument(`mount ${m.containerPath}: idmapped mounts are not supported`);
      // As the CRI asks (and containerd checks): rro is only meaningful on a read-only, private bind.
      if (m.recursiveReadOnly && !m.readonly)
        throw invalidArgument(`mount ${m.containerPath}: recursive_read_only requires readonly`);
      if (m.recursiveReadOnly && m.propagation !== MountPropagation.PROPAGATION_PRIVATE)
        throw invalidArgument(`mount ${m.containerPath}: recursive_read_only requires propagation PROPAGATION_PRIVATE`);
      return {
        containerPath: m.containerPath,
        hostPath: m.hostPath,
        readonly: m.readonly,
        recursiveReadOnly: m.recursiveReadOnly,
        ...(m.image?.image ? { image: m.image.image, imageSubPath: m.imageSubPath } : {}),
        selinuxRelabel: m.selinuxRelabel,
        propagation:
          m.propagation === MountPropagation.PROPAGATION_BIDIRECTIONAL
            ? "rshared"
            : m.propagation === MountPropagation.PROPAGATION_HOST_TO_CONTAINER
              ? "rslave"
              : "private",
      };
    }),
    devices: c.devices.map((d) => ({
      containerPath: d.containerPath,
      hostPath: d.hostPath,
      permissions: d.permissions,
    })),
    labels: { ...c.labels },
    annotations: { ...c.annotations },
    logPath: c.logPath,
    stdin: c.stdin,
    stdinOnce: c.stdinOnce,
    tty: c.tty,
    resources: resources(c.linux?.resources),
    privileged: sc?.privileged ?? false,
    capabilities: {
      add: [...(sc?.capabilities?.addCapabilities ?? [])],
      drop: [...(sc?.capabilities?.dropCapabilities ?? [])],
    },
    namespaces: ns,
    runAsUsername: sc?.runAsUsername ?? "",
    supplementalGroups: (sc?.supplementalGroups ?? []).map(Number),
    supplementalGroupsPolicy: groupsPolicy(sc?.supplementalGroupsPolicy ?? SupplementalGroupsPolicy.Merge),
    readonlyRootfs: sc?.readonlyRootfs ?? false,
    noNewPrivs: sc?.noNewPrivs ?? false,
    maskedPaths: [...(sc?.maskedPaths ?? [])],
    readonlyPaths: [...(sc?.readonlyPaths ?? [])],
    selinuxRequested: Boolean(
      sc?.selinuxOptions &&
        (sc.selinuxOptions.user || sc.selinuxOptions.role || sc.selinuxOptions.type || sc.selinuxOptions.level),
    ),
    stopSignal: signalName(c.stopSignal),
  };
  void sandbox;
  const runAsUser = int64(sc?.runAsUser);
  if (runAsUser !== undefined) out.runAsUser = runAsUser;
  const runAsGroup = int64(sc?.runAsGroup);
  if (runAsGroup !== undefined) {
    // A group alone would silently pair with the image's user; containerd refuses it the same way.
    if (runAsUser === undefined && !out.runAsUsername)
      throw invalidArgument(`user group "${runAsGroup}" is specified without user`);
    out.runAsGroup = runAsGroup;
  }
  const seccomp = profile("seccomp", sc?.seccomp, sc?.seccompProfilePath ?? "");
  if (seccomp) out.seccomp = seccomp;
  const apparmor = profile("apparmor", sc?.apparmor, sc?.apparmorProfile ?? "");
  if (apparmor) out.apparmor = apparmor;
  return out;
}

const SANDBOX_STATE: Record<SandboxRecord["state"], PodSandboxState> = {
  creating: PodSandboxState.SANDBOX_NOTREADY,
  ready: PodSandboxState.SANDBOX_READY,
  notready: PodSandboxState.SANDBOX_NOTREADY,
};

/** ListPodSandbox entry. */
export function toPodSandbox(r: SandboxRecord): MessageInitShape<typeof PodSandboxSchema> {
  return sandboxFields(r);
}

function sandboxFields(r: SandboxRecord) {
  return {
    id: r.id,
    metadata: { ...r.config.metadata },
    state: SANDBOX_STATE[r.state],
    createdAt: BigInt(r.createdAt),
    labels: r.config.labels,
    annotations: r.config.annotations,
    runtimeHandler: r.runtimeHandler,
  };
}

/** PodSandboxStatus. */
export function toPodSandboxStatus(r: SandboxRecord): MessageInitShape<typeof PodSandboxStatusSchema> {
  const ns = r.config.namespaces;
  return {
    ...sandboxFields(r),
    network: r.state === "ready" ? { ip: r.ip, additionalIps: r.additionalIps.map((ip) => ({ ip })) } : { ip: "" },
    linux: {
      namespaces: {
        options: {
          network: toCriNsMode(ns.network),
          pid: toCriNsMode(ns.pid),
          ipc: toCriNsMode(ns.ipc),
          targetId: ns.targetId,
        },
      },
    },
  };
}

const CONTAINER_STATE: Record<ContainerState, CriContainerState> = {
  creating: CriContainerState.CONTAINER_UNKNOWN,
  created: CriContainerState.CONTAINER_CREATED,
  running: CriContainerState.CONTAINER_RUNNING,
  exited: CriContainerState.CONTAINER_EXITED,
  unknown: CriContainerState.CONTAINER_UNKNOWN,
};

/** The domain filter state of a CRI container state. */
export function fromCriContainerState(s: CriContainerState): "created" | "running" | "exited" | "unknown" {
  return (["created", "running", "exited", "unknown"] as const)[s] ?? "unknown";
}

/** ListContainers entry. */
export function toContainer(r: ContainerRecord): MessageInitShape<typeof ContainerSchema> {
  return containerFields(r);
}

function containerFields(r: ContainerRecord) {
  return {
    id: r.id,
    podSandboxId: r.sandboxId,
    metadata: { name: r.config.name, attempt: r.config.attempt },
    image: { image: r.imageRef },
    imageRef: r.imageId,
    imageId: r.imageId,
    state: CONTAINER_STATE[r.state],
    createdAt: BigInt(r.createdAt),
    labels: r.config.labels,
    annotations: r.config.annotations,
  };
}

/** ContainerStatus. */
export function toContainerStatus(r: ContainerRecord): MessageInitShape<typeof ContainerStatusSchema> {
  const res = r.config.resources;
  return {
    ...containerFields(r),
    startedAt: BigInt(r.startedAt),
    finishedAt: BigInt(r.finishedAt),
    exitCode: r.exitCode,
    reason: r.reason,
    message: r.message,
    logPath: r.logPath,
    mounts: r.config.mounts.map((m) => ({
      containerPath: m.containerPath,
      hostPath: m.hostPath,
      readonly: m.readonly || m.image !== undefined,
      ...(m.image ? { image: { image: m.image }, imageSubPath: m.imageSubPath ?? "" } : {}),
      selinuxRelabel: m.selinuxRelabel,
      propagation:
        m.propagation === "rshared"
          ? MountPropagation.PROPAGATION_BIDIRECTIONAL
          : m.propagation === "rslave"
            ? MountPropagation.PROPAGATION_HOST_TO_CONTAINER
            : MountPropagation.PROPAGATION_PRIVATE,
    })),
    resources: {
      linux: {
        cpuShares: BigInt(res.cpuShares ?? 0),
        cpuQuota: BigInt(res.cpuQuota ?? 0),
        cpuPeriod: BigInt(res.cpuPeriod ?? 0),
        cpusetCpus: res.cpusetCpus ?? "",
        cpusetMems: res.cpusetMems ?? "",
        memoryLimitInBytes: BigInt(res.memoryLimitBytes ?? 0),
        memorySwapLimitInBytes: BigInt(res.memorySwapLimitBytes ?? 0),
        oomScoreAdj: BigInt(res.oomScoreAdj ?? 0),
        unified: { ...(res.unified ?? {}) },
        hugepageLimits: (res.hugepageLimits ?? []).map((h) => ({ pageSize: h.pageSize, limit: BigInt(h.limit) })),
      },
    },
    user: { linux: { uid: BigInt(r.uid), gid: BigInt(r.gid), supplementalGroups: r.supplementalGids.map(BigInt) } },
    stopSignal: toCriSignal(r.stopSignal),
  };
}
