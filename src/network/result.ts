import { isIPv4 } from "node:net";
import { RuntimeError } from "../errdefs/index.js";
import type { CniResult, IpConfig, NetworkInterface, PodNetwork, ResultDns, Route } from "./types.js";

/**
 * Reads a plugin's ADD result (spec 0.3.0 through 1.1.0: the 0.3/0.4 `ips[].version` field is
 * accepted and ignored). Unknown fields are dropped; the raw object is what gets chained and
 * cached, so nothing a later plugin needs is lost. Throws Internal naming `what` when the shape
 * is wrong.
 */
export function parseResult(raw: unknown, what: string): CniResult {
  const bad = (why: string) => new RuntimeError("Internal", `${what}: invalid result: ${why}`);
  if (!isObject(raw)) throw bad("not a JSON object");
  const interfaces = list(raw.interfaces, "interfaces", bad).map((v, i): NetworkInterface => {
    if (!isObject(v) || typeof v.name !== "string") throw bad(`interfaces[${i}] has no name`);
    const itf: NetworkInterface = { name: v.name };
    if (typeof v.mac === "string" && v.mac) itf.mac = v.mac;
    if (typeof v.mtu === "number") itf.mtu = v.mtu;
    if (typeof v.sandbox === "string" && v.sandbox) itf.sandbox = v.sandbox;
    return itf;
  });
  const ips = list(raw.ips, "ips", bad).map((v, i): IpConfig => {
    if (!isObject(v) || typeof v.address !== "string") throw bad(`ips[${i}] has no address`);
    const ip: IpConfig = { address: v.address };
    if (typeof v.gateway === "string" && v.gateway) ip.gateway = v.gateway;
    if (typeof v.interface === "number") ip.interface = v.interface;
    return ip;
  });
  const routes = list(raw.routes, "routes", bad).map((v, i): Route => {
    if (!isObject(v) || typeof v.dst !== "string") throw bad(`routes[${i}] has no dst`);
    return typeof v.gw === "string" && v.gw ? { dst: v.dst, gw: v.gw } : { dst: v.dst };
  });
  const dns: ResultDns = {};
  if (isObject(raw.dns)) {
    const d = raw.dns;
    if (isStrings(d.nameservers)) dns.nameservers = d.nameservers;
    if (typeof d.domain === "string" && d.domain) dns.domain = d.domain;
    if (isStrings(d.search)) dns.search = d.search;
    if (isStrings(d.options)) dns.options = d.options;
  }
  return { cniVersion: typeof raw.cniVersion === "string" ? raw.cniVersion : "", interfaces, ips, routes, dns };
}

/**
 * The pod's view of a result: the addresses of `ifName` inside the sandbox (every address when
 * the plugins did not say which interface they belong to), without prefix, the first IPv4
 * first as kubelet's primary pod IP (containerd's default preference), else the first one.
 */
export function toPodNetwork(result: CniResult, ifName: string): PodNetwork {
  const inPod = (ip: IpConfig) => {
    const itf = ip.interface === undefined ? undefined : result.interfaces[ip.interface];
    return itf !== undefined && itf.name === ifName && itf.sandbox !== undefined;
  };
  const chosen = result.ips.some(inPod) ? result.ips.filter(inPod) : result.ips;
  const addrs = chosen.map((ip) => ip.address.split("/")[0] ?? ip.address);
  const primary = addrs.findIndex((a) => isIPv4(a));
  if (primary > 0) addrs.unshift(...addrs.splice(primary, 1));
  return { ips: addrs, interfaces: result.interfaces, routes: result.routes, dns: result.dns };
}

function list(v: unknown, field: string, bad: (why: string) => Error): unknown[] {
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v)) throw bad(`"${field}" is not a list`);
  return v;
}

function isStrings(v: unknown): v is string[] {
  return Array.isArray(v) && v.every((s) => typeof s === "string");
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}
