import { invalidArgument } from "../errdefs/index.js";
import { currentCapabilities, DEFAULT_CAPABILITIES, normalizeCapability } from "./capabilities.js";
import { devicesFromHostPath, devicesUnder } from "./devices.js";
import { type CgroupFeatures, currentOomScoreAdj } from "./host.js";
import { defaultSeccompProfile } from "./seccomp-default.js";
import {
  type LinuxCapabilities,
  type LinuxDevice,
  type LinuxDeviceCgroup,
  type LinuxResources,
  type LinuxSeccomp,
  type Mount,
  type NamespaceType,
  OCI_VERSION,
  type POSIXRlimit,
  type Process,
  type Spec,
  type User,
} from "./spec.js";

/**
 * One step of building a spec. Options mutate the spec they are given and run in order, so later options
 * win; an option may be async when it reads the host (devices, capabilities, oom_score_adj). Order matters
 * in two places: `withSeccomp("RuntimeDefault")` reads the bounding set, so it goes after capability
 * options; `withPrivileged()` removes seccomp, so a profile applied after it is applied.
 */
export type SpecOpt = (spec: Spec) => void | Promise<void>;

/** The PATH a container gets when its image sets none (containerd's default). */
export const DEFAULT_PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/** Paths hidden from unprivileged containers (bind-mounted over with /dev/null or an empty tmpfs). */
export const DEFAULT_MASKED_PATHS: readonly string[] = [
  "/proc/acpi",
  "/proc/asound",
  "/proc/kcore",
  "/proc/keys",
  "/proc/latency_stats",
  "/proc/timer_list",
  "/proc/timer_stats",
  "/proc/sched_debug",
  "/sys/firmware",
  "/sys/devices/virtual/powercap",
  "/proc/scsi",
];

/** Paths remounted read-only in unprivileged containers. */
export const DEFAULT_READONLY_PATHS: readonly string[] = [
  "/proc/bus",
  "/proc/fs",
  "/proc/irq",
  "/proc/sys",
  "/proc/sysrq-trigger",
];

const rwm = "rwm";
const charDev = (major: number, minor?: number): LinuxDeviceCgroup =>
  minor === undefined
    ? { allow: true, type: "c", major, access: rwm }
    : { allow: true, type: "c", major, minor, access: rwm };

/** Device-cgroup rules of an unprivileged container: deny everything, then allow the standard nodes. */
export const DEFAULT_DEVICE_RULES: readonly LinuxDeviceCgroup[] = [
  { allow: false, access: rwm },
  charDev(1, 3), // /dev/null
  charDev(1, 8), // /dev/random
  charDev(1, 7), // /dev/full
  charDev(5, 0), // /dev/tty
  charDev(1, 5), // /dev/zero
  charDev(1, 9), // /dev/urandom
  charDev(5, 1), // /dev/console
  charDev(136), // /dev/pts/*
  charDev(5, 2), // /dev/ptmx
];

function defaultMounts(): Mount[] {
  return [
    { destination: "/proc", type: "proc", source: "proc", options: ["nosuid", "noexec", "nodev"] },
    {
      destination: "/dev",
      type: "tmpfs",
      source: "tmpfs",
      options: ["nosuid", "strictatime", "mode=755", "size=65536k"],
    },
    {
      destination: "/dev/pts",
      type: "devpts",
      source: "devpts",
      options: ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"],
    },
    {
      destination: "/dev/shm",
      type: "tmpfs",
      source: "shm",
      options: ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
    },
    { destination: "/dev/mqueue", type: "mqueue", source: "mqueue", options: ["nosuid", "noexec", "nodev"] },
    { destination: "/sys", type: "sysfs", source: "sysfs", options: ["nosuid", "noexec", "nodev", "ro"] },
    {
      destination: "/sys/fs/cgroup",
      type: "cgroup",
      source: "cgroup",
      options: ["nosuid", "noexec", "nodev", "relatime", "ro"],
    },
  ];
}

