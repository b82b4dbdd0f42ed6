import { readdir, readFile, stat } from "node:fs/promises";
import { isAbsolute, join } from "node:path";
import { parse as parseToml } from "smol-toml";
import { RuntimeError } from "../errdefs/index.js";

/**
 * Per-registry host configuration in containerd's `hosts.toml` format, so an existing
 * `/etc/containerd/certs.d` tree works unchanged:
 *
 *   <config_path>/                 one or more roots, separated by ":"
 *   ├── docker.io/hosts.toml       for references on docker.io
 *   ├── localhost_5000_/ or localhost:5000/hosts.toml
 *   └── _default/hosts.toml        for registries without their own directory
 *
 *   server = "https://registry-1.docker.io"        # the upstream, tried last
 *   [host."https://mirror.example.com"]           # mirrors, tried first, in file order
 *     capabilities = ["pull", "resolve"]          # default: pull, resolve, push
 *     ca = "mirror-ca.crt"                        # string or list; relative to the host directory
 *     client = [["client.cert", "client.key"]]    # string, list of strings, or list of pairs
 *     skip_verify = false
 *     override_path = false                       # true: the URL path is the API root (no "/v2")
 *     header = { "x-custom" = "v" }
 *     dial_timeout = "5s"
 *
 * A directory without `hosts.toml` is read as Docker's certs.d layout (`*.crt` CAs, `*.cert` +
 * `*.key` client pairs). Without any configuration a registry has one host, its upstream
 * (`registry-1.docker.io` for docker.io): nothing is looked up on the network to decide this.
 */

/** What a host may be asked for: `resolve` turns tags into digests, `pull` fetches by digest. */
export type HostCapability = "pull" | "resolve" | "push";

/** One endpoint of a registry; a registry's hosts are tried in order (mirrors first, upstream last). */
export interface RegistryHost {
  scheme: "http" | "https";
  /** `host[:port]` as in a URL. */
  host: string;
  /** API root path, `/v2` unless `override_path` says otherwise. */
  path: string;
  capabilities: HostCapability[];
  skipVerify: boolean;
  /** CA certificate files, added to the system roots. */
  caFiles: string[];
  /** Client certificate and key files; an absent key means the key is in the certificate file. */
  clientPairs: { cert: string; key?: string }[];
  /** Extra headers sent with every request to this host. */
  header: Record<string, string[]>;
  /**
   * Speak HTTPS first and fall back to plain HTTP when the server answers without TLS. Set for
   * localhost registries on a non-default port (as containerd and Docker do) and for `http://`
   * hosts that also carry TLS settings.
   */
  httpFallback: boolean;
  dialTimeoutMs?: number;
}

const ALL_CAPABILITIES: HostCapability[] = ["pull", "resolve", "push"];

/** True for `localhost` and loopback IP addresses, with or without a port (containerd's IsLocalhost). */
export function isLocalhost(hostPort: string): boolean {
  const host = splitHostPort(hostPort)[0];
  if (host === "localhost") return true;
  if (/^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host)) return true;
  return host === "::1" || host === "0:0:0:0:0:0:0:1";
}

/** Splits `host[:port]` / `[v6][:port]` into host (without brackets) and port (or ""). */
export function splitHostPort(hostPort: string): [string, string] {
  if (hostPort.startsWith("[")) {
    const end = hostPort.indexOf("]");
    const rest = hostPort.slice(end + 1);
    return [hostPort.slice(1, end), rest.startsWith(":") ? rest.slice(1) : ""];
  }
  const i = hostPort.lastIndexOf(":");
  return i === -1 ? [hostPort, ""] : [hostPort.slice(0, i), hostPort.slice(i + 1)];
}

/** The host used when nothing is configured, exactly as containerd's ConfigureHosts builds it. */
function upstreamDefaults(registry: string, base: Partial<RegistryHost>): RegistryHost {
  const h: RegistryHost = {
    scheme: "https",
    host: registry,
    path: "/v2",
    capabilities: [...ALL_CAPABILITIES],
    skipVerify: false,
    caFiles: [],
    clientPairs: [],
    header: {},
    httpFallback: false,
    ...base,
  };
  if (registry === "docker.io") {
    h.host = "registry-1.docker.io";
  } else if (isLocalhost(registry) && base.skipVerify === undefined) {
    const port = splitHostPort(registry)[1];
    // Port 80 is unambiguous plain HTTP; 443 or none is HTTPS; any other port might be either, so
    // try TLS (unverified, it is this machine) and fall back to plain HTTP.
    if (port === "80") h.scheme = "http";
    else h.skipVerify = true;
    if (port !== "" && port !== "443" && port !== "80") h.httpFallback = true;
  }
  return h;
}

/** The hosts of a registry with no configuration: its upstream only. */
export function defaultHosts(registry: string): RegistryHost[] {
  return [upstreamDefaults(registry, {})];
}

