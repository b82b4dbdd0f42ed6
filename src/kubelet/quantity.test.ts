import assert from "node:assert/strict";
import { describe, test } from "node:test";
import {
  bytesOf,
  cpuMillis,
  divideCeil,
  formatBytes,
  formatCpu,
  milliCpuToQuota,
  milliCpuToShares,
  parseQuantity,
} from "./quantity.js";

describe("quantities", () => {
  test("CPU quantities become millicores, rounded up", () => {
    assert.equal(cpuMillis("500m"), 500);
    assert.equal(cpuMillis("0.5"), 500);
    assert.equal(cpuMillis(".1"), 100);
    assert.equal(cpuMillis(2), 2000);
    assert.equal(cpuMillis("1.5"), 1500);
    assert.equal(cpuMillis("1e-1"), 100);
    assert.throws(() => cpuMillis("1e3m"), /regular expression/, "an exponent and a suffix do not combine");
    assert.equal(cpuMillis("100u"), 1, "100 microcores round up to 1 millicore");
    assert.equal(cpuMillis("0.0001"), 1);
    assert.equal(cpuMillis("1k"), 1_000_000);
  });

  test("memory quantities become bytes with binary and decimal suffixes", () => {
    assert.equal(bytesOf("128Mi"), 134_217_728);
    assert.equal(bytesOf("1Gi"), 1_073_741_824);
    assert.equal(bytesOf("1.5Gi"), 1_610_612_736);
    assert.equal(bytesOf("1G"), 1_000_000_000);
    assert.equal(bytesOf("64k"), 64_000);
    assert.equal(bytesOf("12e6"), 12_000_000);
    assert.equal(bytesOf(1024), 1024);
    assert.equal(bytesOf("1Ki"), 1024);
    assert.equal(bytesOf("100m"), 1, "a milli-byte quantity rounds up to a whole byte");
  });

  test("malformed quantities are rejected with the Kubernetes pattern", () => {
    for (const bad of ["", "abc", "1.2.3", "10 Mi", "Mi", "1KB", "1mi", "--1"]) {
      assert.throws(() => parseQuantity(bad), /must match the regular expression/, bad);
    }
  });

  test("negative quantities parse (validation rejects them where they are not allowed)", () => {
    assert.equal(cpuMillis("-1"), -1000);
  });

  test("shares follow the kubelet: millicores*1024/1000, at least 2", () => {
    assert.equal(milliCpuToShares(0), 2);
    assert.equal(milliCpuToShares(1), 2);
    assert.equal(milliCpuToShares(100), 102);
    assert.equal(milliCpuToShares(250), 256);
    assert.equal(milliCpuToShares(1000), 1024);
    assert.equal(milliCpuToShares(2000), 2048);
  });

  test("quota follows the kubelet: millicores*period/1000, at least 1000 µs, 0 for no limit", () => {
    assert.equal(milliCpuToQuota(0), 0);
    assert.equal(milliCpuToQuota(500), 50_000);
    assert.equal(milliCpuToQuota(1500), 150_000);
    assert.equal(milliCpuToQuota(5), 1000);
    assert.equal(milliCpuToQuota(250, 50_000), 12_500);
  });

  test("divideCeil and formatting round-trip common values", () => {
    assert.equal(divideCeil(parseQuantity("129Mi"), parseQuantity("1Mi")), 129n);
    assert.equal(divideCeil(parseQuantity("1"), parseQuantity("1m")), 1000n);
    assert.equal(divideCeil(parseQuantity("250m"), parseQuantity("1")), 1n);
    assert.equal(formatCpu(250), "250m");
    assert.equal(formatCpu(2000), "2");
    assert.equal(formatBytes(134_217_728), "128Mi");
    assert.equal(formatBytes(1000), "1000");
  });
});
