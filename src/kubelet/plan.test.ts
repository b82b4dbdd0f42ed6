import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { create } from "@bufbuild/protobuf";
import { ContainerState, ContainerStatusSchema } from "../api/gen/runtime/v1/api_pb.js";
import { parseManifest } from "./manifest.js";
import {
  type BackoffView,
  computePodActions,
  newExits,
  type PlanInput,
  restartKey,
  type TrackedContainer,
} from "./plan.js";
import type { Pod } from "./types.js";

const NOW = 1_700_000_000_000;
const { RUNNING, EXITED, CREATED } = {
  RUNNING: ContainerState.CONTAINER_RUNNING,
  EXITED: ContainerState.CONTAINER_EXITED,
  CREATED: ContainerState.CONTAINER_CREATED,
};

function podOf(spec: string): Pod {
  const text = `apiVersion: v1\nkind: Pod\nmetadata: { name: p }\nspec:\n${spec}`;
  const pod = parseManifest(text, { path: "/p.yaml" }).pods[0];
  assert.ok(pod, "the manifest parses");
  return pod;
}

const INITS = podOf(`  initContainers: [{ name: i1, image: busybox }, { name: i2, image: busybox }]
  containers: [{ name: web, image: busybox }, { name: side, image: busybox }]
  terminationGracePeriodSeconds: 7
`);
const ONE = (policy: string) =>
  podOf(
    `  restartPolicy: ${policy}\n  containers: [{ name: app, image: busybox, livenessProbe: { exec: { command: ["true"] } } }]\n`,
  );

const ctr = (
  name: string,
  state: ContainerState,
  o: { attempt?: number; exitCode?: number; finishedAt?: number } = {},
) =>
  create(ContainerStatusSchema, {
    id: `${name}-${o.attempt ?? 0}`,
    metadata: { name, attempt: o.attempt ?? 0 },
    state,
    exitCode: o.exitCode ?? 0,
    finishedAt: o.finishedAt !== undefined ? BigInt(o.finishedAt) * 1_000_000n : 0n,
  });

/** A back-off that holds `held` keys for the given ms (what the real one answers is tested in backoff.test.ts). */
function backoffOf(held: Record<string, number> = {}): BackoffView & { asked: [string, number][] } {
  const asked: [string, number][] = [];
  return {
    asked,
    remaining: (key, finishedAt) => {
      asked.push([key, finishedAt]);
      return held[key] ?? 0;
    },
    current: (key) => (held[key] !== undefined ? 10_000 : 0),
  };
}

function input(pod: Pod, o: Partial<PlanInput> = {}): PlanInput {
  return {
    pod,
    sandbox: { ready: true, attempt: 0 },
    containers: [],
    initialized: false,
    tracked: new Map(),
    now: NOW,
    backoff: backoffOf(),
    ...o,
  };
}

const tracked = (entries: Record<string, Partial<TrackedContainer>>) =>
  new Map(Object.entries(entries).map(([k, v]) => [k, { id: "", attempt: -1, ...v }]));

/** The plan's container actions in a short form: `start web#0`, `adopt i1`, `kill app`, `backoff app 300`. */
function steps(pod: Pod, o: Partial<PlanInput> = {}): string[] {
  return computePodActions(input(pod, o)).containers.map((a) => {
    switch (a.kind) {
      case "start":
        return `start ${a.spec.name}#${a.attempt}${a.restartKey ? " restart" : ""}${a.removeId ? ` remove ${a.removeId}` : ""}`;
      case "adopt":
        return `adopt ${a.spec.name}`;
      case "kill":
        return `kill ${a.id} ${a.gracePeriodSeconds}s`;
      case "crashLoopBackOff":
        return `backoff ${a.spec.name} ${a.remainingMs}`;
      case "retryLater":
        return `retry ${a.spec.name} ${a.remainingMs}`;
    }
    return "";
  });
}

