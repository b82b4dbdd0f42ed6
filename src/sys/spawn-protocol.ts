/** Messages between berthd's main thread (spawner.ts) and the spawn worker (spawn-worker.ts). */

/** How the worker reads one of the child's fds. */
export interface FdRead {
  /** Keep at most this many characters (UTF-8 decoded); the rest is read and dropped. */
  max: number;
  /** The request completes only once this fd is at EOF (or has its first line, with `untilLine`). */
  wait: boolean;
  /** Stop reading (and close our end) after the first newline. */
  untilLine?: boolean;
}

/** One child to run to completion. */
export interface SpawnRequest {
  id: number;
  file: string;
  args: string[];
  env: Record<string, string | undefined>;
  cwd?: string;
  stdio: Array<"pipe" | "ignore">;
  /** Its own process group (setsid). */
  detached: boolean;
  /** A kill signals the child's whole process group (it must be `detached`), not just the child. */
  killGroup: boolean;
  /** Data written to these fds, then closed. */
  writes: Record<number, string | Uint8Array>;
  reads: Record<number, FdRead>;
}

export type WorkerMessage = { type: "spawn"; request: SpawnRequest } | { type: "kill"; id: number };

/** What the child did: exit status, and what was read from each fd in `reads`. */
export interface SpawnReply {
  id: number;
  code: number | null;
  signal: string | null;
  output: Record<number, string>;
  /** The child could not be started (ENOENT, EACCES, ...). */
  spawnError?: string;
}
