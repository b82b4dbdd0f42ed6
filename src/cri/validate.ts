import { isIP } from "node:net";
import { invalidArgument } from "../errdefs/index.js";
import type { ContainerConfig, SandboxConfig } from "../pods/index.js";

/**
 * Validation of the CRI string fields that reach host tools, files and paths: the one place where
 * such a field is checked, before any of it is acted on. Each rule rejects with InvalidArgument
 * naming the field (by its CRI path, e.g. `config.linux.sysctls["kernel.hostname"]`), so a client
 * sees what to fix. Where a rule mirrors the kubelet or runc, the comment names which.
 *
 * Fields and where they go:
 *   hostname                → `hostname <name>` (argv), /etc/hostname, /etc/hosts
 *   linux.sysctls           → runc writes /proc/sys/<key> in the container's namespaces
 *   runtime_handler         → a key of [runtime.handlers]; a component of <state>/runtime/<handler>
 *   dns_config              → lines of /etc/resolv.conf
 *   port_mappings           → the CNI portmap plugin (JSON, then iptables argv)
 *   linux.cgroup_parent     → the cgroup path runc creates (under /sys/fs/cgroup)
 *   log_directory, log_path → files conmon creates
 *   metadata names          → store keys `<namespace>/<name>/<uid>/<attempt>`
 *   command, args, envs, working_dir, exec cmd → execve in the container (via runc)
 */

/** Longest hostname Linux accepts (HOST_NAME_MAX). */
const HOST_NAME_MAX = 64;
const DNS_LABEL = /^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/;
/** Any C0 control character or DEL: never meaningful in a name or path, fatal in a line-based file. */
const CONTROL = /[\u0000-\u001f\u007f]/;
const CONTROL_BUT_TAB = /[\u0000-\u0008\u000a-\u001f\u007f]/;

/**
 * A pod hostname: empty (none), or an RFC 1123 host name of at most 64 characters — dot-separated
 * labels of letters, digits and inner hyphens. So it can never begin with `-` and be read as an
 * option by `hostname(1)` (`-F/etc/shadow` would set the name from a host file).
 */
export function validateHostname(hostname: string, field = "config.hostname"): void {
  if (hostname === "") return;
  if (hostname.length > HOST_NAME_MAX || !hostname.split(".").every((l) => DNS_LABEL.test(l))) {
    throw invalidArgument(`${field} ${JSON.stringify(hostname)} is not an RFC 1123 host name of at most 64 characters`);
  }
}

/** Sysctls runc places in the IPC namespace (besides every `fs.mqueue.*`): libcontainer/configs/validate. */
const IPC_SYSCTLS = new Set([
  "kernel.msgmax",
  "kernel.msgmnb",
  "kernel.msgmni",
  "kernel.sem",
  "kernel.shmall",
  "kernel.shmmax",
  "kernel.shmmni",
  "kernel.shm_rmid_forced",
]);

/** A sysctl name component: `/proc/sys` directory or file names (interface names may hold dots). */
const SYSCTL_PART = /^[A-Za-z0-9_.:@+-]+$/;

/**
 * Sysctls must be namespaced, as runc and the kubelet define it: the IPC ones (kernel.msg*,
 * kernel.sem, kernel.shm*, fs.mqueue.*) only when the pod has its own IPC namespace, `net.*` only
 * when it has its own network namespace, `kernel.domainname` only with its own UTS namespace (which
 * berth pins exactly when the network is not the node's). `kernel.hostname` conflicts with the
 * hostname field (runc refuses it too). Everything else would change the host kernel.
 * Names are dotted (`net.ipv4.ip_forward`) or, as runc also accepts, slashed
 * (`net/ipv4/conf/eth0.100/forwarding`); no component may be empty, `.` or `..`.
 */
