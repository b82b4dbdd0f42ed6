import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";

/** One process as /proc/<pid>/stat shows it. */
interface ProcStat {
  pid: number;
  ppid: number;
  session: number;
  state: string;
}

/** Paths read by the process-tree functions; injectable for tests. */
export interface ProcPaths {
  proc?: string;
  cgroupRoot?: string;
}

// A tree that keeps forking faster than we can stop it is still caught: each round stops what the
// last one found, and stopped processes cannot fork. The bound only guards against a broken /proc.
const MAX_ROUNDS = 64;

async function readStat(proc: string, pid: number): Promise<ProcStat | undefined> {
  let text: string;
  try {
    text = await readFile(join(proc, String(pid), "stat"), "utf8");
  } catch {
    return undefined;
  }
  // `pid (comm) state ppid ...`: comm may hold spaces and parentheses, so split after the last ')'.
  const close = text.lastIndexOf(")");
  const [state, ppid, , session] = text.slice(close + 2).split(" ");
  const parent = Number(ppid);
  const sid = Number(session);
  if (!state || !Number.isInteger(parent) || !Number.isInteger(sid)) return undefined;
  return { pid, ppid: parent, session: sid, state };
}

const pidList = (text: string): number[] =>
  text
    .split(/\s+/)
    .filter((s) => /^\d+$/.test(s))
    .map(Number);

/**
 * The processes that may belong to `pid`'s tree: the members of its cgroup (cgroup v2, or the v1
 * pids/memory/cpu hierarchy), which is where runc puts a container and all its execs; every process
 * in /proc when no cgroup file can be read. Empty when `pid` is gone.
 */
async function candidates(pid: number, paths: Required<ProcPaths>): Promise<number[]> {
  let cgroups: string;
  try {
    cgroups = await readFile(join(paths.proc, String(pid), "cgroup"), "utf8");
  } catch {
    return [];
  }
  const files: string[] = [];
  for (const line of cgroups.split("\n")) {
    const [, controllers, path] = /^\d+:([^:]*):(.*)$/.exec(line) ?? [];
    if (path === undefined) continue;
    if (controllers === "") files.push(join(paths.cgroupRoot, path, "cgroup.procs"));
    for (const c of ["pids", "memory", "cpu"]) {
      if (controllers?.split(",").includes(c)) files.unshift(join(paths.cgroupRoot, c, path, "cgroup.procs"));
    }
  }
  for (const f of files) {
    const text = await readFile(f, "utf8").catch(() => undefined);
    if (text !== undefined) return pidList(text);
  }
  return pidList((await readdir(paths.proc).catch(() => [] as string[])).join(" "));
}

/**
 * `root` and every process descending from it among `stats`, by their parent links; when `root`
 * leads its own session (runc exec's processes do), also every member of that session, which
 * catches a child whose parent exited and left it re-parented to the container's init.
 */
function descendants(root: number, stats: readonly ProcStat[]): number[] {
  const children = new Map<number, number[]>();
  for (const s of stats) children.set(s.ppid, [...(children.get(s.ppid) ?? []), s.pid]);
  const rootStat = stats.find((s) => s.pid === root);
  if (!rootStat) return [];
  const out = new Set<number>();
  const todo = [root];
  if (rootStat.session === root) todo.push(...stats.filter((s) => s.session === root).map((s) => s.pid));
  while (todo.length > 0) {
    const p = todo.pop() as number;
    if (out.has(p)) continue;
    out.add(p);
    todo.push(...(children.get(p) ?? []));
  }
  return [...out];
}

function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch (err) {
    // ESRCH: it exited meanwhile, which is what we want.
    if ((err as NodeJS.ErrnoException).code !== "ESRCH") throw err;
  }
}

/**
 * SIGKILLs `rootPid` and every process descending from it, including ones forked while this runs:
 * the tree is found through parent links among the members of `rootPid`'s cgroup, each found
 * process is SIGSTOPped (a stopped process cannot fork) and the search repeats until it finds
 * nothing new; then all of them get SIGKILL. Processes are never chosen by name. Returns the pids
 * killed (empty when `rootPid` is already gone).
 *
 * A child whose parent exits before the child is seen is re-parented outside the tree; it is still
 * found when `rootPid` leads its session (as runc exec's process does) and the child stayed in it.
 */
export async function killProcessTree(rootPid: number, paths: ProcPaths = {}): Promise<number[]> {
  const p = { proc: paths.proc ?? "/proc", cgroupRoot: paths.cgroupRoot ?? "/sys/fs/cgroup" };
  const stopped = new Set<number>();
  try {
    for (let round = 0; round < MAX_ROUNDS; round++) {
      const pids = await candidates(rootPid, p);
      const stats = (await Promise.all(pids.map((pid) => readStat(p.proc, pid)))).filter(
        (s): s is ProcStat => s !== undefined,
      );
      const fresh = descendants(rootPid, stats).filter((pid) => !stopped.has(pid));
      if (fresh.length === 0) break;
      for (const pid of fresh) {
        signal(pid, "SIGSTOP");
        stopped.add(pid);
      }
    }
  } finally {
    for (const pid of stopped) signal(pid, "SIGKILL");
  }
  return [...stopped];
}
