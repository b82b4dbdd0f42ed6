/**
 * Faults end to end: random CRI call sequences (run, stop and remove pods and containers, exec) with berthd
 * killed by SIGKILL at a random point of each, over many cycles. After each restart every container berthd
 * lists must have its true state (RUNNING exactly when its init process lives, per the pidfile runc wrote),
 * and once everything is removed nothing of this daemon is left: mounts under its directory, netns pins,
 * veths on its bridge, cgroups under its pods' cgroup parent, conmon or container processes, IP reservations
 * in its host-local data directory. Every check is scoped to this daemon's own directory, bridge and cgroup
 * parent (other tests may run beside it). Seeded: BERTH_FAULT_SEED=<seed> replays a run.
 */
import assert from "node:assert/strict";
import { mkdtemp, readdir, readFile, rm, rmdir, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { after, before, describe, test } from "node:test";
import { ContainerState, NamespaceMode } from "../../src/api/gen/runtime/v1/api_pb.js";
import { isPinnedNamespace, run } from "../../src/sys/index.js";
import { isRoot, removeAllPods, removeTestDir, startBerthd, type TestDaemon } from "../support/berthd.js";
import { createRng, type Rng } from "../support/fuzz.js";
import { eventually, type Pod, type PodEnv, shell, sleep, startPodEnv } from "../support/pods.js";
import { skipUnlessCi } from "../support/skip.js";

const SEED = Number(process.env.BERTH_FAULT_SEED ?? Math.floor(Math.random() * 2 ** 31));
const CYCLES = 15;
const BRIDGE = "bte2e-ft";
/** A cgroup parent of this file's own, so only this daemon's pods count. */
const CGROUP_PARENT = "/berth-e2e-faults";

describe("faults: berthd killed at random points of random CRI sequences", {
  skip: skipUnlessCi(isRoot() ? false : "needs root (runc, conmon, CNI, mounts)"),
  timeout: 240_000,
}, () => {
  let env: PodEnv;
  const pods: Pod[] = [];
  const containers: string[] = [];

  before(async () => {
    env = await startPodEnv({ bridge: BRIDGE, subnet: "10.231.62.0/24", images: ["berth-test/busybox"] });
  });
  after(async () => {
    await env?.close();
    for (const subsystem of await readdir("/sys/fs/cgroup").catch(() => [] as string[]))
      await rmdir(join("/sys/fs/cgroup", subsystem, CGROUP_PARENT)).catch(() => {});
  });

  /** One random CRI step; failures are expected (berthd may die under it, or the target is gone). */
  const step = async (rng: Rng, cycle: number, k: number): Promise<void> => {
    const c = env.d.client.runtime;
    const pod = pods.length > 0 ? rng.pick(pods) : undefined;
    const ctr = containers.length > 0 ? rng.pick(containers) : undefined;
    switch (pod === undefined ? 0 : rng.int(7)) {
      case 0: {
        const p = await env.runPod(`p${cycle}-${k}`, { linux: { cgroupParent: CGROUP_PARENT } });
        pods.push(p);
        return;
      }
      case 1:
      case 2: {
        const script = rng.chance(0.7) ? "exec sleep 3600" : "sleep 0.3; exit 3";
        containers.push(await env.startContainer(pod as Pod, shell(env, `c${cycle}-${k}`, script)));
        return;
      }
      case 3:
        if (ctr) await c.stopContainer({ containerId: ctr, timeout: 1n });
        return;
      case 4:
        if (ctr) await c.removeContainer({ containerId: ctr });
        return;
      case 5:
        if (ctr) await c.execSync({ containerId: ctr, cmd: ["true"], timeout: 5n });
        return;
      default:
        await c.stopPodSandbox({ podSandboxId: (pod as Pod).id });
        if (rng.chance(0.5)) await c.removePodSandbox({ podSandboxId: (pod as Pod).id });
    }
  };

  test(`${CYCLES} cycles of random calls cut by SIGKILL: every listed container has its true state`, {
    timeout: 200_000,
  }, async (t) => {
    t.diagnostic(`seed ${SEED} (replay with BERTH_FAULT_SEED=${SEED})`);
    const rng = createRng(SEED);
    for (let cycle = 0; cycle < CYCLES; cycle++) {
      const steps = Array.from({ length: 2 + rng.int(5) }, (_, k) => k);
      // Run the steps one after another in the background, and kill berthd somewhere in the middle.
      const sequence = (async () => {
        for (const k of steps) await step(rng, cycle, k).catch(() => {});
      })();
      await sleep(rng.int(1500));
      await env.restart({ kill: true });
      await sequence;
      await checkTrueStates(`cycle ${cycle} (seed ${SEED})`);
      // Forget what berthd no longer lists, so later steps pick live targets more often.
      const listedPods = new Set((await env.d.client.runtime.listPodSandbox({})).items.map((p) => p.id));
      pods.splice(0, pods.length, ...pods.filter((p) => listedPods.has(p.id)));
      const listed = new Set((await env.d.client.runtime.listContainers({})).containers.map((x) => x.id));
      containers.splice(0, containers.length, ...containers.filter((id) => listed.has(id)));
    }
  });

  test("once everything is removed, nothing of this daemon is left", async () => {
    await removeAllPods(env.d.client);
    assert.deepEqual((await env.d.client.runtime.listPodSandbox({})).items, []);
    assert.deepEqual((await env.d.client.runtime.listContainers({})).containers, []);
    let left: Record<string, string[]> = {};
    await eventually(
      "no leftovers",
      async () => {
        left = await leftovers();
        return Object.values(left).every((v) => v.length === 0);
      },
      10_000,
    ).catch(() => {});
    assert.deepEqual(Object.fromEntries(Object.entries(left).filter(([, v]) => v.length > 0)), {}, `seed ${SEED}`);
  });

  /** RUNNING exactly when the container's init process lives (pidfile written by runc, same cgroup parent). */
  async function checkTrueStates(when: string): Promise<void> {
    for (const c of (await env.d.client.runtime.listContainers({})).containers) {
      const alive = await initAlive(c.id);
      if (c.state === ContainerState.CONTAINER_RUNNING)
        assert.ok(alive, `${when}: ${c.id} is listed RUNNING but its process is gone`);
      if (c.state === ContainerState.CONTAINER_EXITED)
        assert.ok(!alive, `${when}: ${c.id} is listed EXITED but its process runs`);
    }
  }

  async function initAlive(id: string): Promise<boolean> {
    const pid = Number(
      await readFile(join(env.d.state, "runtime", "containers", id, "pidfile"), "utf8").catch(() => ""),
    );
    if (!Number.isInteger(pid) || pid <= 0) return false;
    const cgroup = await readFile(`/proc/${pid}/cgroup`, "utf8").catch(() => "");
    const stat = await readFile(`/proc/${pid}/stat`, "utf8").catch(() => "");
    // A zombie is dead for this purpose; a reused pid outside our cgroup parent is not ours.
    return cgroup.includes(`${CGROUP_PARENT}/`) && !/\) Z /.test(stat);
  }

  /** What this daemon could leave behind, each as a list so a failure names it. */
  async function leftovers(): Promise<Record<string, string[]>> {
    const ls = (dir: string) => readdir(dir).catch(() => [] as string[]);
    const mounts = (await readFile("/proc/self/mountinfo", "utf8"))
      .split("\n")
      .map((l) => l.split(" ")[4] ?? "")
      .filter((mp) => mp.startsWith(`${env.d.state}/`) || mp.startsWith(`${env.d.root}/`))
      // berthd's own private bind mounts of its namespace directories stay while it runs.
      .filter((mp) => mp !== join(env.d.state, "sandboxes") && mp !== join(env.d.state, "netns"));
    const processes: string[] = [];
    for (const pid of (await ls("/proc")).filter((p) => /^\d+$/.test(p))) {
      const argv = (await readFile(`/proc/${pid}/cmdline`, "utf8").catch(() => "")).split("\0");
      const cgroup = await readFile(`/proc/${pid}/cgroup`, "utf8").catch(() => "");
      const conmon = basename(argv[0] ?? "") === "conmon" && argv.some((a) => a.includes(env.dir));
      if (conmon || cgroup.includes(`${CGROUP_PARENT}/`)) processes.push(`${pid} ${argv.join(" ").slice(0, 100)}`);
    }
    const cgroups: string[] = [];
    for (const subsystem of await ls("/sys/fs/cgroup")) {
      for (const e of await readdir(join("/sys/fs/cgroup", subsystem, CGROUP_PARENT), { withFileTypes: true }).catch(
        () => [],
      ))
        if (e.isDirectory()) cgroups.push(join(subsystem, CGROUP_PARENT, e.name));
    }
    const veths = (
      await run("ip", ["-o", "link", "show", "master", BRIDGE], { name: "ip" }).catch(() => ({ stdout: "" }))
    ).stdout
      .split("\n")
      .filter(Boolean);
    return {
      mounts,
      processes,
      cgroups,
      veths,
      netns: await ls(join(env.d.state, "netns")),
      sandboxDirs: await ls(join(env.d.state, "sandboxes")),
      bundles: await ls(join(env.d.state, "runtime", "containers")),
      rootfsDirs: await ls(join(env.d.state, "rootfs")),
      ipReservations: (await ls(join(env.dir, "ipam", BRIDGE))).filter((f) => /^\d/.test(f)),
    };
  }
});