export function validateSysctls(sysctls: Readonly<Record<string, string>>, ns: SandboxConfig["namespaces"]): void {
  for (const [key, value] of Object.entries(sysctls)) {
    const field = `config.linux.sysctls[${JSON.stringify(key)}]`;
    const parts = key.includes("/") ? key.split("/") : key.split(".");
    if (key.length > 256 || !parts.every((p) => SYSCTL_PART.test(p) && p !== "." && p !== "..")) {
      throw invalidArgument(`${field}: not a sysctl name`);
    }
    if (value.length > 4096 || CONTROL_BUT_TAB.test(value)) {
      throw invalidArgument(`${field}: the value holds control characters or is over 4096 bytes`);
    }
    const name = parts.join(".");
    const hostNetwork = ns.network === "node";
    if (IPC_SYSCTLS.has(name) || name.startsWith("fs.mqueue.")) {
      if (ns.ipc === "node") throw invalidArgument(`${field}: not allowed with the host IPC namespace`);
      continue;
    }
    if (name.startsWith("net.")) {
      if (hostNetwork) throw invalidArgument(`${field}: not allowed with the host network namespace`);
      continue;
    }
    if (name === "kernel.domainname" && !hostNetwork) continue;
    if (name === "kernel.hostname") throw invalidArgument(`${field}: conflicts with config.hostname`);
    throw invalidArgument(
      `${field}: not a namespaced sysctl (allowed: kernel.msg*, kernel.sem, kernel.shm*, fs.mqueue.*, net.*)`,
    );
  }
}

/**
 * A runtime handler name from a request: empty (the default), or the name of a configured handler.
 * The shape is checked first, so the error says why a hostile name is wrong: handler names become
 * path components (`<state>/runtime/<handler>`), so no `/`, `.`/`..`, NUL, leading `-` (an option
 * to a tool), and at most 64 characters.
 */
export function validateRuntimeHandler(name: string, configured: readonly string[]): void {
  if (name === "") return;
  const field = `runtime_handler ${JSON.stringify(name)}`;
  if (
    name.length > 64 ||
    name.includes("/") ||
    name === "." ||
    name === ".." ||
    name.startsWith("-") ||
    CONTROL.test(name)
  ) {
    throw invalidArgument(`${field}: not a valid handler name (at most 64 characters, no "/", "..", "-" first)`);
  }
  if (!configured.includes(name)) throw invalidArgument(`${field}: no such handler is configured`);
}

/** A metadata field: stored under a key joined with `/`, so no `/`, no control characters. */
function validateName(value: string, field: string): void {
  if (value.length > 253 || value.includes("/") || CONTROL.test(value)) {
    throw invalidArgument(`${field} ${JSON.stringify(value)}: at most 253 characters, no "/" or control characters`);
  }
}

/** A path field that becomes a file or directory on the host: no NUL or control characters, no `..` component. */
export function validateHostPath(value: string, field: string, options: { absolute?: boolean } = {}): void {
  if (value === "") return;
  if (CONTROL.test(value)) throw invalidArgument(`${field} ${JSON.stringify(value)}: holds control characters`);
  if (value.length > 4096) throw invalidArgument(`${field}: over 4096 bytes`);
  if (value.split("/").includes(".."))
    throw invalidArgument(`${field} ${JSON.stringify(value)}: holds a ".." component`);
  if (options.absolute && !value.startsWith("/"))
    throw invalidArgument(`${field} ${JSON.stringify(value)}: not absolute`);
}

/** A resolv.conf word: no whitespace (it would split the line) and no control characters (a newline adds a line). */
const RESOLV_WORD = /^[^\s\u0000-\u001f\u007f]{1,253}$/;

/**
 * DNS settings are written as /etc/resolv.conf lines: servers must be IP addresses, and each search
 * domain and option one word, or a newline in one would add lines of the client's choosing.
 * Counts are capped at the kubelet's limits for a pod (32 searches; 3 servers there, 32 here).
 */
