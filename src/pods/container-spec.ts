import { access, readFile } from "node:fs/promises";
import { join } from "node:path";
import { failedPrecondition, invalidArgument } from "../errdefs/index.js";
import {
  buildSpec,
  DEFAULT_PATH_ENV,
  type LinuxSeccomp,
  type NamespaceType,
  type Spec,
  type SpecOpt,
  withAnnotations,
  withArgs,
  withBindMounts,
  withCapabilities,
  withCgroupsPath,
  withCwd,
  withDevices,
  withEnv,
  withHostNamespace,
  withMaskedPaths,
  withNamespace,
  withNoNewPrivileges,
  withOomScoreAdj,
  withPrivileged,
  withReadonlyPaths,
  withReadonlyRootfs,
  withResources,
  withRootPath,
  withSeccomp,
  withSysctls,
  withTerminal,
  withUser,
} from "../oci/index.js";
import { cgroupsPath } from "./cgroup-paths.js";
import type { ContainerConfig, NamespaceMode, SandboxRecord } from "./types.js";
import type { ResolvedUser } from "./users.js";

/** The parts of an OCI image config a container is built from. */
export interface ImageRuntimeConfig {
  User?: string;
  Env?: string[];
  Entrypoint?: string[];
  Cmd?: string[];
  WorkingDir?: string;
  StopSignal?: string;
}

/** Everything the spec is computed from. */
export interface ContainerSpecInput {
  id: string;
  config: ContainerConfig;
  sandbox: SandboxRecord;
  image: ImageRuntimeConfig;
  imageName: string;
  /** Absolute path of the mounted root filesystem. */
  rootfs: string;
  user: ResolvedUser;
  /** Floor for oom_score_adj (the daemon's own, when restrict_oom_score_adj is on). */
  oomScoreAdjFloor?: number;
  /** PID namespace file to join for pid mode "pod" or "target". */
  pidNamespacePath?: string;
  /** Directory holding Localhost seccomp profiles referenced by relative paths. */
  seccompProfileRoot?: string;
}

/**
 * The process argv following the kubelet's contract: `command` replaces the image's
 * ENTRYPOINT and then `args` alone make up CMD; without `command`, `args` replace CMD.
 */
export function processArgs(config: Pick<ContainerConfig, "command" | "args">, image: ImageRuntimeConfig): string[] {
  const entrypoint = config.command.length > 0 ? config.command : (image.Entrypoint ?? []);
  const cmd = config.command.length > 0 || config.args.length > 0 ? config.args : (image.Cmd ?? []);
  const argv = [...entrypoint, ...cmd];
  if (argv.length === 0)
    throw invalidArgument("no command specified: neither the container config nor the image has one");
  return argv;
}

/**
 * Image env, then the container's env overriding by name; PATH always set; HOSTNAME like containerd, and
 * TERM=xterm for a terminal (containerd's WithTTY) unless the image or the container sets TERM.
 */
export function processEnv(
  config: Pick<ContainerConfig, "envs" | "tty">,
  image: ImageRuntimeConfig,
  hostname: string,
): string[] {
  const env = new Map<string, string>();
  for (const kv of image.Env ?? []) {
    const i = kv.indexOf("=");
    env.set(i < 0 ? kv : kv.slice(0, i), i < 0 ? "" : kv.slice(i + 1));
  }
  if (!env.has("PATH")) env.set("PATH", DEFAULT_PATH_ENV.slice("PATH=".length));
  if (hostname) env.set("HOSTNAME", hostname);
  if (config.tty && !env.has("TERM")) env.set("TERM", "xterm");
  for (const { key, value } of config.envs) env.set(key, value);
  return [...env].map(([k, v]) => `${k}=${v}`);
}

/** The signal StopContainer sends first: the CRI field, else the image's STOPSIGNAL, else SIGTERM. */
export function stopSignalOf(config: Pick<ContainerConfig, "stopSignal">, image: ImageRuntimeConfig): string {
  const raw = config.stopSignal || image.StopSignal || "SIGTERM";
  if (/^\d+$/.test(raw)) return raw;
  return raw.toUpperCase().startsWith("SIG") ? raw.toUpperCase() : `SIG${raw.toUpperCase()}`;
}

/** Builds the OCI runtime spec of a container from the CRI config, its sandbox and its image. */
export async function containerSpec(input: ContainerSpecInput): Promise<Spec> {
  const { config, sandbox, image } = input;
  if (config.selinuxRequested)
    throw invalidArgument("SELinux options were requested but SELinux is not enabled on this host");
  if (config.apparmor?.type === "localhost") {
    throw invalidArgument(
      `AppArmor profile "${config.apparmor.localhostRef}" was requested but AppArmor is not enabled on this host`,
    );
  }
  if (config.privileged && !sandbox.config.privileged) {
    throw invalidArgument("a privileged container needs a privileged pod sandbox");
  }
  const opts: SpecOpt[] = [
    withRootPath(input.rootfs),
    withArgs(processArgs(config, image)),
    withEnv(processEnv(config, image, sandbox.config.hostname)),
    withCwd(config.workingDir || image.WorkingDir || "/"),
    withUser({ uid: input.user.uid, gid: input.user.gid, additionalGids: input.user.additionalGids }),
    withTerminal(config.tty),
    ...namespaceOpts(input),
    withBindMounts(await podMounts(input)),
    withDevices(
      config.devices.map((d) => ({ hostPath: d.hostPath, containerPath: d.containerPath, permissions: d.permissions })),
    ),
    withSysctls(sandbox.config.sysctls),
    withCgroupsPath(cgroupsPath(sandbox, input.id)),
    withResources(config.resources),
    withAnnotations({
      ...config.annotations,
      "io.kubernetes.cri.container-type": "container",
      "io.kubernetes.cri.container-name": config.name,
      "io.kubernetes.cri.sandbox-id": sandbox.id,
      "io.kubernetes.cri.sandbox-name": sandbox.config.metadata.name,
      "io.kubernetes.cri.sandbox-namespace": sandbox.config.metadata.namespace,
      "io.kubernetes.cri.sandbox-uid": sandbox.config.metadata.uid,
      "io.kubernetes.cri.image-name": input.imageName,
    }),
  ];
  if (config.resources.oomScoreAdj !== undefined) {
    opts.push(
      withOomScoreAdj(
        config.resources.oomScoreAdj,
        input.oomScoreAdjFloor !== undefined ? { floor: input.oomScoreAdjFloor } : {},
      ),
    );
  }
  if (config.privileged) {
    opts.push(withPrivileged());
  } else {
    opts.push(withCapabilities(config.capabilities));
    if (config.maskedPaths.length > 0) opts.push(withMaskedPaths(config.maskedPaths));
    if (config.readonlyPaths.length > 0) opts.push(withReadonlyPaths(config.readonlyPaths));
    const seccomp = await seccompOf(input);
    if (seccomp) opts.push(withSeccomp(seccomp));
  }
  opts.push(withNoNewPrivileges(config.noNewPrivs), withReadonlyRootfs(config.readonlyRootfs));
  return buildSpec(...opts);
}

