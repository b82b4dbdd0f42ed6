import type { ErrorKind } from "../errdefs/index.js";
import type { ApplyResult } from "./apply.js";

/**
 * Messages between berthd's main thread (unpacker.ts) and an unpack worker (worker.ts). One
 * job runs on a worker at a time; every message names its job so that a late message of a
 * finished job is ignored.
 */

/** The options of an apply job that cross the thread boundary (no signal: aborts are messages). */
export interface WireApplyOptions {
  mediaType?: string;
  digest?: string;
  parents?: string[];
  allowDevices?: boolean;
  syncFs?: boolean;
  maxBytes?: number;
  maxEntries?: number;
  deferImplied?: boolean;
}

/** Where an apply job's bytes come from: a blob file (complete, or still growing) or posted chunks. */
export type WireSource = { kind: "file"; path: string; complete: boolean } | { kind: "chunks" };

export interface WireError {
  kind: ErrorKind;
  message: string;
}

export type ToWorker =
  | { op: "apply"; id: number; target: string; source: WireSource; options: WireApplyOptions }
  | { op: "fix"; id: number; target: string; implied: string[]; parents: string[] }
  | { op: "clear"; id: number; target: string }
  /** More of a growing file is written (`bytes` in all); `finalPath` once it is complete; `error` if it never will be. */
  | { op: "grow"; id: number; bytes: number; finalPath?: string; error?: WireError }
  | { op: "chunk"; id: number; data: Uint8Array }
  | { op: "end"; id: number; error?: WireError }
  | { op: "abort"; id: number };

export type ToMain =
  | { op: "done"; id: number; result: ApplyResult | undefined }
  | { op: "error"; id: number; kind: ErrorKind; message: string }
  /** A posted chunk of `bytes` was taken: the main thread may post more. */
  | { op: "ack"; id: number; bytes: number };
