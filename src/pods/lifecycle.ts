/**
 * The two state machines of the pod domain. Each is a union type (`ContainerState`, `SandboxState`
 * in types.ts), one table of allowed transitions and one transition function. The managers change a
 * record only through their `update(id, fn)`, which runs the transition function on the old and new
 * state before the record is written: an illegal change throws FailedPrecondition and nothing is
 * stored, so the store never holds a state the diagram does not allow.
 *
 * Containers:
 * ```
 *  creating ──(runc create done)──▶ created ──(runc start)──▶ running ──(exit seen)──▶ exited
 *                                      │                                                 ▲
 *                                      └──(start failed: StartError; or it died before start)
 * ```
 * `unknown` is CRI's CONTAINER_UNKNOWN; nothing enters it. Deleting a record (CreateContainer undone,
 * RemoveContainer) is not a transition: it is allowed from every state.
 *
 * Sandboxes:
 * ```
 *  creating ──(all set up)──▶ ready ──(StopPodSandbox, or its namespaces lost)──▶ notready
 *      └──(an interrupted creation whose undo left its directory)──────────────────▶ notready
 * ```
 * A record staying in its state (progress fields of a creation, new resources) is no transition and
 * always allowed.
 */
import { failedPrecondition } from "../errdefs/index.js";
import type { ContainerState, SandboxState } from "./types.js";

/** Allowed container state changes: `from -> [to, ...]`. */
export const CONTAINER_TRANSITIONS: Readonly<Record<ContainerState, readonly ContainerState[]>> = {
  creating: ["created"],
  created: ["running", "exited"],
  running: ["exited"],
  exited: [],
  unknown: ["exited"],
};

/** Allowed sandbox state changes: `from -> [to, ...]`. */
export const SANDBOX_TRANSITIONS: Readonly<Record<SandboxState, readonly SandboxState[]>> = {
  creating: ["ready", "notready"],
  ready: ["notready"],
  notready: [],
};

/**
 * ContainerStatus of a container whose StartContainer failed, as containerd reports it: state
 * exited, this reason, START_ERROR_EXIT_CODE, and the start error as the message.
 */
export const START_ERROR_REASON = "StartError";
/** Exit code recorded for a container whose start failed (it never ran). */
export const START_ERROR_EXIT_CODE = 128;

/** Checks a container state change; FailedPrecondition when the table does not allow it. */
export function transitionContainer(id: string, from: ContainerState, to: ContainerState): void {
  check(CONTAINER_TRANSITIONS, `container ${id}`, from, to);
}

/** Checks a sandbox state change; FailedPrecondition when the table does not allow it. */
export function transitionSandbox(id: string, from: SandboxState, to: SandboxState): void {
  check(SANDBOX_TRANSITIONS, `pod sandbox ${id}`, from, to);
}

function check<S extends string>(table: Readonly<Record<S, readonly S[]>>, what: string, from: S, to: S): void {
  if (from === to || table[from].includes(to)) return;
  throw failedPrecondition(`${what} is ${from}: it cannot become ${to}`);
}
