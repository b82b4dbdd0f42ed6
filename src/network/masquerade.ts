/**
 * The masquerade rules the bridge and ptp plugins add with `ipMasq: true`, removed by berth when those
 * plugins cannot: their DEL finds the pod's addresses by deleting its interface inside the netns, so a
 * DEL without a netns (the pin was unmounted, or replaced by a plain file) releases the IP but leaves
 * `nat POSTROUTING -s <ip> -j CNI-<hash>` and the chain behind for good. The names and comment follow
 * the plugins' own (containernetworking/plugins `utils.FormatChainName`, `FormatComment`), and the
 * addresses come from the cached ADD result, so only that pod's rules are touched.
 */
import { createHash } from "node:crypto";
import { isIP } from "node:net";
import { runUnchecked } from "../sys/index.js";
import type { PluginConf } from "./config.js";

/** True for a plugin whose DEL needs the netns to undo its masquerading. */
export function masqueradesInNetns(plugin: PluginConf): boolean {
  return (plugin.type === "bridge" || plugin.type === "ptp") && plugin.ipMasq === true;
}

/** The per-pod chain the plugins name `CNI-` + 24 hex digits of sha512(network name + container ID). */
export function masqueradeChain(network: string, containerId: string): string {
  return `CNI-${createHash("sha512")
    .update(network + containerId)
    .digest("hex")
    .slice(0, 24)}`;
}

/**
 * Deletes the POSTROUTING jump of each of `ips` to the pod's chain, then the chain. Rules or chains that
 * are absent are fine (already removed, or never added); other iptables failures are returned.
 */
export async function removeMasquerade(
  network: string,
  containerId: string,
  ips: readonly string[],
): Promise<string[]> {
  const chain = masqueradeChain(network, containerId);
  const comment = `name: "${network}" id: "${containerId}"`;
  const errors: string[] = [];
  const families = new Set<"iptables" | "ip6tables">();
  for (const ip of ips) {
    const tool = isIP(ip) === 6 ? "ip6tables" : "iptables";
    families.add(tool);
    // The plugins have used both the bare address and the CIDR as the source over the years.
    for (const source of [ip, `${ip}/${tool === "iptables" ? 32 : 128}`]) {
      await runUnchecked(tool, [
        "-w",
        "-t",
        "nat",
        "-D",
        "POSTROUTING",
        "-s",
        source,
        "-j",
        chain,
        "-m",
        "comment",
        "--comment",
        comment,
      ]);
    }
  }
  for (const tool of families) {
    for (const op of ["-F", "-X"]) {
      const r = await runUnchecked(tool, ["-w", "-t", "nat", op, chain]);
      if (r.code !== 0 && !/No chain|does not exist/i.test(r.stderr))
        errors.push(`${tool} ${op} ${chain}: ${r.stderr.trim()}`);
    }
  }
  return errors;
}
