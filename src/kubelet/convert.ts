/**
 * Pod → CRI: the sandbox and container configs the runner sends to berthd, built the way the
 * kubelet builds them (kuberuntime_sandbox.go, kuberuntime_container.go): the same labels and
 * annotations, CPU shares/quota from millicores, `$(VAR)` expansion in env, command and args,
 * and the kubelet's log layout. Pure functions; the caller supplies what it learnt from the
 * host and the sandbox (node name, IPs, resolv.conf, where volumes live).
 */
import { createHash } from "node:crypto";
import { availableParallelism, totalmem } from "node:os";
import { create } from "@bufbuild/protobuf";
import {
  type ContainerConfig,
  ContainerConfigSchema,
  type DNSConfig,
  type LinuxContainerResources,
  MountPropagation,
  NamespaceMode,
  type PodSandboxConfig,
  PodSandboxConfigSchema,
  Protocol,
  type SecurityProfile,
  SecurityProfile_ProfileType,
  SupplementalGroupsPolicy,
} from "../api/gen/runtime/v1/api_pb.js";
import type { Layout } from "./layout.js";
import { canonicalJson } from "./manifest.js";
import { CPU_PERIOD_US, divideCeil, milliCpuToQuota, milliCpuToShares, parseQuantity } from "./quantity.js";
import { ANNOTATIONS, type ContainerSpec, LABELS, type Pod, type Resources, type SeccompProfile } from "./types.js";

/** What the runner knows about the machine it runs pods on. */
export interface HostInfo {
  /** `spec.nodeName` for fieldRefs (the host name). */
  nodeName: string;
  /** `status.hostIP`, and the pod IP of hostNetwork pods. */
  hostIP: string;
  /** The host's resolv.conf, merged with `dnsConfig` the way the kubelet merges it. */
  dns: { servers: string[]; searches: string[]; options: string[] };
}

/** Options of {@link sandboxConfig}. */
export interface SandboxConfigOptions {
  layout: Layout;
  attempt: number;
  /** `run` or `kubelet-<dir hash>`. */
  owner: string;
  host: HostInfo;
}

/** The RunPodSandbox config of a pod. */
export function sandboxConfig(pod: Pod, o: SandboxConfigOptions): PodSandboxConfig {
  const { metadata: m, spec } = pod;
  const privileged = [...spec.initContainers, ...spec.containers].some((c) => c.securityContext.privileged);
  const sc = spec.securityContext;
  const dns = dnsConfig(pod, o.host);
  return create(PodSandboxConfigSchema, {
    metadata: { name: m.name, namespace: m.namespace, uid: m.uid, attempt: o.attempt },
    hostname: spec.hostNetwork ? o.host.nodeName : spec.hostname,
    logDirectory: o.layout.podLogDir(m.namespace, m.name, m.uid),
    ...(dns ? { dnsConfig: dns } : {}),
    portMappings: spec.containers.flatMap((c) =>
      c.ports
        .filter((p) => p.hostPort > 0)
        .map((p) => ({
          protocol: Protocol[p.protocol],
          containerPort: p.containerPort,
          hostPort: p.hostPort,
          hostIp: p.hostIP,
        })),
    ),
    labels: { ...m.labels, ...podLabels(pod, o.owner) },
    annotations: {
      ...m.annotations,
      [ANNOTATIONS.pod]: JSON.stringify(pod),
      [ANNOTATIONS.manifestPath]: pod.source.path,
      [ANNOTATIONS.stateDir]: o.layout.stateDir,
      [ANNOTATIONS.gracePeriod]: String(spec.terminationGracePeriodSeconds),
    },
    linux: {
      sysctls: Object.fromEntries(sc.sysctls.map((s) => [s.name, s.value])),
      securityContext: {
        namespaceOptions: namespaceOptions(pod),
        ...(sc.runAsUser !== undefined ? { runAsUser: { value: BigInt(sc.runAsUser) } } : {}),
        ...(sc.runAsGroup !== undefined ? { runAsGroup: { value: BigInt(sc.runAsGroup) } } : {}),
        supplementalGroups: supplementalGroups(pod).map(BigInt),
        supplementalGroupsPolicy: groupsPolicy(pod),
        privileged,
        ...(sc.seccompProfile ? { seccomp: securityProfile(sc.seccompProfile) } : {}),
      },
    },
  });
}

