/**
 * What the benchmark reads from (and cleans up on) the host, with no runtime in between: processes and their
 * memory from /proc, cgroup directories, mount tables, bridge ports, iptables NAT rules. Every function reads
 * one thing and returns plain data, so the measurements and the leak check can compare snapshots.
 */
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { readdir, readFile, rmdir } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";

const exec = promisify(execFile);

/** One process as /proc shows it. */
export interface ProcInfo {
  pid: number;
  ppid: number;
  /** The kernel's short name (`/proc/<pid>/comm`). */
  comm: string;
  /** argv joined by spaces. */
  cmdline: string;
}

/** Every process on the host, keyed by PID. Processes that exit while being read are left out. */
export async function processTable(): Promise<Map<number, ProcInfo>> {
  const table = new Map<number, ProcInfo>();
  for (const name of await readdir("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    const info = await readProc(Number(name));
    if (info !== undefined) table.set(info.pid, info);
  }
  return table;
}

/** One process, or undefined if it is gone. */
export async function readProc(pid: number): Promise<ProcInfo | undefined> {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, "utf8");
    // comm is in parentheses and may itself contain spaces or parentheses: split after the last ")".
    const close = stat.lastIndexOf(")");
    const comm = stat.slice(stat.indexOf("(") + 1, close);
    const fields = stat.slice(close + 2).split(" ");
    const cmdline = (await readFile(`/proc/${pid}/cmdline`, "utf8")).split("\0").join(" ").trim();
    return { pid, ppid: Number(fields[1]), comm, cmdline };
  } catch {
    return undefined;
  }
}

/**
 * Proportional set size of a process in KiB (`Pss:` of /proc/<pid>/smaps_rollup): its private pages plus
 * its share of every page it maps together with other processes. Summing Pss over a set of processes counts
 * each physical page once, which is why per-pod overhead is measured with it and not with RSS (fifty shims
 * map the same binary; RSS would count its text fifty times). 0 for a process that is gone.
 */
export async function pssKiB(pid: number): Promise<number> {
  return fieldKiB(`/proc/${pid}/smaps_rollup`, "Pss");
}

/** Resident set size in KiB (`VmRSS:` of /proc/<pid>/status); 0 for a process that is gone. */
export async function rssKiB(pid: number): Promise<number> {
  return fieldKiB(`/proc/${pid}/status`, "VmRSS");
}

async function fieldKiB(path: string, field: string): Promise<number> {
  try {
    const text = await readFile(path, "utf8");
    const m = new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(text);
    return m ? Number(m[1]) : 0;
  } catch {
    return 0;
  }
}

/**
 * The cgroup hierarchies to look in: the unified root on cgroup v2, else every mounted v1 controller
 * directory (runc with cgroupfs creates a container's path in each of them).
 */
export async function cgroupHierarchies(): Promise<string[]> {
  if (existsSync("/sys/fs/cgroup/cgroup.controllers")) return ["/sys/fs/cgroup"];
  const mountinfo = await readFile("/proc/self/mountinfo", "utf8");
  const dirs: string[] = [];
  for (const line of mountinfo.split("\n")) {
    const [pre, post] = line.split(" - ");
    if (pre === undefined || post === undefined) continue;
    const mountPoint = unescapeMountPath(pre.split(" ")[4] ?? "");
    if (post.startsWith("cgroup ") && mountPoint.startsWith("/sys/fs/cgroup/")) dirs.push(mountPoint);
  }
  return dirs;
}

/** The one hierarchy processes are read from: unified on v2, `memory` (or the first controller) on v1. */
export async function primaryHierarchy(): Promise<string> {
  const all = await cgroupHierarchies();
  const chosen = all.find((d) => d === "/sys/fs/cgroup" || d.endsWith("/memory")) ?? all[0];
  if (chosen === undefined) throw new Error("no cgroup hierarchy mounted under /sys/fs/cgroup");
  return chosen;
}

/** PIDs in cgroup `path` (e.g. `/bench/pod1/<id>`) and every cgroup below it, with the cgroup of each. */
export async function procsUnder(hierarchy: string, path: string): Promise<Array<{ pid: number; cgroup: string }>> {
  const out: Array<{ pid: number; cgroup: string }> = [];
  const walk = async (rel: string): Promise<void> => {
    const dir = join(hierarchy, rel);
    let procs: string;
    try {
      procs = await readFile(join(dir, "cgroup.procs"), "utf8");
    } catch {
      return;
    }
    for (const p of procs.split("\n")) if (p !== "") out.push({ pid: Number(p), cgroup: rel });
    for (const e of await readdir(dir, { withFileTypes: true }).catch(() => [])) {
      if (e.isDirectory()) await walk(join(rel, e.name));
    }
  };
  await walk(path);
  return out;
}

/** Relative paths of the cgroup directories exactly `depth` levels below `path`, across all hierarchies. */
export async function cgroupsAtDepth(path: string, depth: number): Promise<string[]> {
  const found = new Set<string>();
  for (const h of await cgroupHierarchies()) {
    const walk = async (rel: string, left: number): Promise<void> => {
      if (left === 0) {
        found.add(rel);
        return;
      }
      for (const e of await readdir(join(h, rel), { withFileTypes: true }).catch(() => [])) {
        if (e.isDirectory()) await walk(join(rel, e.name), left - 1);
      }
    };
    await walk(path, depth);
  }
  return [...found].sort();
}

