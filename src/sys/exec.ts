import { RuntimeError } from "../errdefs/index.js";
import { startChild } from "./spawner.js";

/** Options for running an external binary to completion. */
export interface RunOptions {
  /** Bytes written to the child's stdin, then closed. */
  input?: string | Uint8Array;
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  signal?: AbortSignal;
  /** Kill the child after this many milliseconds (SIGKILL) and fail with DeadlineExceeded. */
  timeoutMs?: number;
  /** Cap on captured stdout/stderr each; output beyond it is dropped (default 16 MiB). */
  maxOutput?: number;
}

/** What a finished child produced. */
export interface RunResult {
  stdout: string;
  stderr: string;
  code: number;
}

/**
 * Runs `file` with an argument array (never a shell), captures its output, and throws a
 * RuntimeError carrying stderr when it exits non-zero, is killed, or cannot be started.
 * `name` prefixes error messages (`runc create: exit status 1: <stderr>`).
 */
export async function run(
  file: string,
  args: readonly string[],
  options: RunOptions & { name?: string } = {},
): Promise<RunResult> {
  const result = await runUnchecked(file, args, options);
  if (result.code !== 0) {
    const detail = (result.stderr.trim() || result.stdout.trim()).slice(0, 4000);
    throw new RuntimeError(
      "Internal",
      `${options.name ?? file}: exit status ${result.code}${detail ? `: ${detail}` : ""}`,
    );
  }
  return result;
}

/** Like `run`, but a non-zero exit is returned, not thrown. Start failures and timeouts still throw. */
export function runUnchecked(
  file: string,
  args: readonly string[],
  options: RunOptions & { name?: string } = {},
): Promise<RunResult> {
  const max = options.maxOutput ?? 16 * 1024 * 1024;
  const label = options.name ?? file;
  return new Promise<RunResult>((resolve, reject) => {
    if (options.signal?.aborted) {
      reject(new RuntimeError("Canceled", `${label}: canceled`));
      return;
    }
    const child = startChild({
      file,
      args: [...args],
      env: { ...(options.env ?? process.env) },
      ...(options.cwd !== undefined ? { cwd: options.cwd } : {}),
      stdio: ["pipe", "pipe", "pipe"],
      // Its own process group, so a timeout or abort also kills what it forked (a CNI plugin's
      // helpers would otherwise hold our pipes open and outlive the call).
      detached: true,
      killGroup: true,
      writes: { 0: options.input ?? "" },
      reads: { 1: { max, wait: true }, 2: { max, wait: true } },
    });
    let failure: RuntimeError | undefined;
    const kill = (why: RuntimeError) => {
      failure ??= why;
      child.kill();
    };
    const timer =
      options.timeoutMs !== undefined
        ? setTimeout(
            () => kill(new RuntimeError("DeadlineExceeded", `${label}: timed out after ${options.timeoutMs} ms`)),
            options.timeoutMs,
          )
        : undefined;
    const onAbort = () => kill(new RuntimeError("Canceled", `${label}: canceled`));
    options.signal?.addEventListener("abort", onAbort, { once: true });
    child.result.then(
      (r) => {
        if (timer) clearTimeout(timer);
        options.signal?.removeEventListener("abort", onAbort);
        if (r.spawnError !== undefined) failure ??= new RuntimeError("Internal", `${label}: ${r.spawnError}`);
        if (failure) {
          reject(failure);
          return;
        }
        resolve({
          stdout: r.output[1] ?? "",
          stderr: r.output[2] ?? "",
          code: r.code ?? (r.signal ? 128 + signalNumber(r.signal) : 255),
        });
      },
      (err: unknown) => {
        if (timer) clearTimeout(timer);
        options.signal?.removeEventListener("abort", onAbort);
        reject(err);
      },
    );
  });
}

const SIGNALS: Record<string, number> = {
  SIGHUP: 1,
  SIGINT: 2,
  SIGQUIT: 3,
  SIGKILL: 9,
  SIGTERM: 15,
  SIGABRT: 6,
  SIGSEGV: 11,
};

function signalNumber(sig: string): number {
  return SIGNALS[sig] ?? 0;
}
