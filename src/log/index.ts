import { type LevelWithSilent, type Logger, pino } from "pino";

/** The project's logger type: pino, JSON to stderr, context bound with `child()`. */
export type { Logger };

/** Log levels accepted by `--log-level` and `[log] level`. */
export const LOG_LEVELS: readonly LevelWithSilent[] = ["trace", "debug", "info", "warn", "error", "fatal", "silent"];

/** Creates the root logger writing JSON lines to stderr (fd 2), synchronously so nothing is lost on exit. */
export function createLogger(level: LevelWithSilent = "info"): Logger {
  return pino(
    {
      level,
      base: { name: "berthd" },
      timestamp: pino.stdTimeFunctions.isoTime,
      // Credentials must never reach a log line, whatever object carries them.
      redact: {
        paths: ["*.password", "*.auth", "*.identityToken", "*.registryToken", "*.authorization"],
        censor: "[redacted]",
      },
    },
    pino.destination({ fd: 2, sync: true }),
  );
}

/** A logger that drops everything (unit tests, library use). */
export function silentLogger(): Logger {
  return pino({ level: "silent" });
}
