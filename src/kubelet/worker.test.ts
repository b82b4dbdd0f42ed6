import assert from "node:assert/strict";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { setTimeout as delay } from "node:timers/promises";
import { FakeCri } from "../../test/support/fake-cri.js";
import { ContainerState } from "../api/gen/runtime/v1/api_pb.js";
import { ManualClock } from "./clock.js";
import type { HostInfo } from "./convert.js";
import { createLayout, type Layout } from "./layout.js";
import { parseManifest } from "./manifest.js";
import type { PodView } from "./pod-view.js";
import type { Pod } from "./types.js";
import { PodWorker, type PodWorkerHooks } from "./worker.js";

const HOST: HostInfo = { nodeName: "node1", hostIP: "192.0.2.1", dns: { servers: [], searches: [], options: [] } };
const IMAGE = "registry.test/app:1";

let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), "berth-worker-"));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

let podSeq = 0;
function podOf(spec: string): Pod {
  const text = `apiVersion: v1\nkind: Pod\nmetadata: { name: p${++podSeq} }\nspec:\n${spec}`;
  const pod = parseManifest(text, { path: join(dir, `p${podSeq}.yaml`) }).pods[0];
  assert.ok(pod, "the manifest parses");
  return pod;
}

interface Rig {
  clock: ManualClock;
  cri: FakeCri;
  layout: Layout;
  worker: PodWorker;
  started: { name: string; id: string; adopted: boolean }[];
  exited: { name: string; exitCode: number }[];
  /** Moves fake time in sync-period steps until the view satisfies `predicate`. */
  until(what: string, predicate: (v: PodView) => boolean): Promise<PodView>;
}

function rig(pod: Pod, o: { cri?: FakeCri; clock?: ManualClock } = {}): Rig {
  const clock = o.clock ?? new ManualClock();
  const cri = o.cri ?? new FakeCri({ now: () => clock.now() });
  const layout = createLayout({ stateDir: join(dir, "state"), logRoot: join(dir, "logs") });
  const started: Rig["started"] = [];
  const exited: Rig["exited"] = [];
  const hooks: PodWorkerHooks = {
    onContainerStarted: (_p, c) => started.push({ name: c.name, id: c.id, adopted: c.adopted }),
    onContainerExited: (_p, c) => exited.push({ name: c.name, exitCode: c.exitCode }),
    onError: (_p, err) => assert.fail(`sync failed: ${(err as Error).stack}`),
  };
  const worker = new PodWorker(pod, {
    client: cri.client,
    layout,
    host: HOST,
    owner: "run",
    clock,
    backoff: { initialMs: 1000, maxMs: 4000 },
    syncPeriodMs: 100,
    hooks,
  });
  const until = async (what: string, predicate: (v: PodView) => boolean) => {
    for (let i = 0; i < 400; i++) {
      const v = worker.view;
      if (v && predicate(v)) return v;
      await clock.advance(50);
      // The pass does real file I/O (events, status.json): let it finish.
      await delay(2);
    }
    throw new Error(`never ${what}; last status ${worker.view?.status}; calls: ${cri.calls.slice(-12).join(", ")}`);
  };
  return { clock, cri, layout, worker, started, exited, until };
}

const ns2ms = (ns: bigint) => Number(ns / 1_000_000n);
const app = (v: PodView, name = "app") => [...v.initContainers, ...v.containers].find((c) => c.name === name);