/**
 * Removes cgroup `path` and everything below it in every hierarchy, deepest first (rmdir only: a cgroup that
 * still has processes stays, and is reported). Returns the paths that could not be removed.
 */
export async function removeCgroupTree(path: string): Promise<string[]> {
  const failed: string[] = [];
  for (const h of await cgroupHierarchies()) {
    const walk = async (dir: string): Promise<void> => {
      for (const e of await readdir(dir, { withFileTypes: true }).catch(() => [])) {
        if (e.isDirectory()) await walk(join(dir, e.name));
      }
      await rmdir(dir).catch((err: NodeJS.ErrnoException) => {
        if (err.code !== "ENOENT") failed.push(dir);
      });
    };
    await walk(join(h, path));
  }
  return failed;
}

/** Mount points in the mount namespace of `pid` that lie at or below one of `prefixes`. */
export async function mountPointsUnder(pid: number, prefixes: readonly string[]): Promise<string[]> {
  let text: string;
  try {
    text = await readFile(`/proc/${pid}/mountinfo`, "utf8");
  } catch {
    return [];
  }
  const out: string[] = [];
  for (const line of text.split("\n")) {
    const mp = unescapeMountPath(line.split(" ")[4] ?? "");
    if (mp !== "" && prefixes.some((p) => mp === p || mp.startsWith(`${p}/`))) out.push(mp);
  }
  return out;
}

function unescapeMountPath(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_m, oct: string) => String.fromCharCode(Number.parseInt(oct, 8)));
}

/** Names of the interfaces enslaved to `bridge` (the host ends of pod veths); [] when it does not exist. */
export async function bridgePorts(bridge: string): Promise<string[]> {
  return readdir(`/sys/class/net/${bridge}/brif`).catch(() => []);
}

/** True when a network interface of that name exists on the host. */
export function linkExists(name: string): boolean {
  return existsSync(`/sys/class/net/${name}`);
}

/** Deletes a host interface (a bridge the benchmark's CNI networks created); absent is fine. */
export async function deleteLink(name: string): Promise<void> {
  if (linkExists(name)) await exec("ip", ["link", "del", name]);
}

/** Entries of a directory, [] when it does not exist. */
export async function listDir(dir: string): Promise<string[]> {
  return readdir(dir).catch(() => []);
}

/**
 * NAT rules the bridge plugin's ipMasq added for pods of CNI network `network`: each pod gets a `CNI-<hash>`
 * chain jumped to from POSTROUTING by a rule commented `name: "<network>" id: "<container id>"`.
 */
export async function natRulesOf(network: string): Promise<string[]> {
  const { stdout } = await exec("iptables-save", ["-t", "nat"], { maxBuffer: 64 << 20 });
  const marker = `name: \\"${network}\\"`;
  return stdout.split("\n").filter((l) => l.startsWith("-A POSTROUTING") && l.includes(marker));
}

/** Removes what {@link natRulesOf} finds: each POSTROUTING jump, then its chain. Returns what failed. */
export async function removeNatRules(network: string): Promise<string[]> {
  const failed: string[] = [];
  for (const rule of await natRulesOf(network)) {
    const chain = / -j (CNI-[0-9a-f]+)/.exec(rule)?.[1];
    // iptables-save prints the rule in the syntax `-D` accepts, but quoted: re-split it like a shell would.
    const args = splitRule(rule.replace(/^-A /, "-D "));
    try {
      await exec("iptables", ["-w", "-t", "nat", ...args]);
      if (chain !== undefined) {
        await exec("iptables", ["-w", "-t", "nat", "-F", chain]);
        await exec("iptables", ["-w", "-t", "nat", "-X", chain]);
      }
    } catch {
      failed.push(rule);
    }
  }
  return failed;
}

function splitRule(rule: string): string[] {
  const out: string[] = [];
  const re = /"((?:[^"\\]|\\.)*)"|(\S+)/g;
  for (let m = re.exec(rule); m !== null; m = re.exec(rule)) {
    out.push(m[1] !== undefined ? m[1].replace(/\\"/g, '"') : (m[2] ?? ""));
  }
  return out;
}

/** Sends `signal` to each PID, ignoring processes that are already gone. */
export function killAll(pids: Iterable<number>, signal: NodeJS.Signals = "SIGKILL"): void {
  for (const pid of pids) {
    try {
      process.kill(pid, signal);
    } catch {
      // gone
    }
  }
}

/** Resolves once `pid` no longer exists (or is a zombie), or after `timeoutMs`; true if it is gone. */
export async function waitGone(pid: number, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const stat = await readFile(`/proc/${pid}/stat`, "utf8").catch(() => undefined);
    if (stat === undefined || stat.slice(stat.lastIndexOf(")") + 2).startsWith("Z")) return true;
    await new Promise((r) => setTimeout(r, 50));
  }
  return false;
}

/** stdout of a command, trimmed; "" if it fails (used for version strings). */
export async function commandOutput(file: string, args: readonly string[]): Promise<string> {
  try {
    const { stdout, stderr } = await exec(file, [...args]);
    return (stdout || stderr).trim();
  } catch {
    return "";
  }
}
