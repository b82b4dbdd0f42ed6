/**
 * Validation and defaulting of one Pod object (already known to be `v1`/`Pod`) into the runner's
 * model (`types.ts`). Errors and warnings carry Kubernetes field paths; the rules follow the API
 * server's validation where berth runs the field, and name berth's limits where it does not.
 */
import { isIP } from "node:net";
import { isAbsolute, normalize } from "node:path";
import {
  type Checker,
  DNS1123_LABEL,
  DNS1123_LABEL_TEXT,
  DNS1123_SUBDOMAIN,
  DNS1123_SUBDOMAIN_TEXT,
  type FieldRules,
  IANA_SVC_NAME,
} from "./checker.js";
import { bytesOf, cpuMillis, parseQuantity } from "./quantity.js";
import {
  type ContainerPort,
  type ContainerSecurityContext,
  type ContainerSpec,
  type EnvVar,
  type Handler,
  type HostPathType,
  type HttpGetAction,
  type PodMetadata,
  type PodSecurityContext,
  type PodSpec,
  type Probe,
  type ProbeKind,
  type PullPolicy,
  RESERVED_PREFIXES,
  type ResourceList,
  type Resources,
  type SeccompProfile,
  type Volume,
  type VolumeMount,
} from "./types.js";

/** A validated pod before it is given its identity (uid, source). */
export interface ValidatedPod {
  metadata: Omit<PodMetadata, "uid">;
  spec: PodSpec;
}

const METADATA_RULES: FieldRules = {
  supported: ["name", "namespace", "labels", "annotations"],
  ignored: {
    uid: "berth derives the uid from the manifest",
    creationTimestamp: "set by the API server",
    resourceVersion: "set by the API server",
    generation: "set by the API server",
    selfLink: "set by the API server",
    managedFields: "set by the API server",
    ownerReferences: "no garbage collector on a single node",
    finalizers: "no API server to hold the pod",
    deletionTimestamp: "set by the API server",
    deletionGracePeriodSeconds: "set by the API server",
  },
  unsupported: { generateName: "set metadata.name" },
};

const SPEC_RULES: FieldRules = {
  supported: [
    "containers",
    "initContainers",
    "volumes",
    "restartPolicy",
    "terminationGracePeriodSeconds",
    "hostname",
    "hostNetwork",
    "hostPID",
    "hostIPC",
    "shareProcessNamespace",
    "dnsPolicy",
    "dnsConfig",
    "securityContext",
    "runtimeClassName",
  ],
  ignored: {
    nodeName: "the pod runs on this machine",
    nodeSelector: "the pod runs on this machine",
    affinity: "the pod runs on this machine",
    tolerations: "the pod runs on this machine",
    topologySpreadConstraints: "the pod runs on this machine",
    schedulerName: "no scheduler",
    schedulingGates: "no scheduler",
    priority: "no scheduler or eviction",
    priorityClassName: "no scheduler or eviction",
    preemptionPolicy: "no scheduler",
    serviceAccountName: "no service account token is mounted",
    serviceAccount: "no service account token is mounted",
    automountServiceAccountToken: "no service account token is mounted",
    enableServiceLinks: "no services",
    readinessGates: "only container readiness decides pod readiness",
    imagePullSecrets: "berthd's registry configuration supplies credentials",
    subdomain: "no cluster DNS",
    setHostnameAsFQDN: "no cluster DNS",
    overhead: "set by RuntimeClass admission",
    os: "always linux",
    hostUsers: "pods always use the host user namespace",
  },
  unsupported: {
    activeDeadlineSeconds: "the runner does not enforce deadlines",
    ephemeralContainers: "use berth exec",
    hostAliases: "berthd writes /etc/hosts itself",
    resourceClaims: "no dynamic resource allocation",
    resources: "pod-level resources; set them per container",
  },
};

const CONTAINER_RULES: FieldRules = {
  supported: [
    "name",
    "image",
    "imagePullPolicy",
    "command",
    "args",
    "workingDir",
    "env",
    "ports",
    "resources",
    "securityContext",
    "volumeMounts",
    "terminationMessagePath",
    "terminationMessagePolicy",
    "lifecycle",
    "livenessProbe",
    "readinessProbe",
    "startupProbe",
    "tty",
  ],
  ignored: {
    stdin: "berth run does not attach stdin (use berth attach)",
    stdinOnce: "berth run does not attach stdin (use berth attach)",
    resizePolicy: "resources cannot be resized in place by the runner",
  },
  unsupported: {
    envFrom: "no ConfigMaps or Secrets on a single node; use env",
    volumeDevices: "no block volumes",
    restartPolicy: "sidecar containers (restartPolicy on a container)",
  },
};

