import { readFile } from "node:fs/promises";
import { invalidArgument } from "../errdefs/index.js";

/** Linux capability names indexed by their bit number (linux/capability.h up to 6.x). */
export const CAPABILITIES: readonly string[] = [
  "CAP_CHOWN",
  "CAP_DAC_OVERRIDE",
  "CAP_DAC_READ_SEARCH",
  "CAP_FOWNER",
  "CAP_FSETID",
  "CAP_KILL",
  "CAP_SETGID",
  "CAP_SETUID",
  "CAP_SETPCAP",
  "CAP_LINUX_IMMUTABLE",
  "CAP_NET_BIND_SERVICE",
  "CAP_NET_BROADCAST",
  "CAP_NET_ADMIN",
  "CAP_NET_RAW",
  "CAP_IPC_LOCK",
  "CAP_IPC_OWNER",
  "CAP_SYS_MODULE",
  "CAP_SYS_RAWIO",
  "CAP_SYS_CHROOT",
  "CAP_SYS_PTRACE",
  "CAP_SYS_PACCT",
  "CAP_SYS_ADMIN",
  "CAP_SYS_BOOT",
  "CAP_SYS_NICE",
  "CAP_SYS_RESOURCE",
  "CAP_SYS_TIME",
  "CAP_SYS_TTY_CONFIG",
  "CAP_MKNOD",
  "CAP_LEASE",
  "CAP_AUDIT_WRITE",
  "CAP_AUDIT_CONTROL",
  "CAP_SETFCAP",
  "CAP_MAC_OVERRIDE",
  "CAP_MAC_ADMIN",
  "CAP_SYSLOG",
  "CAP_WAKE_ALARM",
  "CAP_BLOCK_SUSPEND",
  "CAP_AUDIT_READ",
  "CAP_PERFMON",
  "CAP_BPF",
  "CAP_CHECKPOINT_RESTORE",
];

/** The capabilities a non-privileged container gets, the same fourteen containerd and Docker grant. */
export const DEFAULT_CAPABILITIES: readonly string[] = [
  "CAP_CHOWN",
  "CAP_DAC_OVERRIDE",
  "CAP_FSETID",
  "CAP_FOWNER",
  "CAP_MKNOD",
  "CAP_NET_RAW",
  "CAP_SETGID",
  "CAP_SETUID",
  "CAP_SETFCAP",
  "CAP_SETPCAP",
  "CAP_NET_BIND_SERVICE",
  "CAP_SYS_CHROOT",
  "CAP_KILL",
  "CAP_AUDIT_WRITE",
];

/**
 * Canonical form of a capability name: upper case with the `CAP_` prefix (CRI sends `NET_ADMIN`, runc wants
 * `CAP_NET_ADMIN`). "ALL" stays "ALL". Unknown names are rejected so a typo fails at create, not silently.
 */
export function normalizeCapability(name: string): string {
  const upper = name.trim().toUpperCase();
  if (upper === "ALL") return upper;
  const full = upper.startsWith("CAP_") ? upper : `CAP_${upper}`;
  if (!CAPABILITIES.includes(full)) throw invalidArgument(`unknown capability ${JSON.stringify(name)}`);
  return full;
}

/** The names of the bits set in a capability mask (as printed in /proc/<pid>/status, hex). */
export function capabilitiesFromMask(mask: bigint): string[] {
  return CAPABILITIES.filter((_, bit) => (mask >> BigInt(bit)) & 1n);
}

/**
 * The daemon's own effective capabilities. "All capabilities" for a privileged container means these, not
 * every capability the kernel knows: runc cannot grant what its caller lacks (on this kind of host root lacks
 * CAP_SYS_RESOURCE), which is why containerd's WithAllCurrentCapabilities reads them the same way.
 */
export async function currentCapabilities(statusPath = "/proc/self/status"): Promise<string[]> {
  const text = await readFile(statusPath, "utf8");
  const line = text.split("\n").find((l) => l.startsWith("CapEff:"));
  if (!line) return [...CAPABILITIES];
  return capabilitiesFromMask(BigInt(`0x${line.slice("CapEff:".length).trim()}`));
}
