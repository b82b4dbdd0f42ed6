/**
 * The on-disk layout of pod networking, drawn once; every path is built here.
 *
 * ```
 * /etc/cni/net.d/                    confDir (admin-owned): the first *.conflist, *.conf or *.json
 *   10-berth.conflist                  in lexical order is the pod network
 * /usr/lib/cni/, /opt/cni/bin/       pluginDirs: plugin binaries, searched in order (CNI_PATH)
 * /run/berth/netns/                  netnsDir: a private bind mount of itself
 *   <name>                             an nsfs bind mount pinning one network namespace
 * /var/lib/berth/cni/results/        resultDir (0700)
 *   <sandboxId>-eth0.json              the conflist, runtimeConfig and CNI_ARGS an ADD used and
 *                                      its final result, so DEL works after a restart
 * ```
 */
import { join } from "node:path";
import { invalidArgument } from "../errdefs/index.js";

/** Where CNI network configurations are read from unless configured otherwise. */
export const DEFAULT_CONF_DIR = "/etc/cni/net.d";
/** Where CNI plugin binaries are searched, in order, unless configured otherwise. */
export const DEFAULT_PLUGIN_DIRS: readonly string[] = ["/usr/lib/cni", "/opt/cni/bin"];
/** Where named network namespaces are pinned unless configured otherwise. */
export const DEFAULT_NETNS_DIR = "/run/berth/netns";
/** Where ADD results are cached unless configured otherwise. */
export const DEFAULT_RESULT_DIR = "/var/lib/berth/cni/results";
/** The pod's interface name (CNI_IFNAME), as kubelet networking expects. */
export const DEFAULT_IFNAME = "eth0";

// The CNI spec's rule for container IDs; it also keeps names from escaping their directory.
const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;

/** Throws InvalidArgument unless `name` is a safe single path element (CNI container-ID rules). */
export function checkName(what: string, name: string): void {
  if (!NAME_RE.test(name) || name.length > 255) throw invalidArgument(`invalid ${what} ${JSON.stringify(name)}`);
}

/** The pinned netns file of `name`. */
export function netnsPath(dir: string, name: string): string {
  checkName("netns name", name);
  return join(dir, name);
}

/** The cached ADD result of one attachment. */
export function resultPath(dir: string, sandboxId: string, ifName: string): string {
  checkName("sandbox id", sandboxId);
  checkName("interface name", ifName);
  return join(dir, `${sandboxId}-${ifName}.json`);
}
