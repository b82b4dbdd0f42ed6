import { performance } from "node:perf_hooks";

/** One RPC as the tracker saw it: its method name, when it began and (once over) when it ended, in ms of `performance.now()`. */
export interface RpcSpan {
  readonly rpc: string;
  readonly startedMs: number;
  readonly endedMs?: number;
}

/**
 * The RPCs berthd is serving, kept so that an event-loop stall can name what ran during it.
 * A stall is noticed only after it ends, and the RPC that caused it has often finished by then
 * (a blocking call returns, its RPC answers, and only then do timers run): so besides the RPCs
 * still open, the tracker remembers the last {@link RECENT} that ended, with their end times.
 * Cost per RPC: a Set insert and delete plus one slot of a fixed ring; nothing grows.
 */
export interface RpcTracker {
  /** Marks an RPC as started; call the returned function once when it ends (later calls do nothing). */
  begin(rpc: string): () => void;
  /** Every RPC open at some moment since `sinceMs` (`performance.now()` time): open ones first, oldest first. */
  activeSince(sinceMs: number): RpcSpan[];
  /** How many RPCs are open now. */
  readonly open: number;
}

/** How many ended RPCs the tracker remembers. */
const RECENT = 64;

export function createRpcTracker(): RpcTracker {
  const open = new Set<{ rpc: string; startedMs: number }>();
  const ended: RpcSpan[] = [];
  let next = 0;
  return {
    begin(rpc) {
      const span = { rpc, startedMs: performance.now() };
      open.add(span);
      return () => {
        if (!open.delete(span)) return;
        ended[next] = { ...span, endedMs: performance.now() };
        next = (next + 1) % RECENT;
      };
    },
    activeSince(sinceMs) {
      const recent = ended.filter((s) => (s.endedMs ?? 0) >= sinceMs).sort((a, b) => a.startedMs - b.startedMs);
      return [...open, ...recent];
    },
    get open() {
      return open.size;
    },
  };
}
