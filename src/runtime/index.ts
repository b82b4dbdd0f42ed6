/**
 * The runtime core the CRI layer calls: containers run by runc under one conmon each (so they survive
 * daemon restarts), their exits, exec, log reopening and resource updates. Domain types only.
 * The on-disk layout is drawn in layout.ts.
 */

export {
  type ConmonCreateOptions,
  type ConmonExecOptions,
  type ConmonLogLevel,
  type ConmonRun,
  conmonCreateArgv,
  conmonExecArgv,
  runConmon,
  type SpawnConmonOptions,
  type SyncMessage,
  startConmon,
} from "./conmon.js";
export { type CriLogRecord, parseCriLog, parseCriLogLine } from "./cri-log.js";
export { type CriuSupport, criuSupport } from "./criu.js";
export { type ContainerPaths, type Layout, layout, validateId } from "./layout.js";
export {
  type CallOptions,
  createRunc,
  type ExecArgvOptions,
  type Runc,
  type RuncConfig,
  type RuncState,
  runcMessage,
} from "./runc.js";
export {
  type ContainerExit,
  ContainerRuntime,
  type ContainerRuntimeOptions,
  type ContainerState,
  type ContainerStatus,
  type CreateContainerOptions,
  type CreatedContainer,
  createContainerRuntime,
  type ExecSyncResult,
  type RecoverResult,
  type RuntimeHandlerConfig,
} from "./runtime.js";