/** Validates `raw` (a Pod object) into the runner's model; undefined when it has errors. */
export function validatePod(raw: Record<string, unknown>, c: Checker): ValidatedPod | undefined {
  const errorsBefore = c.errors.length;
  const meta = c.obj(raw.metadata, "metadata", true) ?? {};
  c.fields(meta, "metadata", METADATA_RULES);
  const name = c.str(meta.name, "metadata.name", {
    required: true,
    pattern: DNS1123_SUBDOMAIN,
    patternText: DNS1123_SUBDOMAIN_TEXT,
    max: 253,
  });
  const namespace =
    c.str(meta.namespace, "metadata.namespace", { pattern: DNS1123_LABEL, patternText: DNS1123_LABEL_TEXT, max: 63 }) ??
    "default";
  const labels = labelMap(c, meta.labels, "metadata.labels", true);
  const annotations = labelMap(c, meta.annotations, "metadata.annotations", false);

  const s = c.obj(raw.spec, "spec", true) ?? {};
  c.fields(s, "spec", SPEC_RULES);
  const volumes = validateVolumes(c, s.volumes);
  const hostNetwork = c.bool(s.hostNetwork, "spec.hostNetwork") ?? false;
  const volumeNames = new Set(volumes.map((v) => v.name));
  const initContainers = c
    .list(s.initContainers, "spec.initContainers")
    .map((v, i) => validateContainer(c, v, `spec.initContainers[${i}]`, { init: true, volumeNames, hostNetwork }));
  const containers = c
    .list(s.containers, "spec.containers", true)
    .map((v, i) => validateContainer(c, v, `spec.containers[${i}]`, { init: false, volumeNames, hostNetwork }));
  if (Array.isArray(s.containers) && s.containers.length === 0)
    c.error("spec.containers", "required value: at least one container");
  const seen = new Map<string, string>();
  [
    ...initContainers.map((x, i) => [x, `spec.initContainers[${i}].name`] as const),
    ...containers.map((x, i) => [x, `spec.containers[${i}].name`] as const),
  ].forEach(([ctr, path]) => {
    if (!ctr?.name) return;
    const first = seen.get(ctr.name);
    if (first) c.error(path, `duplicate value "${ctr.name}" (also ${first})`);
    else seen.set(ctr.name, path);
  });
  checkHostPorts(c, containers);

  const hostname =
    c.str(s.hostname, "spec.hostname", { pattern: DNS1123_LABEL, patternText: DNS1123_LABEL_TEXT, max: 63 }) ??
    (name ?? "").slice(0, 63).replace(/[.-]+$/, "");
  const dnsPolicy = c.oneOf(
    s.dnsPolicy,
    "spec.dnsPolicy",
    ["ClusterFirst", "ClusterFirstWithHostNet", "Default", "None"] as const,
    "ClusterFirst",
  );
  if (s.dnsPolicy === "ClusterFirst" || s.dnsPolicy === "ClusterFirstWithHostNet") {
    c.warn(
      "spec.dnsPolicy",
      `${s.dnsPolicy} has no cluster DNS on a single node: the pod resolves names like dnsPolicy Default`,
    );
  }
  const dnsConfig = validateDnsConfig(c, s.dnsConfig);
  if (dnsPolicy === "None" && (dnsConfig?.nameservers.length ?? 0) === 0) {
    c.error("spec.dnsConfig.nameservers", "required value: dnsPolicy None needs at least one nameserver");
  }
  const spec: PodSpec = {
    hostname,
    hostNetwork,
    hostPID: c.bool(s.hostPID, "spec.hostPID") ?? false,
    hostIPC: c.bool(s.hostIPC, "spec.hostIPC") ?? false,
    shareProcessNamespace: c.bool(s.shareProcessNamespace, "spec.shareProcessNamespace") ?? false,
    dnsPolicy,
    restartPolicy: c.oneOf(s.restartPolicy, "spec.restartPolicy", ["Always", "OnFailure", "Never"] as const, "Always"),
    terminationGracePeriodSeconds:
      c.int(s.terminationGracePeriodSeconds, "spec.terminationGracePeriodSeconds", { min: 0 }) ?? 30,
    securityContext: validatePodSecurityContext(c, s.securityContext),
    initContainers: initContainers.filter((x): x is ContainerSpec => x !== undefined),
    containers: containers.filter((x): x is ContainerSpec => x !== undefined),
    volumes,
  };
  if (spec.hostPID && spec.shareProcessNamespace)
    c.error("spec.shareProcessNamespace", "may not be true when hostPID is true");
  if (dnsConfig) spec.dnsConfig = dnsConfig;
  const runtimeClassName = c.str(s.runtimeClassName, "spec.runtimeClassName", {
    pattern: DNS1123_SUBDOMAIN,
    patternText: DNS1123_SUBDOMAIN_TEXT,
  });
  if (runtimeClassName) spec.runtimeClassName = runtimeClassName;
  if (raw.status !== undefined && raw.status !== null) c.warn("status", "ignored: status is reported, not declared");
  if (c.errors.length > errorsBefore || name === undefined) return undefined;
  return { metadata: { name, namespace, labels, annotations }, spec };
}

/** Labels (qualified-name keys, 63-character values) or annotations (any string values). */
function labelMap(c: Checker, v: unknown, path: string, isLabels: boolean): Record<string, string> {
  const out = c.stringMap(v, path);
  for (const [k, val] of Object.entries(out)) {
    const [prefix, name] = k.includes("/") ? [k.slice(0, k.indexOf("/")), k.slice(k.indexOf("/") + 1)] : ["", k];
    if (
      !/^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$/.test(name) ||
      name.length > 63 ||
      (prefix && !DNS1123_SUBDOMAIN.test(prefix))
    ) {
      c.error(
        path,
        `invalid key ${JSON.stringify(k)}: a qualified name must be an optional DNS subdomain prefix and '/', then at most 63 alphanumeric characters, '-', '_' or '.'`,
      );
    }
    if (RESERVED_PREFIXES.some((p) => k.startsWith(p)))
      c.error(`${path}[${k}]`, "the prefix is reserved for the pod runner");
    if (isLabels && (val.length > 63 || (val !== "" && !/^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$/.test(val)))) {
      c.error(
        `${path}[${k}]`,
        `invalid value ${JSON.stringify(val)}: a label value must be empty or at most 63 alphanumeric characters, '-', '_' or '.', starting and ending with an alphanumeric character`,
      );
    }
  }
  return out;
}