describe("computePodActions", () => {
  const cases: { name: string; pod: Pod; in: Partial<PlanInput>; steps: string[]; initialized?: boolean }[] = [
    {
      name: "first start: no sandbox creates attempt 0 and starts the first init container only",
      pod: INITS,
      in: { sandbox: undefined },
      steps: ["start i1#0"],
      initialized: false,
    },
    {
      name: "first start without init containers starts every container",
      pod: ONE("Always"),
      in: { sandbox: undefined },
      steps: ["start app#0"],
      initialized: true,
    },
    {
      name: "init containers run in order: the next starts once the one before exited 0",
      pod: INITS,
      in: { containers: [ctr("i1", EXITED)] },
      steps: ["start i2#0"],
      initialized: false,
    },
    {
      name: "a running init container is adopted and nothing after it starts",
      pod: INITS,
      in: { containers: [ctr("i1", RUNNING)] },
      steps: ["adopt i1"],
    },
    {
      name: "a running init container already tracked needs nothing",
      pod: INITS,
      in: { containers: [ctr("i1", RUNNING)], tracked: tracked({ i1: { id: "i1-0", attempt: 0 } }) },
      steps: [],
    },
    {
      name: "every init container exited 0: the containers start in the same pass",
      pod: INITS,
      in: { containers: [ctr("i1", EXITED), ctr("i2", EXITED)] },
      steps: ["start web#0", "start side#0"],
      initialized: true,
    },
    {
      name: "a failed init container restarts (OnFailure) as the next attempt",
      pod: podOf(
        "  restartPolicy: OnFailure\n  initContainers: [{ name: i1, image: busybox }]\n  containers: [{ name: web, image: busybox }]\n",
      ),
      in: { containers: [ctr("i1", EXITED, { exitCode: 3, finishedAt: NOW - 1000 })] },
      steps: ["start i1#1 restart"],
      initialized: false,
    },
    {
      name: "a regular container that exists means the pod was initialized (adopted after a runner restart)",
      pod: INITS,
      in: { containers: [ctr("web", RUNNING), ctr("side", RUNNING)] },
      steps: ["adopt web", "adopt side"],
      initialized: true,
    },
    {
      name: "Always restarts a container that exited 0",
      pod: ONE("Always"),
      in: { initialized: true, containers: [ctr("app", EXITED, { finishedAt: NOW - 5 })] },
      steps: ["start app#1 restart"],
    },
    {
      name: "OnFailure does not restart a container that exited 0",
      pod: ONE("OnFailure"),
      in: { initialized: true, containers: [ctr("app", EXITED)] },
      steps: [],
    },
    {
      name: "OnFailure restarts a container that exited 1",
      pod: ONE("OnFailure"),
      in: { initialized: true, containers: [ctr("app", EXITED, { exitCode: 1 })] },
      steps: ["start app#1 restart"],
    },
    {
      name: "Never restarts nothing, not even a failure",
      pod: ONE("Never"),
      in: { initialized: true, containers: [ctr("app", EXITED, { exitCode: 1 })] },
      steps: [],
    },
    {
      name: "a container created but never started is replaced, whatever the policy",
      pod: ONE("Never"),
      in: { initialized: true, containers: [ctr("app", CREATED, { attempt: 2 })] },
      steps: ["start app#3 restart remove app-2"],
    },
    {
      name: "in crash-loop back-off the restart waits what is left of it",
      pod: ONE("Always"),
      in: {
        initialized: true,
        containers: [ctr("app", EXITED, { attempt: 3, exitCode: 1, finishedAt: NOW - 100 })],
        backoff: backoffOf({ [restartKey(ONE("Always"), "app")]: 300 }),
      },
      steps: ["backoff app 300"],
    },
    {
      name: "a pending pull or create retry waits, and does not use up a crash-loop restart",
      pod: ONE("Always"),
      in: {
        initialized: true,
        containers: [ctr("app", EXITED, { exitCode: 1 })],
        tracked: tracked({ app: { attempt: 0, retryAt: NOW + 2500 } }),
      },
      steps: ["retry app 2500"],
    },
    {
      name: "a retry time that has passed starts the attempt",
      pod: ONE("Always"),
      in: { initialized: true, tracked: tracked({ app: { attempt: 4, retryAt: NOW - 1 } }) },
      steps: ["start app#5"],
    },
    {
      name: "a liveness failure on the running attempt kills it, with the probe's grace",
      pod: ONE("Always"),
      in: {
        initialized: true,
        containers: [ctr("app", RUNNING, { attempt: 1 })],
        tracked: tracked({
          app: {
            id: "app-1",
            attempt: 1,
            kill: { id: "app-1", message: "failed liveness probe", gracePeriodSeconds: 4 },
          },
        }),
      },
      steps: ["kill app-1 4s"],
    },
    {
      name: "a kill asked for an earlier attempt does not touch the running one",
      pod: ONE("Always"),
      in: {
        initialized: true,
        containers: [ctr("app", RUNNING, { attempt: 2 })],
        tracked: tracked({
          app: {
            id: "app-2",
            attempt: 2,
            kill: { id: "app-1", message: "failed liveness probe", gracePeriodSeconds: 4 },
          },
        }),
      },
      steps: [],
    },
    {
      name: "a running container the worker does not track is adopted",
      pod: ONE("Always"),
      in: { initialized: true, containers: [ctr("app", RUNNING, { attempt: 6 })] },
      steps: ["adopt app"],
    },
    {
      name: "the next attempt follows both CRI's latest attempt and the worker's own count",
      pod: ONE("Always"),
      in: {
        initialized: true,
        containers: [ctr("app", EXITED, { attempt: 1 }), ctr("app", EXITED, { attempt: 0 })],
        tracked: tracked({ app: { attempt: 4 } }),
      },
      steps: ["start app#5 restart"],
    },
  ];
  for (const c of cases) {
    test(c.name, () => {
      assert.deepEqual(steps(c.pod, c.in), c.steps);
      if (c.initialized !== undefined) assert.equal(computePodActions(input(c.pod, c.in)).initialized, c.initialized);
    });
  }

  test("a failed init container under restartPolicy Never fails the pod and starts nothing", () => {
    const pod = podOf(
      "  restartPolicy: Never\n  initContainers: [{ name: i1, image: busybox }]\n  containers: [{ name: web, image: busybox }]\n",
    );
    const plan = computePodActions(input(pod, { containers: [ctr("i1", EXITED, { exitCode: 4 })] }));
    assert.deepEqual([plan.initFailed, plan.initialized, plan.containers], [true, false, []]);
  });

  test("a sandbox that is not ready is replaced by the next attempt and the pod starts over from its init containers", () => {
    const plan = computePodActions(
      input(INITS, {
        sandbox: { ready: false, attempt: 2 },
        initialized: true,
        containers: [ctr("i1", EXITED), ctr("i2", EXITED), ctr("web", RUNNING), ctr("side", RUNNING)],
        tracked: tracked({ i1: { attempt: 0 }, web: { id: "web-0", attempt: 0 } }),
      }),
    );
    assert.deepEqual(plan.sandbox, { kind: "recreate", attempt: 3 });
    assert.equal(plan.initialized, false);
    assert.deepEqual(
      plan.containers.map((a) => (a.kind === "start" ? `${a.spec.name}#${a.attempt}` : a.kind)),
      ["i1#1"],
      "restart counts continue",
    );
  });

  test("crash-loop back-off is asked about the container's key and the time it finished", () => {
    const backoff = backoffOf();
    const pod = ONE("Always");
    computePodActions(
      input(pod, { initialized: true, containers: [ctr("app", EXITED, { finishedAt: NOW - 42 })], backoff }),
    );
    assert.deepEqual(backoff.asked, [[`${pod.metadata.uid}/app`, NOW - 42]]);
  });

  test("a pod being deleted starts nothing and is killed within its grace period, or the deletion's", () => {
    const running = { initialized: true, containers: [ctr("web", RUNNING)] };
    const plan = computePodActions(input(INITS, { ...running, deleting: {} }));
    assert.deepEqual([plan.containers, plan.killPod], [[], { gracePeriodSeconds: 7 }]);
    const forced = computePodActions(input(INITS, { ...running, deleting: { gracePeriodSeconds: 0 } }));
    assert.deepEqual(forced.killPod, { gracePeriodSeconds: 0 });
    assert.equal(computePodActions(input(INITS, running)).killPod, undefined);
  });

  test("newExits reports each container's latest exit once", () => {
    const containers = [ctr("a", EXITED, { attempt: 1, exitCode: 2 }), ctr("a", EXITED), ctr("b", RUNNING)];
    assert.deepEqual(newExits(containers, new Map()), [{ name: "a", id: "a-1", exitCode: 2 }]);
    assert.deepEqual(newExits(containers, tracked({ a: { exitNoted: "a-1" } })), []);
  });
});
