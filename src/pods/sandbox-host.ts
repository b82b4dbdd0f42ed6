import { mkdir, rm } from "node:fs/promises";
import { join } from "node:path";
import {
  ensurePrivateMount,
  isPinnedNamespace,
  mountTmpfs,
  pinNamespaces,
  unmountIfMounted,
  unpinNamespace,
} from "../sys/index.js";
import { writePodFiles } from "./files.js";
import type { DnsConfig } from "./types.js";

/**
 * The host side of a sandbox apart from its network: its directory, with the pinned IPC and UTS
 * namespaces, the /dev/shm tmpfs and the hostname/hosts/resolv.conf files. SandboxManager reaches
 * the host only through this (and SandboxNetwork, SandboxInfra), so it can be tested with a fake.
 *
 * Layout of one sandbox: `<dir>/{ns/ipc,ns/uts,shm/,hostname,hosts,resolv.conf}`.
 * Every method but `createDir` and `pinNamespaces` is idempotent.
 */
export interface SandboxHost {
  /** Creates `dir` and `dir/ns` (root-only) in a state directory that is a private mount. */
  createDir(dir: string): Promise<void>;
  /** Removes `dir` and what is below it; fails while something is still mounted there. */
  removeDir(dir: string): Promise<void>;
  /** Creates new IPC and/or UTS namespaces pinned at the given files; the UTS one gets `hostname`. */
  pinNamespaces(paths: { ipc?: string; uts?: string }, hostname: string): Promise<void>;
  /** Unpins and removes a pinned namespace file. */
  unpinNamespace(path: string): Promise<void>;
  /** True while a namespace is pinned at `path` (false after a reboot emptied the state tmpfs). */
  isPinned(path: string): Promise<boolean>;
  /** Mounts the pod's /dev/shm tmpfs at `path`. */
  mountShm(path: string): Promise<void>;
  /** Unmounts it when mounted. */
  unmountShm(path: string): Promise<void>;
  /** Writes hostname, hosts and resolv.conf into `dir`, atomically each. */
  writeFiles(dir: string, files: { hostname: string; ip: string; dns: DnsConfig | undefined }): Promise<void>;
}

/** The real SandboxHost over `src/sys`; `stateDir` is the parent of every sandbox directory. */
export function createSandboxHost(stateDir: string): SandboxHost {
  return {
    createDir: async (dir) => {
      await ensurePrivateMount(stateDir);
      // Root-only: the pod's /dev/shm (a 1777 tmpfs) and its files sit below. runc bind-mounts
      // them into containers as root, so no container needs the path to be traversable.
      await mkdir(dir, { mode: 0o700 });
      await mkdir(join(dir, "ns"), { mode: 0o700 });
    },
    removeDir: (dir) => rm(dir, { recursive: true, force: true }),
    pinNamespaces: (paths, hostname) => pinNamespaces(paths, hostname),
    unpinNamespace: (path) => unpinNamespace(path),
    isPinned: (path) => isPinnedNamespace(path),
    mountShm: (path) => mountTmpfs(path, "nosuid,nodev,noexec,mode=1777,size=65536k"),
    unmountShm: (path) => unmountIfMounted(path),
    writeFiles: (dir, files) => writePodFiles(dir, files),
  };
}
