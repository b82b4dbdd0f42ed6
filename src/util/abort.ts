// Small helpers for the `{ signal }` convention (STYLE.md 3): anything that blocks takes an optional signal.

/**
 * `{ signal }` when there is a signal, else `{}`: for passing an optional signal on to an API whose options
 * type (under `exactOptionalPropertyTypes`) refuses `{ signal: undefined }`.
 */
export function signalOption(signal: AbortSignal | undefined): { signal?: AbortSignal } {
  return signal ? { signal } : {};
}

/** Options of `untilAborted`. */
export interface UntilAbortedOptions {
  /** The rejection on abort (default: the signal's reason). */
  error?: () => unknown;
  /**
   * Asked when the signal aborts: true ends the wait at once (the default); false ignores the abort and waits
   * for `work`, for work that has reached a point where it stops on the signal and cleans up by itself.
   */
  early?: () => boolean;
}

/**
 * Settles as `work` does, or rejects as soon as `signal` aborts without waiting for `work`, which goes on (it
 * may be shared with other callers, or stop on the signal by itself). A later rejection of `work` is observed
 * here, so it never becomes unhandled; the abort listener is removed once `work` settles.
 */
export function untilAborted<T>(
  work: Promise<T>,
  signal: AbortSignal | undefined,
  options: UntilAbortedOptions = {},
): Promise<T> {
  if (signal === undefined) return work;
  const early = options.early ?? (() => true);
  const error = options.error ?? (() => signal.reason);
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => {
      if (early()) reject(error());
    };
    work.then(
      (v) => {
        signal.removeEventListener("abort", onAbort);
        resolve(v);
      },
      (e: unknown) => {
        signal.removeEventListener("abort", onAbort);
        reject(e);
      },
    );
    if (signal.aborted) onAbort();
    else signal.addEventListener("abort", onAbort, { once: true });
  });
}
