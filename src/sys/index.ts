export { type CgroupStats, readCgroupStats } from "./cgroups.js";
export { diskUsage } from "./du.js";
export { type RunOptions, type RunResult, run, runUnchecked } from "./exec.js";
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
export { type InterfaceCounters, interfaceCounters } from "./netdev.js";
export { type ChildRequest, type ChildRun, enableSpawnWorker, startChild, stopWorker } from "./spawner.js";