function validateDnsConfig(c: Checker, v: unknown): PodSpec["dnsConfig"] {
  const o = c.obj(v, "spec.dnsConfig");
  if (!o) return undefined;
  c.fields(o, "spec.dnsConfig", { supported: ["nameservers", "searches", "options"] });
  const nameservers = c.strings(o.nameservers, "spec.dnsConfig.nameservers");
  nameservers.forEach((ns, i) => {
    if (!isIP(ns))
      c.error(`spec.dnsConfig.nameservers[${i}]`, `invalid value ${JSON.stringify(ns)}: must be a valid IP address`);
  });
  if (nameservers.length > 3) c.error("spec.dnsConfig.nameservers", "must not have more than 3 nameservers");
  const searches = c.strings(o.searches, "spec.dnsConfig.searches");
  if (searches.length > 32) c.error("spec.dnsConfig.searches", "must not have more than 32 search paths");
  const options = c.list(o.options, "spec.dnsConfig.options").flatMap((item, i) => {
    const p = `spec.dnsConfig.options[${i}]`;
    const opt = c.obj(item, p);
    if (!opt) return [];
    c.fields(opt, p, { supported: ["name", "value"] });
    const name = c.str(opt.name, `${p}.name`, { required: true });
    const value = c.str(opt.value, `${p}.value`);
    return name === undefined ? [] : [value === undefined ? { name } : { name, value }];
  });
  return { nameservers, searches, options };
}

function validateSeccomp(c: Checker, v: unknown, path: string): SeccompProfile | undefined {
  const o = c.obj(v, path);
  if (!o) return undefined;
  c.fields(o, path, { supported: ["type", "localhostProfile"] });
  const type = c.oneOf(o.type, `${path}.type`, ["RuntimeDefault", "Unconfined", "Localhost"] as const);
  if (!type) return c.error(`${path}.type`, "required value");
  const localhostProfile = c.str(o.localhostProfile, `${path}.localhostProfile`, { required: type === "Localhost" });
  if (type !== "Localhost" && localhostProfile)
    c.error(`${path}.localhostProfile`, "can only be set when type is Localhost");
  return type === "Localhost" && localhostProfile ? { type, localhostProfile } : { type };
}

const SECURITY_IGNORED = {
  windowsOptions: "linux only",
  fsGroupChangePolicy: "berth does not change volume ownership",
};
const SECURITY_UNSUPPORTED = { seLinuxOptions: "SELinux is not enabled on berth hosts" };

function validatePodSecurityContext(c: Checker, v: unknown): PodSecurityContext {
  const path = "spec.securityContext";
  const o = c.obj(v, path) ?? {};
  c.fields(o, path, {
    supported: [
      "runAsUser",
      "runAsGroup",
      "runAsNonRoot",
      "supplementalGroups",
      "fsGroup",
      "supplementalGroupsPolicy",
      "sysctls",
      "seccompProfile",
      "appArmorProfile",
    ],
    ignored: SECURITY_IGNORED,
    unsupported: SECURITY_UNSUPPORTED,
  });
  appArmor(c, o.appArmorProfile, `${path}.appArmorProfile`);
  const out: PodSecurityContext = {
    supplementalGroups: c
      .list(o.supplementalGroups, `${path}.supplementalGroups`)
      .map((g, i) => c.int(g, `${path}.supplementalGroups[${i}]`, { min: 0, max: 2 ** 31 - 1 }))
      .filter((g): g is number => g !== undefined),
    sysctls: c.list(o.sysctls, `${path}.sysctls`).flatMap((item, i) => {
      const p = `${path}.sysctls[${i}]`;
      const s = c.obj(item, p);
      if (!s) return [];
      c.fields(s, p, { supported: ["name", "value"] });
      const name = c.str(s.name, `${p}.name`, {
        required: true,
        pattern: /^([a-z0-9]([-_a-z0-9]*[a-z0-9])?[./])*[a-z0-9]([-_a-z0-9]*[a-z0-9])?$/,
        patternText: "must be a sysctl name like net.ipv4.ip_forward",
      });
      const value = typeof s.value === "number" ? String(s.value) : c.str(s.value, `${p}.value`, { required: true });
      return name === undefined || value === undefined ? [] : [{ name, value }];
    }),
  };
  const runAsUser = c.int(o.runAsUser, `${path}.runAsUser`, { min: 0, max: 2 ** 31 - 1 });
  if (runAsUser !== undefined) out.runAsUser = runAsUser;
  const runAsGroup = c.int(o.runAsGroup, `${path}.runAsGroup`, { min: 0, max: 2 ** 31 - 1 });
  if (runAsGroup !== undefined) out.runAsGroup = runAsGroup;
  const runAsNonRoot = c.bool(o.runAsNonRoot, `${path}.runAsNonRoot`);
  if (runAsNonRoot !== undefined) out.runAsNonRoot = runAsNonRoot;
  const fsGroup = c.int(o.fsGroup, `${path}.fsGroup`, { min: 0, max: 2 ** 31 - 1 });
  if (fsGroup !== undefined) {
    out.fsGroup = fsGroup;
    c.warn(`${path}.fsGroup`, "added to each container's supplemental groups; berth does not change volume ownership");
  }
  const policy = c.oneOf(o.supplementalGroupsPolicy, `${path}.supplementalGroupsPolicy`, ["Merge", "Strict"] as const);
  if (policy) out.supplementalGroupsPolicy = policy;
  const seccomp = validateSeccomp(c, o.seccompProfile, `${path}.seccompProfile`);
  if (seccomp) out.seccompProfile = seccomp;
  return out;
}

function appArmor(c: Checker, v: unknown, path: string): void {
  const o = c.obj(v, path);
  if (!o) return;
  if (o.type === "Localhost") c.error(`${path}.type`, "not supported by berth: AppArmor is not enabled on berth hosts");
  else c.warn(path, "ignored: AppArmor is not enabled on berth hosts");
}

