/** Small helpers shared by the commands: option parsers and the many-IDs loop. */
import { describeError, type GlobalOptions } from "./context.js";

/** Commander reducer for a repeatable option (`--label a=b --label c=d`). */
export function collect(value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), value];
}

/** Commander parser for a non-negative integer option. */
export function nonNegativeInt(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0) throw new Error(`expected a non-negative integer, got ${JSON.stringify(value)}`);
  return n;
}

/**
 * Runs `fn` for every reference, like crictl's rm/stop loops: a failure is reported on stderr and
 * the loop goes on; the exit code is 1 if any failed.
 */
export async function forEachRef(
  refs: readonly string[],
  g: GlobalOptions,
  fn: (ref: string) => Promise<void>,
): Promise<void> {
  let failed = false;
  for (const ref of refs) {
    try {
      await fn(ref);
    } catch (err) {
      if (refs.length === 1) throw err;
      failed = true;
      process.stderr.write(`berth: ${describeError(err, g.socket)}\n`);
    }
  }
  if (failed) process.exitCode = 1;
}

/** Call options for StopContainer/StopPodSandbox: the grace period plus the usual deadline. */
export function stopCall(g: GlobalOptions, graceSeconds: number): { timeoutMs: number } {
  return { timeoutMs: (graceSeconds + g.timeout) * 1000 };
}
