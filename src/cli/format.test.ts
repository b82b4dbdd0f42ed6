import assert from "node:assert/strict";
import { test } from "node:test";
import { ContainerState, PodSandboxState } from "../api/gen/runtime/v1/api_pb.js";
import {
  ago,
  containerStateName,
  humanDuration,
  humanSize,
  parseContainerState,
  parseLabels,
  parsePodState,
  podStateName,
  shortId,
  splitRepoTag,
} from "./format.js";
import { formatTable, parseInfo } from "./output.js";

const ID = "3f2a9c1e8b7d6a5f4e3d2c1b0a9f8e7d6c5b4a3f2e1d0c9b8a7f6e5d4c3b2a19";

test("shortId drops sha256: and keeps 13 characters", () => {
  assert.equal(shortId(ID), "3f2a9c1e8b7d6");
  assert.equal(shortId(`sha256:${ID}`), "3f2a9c1e8b7d6");
  assert.equal(shortId("abc"), "abc");
});

test("humanDuration words durations like docker/go-units", () => {
  const s = 1000;
  const cases: [number, string][] = [
    [0, "Less than a second"],
    [999, "Less than a second"],
    [1 * s, "1 second"],
    [45 * s, "45 seconds"],
    [60 * s, "About a minute"],
    [119 * s, "About a minute"],
    [5 * 60 * s, "5 minutes"],
    [59 * 60 * s, "59 minutes"],
    [60 * 60 * s, "About an hour"],
    [89 * 60 * s, "About an hour"],
    [3 * 3600 * s, "3 hours"],
    [47 * 3600 * s, "47 hours"],
    [3 * 86400 * s, "3 days"],
    [15 * 86400 * s, "2 weeks"],
    [90 * 86400 * s, "3 months"],
    [800 * 86400 * s, "2 years"],
  ];
  for (const [ms, want] of cases) assert.equal(humanDuration(ms), want, `${ms} ms`);
});

test("ago turns a nanosecond CRI timestamp into 'x ago', '-' when unset", () => {
  const now = Date.UTC(2024, 0, 1, 12, 0, 0);
  const ns = (ms: number) => BigInt(ms) * 1_000_000n;
  assert.equal(ago(ns(now - 5 * 60_000), now), "5 minutes ago");
  assert.equal(ago(ns(now - 10), now), "Less than a second ago");
  assert.equal(ago(ns(now + 5000), now), "Less than a second ago", "clock skew is not negative");
  assert.equal(ago(0n, now), "-");
});

test("humanSize prints three significant digits with SI units", () => {
  assert.equal(humanSize(0), "0B");
  assert.equal(humanSize(123), "123B");
  assert.equal(humanSize(1234), "1.23kB");
  assert.equal(humanSize(1_463_000n), "1.46MB");
  assert.equal(humanSize(72_800_000), "72.8MB");
  assert.equal(humanSize(1_000_000), "1MB");
  assert.equal(humanSize(4_290_000_000n), "4.29GB");
});

test("state names and state parsing accept crictl's spellings", () => {
  assert.equal(containerStateName(ContainerState.CONTAINER_RUNNING), "Running");
  assert.equal(containerStateName(ContainerState.CONTAINER_EXITED), "Exited");
  assert.equal(podStateName(PodSandboxState.SANDBOX_READY), "Ready");
  assert.equal(podStateName(PodSandboxState.SANDBOX_NOTREADY), "NotReady");
  assert.equal(parseContainerState("Running"), ContainerState.CONTAINER_RUNNING);
  assert.equal(parseContainerState("CONTAINER_EXITED"), ContainerState.CONTAINER_EXITED);
  assert.throws(() => parseContainerState("sleeping"), /--state sleeping/);
  assert.equal(parsePodState("ready"), PodSandboxState.SANDBOX_READY);
  assert.equal(parsePodState("NotReady"), PodSandboxState.SANDBOX_NOTREADY);
  assert.equal(parsePodState("SANDBOX_NOTREADY"), PodSandboxState.SANDBOX_NOTREADY);
  assert.throws(() => parsePodState("gone"), /ready or notready/);
});

test("parseLabels builds a selector and rejects a pair without '='", () => {
  assert.deepEqual(parseLabels(["app=web", "tier=", "a=b=c"]), { app: "web", tier: "", a: "b=c" });
  assert.throws(() => parseLabels(["app"]), /key=value/);
});

test("splitRepoTag splits at the tag's colon, not a registry port", () => {
  assert.deepEqual(splitRepoTag("docker.io/library/busybox:1.36"), ["docker.io/library/busybox", "1.36"]);
  assert.deepEqual(splitRepoTag("127.0.0.1:5000/berth-test/busybox:latest"), [
    "127.0.0.1:5000/berth-test/busybox",
    "latest",
  ]);
  assert.deepEqual(splitRepoTag("127.0.0.1:5000/busybox"), ["127.0.0.1:5000/busybox", "latest"]);
});

test("formatTable pads every column but the last to at least 20, like crictl's tabwriter", () => {
  const text = formatTable(
    ["CONTAINER", "IMAGE", "POD"],
    [
      ["3f2a9c1e8b7d6", "a-very-long-image-name:with-a-tag", "web"],
      ["0011", "busybox", ""],
    ],
  );
  assert.equal(
    text,
    [
      "CONTAINER           IMAGE                               POD",
      "3f2a9c1e8b7d6       a-very-long-image-name:with-a-tag   web",
      "0011                busybox",
      "",
    ].join("\n"),
  );
  assert.equal(formatTable(["A", "B"], [], { minWidth: 0 }), "A   B\n");
});

test("parseInfo parses JSON values of a verbose info map and keeps the rest as strings", () => {
  assert.deepEqual(parseInfo({ info: '{"pid":42}', note: "plain text" }), { info: { pid: 42 }, note: "plain text" });
});