function hostDirectoryCandidates(root: string, registry: string): string[] {
  const out: string[] = [];
  const i = registry.lastIndexOf(":");
  if (i > 0 && !registry.endsWith("]")) out.push(join(root, `${registry.slice(0, i)}_${registry.slice(i + 1)}_`));
  out.push(join(root, registry), join(root, "_default"));
  return out;
}

async function isDirectory(p: string): Promise<boolean> {
  try {
    return (await stat(p)).isDirectory();
  } catch {
    return false;
  }
}

/**
 * The hosts to try for `registry` (a reference's domain), mirrors first. `configPath` is the
 * `registry.config_path` setting (roots separated by ":"); empty means no configuration.
 * Throws InvalidArgument naming the file when a hosts.toml is malformed (a silently ignored
 * mirror or CA would be worse than a failed pull).
 */
export async function loadRegistryHosts(configPath: string, registry: string): Promise<RegistryHost[]> {
  for (const root of configPath.split(":").filter((r) => r !== "")) {
    for (const dir of hostDirectoryCandidates(root, registry)) {
      if (!(await isDirectory(dir))) continue;
      const file = join(dir, "hosts.toml");
      let text: string | undefined;
      try {
        text = await readFile(file, "utf8");
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
      }
      if (text !== undefined && text.trim() !== "") return parseHostsToml(text, { dir, registry, file });
      return [upstreamDefaults(registry, await loadCertFiles(dir))];
    }
  }
  return defaultHosts(registry);
}

/** Docker's certs.d layout: `*.crt` are CAs, `*.cert` client certificates with an optional `*.key`. */
async function loadCertFiles(dir: string): Promise<Partial<RegistryHost>> {
  const names = (await readdir(dir)).sort();
  const caFiles = names.filter((n) => n.endsWith(".crt")).map((n) => join(dir, n));
  const clientPairs = names
    .filter((n) => n.endsWith(".cert"))
    .map((n) => {
      const key = `${n.slice(0, -5)}.key`;
      return names.includes(key) ? { cert: join(dir, n), key: join(dir, key) } : { cert: join(dir, n) };
    });
  const out: Partial<RegistryHost> = {};
  if (caFiles.length > 0) out.caFiles = caFiles;
  if (clientPairs.length > 0) out.clientPairs = clientPairs;
  return out;
}

/** Parses a hosts.toml text (`dir` resolves relative certificate paths). Mirrors first, upstream last. */
export function parseHostsToml(text: string, where: { dir: string; registry: string; file?: string }): RegistryHost[] {
  const file = where.file ?? join(where.dir, "hosts.toml");
  const fail = (why: string) => new RuntimeError("InvalidArgument", `hosts config ${file}: ${why}`);
  let doc: Record<string, unknown>;
  try {
    doc = parseToml(text) as Record<string, unknown>;
  } catch (err) {
    throw fail((err as Error).message.split("\n")[0] ?? "syntax error");
  }
  const hosts: RegistryHost[] = [];
  const table = doc.host;
  if (table !== undefined) {
    if (!isTable(table)) throw fail("host must be a table");
    // smol-toml keeps the file's key order, which is the order mirrors are tried in.
    for (const [url, cfg] of Object.entries(table)) {
      if (!isTable(cfg)) throw fail(`host.${JSON.stringify(url)} must be a table`);
      hosts.push(parseHostEntry(url, cfg, where.dir, (why) => fail(`host.${JSON.stringify(url)}: ${why}`)));
    }
  }
  const server = doc.server;
  if (server !== undefined && typeof server !== "string") throw fail("server must be a string");
  if (server !== undefined && server !== "") {
    hosts.push(parseHostEntry(server, doc, where.dir, (why) => fail(`server: ${why}`)));
  } else {
    // No server: the root table's settings (ca, client, ...) apply to the default upstream.
    const h = parseHostEntry(`https://${where.registry}`, doc, where.dir, (why) => fail(why));
    const base: Partial<RegistryHost> = {
      capabilities: h.capabilities,
      caFiles: h.caFiles,
      clientPairs: h.clientPairs,
      header: h.header,
    };
    if (doc.skip_verify !== undefined) base.skipVerify = h.skipVerify;
    if (h.dialTimeoutMs !== undefined) base.dialTimeoutMs = h.dialTimeoutMs;
    hosts.push(upstreamDefaults(where.registry, base));
  }
  return hosts;
}

function isTable(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v) && !(v instanceof Date);
}

