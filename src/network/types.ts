/**
 * Domain types of pod networking. No CRI or protobuf types: `cri/convert.ts` maps CRI's
 * PortMapping / DNSConfig / annotations onto these.
 */

/** A host port forwarded into the pod (CNI capability `portMappings`). */
export interface PortMapping {
  hostPort: number;
  containerPort: number;
  protocol: "tcp" | "udp" | "sctp";
  /** Host address to bind; absent means every host address. */
  hostIP?: string;
}

/**
 * Traffic shaping for the pod (CNI capability `bandwidth`). Rates are bits per second and
 * bursts are bits, as the CNI conventions and the bandwidth plugin define them.
 */
export interface Bandwidth {
  ingressRate?: number;
  ingressBurst?: number;
  egressRate?: number;
  egressBurst?: number;
}

/** The pod's resolver settings (CNI capability `dns`, the field names CNI conventions use). */
export interface DnsConfig {
  servers: string[];
  searches: string[];
  options: string[];
}

/** One host-local style address range (CNI capability `ipRanges` is a list of lists of these). */
export interface IpRange {
  subnet: string;
  rangeStart?: string;
  rangeEnd?: string;
  gateway?: string;
}

/** An interface a CNI attachment created (in the pod when `sandbox` is set, else on the host). */
export interface NetworkInterface {
  name: string;
  mac?: string;
  mtu?: number;
  sandbox?: string;
}

/** An address a CNI attachment assigned, in CIDR notation (`10.88.0.5/16`). */
export interface IpConfig {
  address: string;
  gateway?: string;
  /** Index into the result's `interfaces`. */
  interface?: number;
}

/** A route a CNI attachment installed. */
export interface Route {
  dst: string;
  gw?: string;
}

/** Resolver settings a CNI plugin reported (the spec's result `dns` object). */
export interface ResultDns {
  nameservers?: string[];
  domain?: string;
  search?: string[];
  options?: string[];
}

/** A parsed CNI ADD result (spec 0.3.0 through 1.1.0 share this shape). */
export interface CniResult {
  cniVersion: string;
  interfaces: NetworkInterface[];
  ips: IpConfig[];
  routes: Route[];
  dns: ResultDns;
}

/** What a pod's network looks like after set-up. */
export interface PodNetwork {
  /** The pod's addresses without prefix length, primary (first IPv4, else first) first. */
  ips: string[];
  interfaces: NetworkInterface[];
  routes: Route[];
  dns: ResultDns;
}

/** Whether pods can be networked now; `reason`/`message` explain a `false` (CRI NetworkReady). */
export type NetworkStatus = { ready: true } | { ready: false; reason: string; message: string };
