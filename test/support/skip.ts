import assert from "node:assert/strict";
import { test } from "node:test";

/** True when the tests run in CI (`CI=true`), where every prerequisite is installed and tests run as root. */
export const IN_CI = process.env.CI === "true";

/**
 * The `skip` option for a suite or test whose prerequisite (root, a tool) may be missing. Outside CI a
 * missing prerequisite skips with its reason, as STYLE asks for non-root runs. Under `CI=true` a skip
 * would let the run pass without testing anything, so a failing test naming the missing prerequisite is
 * registered in its place (the suite itself is still skipped, so it does not fail a hundred times over).
 */
export function skipUnlessCi(reason: string | false): string | false {
  if (reason === false || !IN_CI) return reason;
  test(`prerequisite: ${reason}`, () => {
    assert.fail(`CI=true but ${reason}: this suite would be skipped, so the run fails instead`);
  });
  return reason;
}

/**
 * Reads a numeric knob (pod counts, session counts) from the environment for runs by hand. Under
 * `CI=true` an override is refused: the load and leak tests must run at the sizes the issues ask for.
 */
export function sizeFromEnv(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === "") return fallback;
  if (IN_CI) throw new Error(`${name}=${raw} is set, but CI=true runs the load and leak tests at their full size`);
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1) throw new Error(`${name}=${raw}: expected a positive integer`);
  return n;
}