/** The labels that identify a pod's sandbox (and, with the container name, its containers). */
export function podLabels(pod: Pod, owner: string): Record<string, string> {
  return {
    [LABELS.podName]: pod.metadata.name,
    [LABELS.podNamespace]: pod.metadata.namespace,
    [LABELS.podUid]: pod.metadata.uid,
    [LABELS.manifest]: pod.source.manifestHash,
    [LABELS.owner]: owner,
  };
}

function namespaceOptions(pod: Pod) {
  const s = pod.spec;
  return {
    network: s.hostNetwork ? NamespaceMode.NODE : NamespaceMode.POD,
    pid: s.hostPID ? NamespaceMode.NODE : s.shareProcessNamespace ? NamespaceMode.POD : NamespaceMode.CONTAINER,
    ipc: s.hostIPC ? NamespaceMode.NODE : NamespaceMode.POD,
  };
}

function groupsPolicy(pod: Pod): SupplementalGroupsPolicy {
  return pod.spec.securityContext.supplementalGroupsPolicy === "Strict"
    ? SupplementalGroupsPolicy.Strict
    : SupplementalGroupsPolicy.Merge;
}

function supplementalGroups(pod: Pod): number[] {
  const sc = pod.spec.securityContext;
  return [...new Set([...sc.supplementalGroups, ...(sc.fsGroup !== undefined ? [sc.fsGroup] : [])])];
}

function securityProfile(p: SeccompProfile): Omit<SecurityProfile, "$typeName"> {
  return {
    profileType: SecurityProfile_ProfileType[p.type],
    localhostRef: p.localhostProfile ?? "",
  };
}

/**
 * The pod's DNS config. Default/ClusterFirst without dnsConfig: none (the runtime copies the
 * host's resolv.conf). With dnsConfig: the host's merged with it. None: dnsConfig alone.
 */
export function dnsConfig(pod: Pod, host: HostInfo): Omit<DNSConfig, "$typeName"> | undefined {
  const d = pod.spec.dnsConfig;
  const options = (list: { name: string; value?: string }[]) =>
    list.map((o) => (o.value === undefined ? o.name : `${o.name}:${o.value}`));
  if (pod.spec.dnsPolicy === "None") {
    return { servers: d?.nameservers ?? [], searches: d?.searches ?? [], options: options(d?.options ?? []) };
  }
  if (!d) return undefined;
  const merged = new Map<string, string>();
  for (const opt of [...host.dns.options, ...options(d.options)]) merged.set(opt.split(":")[0] ?? opt, opt);
  return {
    servers: unique([...host.dns.servers, ...d.nameservers]).slice(0, 3),
    searches: unique([...host.dns.searches, ...d.searches]).slice(0, 32),
    options: [...merged.values()],
  };
}

const unique = (xs: string[]) => [...new Set(xs)];

/** Options of {@link containerConfig}. */
export interface ContainerConfigOptions {
  layout: Layout;
  restartCount: number;
  init: boolean;
  podIP: string;
  host: HostInfo;
  /** Host file bind-mounted at terminationMessagePath ("" for none). */
  terminationMessageFile: string;
  /** The pod's manifest hash and owner for the container labels. */
  owner: string;
}

