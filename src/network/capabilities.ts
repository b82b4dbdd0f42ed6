/**
 * CNI capability arguments (`runtimeConfig`) and the Kubernetes annotations they come from.
 * A capability reaches a plugin only when the plugin's configuration declares it
 * (`"capabilities": {"portMappings": true}`), as the spec requires.
 */
import { invalidArgument } from "../errdefs/index.js";
import type { PluginConf } from "./config.js";
import type { Bandwidth, DnsConfig, IpRange, PortMapping } from "./types.js";

/** What the runtime can offer plugins for one pod; absent or empty values are not sent. */
export interface CapabilityArgs {
  portMappings?: PortMapping[];
  bandwidth?: Bandwidth;
  dns?: DnsConfig;
  ipRanges?: IpRange[][];
}

/** The `runtimeConfig` object for one plugin, or undefined when it gets none. */
export function runtimeConfigFor(plugin: PluginConf, args: CapabilityArgs): Record<string, unknown> | undefined {
  const offered: Record<string, unknown> = {};
  if (args.portMappings && args.portMappings.length > 0) {
    // hostIP "" would make portmap match no destination; drop it instead.
    offered.portMappings = args.portMappings.map(({ hostIP, ...m }) => (hostIP ? { ...m, hostIP } : m));
  }
  if (args.bandwidth && Object.keys(args.bandwidth).length > 0) offered.bandwidth = args.bandwidth;
  if (args.dns) offered.dns = args.dns;
  if (args.ipRanges && args.ipRanges.length > 0) offered.ipRanges = args.ipRanges;
  const rc: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(offered)) {
    if (plugin.capabilities?.[key] === true) rc[key] = value;
  }
  return Object.keys(rc).length > 0 ? rc : undefined;
}

/** Pod annotation with the ingress limit, a Kubernetes quantity in bits per second (`10M`). */
export const INGRESS_BANDWIDTH_ANNOTATION = "kubernetes.io/ingress-bandwidth";
/** Pod annotation with the egress limit, a Kubernetes quantity in bits per second. */
export const EGRESS_BANDWIDTH_ANNOTATION = "kubernetes.io/egress-bandwidth";

// kubelet's bounds: below 1 kbit/s or above 1 Pbit/s is a typo, not a limit.
const MIN_RATE = 1e3;
const MAX_RATE = 1e15;
// containerd and kubelet set burst to the largest value tc accepts, leaving shaping to the rate.
const MAX_BURST = 4294967295;

/**
 * The bandwidth capability for a pod's annotations, computed as containerd does: each rate is
 * the annotation's quantity in bits per second (rounded up), each burst is 2^32-1 bits.
 * Undefined when neither annotation is set; InvalidArgument for a malformed or unreasonable value.
 */
export function bandwidthFromAnnotations(annotations: Readonly<Record<string, string>>): Bandwidth | undefined {
  const ingress = annotations[INGRESS_BANDWIDTH_ANNOTATION];
  const egress = annotations[EGRESS_BANDWIDTH_ANNOTATION];
  if (ingress === undefined && egress === undefined) return undefined;
  const bw: Bandwidth = {};
  if (ingress !== undefined) {
    bw.ingressRate = rate(INGRESS_BANDWIDTH_ANNOTATION, ingress);
    bw.ingressBurst = MAX_BURST;
  }
  if (egress !== undefined) {
    bw.egressRate = rate(EGRESS_BANDWIDTH_ANNOTATION, egress);
    bw.egressBurst = MAX_BURST;
  }
  return bw;
}

function rate(annotation: string, text: string): number {
  const value = parseQuantity(text);
  if (value === undefined) throw invalidArgument(`annotation ${annotation}: invalid quantity ${JSON.stringify(text)}`);
  const bits = Math.ceil(value);
  if (bits < MIN_RATE) throw invalidArgument(`annotation ${annotation}: ${text} is unreasonably small (< 1kbit)`);
  if (bits > MAX_RATE) throw invalidArgument(`annotation ${annotation}: ${text} is unreasonably large (> 1Pbit)`);
  return bits;
}

const SUFFIXES: Record<string, number> = {
  "": 1,
  n: 1e-9,
  u: 1e-6,
  m: 1e-3,
  k: 1e3,
  M: 1e6,
  G: 1e9,
  T: 1e12,
  P: 1e15,
  E: 1e18,
  Ki: 2 ** 10,
  Mi: 2 ** 20,
  Gi: 2 ** 30,
  Ti: 2 ** 40,
  Pi: 2 ** 50,
  Ei: 2 ** 60,
};

/** A Kubernetes resource quantity (`100M`, `1.5Gi`, `2e6`) as a number, or undefined when malformed. */
export function parseQuantity(text: string): number | undefined {
  const m = /^([+-]?(?:\d+\.?\d*|\.\d+))(?:([eE][+-]?\d+)|(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]))?$/.exec(text.trim());
  if (!m || m[1] === undefined) return undefined;
  const base = Number(m[1]);
  if (m[2] !== undefined) return Number(`${m[1]}${m[2]}`);
  const factor = SUFFIXES[m[3] ?? ""];
  return factor === undefined ? undefined : base * factor;
}
