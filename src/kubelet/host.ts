/**
 * Facts about this machine that pods see: its name (`spec.nodeName`), its IP (`status.hostIP`,
 * and the pod IP of hostNetwork pods) and its resolv.conf (merged into pods' DNS config).
 */
import { readFile } from "node:fs/promises";
import { hostname, networkInterfaces } from "node:os";
import type { HostInfo } from "./convert.js";

/** Reads the host's facts; `resolvConf` is injectable for tests. */
export async function readHostInfo(options: { resolvConf?: string; routeFile?: string } = {}): Promise<HostInfo> {
  const [resolv, route] = await Promise.all([
    readFile(options.resolvConf ?? "/etc/resolv.conf", "utf8").catch(() => ""),
    readFile(options.routeFile ?? "/proc/net/route", "utf8").catch(() => ""),
  ]);
  return { nodeName: hostname().toLowerCase(), hostIP: hostIP(route), dns: parseResolvConf(resolv) };
}

/** The IPv4 address of the default route's interface, else the first non-internal IPv4, else 127.0.0.1. */
export function hostIP(procNetRoute: string): string {
  const ifaces = networkInterfaces();
  const defaultIface = procNetRoute
    .split("\n")
    .slice(1)
    .map((l) => l.trim().split(/\s+/))
    .find((f) => f[1] === "00000000")?.[0];
  const v4 = (name: string) => ifaces[name]?.find((a) => a.family === "IPv4" && !a.internal)?.address;
  if (defaultIface) {
    const ip = v4(defaultIface);
    if (ip) return ip;
  }
  for (const name of Object.keys(ifaces)) {
    const ip = v4(name);
    if (ip) return ip;
  }
  return "127.0.0.1";
}

/** nameserver, search/domain and options lines of a resolv.conf. */
export function parseResolvConf(text: string): HostInfo["dns"] {
  const out: HostInfo["dns"] = { servers: [], searches: [], options: [] };
  for (const raw of text.split("\n")) {
    const line = raw.replace(/[#;].*$/, "").trim();
    const [key, ...rest] = line.split(/\s+/);
    if (key === "nameserver" && rest[0]) out.servers.push(rest[0]);
    else if (key === "search" || key === "domain") out.searches = rest;
    else if (key === "options") out.options.push(...rest);
  }
  return out;
}
