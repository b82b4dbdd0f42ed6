import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { parseResult, toPodNetwork } from "./result.js";

// As bridge 1.1.1 prints them for cniVersion 0.4.0 and 1.0.0.
const v040 = {
  cniVersion: "0.4.0",
  interfaces: [
    { name: "cni0", mac: "aa:bb:cc:dd:ee:01" },
    { name: "veth1", mac: "aa:bb:cc:dd:ee:02" },
    { name: "eth0", mac: "aa:bb:cc:dd:ee:03", sandbox: "/run/berth/netns/x" },
  ],
  ips: [{ version: "4", interface: 2, address: "10.88.0.5/16", gateway: "10.88.0.1" }],
  routes: [{ dst: "0.0.0.0/0" }],
  dns: {},
};
const v100 = {
  cniVersion: "1.0.0",
  interfaces: v040.interfaces,
  ips: [
    { interface: 2, address: "fd00::5/64", gateway: "fd00::1" },
    { interface: 2, address: "10.88.0.6/16", gateway: "10.88.0.1" },
    { interface: 0, address: "10.88.0.1/16" },
  ],
  routes: [{ dst: "0.0.0.0/0", gw: "10.88.0.1" }],
  dns: { nameservers: ["10.96.0.10"], search: ["cluster.local"] },
};

describe("parseResult", () => {
  test("reads the 0.4.0 format, ignoring ips[].version", () => {
    const r = parseResult(v040, "bridge");
    assert.equal(r.cniVersion, "0.4.0");
    assert.deepEqual(r.ips, [{ address: "10.88.0.5/16", gateway: "10.88.0.1", interface: 2 }]);
    assert.deepEqual(r.interfaces[2], { name: "eth0", mac: "aa:bb:cc:dd:ee:03", sandbox: "/run/berth/netns/x" });
    assert.deepEqual(r.routes, [{ dst: "0.0.0.0/0" }]);
    assert.deepEqual(r.dns, {});
  });

  test("reads the 1.0.0 format with routes' gateways and dns", () => {
    const r = parseResult(v100, "bridge");
    assert.deepEqual(r.routes, [{ dst: "0.0.0.0/0", gw: "10.88.0.1" }]);
    assert.deepEqual(r.dns, { nameservers: ["10.96.0.10"], search: ["cluster.local"] });
  });

  test("a malformed result is an Internal error naming its source", () => {
    assert.throws(() => parseResult("nope", "net x"), {
      kind: "Internal",
      message: "net x: invalid result: not a JSON object",
    });
    assert.throws(() => parseResult({ ips: [{}] }, "net x"), { message: /ips\[0\] has no address/ });
    assert.throws(() => parseResult({ ips: {} }, "net x"), { message: /"ips" is not a list/ });
  });
});

describe("toPodNetwork", () => {
  test("keeps the pod interface's addresses, IPv4 first, without prefix", () => {
    assert.deepEqual(toPodNetwork(parseResult(v100, "r"), "eth0").ips, ["10.88.0.6", "fd00::5"]);
  });

  test("without interface indexes every address counts", () => {
    const r = parseResult({ cniVersion: "1.0.0", ips: [{ address: "fd00::7/64" }, { address: "10.0.0.7/24" }] }, "r");
    assert.deepEqual(toPodNetwork(r, "eth0").ips, ["10.0.0.7", "fd00::7"]);
  });
});