/** The CreateContainer config of one container of a pod. */
export function containerConfig(pod: Pod, ctr: ContainerSpec, o: ContainerConfigOptions): ContainerConfig {
  const env = resolveEnv(pod, ctr, { podIP: o.podIP, host: o.host });
  const lookup = (name: string) => env.find((e) => e.name === name)?.value;
  const sc = ctr.securityContext;
  const podSc = pod.spec.securityContext;
  const runAsUser = sc.runAsUser ?? podSc.runAsUser;
  const runAsGroup = sc.runAsGroup ?? podSc.runAsGroup;
  const seccomp = sc.seccompProfile ?? podSc.seccompProfile;
  const mounts = ctr.volumeMounts.map((vm) => {
    const volume = pod.spec.volumes.find((v) => v.name === vm.name);
    const base = volume?.hostPath ? volume.hostPath.path : o.layout.emptyDir(pod.metadata.uid, vm.name);
    return {
      containerPath: vm.mountPath,
      hostPath: vm.subPath ? `${base}/${vm.subPath}` : base,
      readonly: vm.readOnly,
      recursiveReadOnly: vm.recursiveReadOnly,
      propagation:
        vm.mountPropagation === "Bidirectional"
          ? MountPropagation.PROPAGATION_BIDIRECTIONAL
          : vm.mountPropagation === "HostToContainer"
            ? MountPropagation.PROPAGATION_HOST_TO_CONTAINER
            : MountPropagation.PROPAGATION_PRIVATE,
    };
  });
  if (o.terminationMessageFile && !ctr.volumeMounts.some((vm) => vm.mountPath === ctr.terminationMessagePath)) {
    mounts.push({
      containerPath: ctr.terminationMessagePath,
      hostPath: o.terminationMessageFile,
      readonly: false,
      recursiveReadOnly: false,
      propagation: MountPropagation.PROPAGATION_PRIVATE,
    });
  }
  const encoder = new TextEncoder();
  return create(ContainerConfigSchema, {
    metadata: { name: ctr.name, attempt: o.restartCount },
    image: { image: ctr.image, userSpecifiedImage: ctr.image },
    command: ctr.command.map((s) => expandVars(s, lookup)),
    args: ctr.args.map((s) => expandVars(s, lookup)),
    workingDir: ctr.workingDir,
    envs: env.map((e) => ({ key: e.name, value: encoder.encode(e.value) })),
    mounts,
    labels: { ...podLabels(pod, o.owner), [LABELS.containerName]: ctr.name },
    annotations: {
      [ANNOTATIONS.containerHash]: containerHash(ctr),
      [ANNOTATIONS.restartCount]: String(o.restartCount),
      [ANNOTATIONS.terminationMessagePath]: ctr.terminationMessagePath,
      [ANNOTATIONS.terminationMessagePolicy]: ctr.terminationMessagePolicy,
      [ANNOTATIONS.gracePeriod]: String(pod.spec.terminationGracePeriodSeconds),
      [ANNOTATIONS.containerType]: o.init ? "init" : "regular",
    },
    logPath: o.layout.containerLogPath(ctr.name, o.restartCount),
    tty: ctr.tty,
    linux: {
      resources: containerResources(ctr.resources),
      securityContext: {
        capabilities: { addCapabilities: sc.capabilities.add, dropCapabilities: sc.capabilities.drop },
        privileged: sc.privileged,
        namespaceOptions: namespaceOptions(pod),
        ...(runAsUser !== undefined ? { runAsUser: { value: BigInt(runAsUser) } } : {}),
        ...(runAsGroup !== undefined ? { runAsGroup: { value: BigInt(runAsGroup) } } : {}),
        supplementalGroups: supplementalGroups(pod).map(BigInt),
        supplementalGroupsPolicy: groupsPolicy(pod),
        readonlyRootfs: sc.readOnlyRootFilesystem,
        noNewPrivs: sc.allowPrivilegeEscalation === false,
        ...(seccomp ? { seccomp: securityProfile(seccomp) } : {}),
      },
    },
  });
}

/** CPU requests → shares, CPU limits → quota over a 100 ms period, memory limits → limit bytes. */
export function containerResources(
  r: Resources,
): Omit<LinuxContainerResources, "$typeName" | "hugepageLimits" | "unified"> & { unified: Record<string, string> } {
  const quota = r.limits.cpuMillis !== undefined ? milliCpuToQuota(r.limits.cpuMillis, CPU_PERIOD_US) : 0;
  return {
    cpuShares: BigInt(milliCpuToShares(r.requests.cpuMillis ?? 0)),
    cpuQuota: BigInt(quota),
    cpuPeriod: BigInt(quota > 0 ? CPU_PERIOD_US : 0),
    memoryLimitInBytes: BigInt(r.limits.memoryBytes ?? 0),
    memorySwapLimitInBytes: 0n,
    oomScoreAdj: 0n,
    cpusetCpus: "",
    cpusetMems: "",
    unified: {},
  };
}

