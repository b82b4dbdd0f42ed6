import { readFile } from "node:fs/promises";
import { isIP } from "node:net";
import { isAbsolute } from "node:path";
import { parse, stringify, TomlError } from "smol-toml";
import { RuntimeError } from "../errdefs/index.js";
import { parseHostPort } from "../util/index.js";

/**
 * berthd's configuration, `/etc/berth/config.toml` by default, in the spirit of containerd's.
 * The TypeScript shape mirrors the file key for key (snake_case), so the docs, the default
 * printout and the validator all speak the same names. Every default works offline.
 */
export interface Config {
  root: string;
  state: string;
  socket: string;
  log: { level: string };
  registry: {
    /** Directory holding one `<host>/hosts.toml` per registry, in containerd's format. */
    config_path: string;
    /** Layers of one image downloaded at once. */
    max_concurrent_downloads: number;
    /** Platform pulled from multi-platform images, `os/arch[/variant]`; empty = this host. */
    platform: string;
    /**
     * Total deadline of one manifest or token request (headers and body). Blob downloads have
     * none: a large layer that keeps moving may take as long as it needs.
     */
    request_timeout_seconds: number;
    /** Any registry request (blobs too) fails when no byte arrives for this long. */
    idle_timeout_seconds: number;
    /** `berth push` uploads blobs larger than this in chunks of this size (PATCH); 0 = always in one request. */
    push_chunk_bytes: number;
  };
  /** Layer application: limits per layer (a layer over a limit fails its pull) and worker threads. */
  unpack: {
    /** Most uncompressed bytes of one layer. */
    max_layer_bytes: number;
    /** Most tar entries of one layer. */
    max_layer_entries: number;
    /** Layers applied at once, each on its own worker thread; 0 = the CPU count, at most 4. */
    max_workers: number;
  };
  cni: { conf_dir: string; bin_dirs: string[]; cache_dir: string; netns_dir: string; plugin_timeout_seconds: number };
  sandbox: {
    /**
     * Pause image; empty = berth's built-in sandbox: namespaces pinned without a process, plus
     * catatonit from the host as PID 1 for pods that share one PID namespace. Only "" for now.
     */
    image: string;
    /** Host binary run as the sandbox's infra process when `image` is empty. */
    infra_binary: string;
  };
  runtime: {
    /** Handler used when a pod names none (the empty RuntimeClass). */
    default: string;
    handlers: Record<string, RuntimeHandler>;
    /** The cgroup driver reported by RuntimeConfig: "cgroupfs" or "systemd". */
    cgroup_driver: string;
    conmon_path: string;
    /** Clamp negative oom_score_adj to the daemon's own, as containerd's restrict_oom_score_adj. */
    restrict_oom_score_adj: boolean;
  };
  streaming: { address: string; port: number; idle_timeout_seconds: number };
  /**
   * Prometheus endpoint: `ip:port` (or `[ipv6]:port`; port 0 = any free one) serving `GET /metrics`
   * in the text format; empty = off. Plain HTTP with no authentication, so bind it to loopback or a
   * management network only.
   */
  metrics: { address: string };
}

/** An OCI runtime selectable through a pod's RuntimeClass (`runtime_handler`). */
export interface RuntimeHandler {
  /** The runtime binary (runc-compatible command line). */
  path: string;
  /** The runtime's state directory (`--root`); empty = `<state>/runtime/<handler>`. */
  root: string;
}

/** The defaults: what `berthd config default` prints. */
export function defaultConfig(): Config {
  return {
    root: "/var/lib/berth",
    state: "/run/berth",
    socket: "/run/berth/berth.sock",
    log: { level: "info" },
    registry: {
      config_path: "/etc/berth/certs.d",
      max_concurrent_downloads: 3,
      platform: "",
      request_timeout_seconds: 60,
      idle_timeout_seconds: 300,
      push_chunk_bytes: 64 * 1024 * 1024,
    },
    unpack: { max_layer_bytes: 32 * 1024 ** 3, max_layer_entries: 2_000_000, max_workers: 0 },
    cni: {
      conf_dir: "/etc/cni/net.d",
      bin_dirs: ["/usr/lib/cni", "/opt/cni/bin"],
      cache_dir: "",
      netns_dir: "",
      plugin_timeout_seconds: 60,
    },
    sandbox: { image: "", infra_binary: "/usr/bin/catatonit" },
    runtime: {
      default: "runc",
      handlers: { runc: { path: "/usr/sbin/runc", root: "" } },
      cgroup_driver: "cgroupfs",
      conmon_path: "/usr/bin/conmon",
      restrict_oom_score_adj: true,
    },
    streaming: { address: "127.0.0.1", port: 0, idle_timeout_seconds: 4 * 60 * 60 },
    metrics: { address: "" },
  };
}

