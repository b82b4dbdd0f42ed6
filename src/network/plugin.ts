/**
 * The typed wrapper around CNI plugin binaries: one call is one plugin execution as the CNI
 * spec's execution protocol defines it (parameters in CNI_* variables, configuration on stdin,
 * a result or an error object on stdout).
 */
import { constants } from "node:fs";
import { access } from "node:fs/promises";
import { join } from "node:path";
import { type ErrorKind, RuntimeError } from "../errdefs/index.js";
import { runUnchecked } from "../sys/index.js";
import type { NetworkConfigList, PluginConf } from "./config.js";

/** The attachment operations berth runs. */
export type CniCommand = "ADD" | "DEL" | "CHECK";

/** One plugin execution's parameters (the spec's CNI_* variables) and limits. */
export interface PluginCall {
  command: CniCommand;
  containerId: string;
  /** Netns path; "" on DEL when the namespace is already gone. */
  netns: string;
  ifName: string;
  /** CNI_ARGS, `K=V;K=V`. */
  args: string;
  pluginDirs: readonly string[];
  /** Kill the plugin and fail with DeadlineExceeded after this long. */
  timeoutMs: number;
  signal?: AbortSignal;
}

/**
 * A plugin failed. `code`, `msg` and `details` are the plugin's own error object (spec
 * section 5) when it printed one; otherwise `code` is undefined and `msg` is its stderr.
 * Kind: Unavailable for "try again later" (11) and "plugin not available" (50, 51), else Internal.
 */
export class CniPluginError extends RuntimeError {
  constructor(
    readonly plugin: string,
    readonly command: CniCommand,
    readonly code: number | undefined,
    readonly msg: string,
    readonly details: string,
  ) {
    const what = [msg, details].filter(Boolean).join(": ") || "no error message";
    super(
      errorKind(code),
      `cni plugin ${plugin} ${command} failed${code === undefined ? "" : ` (code ${code})`}: ${what}`,
    );
    this.name = "CniPluginError";
  }
}

/** The CniPluginError behind `err` (it may be wrapped with context any number of times), if any. */
export function pluginErrorOf(err: unknown): CniPluginError | undefined {
  for (let e: unknown = err; e instanceof Error; e = e.cause) {
    if (e instanceof CniPluginError) return e;
  }
  return undefined;
}

function errorKind(code: number | undefined): ErrorKind {
  return code === 11 || code === 50 || code === 51 ? "Unavailable" : "Internal";
}

// Plugins exec iptables, ip, tc by PATH; a daemon started with a minimal PATH would miss /usr/sbin.
const PATH = `${process.env.PATH ?? ""}:/usr/local/sbin:/usr/sbin:/sbin:/usr/bin:/bin`;

/**
 * The plugin binary for `type`: the first executable `<dir>/<type>` in `dirs` order.
 * Throws FailedPrecondition (`cni plugin "x" not found in /usr/lib/cni:/opt/cni/bin`).
 */
export async function findPlugin(type: string, dirs: readonly string[]): Promise<string> {
  for (const dir of dirs) {
    const path = join(dir, type);
    try {
      await access(path, constants.X_OK);
      return path;
    } catch {
      // Not in this directory; try the next.
    }
  }
  throw new RuntimeError("FailedPrecondition", `cni plugin ${JSON.stringify(type)} not found in ${dirs.join(":")}`);
}

/**
 * The request configuration one plugin receives (spec section 3): the plugin object with
 * `capabilities` removed and `name`, `cniVersion`, `runtimeConfig` and `prevResult` set.
 */
export function pluginStdin(
  list: NetworkConfigList,
  plugin: PluginConf,
  extra: { runtimeConfig?: Record<string, unknown> | undefined; prevResult?: unknown },
): Record<string, unknown> {
  const { capabilities: _capabilities, ...conf } = plugin;
  const stdin: Record<string, unknown> = { ...conf, name: list.name, cniVersion: list.cniVersion };
  if (extra.runtimeConfig !== undefined) stdin.runtimeConfig = extra.runtimeConfig;
  if (extra.prevResult !== undefined) stdin.prevResult = extra.prevResult;
  return stdin;
}

/**
 * Runs one plugin and returns its parsed stdout (the raw result object for ADD, undefined when
 * it printed nothing). Throws CniPluginError when it exits non-zero, FailedPrecondition when
 * the binary is missing, DeadlineExceeded/Canceled on timeout/abort.
 */
export async function execPlugin(type: string, stdin: Record<string, unknown>, call: PluginCall): Promise<unknown> {
  const path = await findPlugin(type, call.pluginDirs);
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    PATH,
    CNI_COMMAND: call.command,
    CNI_CONTAINERID: call.containerId,
    CNI_NETNS: call.netns,
    CNI_IFNAME: call.ifName,
    CNI_ARGS: call.args,
    CNI_PATH: call.pluginDirs.join(":"),
  };
  const res = await runUnchecked(path, [], {
    input: JSON.stringify(stdin),
    env,
    timeoutMs: call.timeoutMs,
    ...(call.signal ? { signal: call.signal } : {}),
    name: `cni plugin ${type} ${call.command}`,
  });
  if (res.code !== 0) {
    const e = parseJson(res.stdout) ?? parseJson(res.stderr);
    if (isObject(e) && (typeof e.msg === "string" || typeof e.code === "number")) {
      const code = typeof e.code === "number" ? e.code : undefined;
      throw new CniPluginError(type, call.command, code, str(e.msg), str(e.details));
    }
    const output = (res.stderr.trim() || res.stdout.trim()).slice(0, 4000);
    throw new CniPluginError(
      type,
      call.command,
      undefined,
      `exit status ${res.code}${output ? `: ${output}` : ""}`,
      "",
    );
  }
  if (res.stdout.trim() === "") return undefined;
  const out = parseJson(res.stdout);
  if (out === undefined)
    throw new RuntimeError(
      "Internal",
      `cni plugin ${type} ${call.command}: output is not JSON: ${res.stdout.slice(0, 200)}`,
    );
  return out;
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

function str(v: unknown): string {
  return typeof v === "string" ? v : "";
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}