/** A stable hash of a container's spec (the kubelet's `io.kubernetes.container.hash`, in hex). */
export function containerHash(ctr: ContainerSpec): string {
  return createHash("sha256").update(canonicalJson(ctr)).digest("hex").slice(0, 8);
}

/** The container's environment, in order, with fieldRefs resolved and `$(VAR)` expanded against earlier entries. */
export function resolveEnv(
  pod: Pod,
  ctr: ContainerSpec,
  ctx: { podIP: string; host: HostInfo },
): { name: string; value: string }[] {
  const out: { name: string; value: string }[] = [];
  const lookup = (name: string) => {
    for (let i = out.length - 1; i >= 0; i--) if (out[i]?.name === name) return out[i]?.value;
    return undefined;
  };
  for (const e of ctr.env) {
    let value = "";
    if (e.fieldRef !== undefined) value = fieldValue(pod, e.fieldRef, ctx);
    else if (e.resourceFieldRef !== undefined) value = resourceValue(pod, ctr, e.resourceFieldRef);
    else value = expandVars(e.value ?? "", lookup);
    out.push({ name: e.name, value });
  }
  return out;
}

function fieldValue(pod: Pod, path: string, ctx: { podIP: string; host: HostInfo }): string {
  const podIP = pod.spec.hostNetwork ? ctx.host.hostIP : ctx.podIP;
  switch (path) {
    case "metadata.name":
      return pod.metadata.name;
    case "metadata.namespace":
      return pod.metadata.namespace;
    case "metadata.uid":
      return pod.metadata.uid;
    case "spec.nodeName":
      return ctx.host.nodeName;
    case "spec.serviceAccountName":
      return "default";
    case "status.podIP":
    case "status.podIPs":
      return podIP;
    case "status.hostIP":
    case "status.hostIPs":
      return ctx.host.hostIP;
  }
  const m = /^metadata\.(labels|annotations)\['([^']+)'\]$/.exec(path);
  if (m) return (m[1] === "labels" ? pod.metadata.labels : pod.metadata.annotations)[m[2] ?? ""] ?? "";
  return "";
}

function resourceValue(
  pod: Pod,
  ctr: ContainerSpec,
  ref: { resource: string; divisor: string; containerName?: string },
): string {
  const target = ref.containerName
    ? ([...pod.spec.containers, ...pod.spec.initContainers].find((c) => c.name === ref.containerName) ?? ctr)
    : ctr;
  const [kind, res] = ref.resource.split(".") as ["limits" | "requests", "cpu" | "memory"];
  const list = target.resources[kind];
  const divisor = parseQuantity(ref.divisor);
  if (res === "cpu") {
    // Without a limit the kubelet reports the node's allocatable CPU; berth reports the host's CPUs.
    const millis = list.cpuMillis ?? (kind === "limits" ? hostCpuMillis() : 0);
    return String(divideCeil({ numerator: BigInt(millis), denominator: 1000n }, divisor));
  }
  const bytes = list.memoryBytes ?? (kind === "limits" ? hostMemoryBytes() : 0);
  return String(divideCeil({ numerator: BigInt(bytes), denominator: 1n }, divisor));
}

const hostCpuMillis = () => availableParallelism() * 1000;
const hostMemoryBytes = () => totalmem();

/**
 * Kubernetes' `$(VAR)` expansion: `$(NAME)` becomes the value when NAME is defined and stays as
 * written otherwise; `$$` is a literal `$` (so `$$(NAME)` gives `$(NAME)`).
 */
export function expandVars(input: string, lookup: (name: string) => string | undefined): string {
  let out = "";
  for (let i = 0; i < input.length; i++) {
    const ch = input[i];
    if (ch !== "$" || i + 1 >= input.length) {
      out += ch;
      continue;
    }
    const next = input[i + 1];
    if (next === "$") {
      out += "$";
      i++;
    } else if (next === "(") {
      const close = input.indexOf(")", i + 2);
      if (close < 0) {
        out += input.slice(i);
        break;
      }
      const name = input.slice(i + 2, close);
      out += lookup(name) ?? input.slice(i, close + 1);
      i = close;
    } else {
      out += ch;
    }
  }
  return out;
}
