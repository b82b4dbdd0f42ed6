/**
 * The benchmark's undo list. Everything it starts or creates on the host (registry, daemons, directories,
 * bridges, NAT rules, cgroups) registers how to undo it here the moment it exists; `run()` undoes it all in
 * reverse order, logging and skipping a failed step so one failure never leaves the rest behind.
 *
 * Signals: the first SIGINT/SIGTERM/SIGHUP aborts `signal` (the measurement in progress throws) and runs the
 * undo list right away, without waiting for the measurement to unwind (a stuck call must not keep the host
 * dirty), then exits with 130; a second signal exits at once. An uncaught exception or unhandled rejection
 * also runs the undo list before exiting (1), and a closed stdout/stderr (`npm run bench | head`) is
 * ignored rather than crashing half-way. Daemons are started in their own
 * process group, so a terminal's Ctrl-C reaches only the benchmark and the pods can still be removed
 * through their runtime.
 */
export interface Cleanup {
  /** Aborted by the first signal. */
  readonly signal: AbortSignal;
  /** Registers an undo step; steps run last-registered first. */
  defer(name: string, step: () => Promise<unknown> | unknown): void;
  /** Runs every registered step once; every call returns the same promise. */
  run(): Promise<void>;
}

/** Creates the undo list and installs the signal handlers (removed again by `run()`). */
export function createCleanup(log: (line: string) => void): Cleanup {
  const controller = new AbortController();
  const steps: Array<{ name: string; step: () => Promise<unknown> | unknown }> = [];
  let running: Promise<void> | undefined;
  const signals = ["SIGINT", "SIGTERM", "SIGHUP"] as const;
  const run = (): Promise<void> => {
    running ??= (async () => {
      for (const { name, step } of steps.reverse()) {
        try {
          await step();
        } catch (err) {
          log(`bench: clean-up step "${name}" failed: ${err instanceof Error ? err.message : String(err)}`);
        }
      }
      for (const s of signals) process.removeListener(s, onSignal);
    })();
    return running;
  };
  const onSignal = (sig: NodeJS.Signals): void => {
    if (controller.signal.aborted) {
      log(`bench: second ${sig}, exiting without finishing the clean-up`);
      process.exit(130);
    }
    log(`bench: ${sig}: stopping and cleaning up (send it again to exit at once)`);
    controller.abort(new Error(`interrupted by ${sig}`));
    void run().then(() => process.exit(130));
  };
  for (const s of signals) process.on(s, onSignal);
  const onCrash = (err: unknown): void => {
    log(`bench: crashed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}; cleaning up`);
    controller.abort(err);
    void run().then(() => process.exit(1));
  };
  process.on("uncaughtException", onCrash);
  process.on("unhandledRejection", onCrash);
  for (const stream of [process.stdout, process.stderr]) stream.on("error", () => {});
  return {
    signal: controller.signal,
    defer(name, step) {
      steps.push({ name, step });
    },
    run,
  };
}
