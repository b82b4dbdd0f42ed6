import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { create } from "@bufbuild/protobuf";
import {
  ContainerState,
  ContainerStatusSchema,
  PodSandboxState,
  PodSandboxStatusSchema,
} from "../api/gen/runtime/v1/api_pb.js";
import { parseManifest } from "./manifest.js";
import { computePodView, humanDuration, podRow, type RunnerStatus } from "./pod-view.js";
import { ANNOTATIONS } from "./types.js";

const NOW = 1_700_000_000_000;
const ms = (t: number) => BigInt(t) * 1_000_000n;

function sandboxOf(manifest: string) {
  const pod = parseManifest(manifest, { path: "/p.yaml" }).pods[0]!;
  return {
    pod,
    sandbox: create(PodSandboxStatusSchema, {
      id: "sb1",
      metadata: { name: pod.metadata.name, namespace: "default", uid: pod.metadata.uid, attempt: 0 },
      state: PodSandboxState.SANDBOX_READY,
      createdAt: ms(NOW - 90_000),
      network: { ip: "10.88.0.9" },
      labels: { app: "x", "io.kubernetes.pod.uid": pod.metadata.uid },
      annotations: { [ANNOTATIONS.pod]: JSON.stringify(pod) },
    }),
  };
}

type C = {
  name: string;
  attempt?: number;
  state: ContainerState;
  exitCode?: number;
  reason?: string;
  startedAt?: number;
  finishedAt?: number;
};
const ctr = (c: C) =>
  create(ContainerStatusSchema, {
    id: `${c.name}-${c.attempt ?? 0}`,
    metadata: { name: c.name, attempt: c.attempt ?? 0 },
    state: c.state,
    exitCode: c.exitCode ?? 0,
    reason: c.reason ?? "",
    startedAt: ms(c.startedAt ?? NOW - 60_000),
    finishedAt: c.finishedAt ? ms(c.finishedAt) : 0n,
    createdAt: ms(NOW - 61_000),
  });

const TWO_INITS = `
apiVersion: v1
kind: Pod
metadata: { name: app }
spec:
  initContainers: [{ name: i1, image: busybox }, { name: i2, image: busybox }]
  containers: [{ name: web, image: busybox, readinessProbe: { exec: { command: ["true"] } } }, { name: side, image: busybox }]
`;

const { RUNNING, EXITED } = { RUNNING: ContainerState.CONTAINER_RUNNING, EXITED: ContainerState.CONTAINER_EXITED };