/**
 * A fresh spec with containerd's defaults for a CRI container: rootfs `rootfs` in the bundle, root user, cwd
 * `/`, the fourteen default capabilities, RLIMIT_NOFILE 1024, new pid/ipc/uts/mount/network namespaces, the
 * standard mounts (/proc, /dev, /dev/pts, /dev/shm, /dev/mqueue, read-only /sys and /sys/fs/cgroup), default
 * masked and read-only paths and device rules. No seccomp profile, no cgroupsPath, no args: callers add them.
 * `noNewPrivileges` is false because that is what CRI's `no_new_privs` defaults to.
 */
export function defaultSpec(): Spec {
  const caps = (): string[] => [...DEFAULT_CAPABILITIES];
  return {
    ociVersion: OCI_VERSION,
    root: { path: "rootfs", readonly: false },
    process: {
      terminal: false,
      user: { uid: 0, gid: 0 },
      args: [],
      env: [DEFAULT_PATH_ENV],
      cwd: "/",
      capabilities: { bounding: caps(), effective: caps(), permitted: caps() },
      rlimits: [{ type: "RLIMIT_NOFILE", hard: 1024, soft: 1024 }],
      noNewPrivileges: false,
    },
    mounts: defaultMounts(),
    linux: {
      namespaces: [{ type: "pid" }, { type: "ipc" }, { type: "uts" }, { type: "mount" }, { type: "network" }],
      maskedPaths: [...DEFAULT_MASKED_PATHS],
      readonlyPaths: [...DEFAULT_READONLY_PATHS],
      resources: { devices: DEFAULT_DEVICE_RULES.map((r) => ({ ...r })) },
    },
  };
}

/** Applies `opts` in order to `spec` (mutating it) and returns it. */
export async function applyOpts(spec: Spec, ...opts: SpecOpt[]): Promise<Spec> {
  for (const opt of opts) await opt(spec);
  return spec;
}

/** `defaultSpec()` with `opts` applied. */
export function buildSpec(...opts: SpecOpt[]): Promise<Spec> {
  return applyOpts(defaultSpec(), ...opts);
}

/** Several options as one. */
export function compose(...opts: SpecOpt[]): SpecOpt {
  return async (spec) => {
    for (const opt of opts) await opt(spec);
  };
}

// Accessors that create the section they return, so options never check for absent parents.
function proc(spec: Spec): Process {
  spec.process ??= { user: { uid: 0, gid: 0 }, args: [], cwd: "/" };
  return spec.process;
}
function linux(spec: Spec): NonNullable<Spec["linux"]> {
  spec.linux ??= {};
  return spec.linux;
}
function resources(spec: Spec): LinuxResources {
  const l = linux(spec);
  l.resources ??= {};
  return l.resources;
}
function caps(spec: Spec): LinuxCapabilities {
  const p = proc(spec);
  p.capabilities ??= {};
  return p.capabilities;
}

// ---- process -------------------------------------------------------------------------------------------

/** Sets the argv of the process (image entrypoint/cmd already resolved by the caller). */
export function withArgs(args: readonly string[]): SpecOpt {
  return (spec) => {
    proc(spec).args = [...args];
  };
}

/**
 * Merges `KEY=value` entries into the environment: a key already present is replaced in place, new keys
 * are appended, so image env then CRI env can be applied in that order.
 */
export function withEnv(env: readonly string[]): SpecOpt {
  return (spec) => {
    const p = proc(spec);
    const out = [...(p.env ?? [])];
    for (const kv of env) {
      const key = kv.split("=", 1)[0] ?? kv;
      const i = out.findIndex((e) => e === key || e.startsWith(`${key}=`));
      if (i >= 0) out[i] = kv;
      else out.push(kv);
    }
    p.env = out;
  };
}

