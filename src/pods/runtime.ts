import type { LinuxResources } from "../oci/index.js";
import type {
  ContainerExit,
  ContainerStatus,
  CreateContainerOptions,
  CreatedContainer,
  ExecSyncResult,
  RecoverResult,
} from "../runtime/index.js";

/**
 * What the pod managers need from the OCI runtime: the part of `src/runtime`'s ContainerRuntime
 * (runc under one conmon per container) that containers and the sandbox infra use. The daemon
 * passes the real runtime; unit tests pass a fake. Streaming (exec/attach) is not part of it.
 *
 * Lifecycle of one ID: `createContainer` (created, init waiting) -> `start` (running) -> the
 * process exits, reported once through `onExit` (or by `recover()` after a restart) ->
 * `delete`. `stop` and `delete` may come at any point and are idempotent.
 */
export interface Runtime {
  /** Creates the container (`runc create` under conmon); resolves once it is created, with its init pid. */
  createContainer(options: CreateContainerOptions): Promise<CreatedContainer>;
  /** `runc start` of a created container. On failure nothing is undone: the caller stops or deletes it. */
  start(id: string, options?: { signal?: AbortSignal }): Promise<void>;
  /**
   * Sends `stopSignal`, waits up to `timeoutSec`, then SIGKILLs every process; resolves once the exit is
   * recorded. Idempotent: stopping a stopped (or unknown) container does nothing.
   */
  stop(
    id: string,
    options?: { timeoutSec?: number; stopSignal?: string | number; signal?: AbortSignal },
  ): Promise<void>;
  /** Kills what is left and removes every trace of the container. Idempotent. */
  delete(id: string, options?: { signal?: AbortSignal }): Promise<void>;
  /** Live state, or the recorded exit once stopped. NotFound when the runtime has no state for `id`. */
  status(id: string, options?: { signal?: AbortSignal }): Promise<ContainerStatus>;
  /** Runs a command to completion in a running container (DeadlineExceeded past `timeoutSec` > 0). */
  execSync(
    id: string,
    cmd: readonly string[],
    options?: { timeoutSec?: number; signal?: AbortSignal },
  ): Promise<ExecSyncResult>;
  /** Makes the monitor reopen the container's log file; FailedPrecondition once it has exited. */
  reopenLog(id: string, options?: { signal?: AbortSignal }): Promise<void>;
  /** New cgroup limits for a created or running container. */
  updateResources(id: string, resources: LinuxResources, options?: { signal?: AbortSignal }): Promise<void>;
  /**
   * After a daemon restart: the status of each known ID, the known IDs with no state left, and the
   * runtime's containers no record knows. Exits found here are not reported again through `onExit`.
   */
  recover(knownIds: Iterable<string>, options?: { signal?: AbortSignal }): Promise<RecoverResult>;
  /** Calls `cb` once per exit seen from now on; returns the unsubscribe function. */
  onExit(cb: (exit: ContainerExit) => void): () => void;
}