/** Tables whose keys are names chosen by the user, each holding a table shaped like the value. */
const OPEN_TABLES: Record<string, unknown> = { "runtime.handlers": { path: "", root: "" } };
const LOG_LEVELS = ["trace", "debug", "info", "warn", "error", "fatal", "silent"];

/**
 * Parses and validates TOML text over the defaults. Unknown keys and wrong types fail with a
 * RuntimeError("InvalidArgument") naming the key and, where it can be found, its line.
 */
export function parseConfig(text: string, source = "config"): Config {
  let raw: Record<string, unknown>;
  try {
    raw = parse(text) as Record<string, unknown>;
  } catch (err) {
    if (err instanceof TomlError) {
      throw new RuntimeError("InvalidArgument", `${source}:${err.line}: ${err.message.split("\n")[0]}`);
    }
    throw err;
  }
  const config = defaultConfig();
  merge(config as unknown as Record<string, unknown>, raw, [], { text, source });
  check(config, text, source);
  return config;
}

/** Reads `path`; a missing file gives the defaults. */
export async function loadConfig(path: string): Promise<Config> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return defaultConfig();
    throw new RuntimeError("InvalidArgument", `read config ${path}: ${(err as Error).message}`);
  }
  return parseConfig(text, path);
}

/** The defaults as TOML text, with the handlers table spelled out. */
export function formatConfig(config: Config): string {
  return stringify(config as unknown as Record<string, unknown>);
}

interface Where {
  text: string;
  source: string;
}

function merge(target: Record<string, unknown>, raw: Record<string, unknown>, path: string[], where: Where): void {
  const dotted = path.join(".");
  const open = OPEN_TABLES[dotted];
  for (const [key, value] of Object.entries(raw)) {
    const keyPath = [...path, key];
    if (open !== undefined) {
      if (!isTable(value)) fail(where, keyPath, "must be a table");
      const entry = structuredClone(target[key] ?? open) as Record<string, unknown>;
      merge(entry, value, keyPath, where);
      target[key] = entry;
      continue;
    }
    if (!(key in target)) fail(where, keyPath, "unknown key");
    const current = target[key];
    if (isTable(current)) {
      if (!isTable(value)) fail(where, keyPath, "must be a table");
      merge(current, value, keyPath, where);
    } else if (Array.isArray(current)) {
      if (!Array.isArray(value) || !value.every((v) => typeof v === "string"))
        fail(where, keyPath, "must be an array of strings");
      target[key] = value;
    } else if (typeof current !== typeof value) {
      fail(where, keyPath, `must be a ${typeof current}`);
    } else {
      target[key] = value;
    }
  }
}

/** Node's timers hold at most 2^31-1 ms; a longer delay silently becomes 1 ms. */
export const MAX_TIMEOUT_SECONDS = Math.floor((2 ** 31 - 1) / 1000);

/** Keys holding a timeout in seconds: finite, above zero (a zero timer fires at once) and within timer range. */
const TIMEOUT_KEYS: Array<[string, string]> = [
  ["cni", "plugin_timeout_seconds"],
  ["streaming", "idle_timeout_seconds"],
  ["registry", "request_timeout_seconds"],
  ["registry", "idle_timeout_seconds"],
];

