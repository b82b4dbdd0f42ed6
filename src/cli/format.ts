/**
 * Pure formatting of what the CLI prints, matching crictl (which uses docker/go-units):
 * truncated IDs, "x minutes ago" ages, SI sizes, state names. No I/O here, so all of it is unit-tested.
 */
import { ContainerState, PodSandboxState } from "../api/gen/runtime/v1/api_pb.js";

/** How many characters of an ID tables show (crictl's truncatedIDLen). */
export const SHORT_ID_LENGTH = 13;

/** An ID as tables show it: without its `sha256:` prefix, cut to 13 characters. */
export function shortId(id: string): string {
  return id.replace(/^sha256:/, "").slice(0, SHORT_ID_LENGTH);
}

/**
 * A duration as docker/go-units' HumanDuration words it: "Less than a second", "1 second",
 * "About a minute", "5 minutes", "About an hour", "3 hours", "2 days", "3 weeks", "4 months", "2 years".
 */
export function humanDuration(ms: number): string {
  const seconds = Math.floor(ms / 1000);
  if (seconds < 1) return "Less than a second";
  if (seconds === 1) return "1 second";
  if (seconds < 60) return `${seconds} seconds`;
  const minutes = Math.floor(seconds / 60);
  if (minutes === 1) return "About a minute";
  if (minutes < 60) return `${minutes} minutes`;
  const hours = Math.round(ms / 3_600_000);
  if (hours === 1) return "About an hour";
  if (hours < 48) return `${hours} hours`;
  if (hours < 24 * 7 * 2) return `${Math.floor(hours / 24)} days`;
  if (hours < 24 * 30 * 2) return `${Math.floor(hours / 24 / 7)} weeks`;
  if (hours < 24 * 365 * 2) return `${Math.floor(hours / 24 / 30)} months`;
  return `${Math.floor(Math.floor(ms / 3_600_000) / 24 / 365)} years`;
}

/** "5 minutes ago" for a CRI timestamp in nanoseconds since the epoch; "-" when unset. */
export function ago(createdAtNs: bigint, nowMs: number = Date.now()): string {
  if (createdAtNs <= 0n) return "-";
  const ms = nowMs - Number(createdAtNs / 1_000_000n);
  return `${humanDuration(Math.max(0, ms))} ago`;
}

const SI_UNITS = ["B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"];

/** A byte count as go-units' HumanSizeWithPrecision(size, 3) prints it: "1.46MB", "72.8MB", "123B". */
export function humanSize(bytes: number | bigint): string {
  let size = Number(bytes);
  let unit = 0;
  while (size >= 1000 && unit < SI_UNITS.length - 1) {
    size /= 1000;
    unit++;
  }
  // %.3g: three significant digits, trailing zeros dropped.
  return `${Number(size.toPrecision(3))}${SI_UNITS[unit]}`;
}

/** "Running", "Exited", "Created", "Unknown" (crictl trims the CONTAINER_ prefix and title-cases). */
export function containerStateName(state: ContainerState): string {
  switch (state) {
    case ContainerState.CONTAINER_CREATED:
      return "Created";
    case ContainerState.CONTAINER_RUNNING:
      return "Running";
    case ContainerState.CONTAINER_EXITED:
      return "Exited";
    default:
      return "Unknown";
  }
}

/** "Ready" or "NotReady". */
export function podStateName(state: PodSandboxState): string {
  return state === PodSandboxState.SANDBOX_READY ? "Ready" : "NotReady";
}

/** A container state as the user types it (`running`, `CONTAINER_RUNNING`, ...); throws on anything else. */
export function parseContainerState(value: string): ContainerState {
  const v = value.toLowerCase().replace(/^container_/, "");
  const states: Record<string, ContainerState> = {
    created: ContainerState.CONTAINER_CREATED,
    running: ContainerState.CONTAINER_RUNNING,
    exited: ContainerState.CONTAINER_EXITED,
    unknown: ContainerState.CONTAINER_UNKNOWN,
  };
  const s = states[v];
  if (s === undefined) throw new Error(`--state ${value}: must be one of created, running, exited, unknown`);
  return s;
}

/** A pod state as the user types it (`ready`, `notready`, `SANDBOX_READY`, ...); throws on anything else. */
export function parsePodState(value: string): PodSandboxState {
  const v = value
    .toLowerCase()
    .replace(/^sandbox_/, "")
    .replace(/[-_]/g, "");
  if (v === "ready") return PodSandboxState.SANDBOX_READY;
  if (v === "notready") return PodSandboxState.SANDBOX_NOTREADY;
  throw new Error(`--state ${value}: must be ready or notready`);
}

/** `k=v` pairs from repeated --label options as a label selector; throws on a pair without `=`. */
export function parseLabels(pairs: readonly string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const pair of pairs) {
    const eq = pair.indexOf("=");
    if (eq <= 0) throw new Error(`--label ${pair}: expected key=value`);
    out[pair.slice(0, eq)] = pair.slice(eq + 1);
  }
  return out;
}

/** Splits an image reference into repository and tag the way crictl's `images` table shows them. */
export function splitRepoTag(repoTag: string): [repository: string, tag: string] {
  const at = repoTag.indexOf("@");
  const name = at >= 0 ? repoTag.slice(0, at) : repoTag;
  const slash = name.lastIndexOf("/");
  const colon = name.lastIndexOf(":");
  if (colon > slash) return [name.slice(0, colon), name.slice(colon + 1)];
  return [name, at >= 0 ? "<none>" : "latest"];
}
