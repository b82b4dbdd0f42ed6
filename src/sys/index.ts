export { type CgroupMetrics, readCgroupMetrics } from "./cgroup-metrics.js";
export { type CgroupStats, readCgroupStats } from "./cgroups.js";
export { type RunOptions, type RunResult, run, runUnchecked } from "./exec.js";
export { type ReadFileInRootOptions, ROOTFS_READ_TIMEOUT_MS, readFileInRoot, treeUsage } from "./fs-offload.js";
export { mountctlPath, mountRecursiveReadOnly } from "./mountctl.js";
export {
  ensurePrivateMount,
  isMountPoint,
  isPinnedNamespace,
  mountsUnder,
  mountTmpfs,
  pinNamespaces,
  unmountIfMounted,
  unpinNamespace,
} from "./mounts.js";
export { type InterfaceCounters, interfaceCounters, netnsInterfaceCounters } from "./netdev.js";
export { netnsArgv } from "./nsenter.js";
export { killProcessTree, type ProcPaths } from "./proc.js";
export { removeTree } from "./remove-tree.js";
export { ROOTFS_FILE_MAX_BYTES } from "./rootfs-read.js";
export { SOCAT_CONNECTED, type SocatOptions, type SocatTarget, socatArgv, startSocat } from "./socat.js";
export { type ChildRequest, type ChildRun, enableSpawnWorker, startChild, stopWorker } from "./spawner.js";
export { setRawInput } from "./stty.js";
export type { TreeUsage } from "./tree-usage.js";
export { createWorkerPool, serveWorker, type WorkerPool, type WorkerPoolOptions } from "./worker-pool.js";