function check(c: Config, text: string, source: string): void {
  const where = { text, source };
  const sections = c as unknown as Record<string, Record<string, unknown>>;
  for (const [table, key] of TIMEOUT_KEYS) {
    const v = sections[table]?.[key] as number;
    if (!Number.isFinite(v) || v * 1000 < 1 || v > MAX_TIMEOUT_SECONDS)
      fail(where, [table, key], `must be a number of seconds from 0.001 to ${MAX_TIMEOUT_SECONDS}`);
  }
  // berthd's working directory is "/" under a supervisor and anything under a shell: a relative
  // path would name a different place depending on how it was started.
  for (const key of ["root", "state", "socket"] as const) {
    if (!isAbsolute(c[key])) fail(where, [key], "must be an absolute path");
  }
  const optionalPaths: Array<[string[], string]> = [
    [["cni", "conf_dir"], c.cni.conf_dir],
    [["cni", "cache_dir"], c.cni.cache_dir],
    [["cni", "netns_dir"], c.cni.netns_dir],
    [["sandbox", "infra_binary"], c.sandbox.infra_binary],
    [["runtime", "conmon_path"], c.runtime.conmon_path],
    ...c.cni.bin_dirs.map((d): [string[], string] => [["cni", "bin_dirs"], d]),
    ...c.registry.config_path.split(":").map((d): [string[], string] => [["registry", "config_path"], d]),
    ...Object.entries(c.runtime.handlers).flatMap(
      ([name, h]): Array<[string[], string]> => [
        [["runtime", "handlers", name, "path"], h.path],
        [["runtime", "handlers", name, "root"], h.root],
      ],
    ),
  ];
  for (const [keyPath, value] of optionalPaths) {
    if (value !== "" && !isAbsolute(value)) fail(where, keyPath, `${JSON.stringify(value)} is not an absolute path`);
  }
  if (isIP(c.streaming.address) === 0)
    fail(where, ["streaming", "address"], `${JSON.stringify(c.streaming.address)} is not an IP address`);
  if (c.metrics.address !== "" && parseHostPort(c.metrics.address) === undefined)
    fail(
      where,
      ["metrics", "address"],
      `${JSON.stringify(c.metrics.address)} is not ip:port (or [ipv6]:port), nor empty`,
    );
  if (!LOG_LEVELS.includes(c.log.level)) fail(where, ["log", "level"], `must be one of ${LOG_LEVELS.join(", ")}`);
  if (!c.runtime.handlers[c.runtime.default])
    fail(where, ["runtime", "default"], `names no handler under [runtime.handlers]`);
  if (!["cgroupfs", "systemd"].includes(c.runtime.cgroup_driver))
    fail(where, ["runtime", "cgroup_driver"], "must be cgroupfs or systemd");
  if (!Number.isInteger(c.streaming.port) || c.streaming.port < 0 || c.streaming.port > 65535)
    fail(where, ["streaming", "port"], "must be 0-65535");
  if (!Number.isInteger(c.registry.max_concurrent_downloads) || c.registry.max_concurrent_downloads < 1)
    fail(where, ["registry", "max_concurrent_downloads"], "must be a positive integer");
  if (!Number.isSafeInteger(c.registry.push_chunk_bytes) || c.registry.push_chunk_bytes < 0)
    fail(where, ["registry", "push_chunk_bytes"], "must be 0 (no chunks) or a number of bytes");
  for (const key of ["max_layer_bytes", "max_layer_entries"] as const) {
    if (!Number.isSafeInteger(c.unpack[key]) || c.unpack[key] < 1)
      fail(where, ["unpack", key], "must be a positive integer");
  }
  if (!Number.isInteger(c.unpack.max_workers) || c.unpack.max_workers < 0 || c.unpack.max_workers > 64)
    fail(where, ["unpack", "max_workers"], "must be 0 (automatic) to 64");
  // TODO(#4): run the infra process from a pause image; until then refuse rather than ignore it.
  if (c.sandbox.image !== "")
    fail(
      where,
      ["sandbox", "image"],
      "pause images are not supported yet: leave it empty for berth's built-in sandbox",
    );
  for (const [name, h] of Object.entries(c.runtime.handlers)) {
    if (!h.path) fail(where, ["runtime", "handlers", name, "path"], "must be set");
  }
}

function fail(where: Where, keyPath: string[], problem: string): never {
  const line = findLine(where.text, keyPath);
  const at = line ? `${where.source}:${line}` : where.source;
  throw new RuntimeError("InvalidArgument", `${at}: ${keyPath.join(".")}: ${problem}`);
}

/**
 * The 1-based line where `keyPath` is set, found by tracking table headers; TOML parsers do
 * not report key positions, and a line number is what makes a config error actionable.
 */
function findLine(text: string, keyPath: string[]): number | undefined {
  const lines = text.split("\n");
  let table: string[] = [];
  const unquote = (s: string) => s.trim().replace(/^["']|["']$/g, "");
  for (let i = 0; i < lines.length; i++) {
    const line = (lines[i] ?? "").trim();
    const header = /^\[\[?([^\]]+)\]\]?/.exec(line);
    if (header?.[1]) {
      table = header[1].split(".").map(unquote);
      if (table.join(".") === keyPath.join(".")) return i + 1;
      continue;
    }
    const kv = /^([A-Za-z0-9_."'-]+)\s*=/.exec(line);
    if (kv?.[1]) {
      const full = [...table, ...kv[1].split(".").map(unquote)];
      if (full.join(".") === keyPath.join(".") || keyPath.join(".").startsWith(`${full.join(".")}.`)) return i + 1;
    }
  }
  return undefined;
}

function isTable(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v) && !(v instanceof Date);
}