/** Sets the working directory (absolute inside the container). */
export function withCwd(cwd: string): SpecOpt {
  return (spec) => {
    if (!cwd.startsWith("/")) throw invalidArgument(`working directory ${JSON.stringify(cwd)} is not absolute`);
    proc(spec).cwd = cwd;
  };
}

/** Sets the numeric uid/gid/supplementary groups (user names are resolved from the image by the caller). */
export function withUser(user: User): SpecOpt {
  return (spec) => {
    const u: User = { uid: user.uid, gid: user.gid };
    if (user.additionalGids && user.additionalGids.length > 0) u.additionalGids = [...new Set(user.additionalGids)];
    if (user.umask !== undefined) u.umask = user.umask;
    proc(spec).user = u;
  };
}

/** Allocates a terminal for the process (must agree with conmon's `-t`; the runtime sets both). */
export function withTerminal(terminal: boolean): SpecOpt {
  return (spec) => {
    proc(spec).terminal = terminal;
  };
}

/** Sets no_new_privs (setuid binaries and file capabilities cannot raise privileges). */
export function withNoNewPrivileges(on: boolean): SpecOpt {
  return (spec) => {
    proc(spec).noNewPrivileges = on;
  };
}

/** Adds or replaces one rlimit by type. */
export function withRlimit(rlimit: POSIXRlimit): SpecOpt {
  return (spec) => {
    const p = proc(spec);
    p.rlimits = [...(p.rlimits ?? []).filter((r) => r.type !== rlimit.type), { ...rlimit }];
  };
}

/** The lowest oom_score_adj a container may have: never below the daemon's own (containerd's restrict). */
export function clampOomScoreAdj(preferred: number, floor: number): number {
  return Math.min(1000, Math.max(preferred, floor));
}

/**
 * Sets oom_score_adj, raised to at least the daemon's current value (read from /proc unless `floor` is
 * given): without CAP_SYS_RESOURCE runc fails to lower it, so asking for less would fail the create.
 */
export function withOomScoreAdj(adj: number, options: { floor?: number } = {}): SpecOpt {
  return async (spec) => {
    proc(spec).oomScoreAdj = clampOomScoreAdj(adj, options.floor ?? (await currentOomScoreAdj()));
  };
}

// ---- capabilities and security ---------------------------------------------------------------------------

function setCapabilitySets(spec: Spec, list: readonly string[]): void {
  const c = caps(spec);
  c.bounding = [...list];
  c.effective = [...list];
  c.permitted = [...list];
  if (c.inheritable) c.inheritable = c.inheritable.filter((x) => list.includes(x));
}

/**
 * Adds and drops capabilities in the bounding, effective and permitted sets, following containerd's CRI
 * order: add "ALL" (every capability the daemon holds, or `all`), then drop "ALL", then individual adds, then
 * individual drops. So `add: [ALL], drop: [CHOWN]` is everything but CAP_CHOWN and `drop: [ALL], add:
 * [NET_RAW]` is just CAP_NET_RAW. Names may omit the `CAP_` prefix and are case-insensitive.
 */
export function withCapabilities(
  change: { add?: readonly string[]; drop?: readonly string[] },
  all?: readonly string[],
): SpecOpt {
  return async (spec) => {
    const add = (change.add ?? []).map(normalizeCapability);
    const drop = (change.drop ?? []).map(normalizeCapability);
    if (add.includes("ALL")) setCapabilitySets(spec, all ?? (await currentCapabilities()));
    if (drop.includes("ALL")) setCapabilitySets(spec, []);
    const c = caps(spec);
    for (const name of add.filter((n) => n !== "ALL")) {
      for (const set of ["bounding", "effective", "permitted"] as const) {
        const list = c[set] ?? [];
        if (!list.includes(name)) list.push(name);
        c[set] = list;
      }
    }
    for (const name of drop.filter((n) => n !== "ALL")) {
      for (const set of ["bounding", "effective", "permitted", "inheritable", "ambient"] as const) {
        if (c[set]) c[set] = c[set].filter((x) => x !== name);
      }
    }
  };
}