describe("a RunPodSandbox killed while it pins the pod's namespaces", {
  skip: skipUnlessCi(isRoot() ? false : "needs root (mounts, namespaces)"),
  timeout: 60_000,
}, () => {
  test("is undone at the next start-up: berthd starts, no sandbox is listed, no pin or directory is left", async () => {
    // An unshare that pins and then lingers while a flag file exists: berthd is killed in that window,
    // after the namespaces are pinned and before RunPodSandbox returns.
    const bin = await mkdtemp(join(tmpdir(), "berth-faults-bin-"));
    const flag = join(bin, "slow");
    await writeFile(
      join(bin, "unshare"),
      `#!/bin/sh\n/usr/bin/unshare "$@"; rc=$?\n[ -e ${flag} ] && sleep 3\nexit $rc\n`,
      {
        mode: 0o755,
      },
    );
    await writeFile(flag, "");
    const path = process.env.PATH;
    process.env.PATH = `${bin}:${path}`;
    let d: TestDaemon | undefined;
    let dir: string | undefined;
    try {
      d = await startBerthd();
      dir = d.dir;
      const sandboxes = join(d.state, "sandboxes");
      const attempt = d.client.runtime
        .runPodSandbox({
          config: {
            metadata: { name: "pinned", namespace: "e2e", uid: "pinned", attempt: 0 },
            linux: { securityContext: { namespaceOptions: { network: NamespaceMode.NODE } } },
          },
        })
        .catch(() => undefined);
      const ipc = await eventually("the ipc namespace pinned", async () => {
        for (const id of await readdir(sandboxes).catch(() => [] as string[])) {
          const p = join(sandboxes, id, "ns", "ipc");
          if (await isPinnedNamespace(p)) return p;
        }
        return undefined;
      });
      await d.stop("SIGKILL");
      await attempt;
      await rm(flag);
      await sleep(3_500); // the lingering unshare is gone
      d = await startBerthd({ dir });
      assert.deepEqual((await d.client.runtime.listPodSandbox({})).items, []);
      assert.equal(await isPinnedNamespace(ipc), false, "the ipc pin was undone");
      assert.deepEqual(await readdir(sandboxes), [], "the sandbox directory is gone");
    } finally {
      process.env.PATH = path;
      await d?.stop("SIGTERM");
      if (dir) await removeTestDir(dir);
      await rm(bin, { recursive: true, force: true });
    }
  });
});