function validateContainerSecurityContext(c: Checker, v: unknown, path: string): ContainerSecurityContext {
  const o = c.obj(v, path) ?? {};
  c.fields(o, path, {
    supported: [
      "runAsUser",
      "runAsGroup",
      "runAsNonRoot",
      "privileged",
      "readOnlyRootFilesystem",
      "allowPrivilegeEscalation",
      "capabilities",
      "seccompProfile",
      "procMount",
      "appArmorProfile",
    ],
    ignored: { windowsOptions: "linux only" },
    unsupported: SECURITY_UNSUPPORTED,
  });
  appArmor(c, o.appArmorProfile, `${path}.appArmorProfile`);
  if (c.oneOf(o.procMount, `${path}.procMount`, ["Default", "Unmasked"] as const) === "Unmasked") {
    c.error(`${path}.procMount`, "not supported by berth: Unmasked needs a user namespace");
  }
  const caps = c.obj(o.capabilities, `${path}.capabilities`) ?? {};
  c.fields(caps, `${path}.capabilities`, { supported: ["add", "drop"] });
  const capName = /^(CAP_)?[A-Z_]+$/;
  const capList = (key: "add" | "drop") =>
    c.strings(caps[key], `${path}.capabilities.${key}`).filter((name, i) => {
      if (capName.test(name)) return true;
      c.error(
        `${path}.capabilities.${key}[${i}]`,
        `invalid value ${JSON.stringify(name)}: must be a capability name like NET_ADMIN or ALL`,
      );
      return false;
    });
  const out: ContainerSecurityContext = {
    privileged: c.bool(o.privileged, `${path}.privileged`) ?? false,
    readOnlyRootFilesystem: c.bool(o.readOnlyRootFilesystem, `${path}.readOnlyRootFilesystem`) ?? false,
    capabilities: { add: capList("add"), drop: capList("drop") },
  };
  const runAsUser = c.int(o.runAsUser, `${path}.runAsUser`, { min: 0, max: 2 ** 31 - 1 });
  if (runAsUser !== undefined) out.runAsUser = runAsUser;
  const runAsGroup = c.int(o.runAsGroup, `${path}.runAsGroup`, { min: 0, max: 2 ** 31 - 1 });
  if (runAsGroup !== undefined) out.runAsGroup = runAsGroup;
  const runAsNonRoot = c.bool(o.runAsNonRoot, `${path}.runAsNonRoot`);
  if (runAsNonRoot !== undefined) out.runAsNonRoot = runAsNonRoot;
  const ape = c.bool(o.allowPrivilegeEscalation, `${path}.allowPrivilegeEscalation`);
  if (ape !== undefined) out.allowPrivilegeEscalation = ape;
  if (ape === false && out.privileged)
    c.error(`${path}.allowPrivilegeEscalation`, "cannot set allowPrivilegeEscalation to false and privileged to true");
  const seccomp = validateSeccomp(c, o.seccompProfile, `${path}.seccompProfile`);
  if (seccomp) out.seccompProfile = seccomp;
  return out;
}

function validateVolumes(c: Checker, v: unknown): Volume[] {
  const names = new Set<string>();
  return c.list(v, "spec.volumes").flatMap((item, i) => {
    const path = `spec.volumes[${i}]`;
    const o = c.obj(item, path);
    if (!o) return [];
    const name = c.str(o.name, `${path}.name`, {
      required: true,
      pattern: DNS1123_LABEL,
      patternText: DNS1123_LABEL_TEXT,
      max: 63,
    });
    if (name !== undefined) {
      if (names.has(name)) c.error(`${path}.name`, `duplicate value "${name}"`);
      names.add(name);
    }
    const sources = Object.keys(o).filter((k) => k !== "name" && o[k] !== undefined && o[k] !== null);
    if (sources.length !== 1) {
      c.error(
        path,
        sources.length === 0
          ? "must specify a volume type"
          : `may not specify more than 1 volume type (got ${sources.join(", ")})`,
      );
      return [];
    }
    const [source = ""] = sources;
    const out: Volume = { name: name ?? "" };
    if (source === "emptyDir") {
      const e = c.obj(o.emptyDir, `${path}.emptyDir`) ?? {};
      c.fields(e, `${path}.emptyDir`, { supported: ["medium", "sizeLimit"] });
      const medium = c.oneOf(e.medium, `${path}.emptyDir.medium`, ["", "Memory"] as const, "");
      out.emptyDir = { medium };
      if (e.sizeLimit !== undefined && e.sizeLimit !== null) {
        const size = quantity(c, e.sizeLimit, `${path}.emptyDir.sizeLimit`, bytesOf);
        if (size !== undefined) out.emptyDir.sizeLimitBytes = size;
        if (medium !== "Memory")
          c.warn(`${path}.emptyDir.sizeLimit`, "not enforced for a disk-backed emptyDir (it is for medium Memory)");
      }
    } else if (source === "hostPath") {
      const h = c.obj(o.hostPath, `${path}.hostPath`, true) ?? {};
      c.fields(h, `${path}.hostPath`, { supported: ["path", "type"] });
      const p = c.str(h.path, `${path}.hostPath.path`, { required: true });
      if (p !== undefined && !isAbsolute(p)) c.error(`${path}.hostPath.path`, "must be an absolute path");
      if (p?.split("/").includes("..")) c.error(`${path}.hostPath.path`, "must not contain '..'");
      const type = c.oneOf(
        h.type,
        `${path}.hostPath.type`,
        ["", "DirectoryOrCreate", "Directory", "FileOrCreate", "File", "Socket", "CharDevice", "BlockDevice"] as const,
        "",
      ) as HostPathType;
      out.hostPath = { path: p ?? "", type };
    } else {
      c.error(`${path}.${source}`, "not supported by berth: supported volume types are emptyDir and hostPath");
      return [];
    }
    return [out];
  });
}