/**
 * Seccomp: "RuntimeDefault" builds our default profile for the current bounding set (apply it after
 * capability options), "Unconfined" removes any filter, or a full profile is set as given (Localhost
 * profiles are read and parsed by the caller).
 */
export function withSeccomp(profile: "RuntimeDefault" | "Unconfined" | LinuxSeccomp): SpecOpt {
  return (spec) => {
    const l = linux(spec);
    if (profile === "Unconfined") delete l.seccomp;
    else if (profile === "RuntimeDefault")
      l.seccomp = defaultSeccompProfile(spec.process?.capabilities?.bounding ?? []);
    else l.seccomp = structuredClone(profile);
  };
}

/** Replaces the masked paths (CRI's `masked_paths`; an empty list unmasks everything). */
export function withMaskedPaths(paths: readonly string[]): SpecOpt {
  return (spec) => {
    linux(spec).maskedPaths = [...paths];
  };
}

/** Replaces the read-only paths (CRI's `readonly_paths`). */
export function withReadonlyPaths(paths: readonly string[]): SpecOpt {
  return (spec) => {
    linux(spec).readonlyPaths = [...paths];
  };
}

/**
 * A privileged container: every capability the daemon holds, all device-cgroup access, no masked or
 * read-only paths, writable /sys and /sys/fs/cgroup, no seccomp, and (unless `hostDevices: false`, CRI's
 * `privileged_without_host_devices`) every device node under the host's /dev.
 */
export function withPrivileged(options: { hostDevices?: boolean; capabilities?: readonly string[] } = {}): SpecOpt {
  return async (spec) => {
    setCapabilitySets(spec, options.capabilities ?? (await currentCapabilities()));
    const l = linux(spec);
    l.maskedPaths = [];
    l.readonlyPaths = [];
    delete l.seccomp;
    for (const m of spec.mounts ?? []) {
      if ((m.type === "sysfs" || m.type === "cgroup") && m.options)
        m.options = m.options.map((o) => (o === "ro" ? "rw" : o));
    }
    resources(spec).devices = [{ allow: true, access: rwm }];
    if (options.hostDevices ?? true) addDevices(spec, await devicesUnder("/dev"));
  };
}

// ---- filesystem ----------------------------------------------------------------------------------------

/** Sets the root filesystem path (absolute, or relative to the bundle). */
export function withRootPath(path: string): SpecOpt {
  return (spec) => {
    spec.root = { ...(spec.root ?? {}), path };
  };
}

/** Makes the root filesystem read-only (CRI's `readonly_rootfs`). */
export function withReadonlyRootfs(readonly: boolean): SpecOpt {
  return (spec) => {
    spec.root = { path: spec.root?.path ?? "rootfs", readonly };
  };
}

/** Mount propagation of a bind mount: CRI PRIVATE, HOST_TO_CONTAINER and BIDIRECTIONAL. */
export type Propagation = "private" | "rslave" | "rshared";

/** A host path bound into the container. */
export interface BindMount {
  hostPath: string;
  containerPath: string;
  readonly?: boolean;
  /** Submounts read-only too: the "rro" option of runc 1.2 (the runtime emulates it for older runc). */
  recursiveReadOnly?: boolean;
  /** Default "private" (rprivate). rslave/rshared only propagate when the host mount is itself shared. */
  propagation?: Propagation;
}

/**
 * Adds recursive bind mounts. A mount at a destination that already has one (a default such as /dev/shm, or
 * an earlier bind) replaces it; new mounts are ordered shallowest first so parents mount before children.
 *
 * An rshared or rslave bind also makes the root mount's propagation at least as open (rshared > rslave), as
 * containerd does: runc makes the container's mount tree a slave of the host's by default, and a bind taken
 * from a slave copy only receives events, so a container's mounts under an rshared bind would never reach
 * the host.
 */
