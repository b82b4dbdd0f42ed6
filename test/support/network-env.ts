/**
 * Helpers for the network domain's tests (src/network/*.test.ts): a private bridge and subnet per
 * test file, and cleanup that removes exactly what a test made on the host.
 */

import { randomBytes } from "node:crypto";
import { access, readFile, writeFile } from "node:fs/promises";
import { run, runUnchecked } from "../../src/sys/index.js";

const NEEDED = [
  "/usr/lib/cni/bridge",
  "/usr/lib/cni/host-local",
  "/usr/lib/cni/portmap",
  "/bin/busybox",
  "/usr/bin/unshare",
  "/usr/bin/nsenter",
];

/** `false` when root tests can run here, else the reason to skip them. */
export async function rootSkipReason(): Promise<string | false> {
  if (process.getuid?.() !== 0) return "needs root: creates network namespaces, a bridge and iptables rules";
  for (const path of NEEDED) {
    try {
      await access(path);
    } catch {
      return `needs ${path} (Debian: containernetworking-plugins, busybox, util-linux)`;
    }
  }
  return false;
}

/** A bridge name and a /24 in 10.200-249.x.0 that no route or address on the host overlaps. */
export async function privateNet(): Promise<{ bridge: string; subnet: string; prefix: string; tag: string }> {
  const routes =
    (await run("ip", ["-4", "-o", "route", "show", "table", "all"])).stdout +
    (await run("ip", ["-4", "-o", "addr"])).stdout;
  for (;;) {
    const tag = randomBytes(3).toString("hex");
    const prefix = `10.${200 + ((randomBytes(1)[0] ?? 0) % 50)}.${randomBytes(1)[0] ?? 0}`;
    if (routes.includes(`${prefix}.`)) continue;
    return { bridge: `bt${tag}`, subnet: `${prefix}.0/24`, prefix, tag };
  }
}

/** The `iptables-save` lines (all tables) mentioning any of `needles`. */
export async function iptablesLinesWith(needles: readonly string[]): Promise<string[]> {
  const { stdout } = await run("iptables-save", []);
  return stdout.split("\n").filter((l) => needles.some((n) => l.includes(n)));
}

const HOSTPORT_CHAINS = ["CNI-HOSTPORT-DNAT", "CNI-HOSTPORT-SETMARK", "CNI-HOSTPORT-MASQ"];

/** Host state to restore after a test file: taken before it changes anything. */
export interface HostSnapshot {
  ipForward: string;
  hostportChains: boolean;
}

/** Records what the tests may change on the host (bridge isGateway turns on ip_forward). */
export async function snapshotHost(): Promise<HostSnapshot> {
  const ipForward = (await readFile("/proc/sys/net/ipv4/ip_forward", "utf8")).trim();
  const hostportChains = (await runUnchecked("iptables", ["-t", "nat", "-S", "CNI-HOSTPORT-DNAT"])).code === 0;
  return { ipForward, hostportChains };
}

/**
 * Removes what the tests made: iptables rules naming `ids` and the CNI-* chains they jump to,
 * the bridge, portmap's shared chains when they did not exist before and are unused now, and
 * restores ip_forward. Every step is best effort so one failure does not skip the rest.
 */
export async function cleanupHost(snapshot: HostSnapshot, bridge: string, ids: readonly string[]): Promise<void> {
  const { stdout } = await run("iptables-save", []);
  let table = "filter";
  const deletes: string[][] = [];
  const chains = new Set<string>();
  for (const line of stdout.split("\n")) {
    if (line.startsWith("*")) table = line.slice(1);
    if (!line.startsWith("-A ") || !ids.some((id) => line.includes(id))) continue;
    const args = splitArgs(line);
    args[0] = "-D";
    deletes.push(["-t", table, ...args]);
    const target = args[args.indexOf("-j") + 1];
    if (target?.startsWith("CNI-") && !HOSTPORT_CHAINS.includes(target)) chains.add(`${table} ${target}`);
  }
  for (const d of deletes) await runUnchecked("iptables", d);
  for (const tc of chains) {
    const [t = "nat", c = ""] = tc.split(" ");
    await runUnchecked("iptables", ["-t", t, "-F", c]);
    await runUnchecked("iptables", ["-t", t, "-X", c]);
  }
  if (!snapshot.hostportChains) {
    const dnat = await runUnchecked("iptables", ["-t", "nat", "-S", "CNI-HOSTPORT-DNAT"]);
    if (dnat.code === 0 && !dnat.stdout.includes("-A CNI-HOSTPORT-DNAT")) {
      for (const chain of ["PREROUTING", "OUTPUT"]) {
        const jump = ["-m", "addrtype", "--dst-type", "LOCAL", "-j", "CNI-HOSTPORT-DNAT"];
        await runUnchecked("iptables", ["-t", "nat", "-D", chain, ...jump]);
      }
      await runUnchecked("iptables", [
        "-t",
        "nat",
        "-D",
        "POSTROUTING",
        "-m",
        "comment",
        "--comment",
        "CNI portfwd requiring masquerade",
        "-j",
        "CNI-HOSTPORT-MASQ",
      ]);
      for (const c of HOSTPORT_CHAINS) {
        await runUnchecked("iptables", ["-t", "nat", "-F", c]);
        await runUnchecked("iptables", ["-t", "nat", "-X", c]);
      }
    }
  }
  await runUnchecked("ip", ["link", "del", bridge]);
  const ipForward = (await readFile("/proc/sys/net/ipv4/ip_forward", "utf8")).trim();
  if (ipForward !== snapshot.ipForward) await writeFile("/proc/sys/net/ipv4/ip_forward", snapshot.ipForward);
}

/** Splits an iptables-save rule into argv (double quotes with backslash escapes). */
export function splitArgs(line: string): string[] {
  const out: string[] = [];
  let cur = "";
  let started = false;
  let quoted = false;
  for (let i = 0; i < line.length; i++) {
    const c = line[i] as string;
    if (quoted) {
      if (c === "\\" && i + 1 < line.length) cur += line[++i];
      else if (c === '"') quoted = false;
      else cur += c;
    } else if (c === '"') {
      quoted = true;
      started = true;
    } else if (c === " ") {
      if (started) out.push(cur);
      cur = "";
      started = false;
    } else {
      cur += c;
      started = true;
    }
  }
  if (started) out.push(cur);
  return out;
}

/** Polls `fn` until it returns true or `ms` passes. */
export async function eventually(fn: () => boolean | Promise<boolean>, ms = 5000): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await fn()) return true;
    await new Promise((r) => setTimeout(r, 25));
  }
  return fn();
}
