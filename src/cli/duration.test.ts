import assert from "node:assert/strict";
import { test } from "node:test";
import { parseDuration, parseSince } from "./duration.js";

test("parseDuration reads Go durations", () => {
  assert.equal(parseDuration("0"), 0);
  assert.equal(parseDuration("250ms"), 250);
  assert.equal(parseDuration("90s"), 90_000);
  assert.equal(parseDuration("1m30s"), 90_000);
  assert.equal(parseDuration("1.5h"), 5_400_000);
  assert.equal(parseDuration("2h3m4s"), 7_384_000);
  for (const bad of ["", "10", "5 m", "m", "1d", "-5s", "5s!"])
    assert.throws(() => parseDuration(bad), /invalid duration/, bad);
});

test("--since takes a duration before now or an RFC 3339 time", () => {
  const now = Date.UTC(2024, 4, 1, 10, 0, 0);
  assert.equal(parseSince("10m", now), now - 600_000);
  assert.equal(parseSince("2024-05-01T09:00:00Z", now), Date.UTC(2024, 4, 1, 9, 0, 0));
  assert.throws(() => parseSince("last tuesday", now), /--since last tuesday: expected a duration/);
});
