/**
 * The runtime core the CRI layer calls: containers run by runc under one conmon each (so they survive
 * daemon restarts), their exits, exec (to completion, and interactive sessions with the client's stdio or
 * a terminal), attach, log reopening and resource updates. Domain types only.
 * The on-disk layout is drawn in layout.ts.
 */

export { type AttachSessionOptions, attachSession } from "./attach.js";
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
export { type CriuSupport, criuSupport } from "./criu.js";
export {
  type ExecSessionOptions,
  execSession,
  type SessionIO,
  type TerminalSize,
} from "./exec-session.js";
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
