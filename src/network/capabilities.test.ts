import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { runtimeConfigFor } from "./capabilities.js";
import { bandwidthFromAnnotations, parseQuantity } from "./index.js";

describe("runtimeConfigFor", () => {
  const args = {
    portMappings: [
      { hostPort: 8080, containerPort: 80, protocol: "tcp" as const, hostIP: "" },
      { hostPort: 53, containerPort: 53, protocol: "udp" as const, hostIP: "127.0.0.1" },
    ],
    bandwidth: { ingressRate: 1000, ingressBurst: 4294967295 },
    dns: { servers: ["10.96.0.10"], searches: ["svc.cluster.local"], options: ["ndots:5"] },
    ipRanges: [[{ subnet: "10.1.2.0/24" }]],
  };

  test("a plugin gets only the capabilities it declares", () => {
    assert.deepEqual(
      runtimeConfigFor({ type: "portmap", capabilities: { portMappings: true, bandwidth: false } }, args),
      {
        portMappings: [
          { hostPort: 8080, containerPort: 80, protocol: "tcp" },
          { hostPort: 53, containerPort: 53, protocol: "udp", hostIP: "127.0.0.1" },
        ],
      },
    );
    assert.deepEqual(
      runtimeConfigFor({ type: "x", capabilities: { bandwidth: true, dns: true, ipRanges: true } }, args),
      {
        bandwidth: args.bandwidth,
        dns: args.dns,
        ipRanges: args.ipRanges,
      },
    );
  });

  test("no declared capability, or nothing offered, means no runtimeConfig", () => {
    assert.equal(runtimeConfigFor({ type: "bridge" }, args), undefined);
    assert.equal(
      runtimeConfigFor({ type: "portmap", capabilities: { portMappings: true } }, { portMappings: [] }),
      undefined,
    );
  });
});

describe("bandwidthFromAnnotations", () => {
  test("rates are the quantities in bits per second and bursts are 2^32-1, as containerd sets them", () => {
    assert.deepEqual(
      bandwidthFromAnnotations({ "kubernetes.io/ingress-bandwidth": "10M", "kubernetes.io/egress-bandwidth": "1Gi" }),
      {
        ingressRate: 10_000_000,
        ingressBurst: 4294967295,
        egressRate: 2 ** 30,
        egressBurst: 4294967295,
      },
    );
    assert.deepEqual(bandwidthFromAnnotations({ "kubernetes.io/egress-bandwidth": "1.5k" }), {
      egressRate: 1500,
      egressBurst: 4294967295,
    });
  });

  test("no annotation means no limit", () => {
    assert.equal(bandwidthFromAnnotations({ other: "1" }), undefined);
  });

  test("malformed and unreasonable values are InvalidArgument", () => {
    assert.throws(() => bandwidthFromAnnotations({ "kubernetes.io/ingress-bandwidth": "fast" }), {
      kind: "InvalidArgument",
      message: /invalid quantity "fast"/,
    });
    assert.throws(() => bandwidthFromAnnotations({ "kubernetes.io/ingress-bandwidth": "10" }), {
      kind: "InvalidArgument",
      message: /unreasonably small/,
    });
    assert.throws(() => bandwidthFromAnnotations({ "kubernetes.io/egress-bandwidth": "2P" }), {
      kind: "InvalidArgument",
      message: /unreasonably large/,
    });
  });

  test("parseQuantity reads decimal, binary and exponent forms", () => {
    assert.equal(parseQuantity("100"), 100);
    assert.equal(parseQuantity("100m"), 0.1);
    assert.equal(parseQuantity("2Ki"), 2048);
    assert.equal(parseQuantity("3e3"), 3000);
    assert.equal(parseQuantity("1.5G"), 1.5e9);
    assert.equal(parseQuantity("1X"), undefined);
    assert.equal(parseQuantity(""), undefined);
  });
});
