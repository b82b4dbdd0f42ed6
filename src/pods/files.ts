import { readFile } from "node:fs/promises";
import { writeFileAtomic } from "../util/index.js";
import type { DnsConfig } from "./types.js";

/** The pod's /etc/resolv.conf: from the pod's DNSConfig when it names anything, else the host's. */
export async function resolvConf(dns: DnsConfig | undefined, hostResolv = "/etc/resolv.conf"): Promise<string> {
  if (dns && (dns.servers.length > 0 || dns.searches.length > 0 || dns.options.length > 0)) {
    const lines = dns.servers.map((s) => `nameserver ${s}`);
    if (dns.searches.length > 0) lines.push(`search ${dns.searches.join(" ")}`);
    if (dns.options.length > 0) lines.push(`options ${dns.options.join(" ")}`);
    return `${lines.join("\n")}\n`;
  }
  try {
    return await readFile(hostResolv, "utf8");
  } catch {
    return "";
  }
}

/** The pod's /etc/hosts: loopback names plus the pod's own hostname on its IP (or loopback when it has none yet). */
export function hostsFile(hostname: string, ip: string): string {
  const lines = [
    "127.0.0.1\tlocalhost",
    "::1\tlocalhost ip6-localhost ip6-loopback",
    "fe00::0\tip6-localnet",
    "ff00::0\tip6-mcastprefix",
    "ff02::1\tip6-allnodes",
    "ff02::2\tip6-allrouters",
  ];
  if (hostname) lines.push(`${ip || "127.0.1.1"}\t${hostname}`);
  return `${lines.join("\n")}\n`;
}

/** Writes hostname, hosts and resolv.conf into the sandbox directory, atomically each. */
export async function writePodFiles(
  dir: string,
  options: { hostname: string; ip: string; dns: DnsConfig | undefined },
): Promise<void> {
  await writeFileAtomic(`${dir}/hostname`, `${options.hostname}\n`);
  await writeFileAtomic(`${dir}/hosts`, hostsFile(options.hostname, options.ip));
  await writeFileAtomic(`${dir}/resolv.conf`, await resolvConf(options.dns));
}