export function withBindMounts(binds: readonly BindMount[]): SpecOpt {
  return (spec) => {
    for (const b of binds) {
      const root = spec.linux?.rootfsPropagation;
      if (b.propagation === "rshared") linux(spec).rootfsPropagation = "rshared";
      else if (b.propagation === "rslave" && root !== "rshared") linux(spec).rootfsPropagation = "rslave";
    }
    const added: Mount[] = binds.map((b) => {
      if (!b.containerPath.startsWith("/"))
        throw invalidArgument(`mount destination ${JSON.stringify(b.containerPath)} is not absolute`);
      const propagation = b.propagation === undefined || b.propagation === "private" ? "rprivate" : b.propagation;
      return {
        destination: b.containerPath,
        type: "bind",
        source: b.hostPath,
        options: ["rbind", propagation, b.recursiveReadOnly ? "rro" : b.readonly ? "ro" : "rw"],
      };
    });
    const depth = (p: string) => p.split("/").filter(Boolean).length;
    added.sort((a, b) => depth(a.destination) - depth(b.destination));
    const dests = new Set(added.map((m) => normalizeDest(m.destination)));
    spec.mounts = [...(spec.mounts ?? []).filter((m) => !dests.has(normalizeDest(m.destination))), ...added];
  };
}

function normalizeDest(p: string): string {
  return p.length > 1 ? p.replace(/\/+$/, "") : p;
}

/** A host device exposed in the container (CRI `Device`). */
export interface DeviceRequest {
  hostPath: string;
  containerPath: string;
  /** cgroup permissions, any of "r", "w", "m" (default "rwm"). */
  permissions?: string;
}

function addDevices(spec: Spec, devices: readonly LinuxDevice[], permissions?: string): void {
  const l = linux(spec);
  const byPath = new Map((l.devices ?? []).map((d) => [d.path, d]));
  for (const d of devices) byPath.set(d.path, d);
  l.devices = [...byPath.values()];
  if (permissions === undefined) return;
  const r = resources(spec);
  r.devices ??= [];
  for (const d of devices)
    r.devices.push({ allow: true, type: d.type, major: d.major, minor: d.minor, access: permissions });
}

/** Creates device nodes from host devices (stat'ed now for type and major/minor) and allows them in the cgroup. */
export function withDevices(requests: readonly DeviceRequest[]): SpecOpt {
  return async (spec) => {
    for (const req of requests) {
      const permissions = req.permissions || rwm;
      if (!/^[rwm]+$/.test(permissions))
        throw invalidArgument(`device ${req.hostPath}: bad permissions ${JSON.stringify(permissions)}`);
      addDevices(spec, await devicesFromHostPath(req.hostPath, req.containerPath), permissions);
    }
  };
}

// ---- namespaces, identity, metadata ----------------------------------------------------------------------

/** Uses a namespace of `type`: a new one, or the one at `path` (e.g. the sandbox's `/proc/<pid>/ns/net`). */
export function withNamespace(type: NamespaceType, path?: string): SpecOpt {
  return (spec) => {
    const l = linux(spec);
    const ns = path === undefined ? { type } : { type, path };
    l.namespaces = [...(l.namespaces ?? []).filter((n) => n.type !== type), ns];
  };
}

/** Shares the host's namespace of `type` (no namespace entry means "stay in the runtime's"). */
export function withHostNamespace(type: NamespaceType): SpecOpt {
  return (spec) => {
    const l = linux(spec);
    l.namespaces = (l.namespaces ?? []).filter((n) => n.type !== type);
  };
}

/** Sets the UTS hostname (only meaningful with a uts namespace). */
export function withHostname(hostname: string): SpecOpt {
  return (spec) => {
    spec.hostname = hostname;
  };
}