describe("PodWorker against a fake CRI and a manual clock", { timeout: 60_000 }, () => {
  test("the first pass creates the sandbox, pulls the missing image, creates and starts the container", async () => {
    const pod = podOf(`  containers: [{ name: app, image: ${IMAGE}, imagePullPolicy: IfNotPresent }]\n`);
    const r = rig(pod);
    r.worker.start();
    const v = await r.until("running", (x) => app(x)?.state.kind === "running");
    assert.equal(v.phase, "Running");
    assert.deepEqual(
      r.cri.calls.filter((c) => /^(RunPodSandbox|PullImage|CreateContainer|StartContainer)/.test(c)),
      [
        "RunPodSandbox sb1 attempt 0",
        `PullImage ${IMAGE}`,
        "CreateContainer app#0",
        `StartContainer ${v.containers[0]?.id}`,
      ],
    );
    assert.deepEqual(r.started, [{ name: "app", id: v.containers[0]?.id, adopted: false }]);
    const reasons = r.worker.events.list().map((e) => e.reason);
    assert.deepEqual(reasons, ["Pulling", "Pulled", "Created", "Started"]);
    await r.worker.detach();
    // detach() waits for the status writes.
    const status = JSON.parse(await readFile(r.layout.statusFile(pod.metadata.uid), "utf8"));
    assert.deepEqual(status.containers.app, { id: v.containers[0]?.id, ready: true, started: true });
    assert.equal(r.cri.sandboxes.size, 1, "detach leaves the pod running");
  });

  test("a crashing container restarts at once, then after a doubling back-off, showing CrashLoopBackOff", async () => {
    const pod = podOf(`  containers: [{ name: app, image: ${IMAGE} }]\n`);
    const r = rig(pod);
    r.cri.images.add(IMAGE);
    r.worker.start();
    let sawBackOff = false;
    for (let attempt = 0; attempt < 4; attempt++) {
      await r.until(`attempt ${attempt} running`, (x) => {
        if (x.status === "CrashLoopBackOff") sawBackOff = true;
        return app(x)?.restartCount === attempt && app(x)?.state.kind === "running";
      });
      const current = r.cri.named("app").at(-1);
      assert.ok(current);
      r.cri.exit(current.id, 1);
    }
    // Attempts as CRI saw them: each start measured from the previous attempt's finish.
    const all = [...r.cri.containers.values()].filter((c) => c.metadata?.name === "app");
    assert.ok(all.length >= 2, "the latest two attempts are kept");
    const waits = r.worker.events.list().filter((e) => e.reason === "BackOff");
    assert.ok(waits.length >= 2, "a BackOff event per back-off");
    assert.ok(sawBackOff, "the pod showed CrashLoopBackOff while waiting");
    const starts = r.started.map((s) => s.id);
    assert.equal(starts.length, 4);
    assert.deepEqual(r.exited.map((e) => e.exitCode).slice(0, 3), [1, 1, 1]);
    await r.worker.detach();
  });

  test("restart timing follows the back-off: immediate, then 1 s, then 2 s (fake time)", async () => {
    const pod = podOf(`  containers: [{ name: app, image: ${IMAGE} }]\n`);
    const r = rig(pod);
    r.cri.images.add(IMAGE);
    r.worker.start();
    const gaps: number[] = [];
    for (let attempt = 0; attempt < 3; attempt++) {
      await r.until(`attempt ${attempt}`, (x) => app(x)?.restartCount === attempt && app(x)?.state.kind === "running");
      const current = r.cri.named("app").at(-1);
      assert.ok(current);
      r.cri.exit(current.id, 1);
      const finished = r.clock.now();
      await r.until(`attempt ${attempt + 1}`, (x) => app(x)?.restartCount === attempt + 1);
      const next = r.cri.named("app").at(-1);
      assert.ok(next?.startedAt);
      gaps.push(ns2ms(next.startedAt) - finished);
    }
    assert.ok((gaps[0] as number) < 1000, `the first restart is immediate: ${gaps}`);
    assert.ok((gaps[1] as number) >= 1000 && (gaps[1] as number) < 2000, `the second waits 1 s: ${gaps}`);
    assert.ok((gaps[2] as number) >= 2000 && (gaps[2] as number) < 3000, `the third waits 2 s: ${gaps}`);
    await r.worker.detach();
  });

  test("a failing pull is ErrImagePull, then ImagePullBackOff, retried once per back-off until it works", async () => {
    const pod = podOf(`  containers: [{ name: app, image: ${IMAGE} }]\n`);
    const r = rig(pod);
    r.cri.pullFailures.set(IMAGE, "manifest unknown");
    r.worker.start();
    const waiting = (reason: string) => (x: PodView) => {
      const s = app(x)?.state;
      return s?.kind === "waiting" && s.reason === reason;
    };
    await r.until("ErrImagePull", waiting("ErrImagePull"));
    await r.until("ImagePullBackOff", waiting("ImagePullBackOff"));
    const pulls = () => r.cri.calls.filter((c) => c.startsWith("PullImage")).length;
    assert.equal(pulls(), 1, "no pull while the back-off holds");
    r.cri.pullFailures.delete(IMAGE);
    await r.until("running", (x) => app(x)?.state.kind === "running");
    assert.equal(pulls(), 2);
    await r.worker.detach();
  });

  test("init containers run one at a time in order before the containers", async () => {
    const pod = podOf(
      `  initContainers: [{ name: i1, image: ${IMAGE} }, { name: i2, image: ${IMAGE} }]\n  containers: [{ name: app, image: ${IMAGE} }]\n`,
    );
    const r = rig(pod);
    r.cri.images.add(IMAGE);
    r.worker.start();
    await r.until("i1 running", (x) => app(x, "i1")?.state.kind === "running");
    assert.equal(r.cri.named("i2").length, 0, "i2 waits for i1");
    r.cri.exit(r.cri.named("i1")[0]?.id ?? "", 0);
    await r.until("i2 running", (x) => app(x, "i2")?.state.kind === "running");
    assert.equal(r.cri.named("app").length, 0, "app waits for i2");
    r.cri.exit(r.cri.named("i2")[0]?.id ?? "", 0);
    const v = await r.until("app running", (x) => app(x)?.state.kind === "running");
    assert.equal(v.conditions.initialized, true);
    assert.deepEqual(
      r.started.map((s) => s.name),
      ["i1", "i2", "app"],
    );
    await r.worker.detach();
  });

  test("a failed init container under restartPolicy Never fails the pod; nothing else starts", async () => {
    const pod = podOf(
      `  restartPolicy: Never\n  initContainers: [{ name: i1, image: ${IMAGE} }]\n  containers: [{ name: app, image: ${IMAGE} }]\n`,
    );
    const r = rig(pod);
    r.cri.images.add(IMAGE);
    r.worker.start();
    await r.until("i1 running", (x) => app(x, "i1")?.state.kind === "running");
    r.cri.exit(r.cri.named("i1")[0]?.id ?? "", 3);
    const v = await r.until("failed", (x) => x.phase === "Failed");
    await r.clock.advance(2000);
    assert.equal(r.cri.named("i1").length, 1, "no retry under Never");
    assert.equal(r.cri.named("app").length, 0);
    assert.equal(v.status, "Init:Error");
    await r.worker.detach();
  });

  test("a failing liveness probe kills the attempt with the probe's grace period and it restarts", async () => {
    const pod = podOf(
      `  terminationGracePeriodSeconds: 9\n  containers:\n  - name: app\n    image: ${IMAGE}\n    livenessProbe: { exec: { command: [check] }, periodSeconds: 1, failureThreshold: 2, terminationGracePeriodSeconds: 3 }\n`,
    );
    const r = rig(pod);
    r.cri.images.add(IMAGE);
    r.worker.start();
    const first = await r.until("running", (x) => app(x)?.state.kind === "running");
    const id = first.containers[0]?.id ?? "";
    r.cri.execExitCode = (cid) => (cid === id ? 1 : 0);
    await r.until("restarted", (x) => app(x)?.restartCount === 1 && app(x)?.state.kind === "running");
    assert.ok(r.cri.calls.includes(`StopContainer ${id} 3s`), r.cri.calls.join("\n"));
    const events = r.worker.events.list();
    assert.ok(events.some((e) => e.reason === "Unhealthy" && /Liveness probe failed/.test(e.message)));
    assert.ok(events.some((e) => e.reason === "Killing" && /failed liveness probe, will be restarted/.test(e.message)));
    await r.worker.detach();
  });

  test("a sandbox that dies is replaced by the next attempt: init containers rerun, restart counts continue", async () => {
    const pod = podOf(
      `  initContainers: [{ name: i1, image: ${IMAGE} }]\n  containers: [{ name: app, image: ${IMAGE} }]\n`,
    );
    const r = rig(pod);
    r.cri.images.add(IMAGE);
    r.worker.start();
    await r.until("i1 running", (x) => app(x, "i1")?.state.kind === "running");
    r.cri.exit(r.cri.named("i1")[0]?.id ?? "", 0);
    const v = await r.until("app running", (x) => app(x)?.state.kind === "running");
    r.cri.killSandbox(v.sandboxId);
    await r.until("new sandbox's i1", (x) => x.sandboxId !== v.sandboxId && app(x, "i1")?.state.kind === "running");
    r.cri.exit(r.cri.named("i1").at(-1)?.id ?? "", 0);
    const again = await r.until("app again", (x) => x.sandboxId !== v.sandboxId && app(x)?.state.kind === "running");
    assert.equal(again.attempt, 1);
    assert.equal(app(again, "i1")?.restartCount, 1);
    assert.equal(app(again)?.restartCount, 1);
    assert.ok(r.cri.calls.includes(`RemovePodSandbox ${v.sandboxId}`), "the dead sandbox is removed");
    assert.ok(r.worker.events.list().some((e) => e.reason === "SandboxChanged"));
    await r.worker.detach();
  });

  test("a new worker adopts the pod's ready sandbox and running containers instead of creating new ones", async () => {
    const pod = podOf(`  containers: [{ name: app, image: ${IMAGE} }]\n`);
    const r = rig(pod);
    r.cri.images.add(IMAGE);
    r.worker.start();
    const v = await r.until("running", (x) => app(x)?.state.kind === "running");
    await r.worker.detach();
    const again = rig(pod, { cri: r.cri, clock: r.clock });
    const before = r.cri.calls.length;
    again.worker.start();
    const w = await again.until("adopted", (x) => app(x)?.state.kind === "running");
    assert.equal(w.sandboxId, v.sandboxId);
    assert.deepEqual(again.started, [{ name: "app", id: v.containers[0]?.id, adopted: true }]);
    const made = r.cri.calls.slice(before).filter((c) => /^(RunPodSandbox|CreateContainer|StartContainer)/.test(c));
    assert.deepEqual(made, []);
    await again.worker.detach();
  });

  test("terminate stops the containers within the pod's grace period, or the one given, and removes the pod", async () => {
    for (const [given, expected] of [
      [undefined, 7],
      [0, 0],
    ] as const) {
      const pod = podOf(`  terminationGracePeriodSeconds: 7\n  containers: [{ name: app, image: ${IMAGE} }]\n`);
      const r = rig(pod);
      r.cri.images.add(IMAGE);
      r.worker.start();
      const v = await r.until("running", (x) => app(x)?.state.kind === "running");
      await r.worker.terminate(given === undefined ? {} : { gracePeriodSeconds: given });
      const id = v.containers[0]?.id ?? "";
      assert.ok(r.cri.calls.includes(`StopContainer ${id} ${expected}s`), r.cri.calls.join("\n"));
      assert.equal(r.cri.sandboxes.size, 0, "the sandbox is removed");
      assert.equal(
        r.cri.containers.size === 0 ||
          [...r.cri.containers.values()].every((c) => c.state !== ContainerState.CONTAINER_RUNNING),
        true,
      );
    }
  });
});
