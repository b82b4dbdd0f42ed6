import { type InterfaceCounters, interfaceCounters } from "../sys/index.js";
import type { SandboxRecord } from "./types.js";

/**
 * The traffic counters of a pod's network interfaces, read through `pid`, a process in the pod (a running
 * container, else the infra process). Empty when the pod shares the node's network (the counters would be the
 * node's, not the pod's), when no process is known, or when it is gone.
 */
export async function podInterfaceCounters(sb: SandboxRecord, pid: number | undefined): Promise<InterfaceCounters[]> {
  if (!pid || sb.config.namespaces.network === "node") return [];
  return interfaceCounters(pid);
}
