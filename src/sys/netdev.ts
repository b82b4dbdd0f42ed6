import { readFile } from "node:fs/promises";
import { run } from "./exec.js";

/** Traffic counters of one network interface. */
export interface InterfaceCounters {
  name: string;
  rxBytes: bigint;
  rxPackets: bigint;
  rxErrors: bigint;
  rxDropped: bigint;
  txBytes: bigint;
  txPackets: bigint;
  txErrors: bigint;
  txDropped: bigint;
}

/**
 * The interfaces of the network namespace a process lives in, read from `/proc/<pid>/net/dev`
 * (no need to enter the namespace). Loopback is left out. Empty when the process is gone.
 */
export async function interfaceCounters(pid: number): Promise<InterfaceCounters[]> {
  let text: string;
  try {
    text = await readFile(`/proc/${pid}/net/dev`, "utf8");
  } catch {
    return [];
  }
  return parseNetDev(text);
}

/**
 * The same for a pinned network namespace no process lives in (a pod between containers):
 * a short-lived `nsenter --net=<path> cat /proc/net/dev`, whose /proc/net is that namespace's.
 */
export async function netnsInterfaceCounters(
  netnsPath: string,
  options: { signal?: AbortSignal } = {},
): Promise<InterfaceCounters[]> {
  const { stdout } = await run("nsenter", [`--net=${netnsPath}`, "cat", "/proc/net/dev"], {
    name: "nsenter",
    timeoutMs: 10_000,
    maxOutput: 1024 * 1024,
    ...(options.signal ? { signal: options.signal } : {}),
  });
  return parseNetDev(stdout);
}

/** Parses /proc/net/dev text; loopback is left out, as cAdvisor leaves it out. */
export function parseNetDev(text: string): InterfaceCounters[] {
  const out: InterfaceCounters[] = [];
  for (const line of text.split("\n").slice(2)) {
    const [name, rest] = line.split(":");
    if (!name || rest === undefined || name.trim() === "lo") continue;
    // receive: bytes packets errs drop fifo frame compressed multicast; transmit: bytes packets errs drop ...
    const f = rest
      .trim()
      .split(/\s+/)
      .map((v) => (/^\d+$/.test(v) ? BigInt(v) : 0n));
    out.push({
      name: name.trim(),
      rxBytes: f[0] ?? 0n,
      rxPackets: f[1] ?? 0n,
      rxErrors: f[2] ?? 0n,
      rxDropped: f[3] ?? 0n,
      txBytes: f[8] ?? 0n,
      txPackets: f[9] ?? 0n,
      txErrors: f[10] ?? 0n,
      txDropped: f[11] ?? 0n,
    });
  }
  return out;
}