/** Merges sysctls (`net.core.somaxconn` → "1024"). */
export function withSysctls(sysctls: Readonly<Record<string, string>>): SpecOpt {
  return (spec) => {
    const l = linux(spec);
    l.sysctl = { ...(l.sysctl ?? {}), ...sysctls };
  };
}

/** Sets the cgroup path (cgroupfs: an absolute path under each controller's root). */
export function withCgroupsPath(path: string): SpecOpt {
  return (spec) => {
    linux(spec).cgroupsPath = path;
  };
}

/** Merges annotations. */
export function withAnnotations(annotations: Readonly<Record<string, string>>): SpecOpt {
  return (spec) => {
    spec.annotations = { ...(spec.annotations ?? {}), ...annotations };
  };
}

// ---- resources ------------------------------------------------------------------------------------------

/** CRI-shaped resource limits. As in CRI, 0 or absent means "not set". */
export interface ResourceLimits {
  cpuShares?: number;
  cpuQuota?: number;
  cpuPeriod?: number;
  cpusetCpus?: string;
  cpusetMems?: string;
  memoryLimitBytes?: number;
  memorySwapLimitBytes?: number;
  pidsLimit?: number;
  hugepageLimits?: readonly { pageSize: string; limit: number }[];
  unified?: Readonly<Record<string, string>>;
}

/**
 * The runtime-spec form of `limits` for a host with `features` (default: everything supported). Memory+swap
 * equals the memory limit unless a swap limit is given, so containers do not swap by default (containerd).
 * Hugepage limits are dropped when the host has no usable hugetlb controller (containerd's
 * `tolerate_missing_hugetlb_controller`), since runc would otherwise fail the create.
 */
export function linuxResources(limits: ResourceLimits, features: Partial<CgroupFeatures> = {}): LinuxResources {
  const swap = features.swap ?? true;
  const out: LinuxResources = {};
  const cpu: NonNullable<LinuxResources["cpu"]> = {};
  if (limits.cpuShares) cpu.shares = limits.cpuShares;
  if (limits.cpuQuota) cpu.quota = limits.cpuQuota;
  if (limits.cpuPeriod) cpu.period = limits.cpuPeriod;
  if (limits.cpusetCpus) cpu.cpus = limits.cpusetCpus;
  if (limits.cpusetMems) cpu.mems = limits.cpusetMems;
  if (Object.keys(cpu).length > 0) out.cpu = cpu;
  if (limits.memoryLimitBytes) {
    out.memory = { limit: limits.memoryLimitBytes };
    if (swap) out.memory.swap = limits.memoryLimitBytes;
  }
  if (limits.memorySwapLimitBytes && swap) out.memory = { ...(out.memory ?? {}), swap: limits.memorySwapLimitBytes };
  if (limits.pidsLimit) out.pids = { limit: limits.pidsLimit };
  if (limits.hugepageLimits && limits.hugepageLimits.length > 0 && (features.hugetlb ?? true)) {
    out.hugepageLimits = limits.hugepageLimits.map((h) => ({ pageSize: h.pageSize, limit: h.limit }));
  }
  if (limits.unified && Object.keys(limits.unified).length > 0) out.unified = { ...limits.unified };
  return out;
}

/** Merges `linuxResources(limits, features)` into the spec, keeping device rules. */
export function withResources(limits: ResourceLimits, features: Partial<CgroupFeatures> = {}): SpecOpt {
  return (spec) => {
    const r = resources(spec);
    const add = linuxResources(limits, features);
    if (add.cpu) r.cpu = { ...(r.cpu ?? {}), ...add.cpu };
    if (add.memory) r.memory = { ...(r.memory ?? {}), ...add.memory };
    if (add.pids) r.pids = add.pids;
    if (add.hugepageLimits) r.hugepageLimits = add.hugepageLimits;
    if (add.unified) r.unified = { ...(r.unified ?? {}), ...add.unified };
  };
}