function parseHostEntry(
  server: string,
  cfg: Record<string, unknown>,
  dir: string,
  fail: (why: string) => Error,
): RegistryHost {
  const withScheme = server.startsWith("http") ? server : `https://${server}`;
  let u: URL;
  try {
    u = new URL(withScheme);
  } catch {
    throw fail(`invalid URL ${JSON.stringify(server)}`);
  }
  if (u.protocol !== "http:" && u.protocol !== "https:") throw fail(`unsupported scheme ${u.protocol}`);
  const overridePath = optional(cfg.override_path, "boolean", "override_path", fail) ?? false;
  let path = u.pathname === "/" ? "" : u.pathname.replace(/\/+$/, "");
  if (!overridePath && !path.endsWith("/v2")) path = `${path}/v2`;

  const capabilities = optional(cfg.capabilities, "string[]", "capabilities", fail);
  for (const c of capabilities ?? []) {
    if (!ALL_CAPABILITIES.includes(c.toLowerCase() as HostCapability))
      throw fail(`unknown capability ${JSON.stringify(c)}`);
  }
  const abs = (p: string) => (isAbsolute(p) ? p : join(dir, p));
  const ca = cfg.ca;
  const caFiles =
    ca === undefined ? [] : typeof ca === "string" ? [abs(ca)] : (optional(ca, "string[]", "ca", fail) ?? []).map(abs);

  const clientPairs: RegistryHost["clientPairs"] = [];
  const client = cfg.client;
  if (typeof client === "string") clientPairs.push({ cert: abs(client) });
  else if (Array.isArray(client)) {
    for (const p of client) {
      if (typeof p === "string") clientPairs.push({ cert: abs(p) });
      else if (Array.isArray(p) && p.length === 2 && p.every((x) => typeof x === "string")) {
        const [cert, key] = p as [string, string];
        clientPairs.push(key === "" ? { cert: abs(cert) } : { cert: abs(cert), key: abs(key) });
      } else throw fail("client must be a file, a list of files, or a list of [cert, key] pairs");
    }
  } else if (client !== undefined) throw fail("client must be a file, a list of files, or a list of [cert, key] pairs");

  const header: Record<string, string[]> = {};
  const h = cfg.header;
  if (h !== undefined) {
    if (!isTable(h)) throw fail("header must be a table");
    for (const [k, v] of Object.entries(h)) {
      if (typeof v === "string") header[k] = [v];
      else if (Array.isArray(v) && v.every((x) => typeof x === "string")) header[k] = v as string[];
      else throw fail(`header ${JSON.stringify(k)} must be a string or a list of strings`);
    }
  }
  const skipVerify = optional(cfg.skip_verify, "boolean", "skip_verify", fail);
  const dialTimeout = optional(cfg.dial_timeout, "string", "dial_timeout", fail);

  const scheme = u.protocol === "http:" ? "http" : "https";
  const explicitTls = cfg.ca !== undefined || cfg.client !== undefined || skipVerify !== undefined;
  const port = u.port;
  const host: RegistryHost = {
    // An http:// host that also has TLS settings is tried with TLS first (containerd does the same).
    scheme: scheme === "http" && explicitTls && port !== "80" ? "https" : scheme,
    host: u.host,
    path,
    capabilities: capabilities ? (capabilities.map((c) => c.toLowerCase()) as HostCapability[]) : [...ALL_CAPABILITIES],
    skipVerify: skipVerify ?? false,
    caFiles,
    clientPairs,
    header,
    httpFallback: scheme === "http" && explicitTls && port !== "80",
  };
  if (dialTimeout !== undefined) host.dialTimeoutMs = parseDuration(dialTimeout, fail);
  return host;
}

function optional(v: unknown, type: "boolean", key: string, fail: (why: string) => Error): boolean | undefined;
function optional(v: unknown, type: "string", key: string, fail: (why: string) => Error): string | undefined;
function optional(v: unknown, type: "string[]", key: string, fail: (why: string) => Error): string[] | undefined;
function optional(v: unknown, type: string, key: string, fail: (why: string) => Error): unknown {
  if (v === undefined) return undefined;
  const ok = type === "string[]" ? Array.isArray(v) && v.every((x) => typeof x === "string") : typeof v === type;
  if (!ok) throw fail(`${key} must be ${type === "string[]" ? "a list of strings" : `a ${type}`}`);
  return v;
}

/** Go duration strings as used by dial_timeout (`500ms`, `5s`, `1m30s`). */
function parseDuration(s: string, fail: (why: string) => Error): number {
  const units: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
  const re = /(\d+(?:\.\d+)?)(ms|s|m|h)/gy;
  let total = 0;
  let end = 0;
  for (const m of s.matchAll(re)) {
    total += Number(m[1]) * (units[m[2] as string] ?? 0);
    end = (m.index ?? 0) + m[0].length;
  }
  if (s === "" || end !== s.length) throw fail(`dial_timeout: invalid duration ${JSON.stringify(s)}`);
  // A zero timer fires at once (every connect would fail) and Node clamps delays past 2^31-1 ms to 1 ms.
  if (total < 1 || total > 2 ** 31 - 1)
    throw fail(`dial_timeout: ${JSON.stringify(s)} is out of range (1ms to ${Math.floor((2 ** 31 - 1) / 1000)}s)`);
  return total;
}
