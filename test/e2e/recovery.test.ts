import assert from "node:assert/strict";
import { readdir, readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { ContainerState, PodSandboxState } from "../../src/api/gen/runtime/v1/api_pb.js";
import { isRoot } from "../support/berthd.js";
import { eventually, logContent, type Pod, type PodEnv, shell, sleep, startPodEnv } from "../support/pods.js";
import { skipUnlessCi } from "../support/skip.js";

const TICKER = "i=0; while true; do i=$((i+1)); echo tick $i; usleep 100000; done";
const nowNs = () => BigInt(Date.now()) * 1_000_000n;
const size = (path: string) => stat(path).then((s) => s.size);
const lastTick = async (path: string) =>
  Number(/tick (\d+)\n$/.exec(logContent(await readFile(path, "utf8")))?.[1] ?? 0);

describe("berthd killed with SIGKILL while pods run", {
  skip: skipUnlessCi(isRoot() ? false : "needs root (runc, conmon, CNI, mounts)"),
  timeout: 120_000,
}, () => {
  let env: PodEnv;
  let pod: Pod;
  let ip: string;
  let ticker: string;
  let short: string;
  let killedAt: bigint;
  let restartedAt: bigint;
  let tickerLog: string;
  let sizeAtKill: number;
  let sizeAtRestart: number;

  before(async () => {
    env = await startPodEnv({ bridge: "bte2e-rc", subnet: "10.231.13.0/24", images: ["berth-test/busybox"] });
    pod = await env.runPod("survivor");
    ip = (await env.d.client.runtime.podSandboxStatus({ podSandboxId: pod.id })).status?.network?.ip ?? "";
    ticker = await env.startContainer(pod, shell(env, "ticker", TICKER));
    tickerLog = join(pod.logDir, "ticker.log");
    await eventually("ticks", async () => (await lastTick(tickerLog).catch(() => 0)) >= 2);
    short = await env.startContainer(pod, shell(env, "short", "sleep 2; exit 42"));
    await env.restart({
      kill: true,
      beforeStart: async () => {
        killedAt = nowNs();
        sizeAtKill = await size(tickerLog);
        // Long enough for `short` to exit and for the ticker to write while nobody watches.
        await sleep(3_000);
        sizeAtRestart = await size(tickerLog);
        restartedAt = nowNs();
      },
    });
  });
  after(async () => {
    await env?.close();
  });

  test("a running container kept logging while berthd was down", () => {
    assert.ok(
      sizeAtRestart > sizeAtKill,
      `log grew from ${sizeAtKill} to ${sizeAtRestart} bytes while berthd was down`,
    );
  });

  test("after the restart the running container is listed running and keeps logging", async () => {
    const s = (await env.d.client.runtime.containerStatus({ containerId: ticker })).status;
    assert.equal(s?.state, ContainerState.CONTAINER_RUNNING);
    const running = (
      await env.d.client.runtime.listContainers({ filter: { state: { state: ContainerState.CONTAINER_RUNNING } } })
    ).containers;
    assert.deepEqual(
      running.map((c) => c.id),
      [ticker],
    );
    const before = await lastTick(tickerLog);
    await eventually("more ticks after the restart", async () => (await lastTick(tickerLog)) > before + 2);
  });

  test("a container that exited while berthd was down reports its real exit code and finish time", async () => {
    const s = (await env.d.client.runtime.containerStatus({ containerId: short })).status;
    assert.equal(s?.state, ContainerState.CONTAINER_EXITED);
    assert.equal(s?.exitCode, 42);
    assert.equal(s?.reason, "Error");
    const finished = s?.finishedAt ?? 0n;
    assert.ok(
      finished > killedAt && finished < restartedAt,
      `finished_at ${finished} lies between the kill ${killedAt} and the restart ${restartedAt}`,
    );
  });

  test("the sandbox is listed ready with the same IP", async () => {
    const s = (await env.d.client.runtime.podSandboxStatus({ podSandboxId: pod.id })).status;
    assert.equal(s?.state, PodSandboxState.SANDBOX_READY);
    assert.equal(s?.network?.ip, ip);
    assert.equal((await env.d.client.runtime.listPodSandbox({})).items.length, 1);
  });

  test("ExecSync, ReopenContainerLog and StopContainer work on the recovered container", async () => {
    const r = await env.d.client.runtime.execSync({ containerId: ticker, cmd: ["hostname"] });
    assert.equal(new TextDecoder().decode(r.stdout), "survivor\n");
    await env.d.client.runtime.reopenContainerLog({ containerId: ticker });
    await env.d.client.runtime.stopContainer({ containerId: ticker, timeout: 1n });
    const s = (await env.d.client.runtime.containerStatus({ containerId: ticker })).status;
    assert.equal(s?.state, ContainerState.CONTAINER_EXITED);
    assert.equal(s?.exitCode, 137, "sh as pid 1 ignores SIGTERM, so the stop escalated to SIGKILL");
  });

  test("berthd stopped with SIGTERM leaves containers running too", async () => {
    const c = await env.startContainer(pod, shell(env, "calm", TICKER));
    await env.restart({ kill: false });
    assert.equal(
      (await env.d.client.runtime.containerStatus({ containerId: c })).status?.state,
      ContainerState.CONTAINER_RUNNING,
    );
    const log = join(pod.logDir, "calm.log");
    const before = await lastTick(log);
    await eventually("more ticks after a graceful restart", async () => (await lastTick(log)) > before + 2);
  });

  test("a CreateContainer cut short by SIGKILL is completed or undone on restart, never half-registered", async () => {
    const attempt = env.d.client.runtime
      .createContainer({
        podSandboxId: pod.id,
        sandboxConfig: pod.config,
        config: shell(env, "interrupted", "exec sleep 3600"),
      })
      .catch(() => undefined);
    await sleep(60);
    await env.restart({ kill: true });
    await attempt;
    const listed = (await env.d.client.runtime.listContainers({ filter: { podSandboxId: pod.id } })).containers;
    const interrupted = listed.filter((c) => c.metadata?.name === "interrupted");
    assert.ok(interrupted.length <= 1);
    for (const c of interrupted) {
      // Completed: a created container that starts and works.
      assert.equal(c.state, ContainerState.CONTAINER_CREATED);
      await env.d.client.runtime.startContainer({ containerId: c.id });
      assert.equal(
        (await env.d.client.runtime.containerStatus({ containerId: c.id })).status?.state,
        ContainerState.CONTAINER_RUNNING,
      );
    }
    // Runtime state and root filesystems exist for exactly the listed containers.
    const ids = listed.map((c) => c.id).sort();
    const runtimeDirs = (await readdir(join(env.d.state, "runtime", "containers"))).sort();
    const rootfsDirs = (await readdir(join(env.d.state, "rootfs")).catch(() => [] as string[])).sort();
    assert.deepEqual(runtimeDirs, ids);
    assert.deepEqual(rootfsDirs, ids);
    // The name is free again (when undone) or taken by the completed container.
    if (interrupted.length === 0) {
      const again = await env.startContainer(pod, shell(env, "interrupted", "exec sleep 3600"));
      assert.ok(again);
    }
  });
});
