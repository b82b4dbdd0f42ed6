import { readFile } from "node:fs/promises";

/** Traffic counters of one network interface. */
export interface InterfaceCounters {
  name: string;
  rxBytes: bigint;
  rxErrors: bigint;
  txBytes: bigint;
  txErrors: bigint;
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
  const out: InterfaceCounters[] = [];
  for (const line of text.split("\n").slice(2)) {
    const [name, rest] = line.split(":");
    if (!name || rest === undefined || name.trim() === "lo") continue;
    // receive: bytes packets errs ...(8 fields); transmit: bytes packets errs ...
    const f = rest
      .trim()
      .split(/\s+/)
      .map((v) => BigInt(v));
    out.push({
      name: name.trim(),
      rxBytes: f[0] ?? 0n,
      rxErrors: f[2] ?? 0n,
      txBytes: f[8] ?? 0n,
      txErrors: f[10] ?? 0n,
    });
  }
  return out;
}