function namespaceOpts(input: ContainerSpecInput): SpecOpt[] {
  const { sandbox, config } = input;
  const join_ = (type: NamespaceType, path: string | undefined): SpecOpt =>
    path ? withNamespace(type, path) : withHostNamespace(type);
  const opts: SpecOpt[] = [
    sandbox.config.namespaces.network === "node" ? withHostNamespace("network") : join_("network", sandbox.netnsPath),
    sandbox.config.namespaces.ipc === "node" ? withHostNamespace("ipc") : join_("ipc", sandbox.ipcPath),
    sandbox.config.namespaces.network === "node" ? withHostNamespace("uts") : join_("uts", sandbox.utsPath),
  ];
  opts.push(pidNamespaceOpt(config.namespaces.pid, sandbox.config.namespaces.pid, input.pidNamespacePath));
  return opts;
}

/**
 * The container's PID namespace. Mode POD (also the CRI default) means the pod's, as in containerd: the
 * infra process's (`namespacePath`) when the pod shares one, the host's for a host-PID pod, and else a
 * new one: such a pod runs no process whose namespace could be joined (containerd would join its pause
 * container's, which the kubelet never asks for: it sends CONTAINER for those pods).
 */
export function pidNamespaceOpt(
  mode: NamespaceMode,
  podMode: NamespaceMode,
  namespacePath: string | undefined,
): SpecOpt {
  switch (mode) {
    case "node":
      return withHostNamespace("pid");
    case "pod":
      if (podMode === "node") return withHostNamespace("pid");
      if (podMode !== "pod") return withNamespace("pid");
      if (!namespacePath) throw failedPrecondition("no PID namespace to join for pid mode pod");
      return withNamespace("pid", namespacePath);
    case "target":
      if (!namespacePath) throw failedPrecondition("no PID namespace to join for pid mode target");
      return withNamespace("pid", namespacePath);
    default:
      return withNamespace("pid");
  }
}

/** The pod's files and /dev/shm, then the CRI mounts (which win on the same destination). */
async function podMounts(input: ContainerSpecInput) {
  const { sandbox, config } = input;
  const binds: {
    hostPath: string;
    containerPath: string;
    readonly?: boolean;
    recursiveReadOnly?: boolean;
    propagation?: "private" | "rslave" | "rshared";
  }[] = [];
  const own = new Set(config.mounts.map((m) => m.containerPath.replace(/\/+$/, "")));
  const podFile = (name: string, dest: string) => {
    if (!own.has(dest))
      binds.push({ hostPath: join(sandbox.dir, name), containerPath: dest, readonly: config.readonlyRootfs });
  };
  podFile("hostname", "/etc/hostname");
  podFile("hosts", "/etc/hosts");
  podFile("resolv.conf", "/etc/resolv.conf");
  if (!own.has("/dev/shm")) {
    binds.push({
      hostPath: sandbox.config.namespaces.ipc === "node" ? "/dev/shm" : join(sandbox.dir, "shm"),
      containerPath: "/dev/shm",
    });
  }
  for (const m of config.mounts) {
    if (!m.hostPath) throw invalidArgument(`mount ${m.containerPath}: host path is empty`);
    try {
      await access(m.hostPath);
    } catch {
      throw invalidArgument(`mount ${m.containerPath}: host path ${m.hostPath} does not exist`);
    }
    binds.push({
      hostPath: m.hostPath,
      containerPath: m.containerPath,
      readonly: m.readonly,
      recursiveReadOnly: m.recursiveReadOnly,
      propagation: m.propagation,
    });
  }
  return binds;
}

async function seccompOf(
  input: ContainerSpecInput,
): Promise<"RuntimeDefault" | "Unconfined" | LinuxSeccomp | undefined> {
  const p = input.config.seccomp;
  if (!p) return undefined;
  if (p.type === "runtime-default") return "RuntimeDefault";
  if (p.type === "unconfined") return "Unconfined";
  const ref = p.localhostRef.replace(/^localhost\//, "");
  const path = ref.startsWith("/") ? ref : join(input.seccompProfileRoot ?? "/var/lib/kubelet/seccomp", ref);
  try {
    return JSON.parse(await readFile(path, "utf8")) as LinuxSeccomp;
  } catch (err) {
    throw invalidArgument(`seccomp profile ${path}: ${(err as Error).message}`);
  }
}
