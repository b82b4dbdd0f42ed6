/**
 * OCI runtime-spec types: the subset of `config.json` berth writes (runtime-spec 1.0.2, the version runc 1.1
 * implements). Field names and shapes are the spec's JSON, so a `Spec` serialises straight to `config.json`.
 * Optional fields are omitted rather than set to `undefined`, which keeps the JSON minimal and lets runc apply
 * its own defaults. Hooks are deliberately absent: berth never asks runc to run host binaries.
 */

/** The OCI runtime-spec version these types describe. */
export const OCI_VERSION = "1.0.2";

/** A whole `config.json`. */
export interface Spec {
  ociVersion: string;
  process?: Process;
  root?: Root;
  hostname?: string;
  mounts?: Mount[];
  annotations?: Record<string, string>;
  linux?: Linux;
}

/** The container's init process (or, for exec, the process.json of an extra one). */
export interface Process {
  terminal?: boolean;
  consoleSize?: { height: number; width: number };
  user: User;
  args: string[];
  env?: string[];
  cwd: string;
  capabilities?: LinuxCapabilities;
  rlimits?: POSIXRlimit[];
  noNewPrivileges?: boolean;
  apparmorProfile?: string;
  oomScoreAdj?: number;
  selinuxLabel?: string;
}

/** Numeric identity the process runs as; names are resolved before they get here. */
export interface User {
  uid: number;
  gid: number;
  umask?: number;
  additionalGids?: number[];
}

/** Capability sets by name (`CAP_CHOWN`, ...). */
export interface LinuxCapabilities {
  bounding?: string[];
  effective?: string[];
  inheritable?: string[];
  permitted?: string[];
  ambient?: string[];
}

/** One resource limit (`RLIMIT_NOFILE`, ...). */
export interface POSIXRlimit {
  type: string;
  hard: number;
  soft: number;
}

/** The root filesystem; a relative `path` is resolved against the bundle directory. */
export interface Root {
  path: string;
  readonly?: boolean;
}

/** A mount inside the container, in mount order. */
export interface Mount {
  destination: string;
  type?: string;
  source?: string;
  options?: string[];
}

/** The Linux section. */
export interface Linux {
  namespaces?: LinuxNamespace[];
  devices?: LinuxDevice[];
  cgroupsPath?: string;
  resources?: LinuxResources;
  sysctl?: Record<string, string>;
  seccomp?: LinuxSeccomp;
  maskedPaths?: string[];
  readonlyPaths?: string[];
  mountLabel?: string;
  /** Propagation of the container's root mount ("rprivate", "rslave", "rshared", ...). */
  rootfsPropagation?: string;
  uidMappings?: LinuxIDMapping[];
  gidMappings?: LinuxIDMapping[];
}

/** Namespace kinds runc understands. */
export type NamespaceType = "pid" | "network" | "mount" | "ipc" | "uts" | "user" | "cgroup";

/** A namespace to create (no `path`) or join (`path`, e.g. `/proc/<pid>/ns/net` or a bind-mounted netns). */
export interface LinuxNamespace {
  type: NamespaceType;
  path?: string;
}

/** A user-namespace ID mapping. */
export interface LinuxIDMapping {
  containerID: number;
  hostID: number;
  size: number;
}

/** A device node runc creates in the container's /dev. */
export interface LinuxDevice {
  path: string;
  /** "c" (char), "b" (block), "u" (unbuffered char), "p" (fifo). */
  type: string;
  major: number;
  minor: number;
  fileMode?: number;
  uid?: number;
  gid?: number;
}

/** Cgroup limits; also the body of `runc update --resources -`. */
export interface LinuxResources {
  devices?: LinuxDeviceCgroup[];
  memory?: LinuxMemory;
  cpu?: LinuxCPU;
  pids?: LinuxPids;
  hugepageLimits?: LinuxHugepageLimit[];
  /** cgroup v2 files written verbatim (`memory.high` → "1G"). */
  unified?: Record<string, string>;
}

/** One device-cgroup rule; rules apply in order, the last match wins. */
export interface LinuxDeviceCgroup {
  allow: boolean;
  type?: string;
  major?: number;
  minor?: number;
  /** Any of "r", "w", "m". */
  access?: string;
}

/** Memory limits in bytes. */
export interface LinuxMemory {
  limit?: number;
  reservation?: number;
  /** memory+swap; equal to `limit` means no swap. */
  swap?: number;
  swappiness?: number;
  disableOOMKiller?: boolean;
}

/** CPU limits: CFS shares/quota/period and cpuset. */
export interface LinuxCPU {
  shares?: number;
  quota?: number;
  period?: number;
  cpus?: string;
  mems?: string;
}

/** Process-count limit (-1 or absent: unlimited). */
export interface LinuxPids {
  limit: number;
}

/** A hugetlb limit for one page size (`2MB`, `1GB`). */
export interface LinuxHugepageLimit {
  pageSize: string;
  limit: number;
}

/** A seccomp filter in the runtime-spec form runc compiles with libseccomp. */
export interface LinuxSeccomp {
  defaultAction: SeccompAction;
  defaultErrnoRet?: number;
  architectures?: string[];
  flags?: string[];
  syscalls?: LinuxSyscall[];
}

/** Seccomp actions runc 1.1 understands. */
export type SeccompAction =
  | "SCMP_ACT_KILL"
  | "SCMP_ACT_KILL_PROCESS"
  | "SCMP_ACT_KILL_THREAD"
  | "SCMP_ACT_TRAP"
  | "SCMP_ACT_ERRNO"
  | "SCMP_ACT_TRACE"
  | "SCMP_ACT_ALLOW"
  | "SCMP_ACT_LOG";

/** One rule: these syscalls (optionally only with these arguments) get `action`. */
export interface LinuxSyscall {
  names: string[];
  action: SeccompAction;
  errnoRet?: number;
  args?: LinuxSeccompArg[];
}

/** A syscall-argument comparison. */
export interface LinuxSeccompArg {
  index: number;
  value: number;
  valueTwo?: number;
  op:
    | "SCMP_CMP_NE"
    | "SCMP_CMP_LT"
    | "SCMP_CMP_LE"
    | "SCMP_CMP_EQ"
    | "SCMP_CMP_GE"
    | "SCMP_CMP_GT"
    | "SCMP_CMP_MASKED_EQ";
}
