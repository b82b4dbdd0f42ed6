import { runUnchecked } from "../sys/index.js";

/** Whether CRIU can checkpoint on this host, and if not, CRIU's own words for why. */
export interface CriuSupport {
  ok: boolean;
  /** `criu check`'s error output (its last lines), empty when ok. */
  error: string;
}

const cache = new Map<string, Promise<CriuSupport>>();

/**
 * Runs `criu check` once per binary and remembers the answer: what CRIU needs (kernel features,
 * a vDSO it can parse, ptrace access) does not change while berthd runs. A missing binary is
 * "not ok" with the spawn error. Runs off the event loop (the spawn worker), bounded to 30 s.
 */
export function criuSupport(binary = "criu"): Promise<CriuSupport> {
  let answer = cache.get(binary);
  if (!answer) {
    answer = runUnchecked(binary, ["check"], { timeoutMs: 30_000, maxOutput: 64 * 1024 }).then(
      (r) => {
        if (r.code === 0) return { ok: true, error: "" };
        const lines = `${r.stderr}\n${r.stdout}`.split("\n").filter((l) => l.trim() !== "");
        return { ok: false, error: lines.slice(-8).join("\n") || `exit status ${r.code}` };
      },
      (err: unknown) => ({ ok: false, error: err instanceof Error ? err.message : String(err) }),
    );
    cache.set(binary, answer);
  }
  return answer;
}