interface ContainerContext {
  init: boolean;
  volumeNames: Set<string>;
  hostNetwork: boolean;
}

function validateContainer(c: Checker, v: unknown, path: string, ctx: ContainerContext): ContainerSpec | undefined {
  const o = c.obj(v, path);
  if (!o) return undefined;
  c.fields(o, path, CONTAINER_RULES);
  const name = c.str(o.name, `${path}.name`, {
    required: true,
    pattern: DNS1123_LABEL,
    patternText: DNS1123_LABEL_TEXT,
    max: 63,
  });
  const image = c.str(o.image, `${path}.image`, { required: true });
  if (image !== undefined && (/\s/.test(image) || image !== image.trim()))
    c.error(`${path}.image`, "must not have leading or trailing whitespace");
  const ports = validatePorts(c, o.ports, `${path}.ports`, ctx.hostNetwork);
  const securityContext = validateContainerSecurityContext(c, o.securityContext, `${path}.securityContext`);
  const volumeMounts = validateMounts(
    c,
    o.volumeMounts,
    `${path}.volumeMounts`,
    ctx.volumeNames,
    securityContext.privileged,
  );
  const terminationMessagePath =
    c.str(o.terminationMessagePath, `${path}.terminationMessagePath`) ?? "/dev/termination-log";
  if (!isAbsolute(terminationMessagePath)) c.error(`${path}.terminationMessagePath`, "must be an absolute path");
  const out: ContainerSpec = {
    name: name ?? "",
    image: image ?? "",
    imagePullPolicy:
      c.oneOf(o.imagePullPolicy, `${path}.imagePullPolicy`, ["Always", "IfNotPresent", "Never"] as const) ??
      defaultPullPolicy(image ?? ""),
    command: c.strings(o.command, `${path}.command`),
    args: c.strings(o.args, `${path}.args`),
    workingDir: c.str(o.workingDir, `${path}.workingDir`) ?? "",
    env: validateEnv(c, o.env, `${path}.env`),
    ports,
    resources: validateResources(c, o.resources, `${path}.resources`),
    securityContext,
    volumeMounts,
    terminationMessagePath,
    terminationMessagePolicy: c.oneOf(
      o.terminationMessagePolicy,
      `${path}.terminationMessagePolicy`,
      ["File", "FallbackToLogsOnError"] as const,
      "File",
    ),
    tty: c.bool(o.tty, `${path}.tty`) ?? false,
    lifecycle: {},
  };
  if (out.workingDir && !isAbsolute(out.workingDir)) c.error(`${path}.workingDir`, "must be an absolute path");
  const lifecycle = c.obj(o.lifecycle, `${path}.lifecycle`);
  if (lifecycle) {
    if (ctx.init) c.error(`${path}.lifecycle`, "may not be set for init containers");
    c.fields(lifecycle, `${path}.lifecycle`, {
      supported: ["postStart", "preStop"],
      unsupported: { stopSignal: "the image's STOPSIGNAL is used" },
    });
    for (const hook of ["postStart", "preStop"] as const) {
      const h = c.obj(lifecycle[hook], `${path}.lifecycle.${hook}`);
      if (h) {
        const handler = validateHandler(c, h, `${path}.lifecycle.${hook}`, { hook: true, ports });
        if (handler) out.lifecycle[hook] = handler;
      }
    }
  }
  for (const kind of ["liveness", "readiness", "startup"] as const) {
    const key = `${kind}Probe` as const;
    const p = c.obj(o[key], `${path}.${key}`);
    if (!p) continue;
    if (ctx.init) {
      c.error(`${path}.${key}`, "may not be set for init containers");
      continue;
    }
    const probe = validateProbe(c, p, `${path}.${key}`, kind, ports);
    if (probe) out[key] = probe;
  }
  if (name === undefined || image === undefined) return undefined;
  return out;
}

/** The API server's default: Always for `:latest` or no tag (and no digest), else IfNotPresent. */
export function defaultPullPolicy(image: string): PullPolicy {
  if (image.includes("@")) return "IfNotPresent";
  const last = image.slice(image.lastIndexOf("/") + 1);
  const colon = last.lastIndexOf(":");
  if (colon < 0) return "Always";
  return last.slice(colon + 1) === "latest" ? "Always" : "IfNotPresent";
}

function validatePorts(c: Checker, v: unknown, path: string, hostNetwork: boolean): ContainerPort[] {
  const names = new Set<string>();
  return c.list(v, path).flatMap((item, i) => {
    const p = `${path}[${i}]`;
    const o = c.obj(item, p);
    if (!o) return [];
    c.fields(o, p, { supported: ["name", "containerPort", "hostPort", "hostIP", "protocol"] });
    const containerPort = c.int(o.containerPort, `${p}.containerPort`, { required: true, min: 1, max: 65535 });
    let hostPort = c.int(o.hostPort, `${p}.hostPort`, { min: 0, max: 65535 }) ?? 0;
    const hostIP = c.str(o.hostIP, `${p}.hostIP`) ?? "";
    if (hostIP && !isIP(hostIP))
      c.error(`${p}.hostIP`, `invalid value ${JSON.stringify(hostIP)}: must be a valid IP address`);
    const protocol = c.oneOf(o.protocol, `${p}.protocol`, ["TCP", "UDP", "SCTP"] as const, "TCP");
    const name = c.str(o.name, `${p}.name`, {
      pattern: IANA_SVC_NAME,
      patternText: "must be an IANA service name: lowercase letters, digits and single '-', with at least one letter",
      max: 15,
    });
    if (name !== undefined) {
      if (names.has(name)) c.error(`${p}.name`, `duplicate value "${name}"`);
      names.add(name);
    }
    if (hostNetwork && containerPort !== undefined) {
      if (hostPort !== 0 && hostPort !== containerPort)
        c.error(`${p}.hostPort`, "must match containerPort when hostNetwork is true");
      hostPort = 0; // the pod uses the host's ports directly: no mapping
    }
    if (containerPort === undefined) return [];
    const out: ContainerPort = { containerPort, hostPort, hostIP, protocol };
    if (name !== undefined) out.name = name;
    return [out];
  });
}

