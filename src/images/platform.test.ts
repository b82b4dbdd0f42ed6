import assert from "node:assert/strict";
import { test } from "node:test";
import {
  formatPlatform,
  hostPlatform,
  normalizePlatform,
  type Platform,
  parsePlatform,
  selectPlatform,
} from "./platform.js";

const entry = (p: Platform, name: string) => ({ name, platform: p });

test("the host platform is normalised (linux/amd64 on x86-64)", () => {
  const p = hostPlatform();
  assert.equal(p.os, process.platform);
  if (process.arch === "x64") assert.deepEqual(p, { os: "linux", architecture: "amd64" });
});

test("platform names are normalised as containerd does", () => {
  assert.deepEqual(normalizePlatform({ os: "Linux", architecture: "x86_64" }), { os: "linux", architecture: "amd64" });
  assert.deepEqual(normalizePlatform({ os: "linux", architecture: "aarch64", variant: "v8" }), {
    os: "linux",
    architecture: "arm64",
  });
  assert.deepEqual(normalizePlatform({ os: "linux", architecture: "armhf" }), {
    os: "linux",
    architecture: "arm",
    variant: "v7",
  });
  assert.deepEqual(normalizePlatform({ os: "linux", architecture: "arm" }), {
    os: "linux",
    architecture: "arm",
    variant: "v7",
  });
  assert.deepEqual(parsePlatform("linux/arm/6"), { os: "linux", architecture: "arm", variant: "v6" });
  assert.equal(formatPlatform(parsePlatform("linux/arm64/v8")), "linux/arm64");
  assert.throws(() => parsePlatform("linux"), /invalid platform "linux"/);
});

test("the linux/amd64 child of a multi-arch index is chosen, attestations are skipped", () => {
  const entries = [
    entry({ os: "linux", architecture: "arm64", variant: "v8" }, "arm64"),
    entry({ os: "unknown", architecture: "unknown" }, "attestation"),
    entry({ os: "linux", architecture: "amd64" }, "amd64"),
    entry({ os: "windows", architecture: "amd64", osVersion: "10.0.17763.1" }, "windows"),
  ];
  assert.equal(selectPlatform(entries, { os: "linux", architecture: "amd64" })?.name, "amd64");
  assert.equal(selectPlatform(entries, parsePlatform("linux/arm64"))?.name, "arm64");
  assert.equal(selectPlatform(entries, parsePlatform("linux/s390x")), undefined);
});

test("a wanted variant prefers an exact match, then the newest older variant", () => {
  const entries = [
    entry({ os: "linux", architecture: "arm", variant: "v5" }, "v5"),
    entry({ os: "linux", architecture: "arm", variant: "v6" }, "v6"),
    entry({ os: "linux", architecture: "arm", variant: "v7" }, "v7"),
  ];
  assert.equal(selectPlatform(entries, parsePlatform("linux/arm/v7"))?.name, "v7");
  assert.equal(selectPlatform(entries, parsePlatform("linux/arm/v6"))?.name, "v6");
  assert.equal(selectPlatform(entries.slice(0, 2), parsePlatform("linux/arm/v8"))?.name, "v6");
  assert.equal(selectPlatform(entries.slice(1), parsePlatform("linux/arm/v5")), undefined);
});

test("amd64 micro-architecture variants: v1 equals none, newer variants need a newer host", () => {
  const entries = [
    entry({ os: "linux", architecture: "amd64", variant: "v3" }, "v3"),
    entry({ os: "linux", architecture: "amd64", variant: "v1" }, "v1"),
  ];
  assert.equal(selectPlatform(entries, parsePlatform("linux/amd64"))?.name, "v1");
  assert.equal(selectPlatform(entries, parsePlatform("linux/amd64/v3"))?.name, "v3");
  assert.equal(selectPlatform(entries.slice(0, 1), parsePlatform("linux/amd64")), undefined);
});

test("os.version: the same build is required, an exact revision preferred", () => {
  const entries = [
    entry({ os: "windows", architecture: "amd64", osVersion: "10.0.20348.100" }, "2022-old"),
    entry({ os: "windows", architecture: "amd64", osVersion: "10.0.17763.5" }, "2019"),
    entry({ os: "windows", architecture: "amd64", osVersion: "10.0.20348.200" }, "2022"),
  ];
  const want = { os: "windows", architecture: "amd64", osVersion: "10.0.20348.200" };
  assert.equal(selectPlatform(entries, want)?.name, "2022");
  assert.equal(selectPlatform(entries, { ...want, osVersion: "10.0.20348.300" })?.name, "2022-old");
  assert.equal(selectPlatform(entries, { ...want, osVersion: "10.0.26100.1" }), undefined);
  // Without an os.version wanted, any build of the right os/arch is acceptable: the first wins.
  assert.equal(selectPlatform(entries, { os: "windows", architecture: "amd64" })?.name, "2022-old");
});
