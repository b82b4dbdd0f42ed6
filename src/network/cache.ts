import { mkdir, readFile, rm } from "node:fs/promises";
import { RuntimeError } from "../errdefs/index.js";
import { writeFileAtomic } from "../util/index.js";
import type { CapabilityArgs } from "./capabilities.js";
import type { NetworkConfigList } from "./config.js";
import { resultPath } from "./paths.js";

/**
 * Everything DEL and CHECK of one attachment need, as the ADD used it: the exact network
 * configuration (after pod-CIDR substitution), CNI_ARGS, capability arguments (portmap's DEL
 * does nothing without its portMappings) and the final result (the DEL chain's prevResult).
 */
export interface CacheEntry {
  kind: "berthCniCacheV1";
  containerId: string;
  ifName: string;
  config: NetworkConfigList;
  cniArgs: string;
  capabilityArgs: CapabilityArgs;
  /** The final ADD result as the last plugin printed it; absent while (or if) the ADD did not finish. */
  result?: unknown;
}

/** The entry for an attachment, or undefined when none was written. Throws Internal when unreadable. */
export async function readCache(dir: string, containerId: string, ifName: string): Promise<CacheEntry | undefined> {
  const path = resultPath(dir, containerId, ifName);
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw new RuntimeError("Internal", `read cni result cache ${path}: ${(err as Error).message}`);
  }
  try {
    const entry = JSON.parse(text) as CacheEntry;
    if (entry.kind !== "berthCniCacheV1" || !Array.isArray(entry.config?.plugins))
      throw new Error(`unknown kind ${String(entry.kind)}`);
    return entry;
  } catch (err) {
    throw new RuntimeError("Internal", `read cni result cache ${path}: ${(err as Error).message}`);
  }
}

/** Replaces the entry atomically (readers see the old or the new one, even across a crash). */
export async function writeCache(dir: string, entry: CacheEntry): Promise<void> {
  // Results name pods and addresses: root-only, like libcni's cache.
  await mkdir(dir, { recursive: true, mode: 0o700 });
  await writeFileAtomic(resultPath(dir, entry.containerId, entry.ifName), `${JSON.stringify(entry)}\n`, {
    mode: 0o600,
  });
}

/** Deletes the entry; succeeds when there is none. */
export async function removeCache(dir: string, containerId: string, ifName: string): Promise<void> {
  await rm(resultPath(dir, containerId, ifName), { force: true });
}