function checkHostPorts(c: Checker, containers: (ContainerSpec | undefined)[]): void {
  const used = new Map<string, string>();
  containers.forEach((ctr, i) => {
    ctr?.ports.forEach((p, j) => {
      if (p.hostPort === 0) return;
      const key = `${p.hostIP || "0.0.0.0"}:${p.hostPort}/${p.protocol}`;
      const first = used.get(key);
      const path = `spec.containers[${i}].ports[${j}].hostPort`;
      if (first) c.error(path, `duplicate value "${key}" (also ${first})`);
      else used.set(key, path);
    });
  });
}

function validateMounts(
  c: Checker,
  v: unknown,
  path: string,
  volumeNames: Set<string>,
  privileged: boolean,
): VolumeMount[] {
  const paths = new Set<string>();
  return c.list(v, path).flatMap((item, i) => {
    const p = `${path}[${i}]`;
    const o = c.obj(item, p);
    if (!o) return [];
    c.fields(o, p, {
      supported: ["name", "mountPath", "readOnly", "subPath", "mountPropagation", "recursiveReadOnly"],
      unsupported: { subPathExpr: "use subPath" },
    });
    const name = c.str(o.name, `${p}.name`, { required: true });
    if (name !== undefined && !volumeNames.has(name))
      c.error(`${p}.name`, `not found: no volume named "${name}" in spec.volumes`);
    const mountPath = c.str(o.mountPath, `${p}.mountPath`, { required: true });
    if (mountPath !== undefined) {
      if (!isAbsolute(mountPath)) c.error(`${p}.mountPath`, "must be an absolute path");
      const norm = normalize(mountPath).replace(/\/+$/, "") || "/";
      if (paths.has(norm)) c.error(`${p}.mountPath`, `must be unique (${mountPath})`);
      paths.add(norm);
    }
    const subPath = c.str(o.subPath, `${p}.subPath`) ?? "";
    if (subPath && (isAbsolute(subPath) || subPath.split("/").includes("..")))
      c.error(`${p}.subPath`, "must be a relative path without '..'");
    const mountPropagation = c.oneOf(
      o.mountPropagation,
      `${p}.mountPropagation`,
      ["None", "HostToContainer", "Bidirectional"] as const,
      "None",
    );
    if (mountPropagation === "Bidirectional" && !privileged)
      c.error(`${p}.mountPropagation`, "Bidirectional mount propagation is available only to privileged containers");
    const readOnly = c.bool(o.readOnly, `${p}.readOnly`) ?? false;
    // As the API server checks: a recursive read-only mount must be read-only and not propagate.
    const rro = c.oneOf(o.recursiveReadOnly, `${p}.recursiveReadOnly`, ["Disabled", "IfPossible", "Enabled"] as const);
    if (rro !== undefined && rro !== "Disabled" && !readOnly)
      c.error(`${p}.recursiveReadOnly`, "may only be specified when readOnly is true");
    if (rro === "Enabled" && mountPropagation !== "None")
      c.error(`${p}.recursiveReadOnly`, "Enabled requires mountPropagation None");
    if (name === undefined || mountPath === undefined) return [];
    // berth always supports it, so IfPossible means Enabled (unless propagation rules it out, as the kubelet does).
    const recursiveReadOnly = readOnly && mountPropagation === "None" && (rro === "Enabled" || rro === "IfPossible");
    return [{ name, mountPath, readOnly, recursiveReadOnly, subPath, mountPropagation }];
  });
}

const FIELD_PATHS = [
  "metadata.name",
  "metadata.namespace",
  "metadata.uid",
  "spec.nodeName",
  "spec.serviceAccountName",
  "status.podIP",
  "status.podIPs",
  "status.hostIP",
  "status.hostIPs",
];