describe("pod status like kubectl", () => {
  test("init containers in progress show Init:N/M, failed ones Init:Error", () => {
    const { sandbox } = sandboxOf(TWO_INITS);
    let v = computePodView({ sandbox, containers: [], runnerAlive: false, hostIP: "" });
    assert.equal(v.status, "Init:0/2");
    assert.equal(v.phase, "Pending");
    v = computePodView({
      sandbox,
      containers: [ctr({ name: "i1", state: EXITED, finishedAt: NOW - 1 }), ctr({ name: "i2", state: RUNNING })],
      runnerAlive: false,
      hostIP: "",
    });
    assert.equal(v.status, "Init:1/2");
    v = computePodView({
      sandbox,
      containers: [ctr({ name: "i1", state: EXITED, exitCode: 3, reason: "Error", finishedAt: NOW - 1 })],
      runnerAlive: false,
      hostIP: "",
    });
    assert.equal(v.status, "Init:Error");
    assert.equal(v.phase, "Pending", "with restartPolicy Always a failed init container is retried");
  });

  test("a running pod is ready only when the runner says its readiness probe passed", () => {
    const { sandbox } = sandboxOf(TWO_INITS);
    const containers = [
      ctr({ name: "i1", state: EXITED, finishedAt: NOW - 5 }),
      ctr({ name: "i2", state: EXITED, finishedAt: NOW - 4 }),
      ctr({ name: "web", state: RUNNING }),
      ctr({ name: "side", state: RUNNING }),
    ];
    let v = computePodView({ sandbox, containers, runnerAlive: false, hostIP: "" });
    assert.equal(v.status, "Running");
    assert.equal(v.phase, "Running");
    assert.deepEqual(
      [v.readyCount, v.total, v.conditions.ready],
      [1, 2, false],
      "no runner verdict: the probed container is not ready",
    );
    const runner: RunnerStatus = {
      version: 1,
      pid: 1,
      updatedAt: NOW,
      containers: { web: { id: "web-0", ready: true, started: true } },
    };
    v = computePodView({ sandbox, containers, runner, runnerAlive: true, hostIP: "" });
    assert.deepEqual([v.readyCount, v.total, v.conditions.ready], [2, 2, true]);
    assert.deepEqual(podRow(v, NOW, false), ["app", "2/2", "Running", "0", "90s", "10.88.0.9"]);
  });

  test("a crash-looping container shows CrashLoopBackOff with its restarts and last state", () => {
    const { sandbox } = sandboxOf(
      TWO_INITS.replace(
        "initContainers: [{ name: i1, image: busybox }, { name: i2, image: busybox }]",
        "initContainers: []",
      ),
    );
    const containers = [
      ctr({ name: "web", attempt: 2, state: EXITED, exitCode: 1, reason: "Error", finishedAt: NOW - 30_000 }),
      ctr({ name: "web", attempt: 1, state: EXITED, exitCode: 1, reason: "Error", finishedAt: NOW - 50_000 }),
      ctr({ name: "side", state: RUNNING }),
    ];
    const runner: RunnerStatus = {
      version: 1,
      pid: 1,
      updatedAt: NOW,
      containers: {
        web: {
          id: "web-2",
          ready: false,
          started: false,
          waiting: { reason: "CrashLoopBackOff", message: "back-off 20s" },
        },
      },
    };
    const v = computePodView({ sandbox, containers, runner, runnerAlive: true, hostIP: "" });
    assert.equal(v.status, "CrashLoopBackOff");
    assert.equal(v.restarts, 2);
    assert.equal(v.containers[0]?.lastState?.exitCode, 1);
    assert.deepEqual(podRow(v, NOW, true), [
      "default",
      "app",
      "1/2",
      "CrashLoopBackOff",
      "2 (30s ago)",
      "90s",
      "10.88.0.9",
    ]);
    // With the runner gone, its waiting reason is stale: the CRI state shows instead.
    assert.equal(computePodView({ sandbox, containers, runner, runnerAlive: false, hostIP: "" }).status, "Error");
  });

  test("restartPolicy decides Succeeded, Failed or Running when every container has exited", () => {
    const base =
      "apiVersion: v1\nkind: Pod\nmetadata: { name: job }\nspec:\n  containers: [{ name: a, image: busybox }, { name: b, image: busybox }]\n";
    const done = (codeA: number, codeB: number) => [
      ctr({ name: "a", state: EXITED, exitCode: codeA, finishedAt: NOW - 2 }),
      ctr({ name: "b", state: EXITED, exitCode: codeB, finishedAt: NOW - 1 }),
    ];
    const view = (policy: string, a: number, b: number) =>
      computePodView({
        sandbox: sandboxOf(`${base}  restartPolicy: ${policy}\n`).sandbox,
        containers: done(a, b),
        runnerAlive: false,
        hostIP: "",
      });
    assert.deepEqual([view("Never", 0, 0).phase, view("Never", 0, 0).status], ["Succeeded", "Completed"]);
    assert.deepEqual([view("Never", 0, 2).phase, view("Never", 0, 2).status], ["Failed", "Completed"]);
    assert.equal(view("Never", 2, 0).status, "Error");
    assert.equal(view("OnFailure", 0, 2).phase, "Running");
    assert.equal(view("OnFailure", 0, 0).phase, "Succeeded");
    assert.equal(view("Always", 0, 0).phase, "Running");
  });

  test("hostNetwork pods show the host's IP; Terminating wins while the runner stops the pod", () => {
    const { sandbox } = sandboxOf(
      "apiVersion: v1\nkind: Pod\nmetadata: { name: h }\nspec:\n  hostNetwork: true\n  containers: [{ name: a, image: busybox }]\n",
    );
    sandbox.network = undefined;
    const runner: RunnerStatus = { version: 1, pid: 1, updatedAt: NOW, terminating: true, containers: {} };
    const v = computePodView({
      sandbox,
      containers: [ctr({ name: "a", state: RUNNING })],
      runner,
      runnerAlive: true,
      hostIP: "192.0.2.1",
    });
    assert.equal(v.ip, "192.0.2.1");
    assert.equal(v.status, "Terminating");
    assert.deepEqual(v.labels, { app: "x" }, "the runner's labels are not shown as the pod's");
  });

  test("AGE uses kubectl's human durations", () => {
    assert.deepEqual(
      [
        5_000,
        119_000,
        200_000,
        600_000,
        3 * 3600_000 + 5 * 60_000,
        9 * 3600_000,
        50 * 3600_000,
        30 * 86_400_000,
        800 * 86_400_000,
      ].map(humanDuration),
      ["5s", "119s", "3m20s", "10m", "3h5m", "9h", "2d2h", "30d", "2y"],
    );
  });
});