export function validateDns(dns: SandboxConfig["dns"]): void {
  if (dns === undefined) return;
  if (dns.servers.length > 32 || dns.searches.length > 32 || dns.options.length > 32) {
    throw invalidArgument("config.dns_config: more than 32 servers, searches or options");
  }
  for (const s of dns.servers) {
    if (isIP(s) === 0) throw invalidArgument(`config.dns_config.servers: ${JSON.stringify(s)} is not an IP address`);
  }
  for (const s of dns.searches) {
    if (!RESOLV_WORD.test(s)) throw invalidArgument(`config.dns_config.searches: ${JSON.stringify(s)} is not one word`);
  }
  for (const o of dns.options) {
    if (!RESOLV_WORD.test(o)) throw invalidArgument(`config.dns_config.options: ${JSON.stringify(o)} is not one word`);
  }
}

function validatePort(value: number, field: string, allowZero: boolean): void {
  if (!Number.isInteger(value) || value < (allowZero ? 0 : 1) || value > 65535) {
    throw invalidArgument(`${field} ${value}: not a port number`);
  }
}

/** RunPodSandbox's config, converted: every field above that a pod carries. */
export function validateSandboxConfig(config: SandboxConfig): void {
  const m = config.metadata;
  validateName(m.name, "config.metadata.name");
  validateName(m.namespace, "config.metadata.namespace");
  validateName(m.uid, "config.metadata.uid");
  validateHostname(config.hostname);
  validateSysctls(config.sysctls, config.namespaces);
  validateDns(config.dns);
  validateHostPath(config.logDirectory, "config.log_directory", { absolute: true });
  validateHostPath(config.cgroupParent, "config.linux.cgroup_parent");
  for (const [i, p] of config.portMappings.entries()) {
    validatePort(p.containerPort, `config.port_mappings[${i}].container_port`, false);
    validatePort(p.hostPort, `config.port_mappings[${i}].host_port`, true);
    if (p.hostIp !== "" && isIP(p.hostIp) === 0) {
      throw invalidArgument(`config.port_mappings[${i}].host_ip ${JSON.stringify(p.hostIp)}: not an IP address`);
    }
  }
}

/** An argv for execve: NUL ends a C string, so an argument holding one cannot be passed intact. */
export function validateArgv(argv: readonly string[], field: string): void {
  for (const [i, a] of argv.entries()) {
    if (a.includes("\0")) throw invalidArgument(`${field}[${i}]: holds a NUL byte`);
  }
}

/** CreateContainer's config, converted. */
export function validateContainerConfig(config: ContainerConfig): void {
  validateName(config.name, "config.metadata.name");
  validateArgv(config.command, "config.command");
  validateArgv(config.args, "config.args");
  for (const [i, e] of config.envs.entries()) {
    // KEY=VALUE strings: a key with "=" would change which variable the value lands in.
    if (e.key === "" || e.key.includes("=") || e.key.includes("\0") || e.value.includes("\0")) {
      throw invalidArgument(
        `config.envs[${i}] ${JSON.stringify(e.key)}: key must be non-empty without "=", and no NUL`,
      );
    }
  }
  if (config.workingDir !== "") {
    if (!config.workingDir.startsWith("/") || config.workingDir.includes("\0")) {
      throw invalidArgument(`config.working_dir ${JSON.stringify(config.workingDir)}: not an absolute path`);
    }
  }
  validateHostPath(config.logPath, "config.log_path");
  for (const [i, mount] of config.mounts.entries()) {
    if (mount.hostPath.includes("\0") || mount.containerPath.includes("\0")) {
      throw invalidArgument(`config.mounts[${i}]: a path holds a NUL byte`);
    }
  }
  for (const [i, d] of config.devices.entries()) {
    if (d.hostPath.includes("\0") || d.containerPath.includes("\0")) {
      throw invalidArgument(`config.devices[${i}]: a path holds a NUL byte`);
    }
  }
}