function validateEnv(c: Checker, v: unknown, path: string): EnvVar[] {
  return c.list(v, path).flatMap((item, i) => {
    const p = `${path}[${i}]`;
    const o = c.obj(item, p);
    if (!o) return [];
    c.fields(o, p, { supported: ["name", "value", "valueFrom"] });
    const name = c.str(o.name, `${p}.name`, {
      required: true,
      pattern: /^[^=]+$/,
      patternText: "must not contain '='",
    });
    const value =
      typeof o.value === "number" || typeof o.value === "boolean"
        ? c.error(`${p}.value`, `must be a string, got ${typeof o.value} (quote it)`)
        : c.str(o.value, `${p}.value`);
    const from = c.obj(o.valueFrom, `${p}.valueFrom`);
    if (name === undefined) return [];
    const out: EnvVar = { name };
    if (value !== undefined) out.value = value;
    if (from) {
      if (value !== undefined) c.error(`${p}.valueFrom`, "may not be specified when `value` is not empty");
      c.fields(from, `${p}.valueFrom`, {
        supported: ["fieldRef", "resourceFieldRef"],
        unsupported: {
          configMapKeyRef: "no ConfigMaps on a single node; use value",
          secretKeyRef: "no Secrets on a single node; use value",
          fileKeyRef: "use value",
        },
      });
      const keys = Object.keys(from).filter((k) => from[k] !== undefined && from[k] !== null);
      if (keys.length !== 1) c.error(`${p}.valueFrom`, "must specify exactly one source");
      const field = c.obj(from.fieldRef, `${p}.valueFrom.fieldRef`);
      if (field) {
        c.fields(field, `${p}.valueFrom.fieldRef`, { supported: ["fieldPath", "apiVersion"] });
        if (field.apiVersion !== undefined && field.apiVersion !== "v1")
          c.error(
            `${p}.valueFrom.fieldRef.apiVersion`,
            `unsupported value ${JSON.stringify(field.apiVersion)}: supported values: "v1"`,
          );
        const fp = c.str(field.fieldPath, `${p}.valueFrom.fieldRef.fieldPath`, { required: true });
        if (fp !== undefined) {
          if (FIELD_PATHS.includes(fp) || /^metadata\.(labels|annotations)\['[^']+'\]$/.test(fp)) out.fieldRef = fp;
          else
            c.error(
              `${p}.valueFrom.fieldRef.fieldPath`,
              `unsupported value ${JSON.stringify(fp)}: supported values: ${[...FIELD_PATHS, "metadata.labels['<KEY>']", "metadata.annotations['<KEY>']"].map((x) => `"${x}"`).join(", ")}`,
            );
        }
      }
      const res = c.obj(from.resourceFieldRef, `${p}.valueFrom.resourceFieldRef`);
      if (res) {
        c.fields(res, `${p}.valueFrom.resourceFieldRef`, { supported: ["resource", "divisor", "containerName"] });
        const resource = c.oneOf(res.resource, `${p}.valueFrom.resourceFieldRef.resource`, [
          "limits.cpu",
          "limits.memory",
          "requests.cpu",
          "requests.memory",
        ] as const);
        if (!resource) c.error(`${p}.valueFrom.resourceFieldRef.resource`, "required value");
        const divisor = res.divisor === undefined || res.divisor === null ? "1" : String(res.divisor);
        quantity(c, divisor, `${p}.valueFrom.resourceFieldRef.divisor`, parseQuantity);
        const containerName = c.str(res.containerName, `${p}.valueFrom.resourceFieldRef.containerName`);
        if (resource)
          out.resourceFieldRef = { resource, divisor, ...(containerName !== undefined ? { containerName } : {}) };
      }
    }
    return [out];
  });
}

function quantity<T>(c: Checker, v: unknown, path: string, parse: (q: string | number) => T): T | undefined {
  if (typeof v !== "string" && typeof v !== "number")
    return c.error(path, 'must be a quantity (a string like "500m" or "128Mi", or a number)');
  try {
    return parse(v);
  } catch (err) {
    return c.error(path, (err as Error).message);
  }
}

function validateResources(c: Checker, v: unknown, path: string): Resources {
  const o = c.obj(v, path) ?? {};
  c.fields(o, path, { supported: ["requests", "limits"], unsupported: { claims: "no dynamic resource allocation" } });
  const list = (key: "requests" | "limits"): ResourceList => {
    const p = `${path}.${key}`;
    const m = c.obj(o[key], p) ?? {};
    const out: ResourceList = {};
    for (const [name, value] of Object.entries(m)) {
      const rp = `${p}.${name}`;
      if (name === "cpu") {
        const millis = quantity(c, value, rp, cpuMillis);
        if (millis !== undefined && millis < 0) c.error(rp, "must be greater than or equal to 0");
        else if (millis !== undefined) out.cpuMillis = millis;
      } else if (name === "memory") {
        const bytes = quantity(c, value, rp, bytesOf);
        if (bytes !== undefined && bytes < 0) c.error(rp, "must be greater than or equal to 0");
        else if (bytes !== undefined) out.memoryBytes = bytes;
      } else if (name === "ephemeral-storage") {
        quantity(c, value, rp, bytesOf);
        c.warn(rp, "ignored: ephemeral storage is not enforced by berth");
      } else if (name.startsWith("hugepages-")) {
        c.error(rp, "not supported by berth: huge page limits");
      } else {
        c.error(rp, "not supported by berth: no device plugins or extended resources (supported: cpu, memory)");
      }
    }
    return out;
  };
  const requests = list("requests");
  const limits = list("limits");
  // The API server defaults requests to limits when only limits are set.
  if (requests.cpuMillis === undefined && limits.cpuMillis !== undefined) requests.cpuMillis = limits.cpuMillis;
  if (requests.memoryBytes === undefined && limits.memoryBytes !== undefined) requests.memoryBytes = limits.memoryBytes;
  if (limits.cpuMillis !== undefined && (requests.cpuMillis ?? 0) > limits.cpuMillis)
    c.error(`${path}.requests.cpu`, "must be less than or equal to cpu limit");
  if (limits.memoryBytes !== undefined && (requests.memoryBytes ?? 0) > limits.memoryBytes)
    c.error(`${path}.requests.memory`, "must be less than or equal to memory limit");
  return { requests, limits };
}

function validatePortRef(c: Checker, v: unknown, path: string, ports: ContainerPort[]): number | string | undefined {
  if (typeof v === "number") return c.int(v, path, { required: true, min: 1, max: 65535 });
  if (typeof v === "string" && /^\d+$/.test(v)) return c.int(Number(v), path, { min: 1, max: 65535 });
  const name = c.str(v, path, {
    required: true,
    pattern: IANA_SVC_NAME,
    patternText: "must be a port number or an IANA service name",
  });
  if (name !== undefined && !ports.some((p) => p.name === name))
    return c.error(path, `port name "${name}" not found in the container's ports`);
  return name;
}

function validateHandler(
  c: Checker,
  o: Record<string, unknown>,
  path: string,
  ctx: { hook: boolean; ports: ContainerPort[] },
): Handler | undefined {
  const kinds = ["exec", "httpGet", "tcpSocket", ...(ctx.hook ? ["sleep"] : [])].filter(
    (k) => o[k] !== undefined && o[k] !== null,
  );
  if (!ctx.hook && o.grpc !== undefined && o.grpc !== null)
    return c.error(`${path}.grpc`, "not supported by berth: use exec, httpGet or tcpSocket");
  if (ctx.hook && o.tcpSocket !== undefined && o.tcpSocket !== null)
    return c.error(`${path}.tcpSocket`, "not supported: tcpSocket is deprecated as a lifecycle handler");
  if (kinds.length !== 1)
    return c.error(
      path,
      kinds.length === 0
        ? "must specify a handler type (exec, httpGet or tcpSocket)"
        : `may not specify more than 1 handler type (got ${kinds.join(", ")})`,
    );
  const out: Handler = {};
  if (o.exec !== undefined && o.exec !== null) {
    const e = c.obj(o.exec, `${path}.exec`) ?? {};
    c.fields(e, `${path}.exec`, { supported: ["command"] });
    const command = c.strings(e.command, `${path}.exec.command`);
    if (command.length === 0) c.error(`${path}.exec.command`, "required value");
    out.exec = { command };
  }
  if (o.httpGet !== undefined && o.httpGet !== null) {
    const h = c.obj(o.httpGet, `${path}.httpGet`) ?? {};
    c.fields(h, `${path}.httpGet`, { supported: ["host", "path", "port", "scheme", "httpHeaders"] });
    const port = validatePortRef(c, h.port, `${path}.httpGet.port`, ctx.ports);
    const reqPath = c.str(h.path, `${path}.httpGet.path`) ?? "/";
    const action: HttpGetAction = {
      host: c.str(h.host, `${path}.httpGet.host`) ?? "",
      path: reqPath.startsWith("/") ? reqPath : `/${reqPath}`,
      port: port ?? 0,
      scheme: c.oneOf(h.scheme, `${path}.httpGet.scheme`, ["HTTP", "HTTPS"] as const, "HTTP"),
      httpHeaders: c.list(h.httpHeaders, `${path}.httpGet.httpHeaders`).flatMap((hv, i) => {
        const hp = `${path}.httpGet.httpHeaders[${i}]`;
        const header = c.obj(hv, hp);
        if (!header) return [];
        c.fields(header, hp, { supported: ["name", "value"] });
        const name = c.str(header.name, `${hp}.name`, {
          required: true,
          pattern: /^[-!#$%&'*+.^_`|~0-9A-Za-z]+$/,
          patternText: "must be a valid HTTP header name",
        });
        const value = c.str(header.value, `${hp}.value`) ?? "";
        return name === undefined ? [] : [{ name, value }];
      }),
    };
    out.httpGet = action;
  }
  if (o.tcpSocket !== undefined && o.tcpSocket !== null) {
    const t = c.obj(o.tcpSocket, `${path}.tcpSocket`) ?? {};
    c.fields(t, `${path}.tcpSocket`, { supported: ["host", "port"] });
    const port = validatePortRef(c, t.port, `${path}.tcpSocket.port`, ctx.ports);
    out.tcpSocket = { host: c.str(t.host, `${path}.tcpSocket.host`) ?? "", port: port ?? 0 };
  }
  if (o.sleep !== undefined && o.sleep !== null) {
    const s = c.obj(o.sleep, `${path}.sleep`) ?? {};
    c.fields(s, `${path}.sleep`, { supported: ["seconds"] });
    out.sleep = { seconds: c.int(s.seconds, `${path}.sleep.seconds`, { required: true, min: 0 }) ?? 0 };
  }
  if (ctx.hook) c.fields(o, path, { supported: ["exec", "httpGet", "tcpSocket", "sleep"] });
  return out;
}

function validateProbe(
  c: Checker,
  o: Record<string, unknown>,
  path: string,
  kind: ProbeKind,
  ports: ContainerPort[],
): Probe | undefined {
  c.fields(o, path, {
    supported: [
      "exec",
      "httpGet",
      "tcpSocket",
      "grpc",
      "initialDelaySeconds",
      "periodSeconds",
      "timeoutSeconds",
      "successThreshold",
      "failureThreshold",
      "terminationGracePeriodSeconds",
    ],
  });
  const handler = validateHandler(c, o, path, { hook: false, ports });
  const successThreshold = c.int(o.successThreshold, `${path}.successThreshold`, { min: 1 }) ?? 1;
  if (kind !== "readiness" && successThreshold !== 1) c.error(`${path}.successThreshold`, "must be 1");
  const probe: Probe = {
    ...(handler ?? {}),
    initialDelaySeconds: c.int(o.initialDelaySeconds, `${path}.initialDelaySeconds`, { min: 0 }) ?? 0,
    periodSeconds: c.int(o.periodSeconds, `${path}.periodSeconds`, { min: 1 }) ?? 10,
    timeoutSeconds: c.int(o.timeoutSeconds, `${path}.timeoutSeconds`, { min: 1 }) ?? 1,
    successThreshold,
    failureThreshold: c.int(o.failureThreshold, `${path}.failureThreshold`, { min: 1 }) ?? 3,
  };
  const grace = c.int(o.terminationGracePeriodSeconds, `${path}.terminationGracePeriodSeconds`, { min: 1 });
  if (grace !== undefined) {
    if (kind === "readiness") c.error(`${path}.terminationGracePeriodSeconds`, "must not be set for readinessProbes");
    else probe.terminationGracePeriodSeconds = grace;
  }
  return handler ? probe : undefined;
}
