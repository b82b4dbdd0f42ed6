import assert from "node:assert/strict";
import { readdir, readFile, readlink, rmdir } from "node:fs/promises";
import { basename, join } from "node:path";
import { after, before, describe, test } from "node:test";
import { ContainerState, NamespaceMode } from "../../src/api/gen/runtime/v1/api_pb.js";
import { isRoot } from "../support/berthd.js";
import { eventually, type Pod, type PodEnv, shell, startPodEnv } from "../support/pods.js";
import { sizeFromEnv, skipUnlessCi } from "../support/skip.js";

// The sizes are 50 concurrent pods (about 11 s on 2 cores) and a 100-pod leak cycle (about 30 s, run
// by hand with BERTH_E2E_LEAK_PODS=100); the suite cycles 20 to keep all end-to-end files within a few minutes.
// Overrides are for runs by hand: under CI=true they are refused (see sizeFromEnv).
const CONCURRENT = sizeFromEnv("BERTH_E2E_CONCURRENT_PODS", 50);
const CYCLED = sizeFromEnv("BERTH_E2E_LEAK_PODS", 20);
const CYCLE_PARALLELISM = 5;
/** A cgroup parent of this file's own, so other pods on the host do not count. */
const CGROUP_PARENT = "/berth-e2e-leaks";

describe("many pods", {
  skip: skipUnlessCi(isRoot() ? false : "needs root (runc, conmon, CNI, mounts)"),
  timeout: 240_000,
}, () => {
  let env: PodEnv;
  before(async () => {
    env = await startPodEnv({ bridge: "bte2e-lk", subnet: "10.231.15.0/24", images: ["berth-test/busybox"] });
  });
  after(async () => {
    await env?.close();
    // runc leaves the (now empty) parent behind, as it does for the kubelet's; this one is the test's own.
    for (const subsystem of await readdir("/sys/fs/cgroup").catch(() => [] as string[])) {
      await rmdir(join("/sys/fs/cgroup", subsystem, CGROUP_PARENT)).catch(() => {});
    }
  });

  /**
   * A sandbox with one running container; returns the pod and how long it took (ms). With `sharedPid` the pod
   * has a shared PID namespace, so an infra process (catatonit under conmon) as well.
   */
  const startPod = async (
    name: string,
    o: { sharedPid?: boolean } = {},
  ): Promise<{ pod: Pod; container: string; ms: number }> => {
    const t0 = performance.now();
    const ns = o.sharedPid ? { namespaceOptions: { pid: NamespaceMode.POD } } : {};
    const pod = await env.runPod(name, { linux: { cgroupParent: CGROUP_PARENT, securityContext: ns } });
    const container = await env.startContainer(
      pod,
      shell(env, "main", "exec sleep 3600", { linux: { securityContext: ns } }),
    );
    return { pod, container, ms: performance.now() - t0 };
  };

  test(`${CONCURRENT} pods (sandbox + container) created concurrently all succeed`, async (t) => {
    const t0 = performance.now();
    const results = await Promise.allSettled(Array.from({ length: CONCURRENT }, (_, i) => startPod(`conc-${i}`)));
    const total = performance.now() - t0;
    const failed = results.filter((r): r is PromiseRejectedResult => r.status === "rejected");
    const ok = results.filter((r) => r.status === "fulfilled").map((r) => r.value);
    try {
      assert.deepEqual(
        failed.map((f) => String(f.reason)),
        [],
      );
      const ms = ok.map((r) => r.ms).sort((a, b) => a - b);
      t.diagnostic(
        `${CONCURRENT} concurrent pods in ${Math.round(total)} ms; per pod median ${Math.round(ms[ms.length >> 1] ?? 0)} ms, max ${Math.round(ms.at(-1) ?? 0)} ms`,
      );
      const ips = new Set<string>();
      for (const { pod, container } of ok) {
        const st = await env.d.client.runtime.podSandboxStatus({ podSandboxId: pod.id });
        ips.add(st.status?.network?.ip ?? "");
        assert.equal(
          (await env.d.client.runtime.containerStatus({ containerId: container })).status?.state,
          ContainerState.CONTAINER_RUNNING,
        );
      }
      assert.equal(ips.size, CONCURRENT, "every pod has its own IP");
    } finally {
      const t1 = performance.now();
      await Promise.all(ok.map((r) => env.removePod(r.pod)));
      t.diagnostic(`removed ${ok.length} pods concurrently in ${Math.round(performance.now() - t1)} ms`);
    }
    assert.deepEqual((await env.d.client.runtime.listPodSandbox({})).items, []);
  });

  test(`after ${CYCLED} pods (half with a shared PID namespace) are created and removed, mounts, processes, cgroups, netns files and daemon fds are back to baseline`, async (t) => {
    // Warm-up: the first pods create what stays for good (the bridge, the cgroup parent, IPAM's files, the
    // daemon's pooled connections); they also give the sequential start latency.
    const latencies: number[] = [];
    for (let i = 0; i < 3; i++) {
      const { pod, ms } = await startPod(`warm-${i}`, { sharedPid: i === 0 });
      latencies.push(ms);
      if (i === 0) {
        // The census sees a live pod: every kind of leftover it looks for exists while a pod runs.
        const live = counts(await census(env));
        for (const [k, v] of Object.entries(live))
          if (k !== "daemonFds") assert.ok(v > 0, `a running pod shows up in ${k}`);
      }
      await env.removePod(pod);
    }
    t.diagnostic(
      `sequential pod start (sandbox + create + start): ${latencies.map((ms) => Math.round(ms)).join(", ")} ms`,
    );
    const baseline = await census(env);

    const t0 = performance.now();
    let next = 0;
    const worker = async () => {
      while (next < CYCLED) {
        const i = next++;
        const { pod } = await startPod(`cycle-${i}`, { sharedPid: i % 2 === 0 });
        await env.removePod(pod);
      }
    };
    await Promise.all(Array.from({ length: CYCLE_PARALLELISM }, worker));
    t.diagnostic(`${CYCLED} pods cycled (${CYCLE_PARALLELISM} at a time) in ${Math.round(performance.now() - t0)} ms`);

    let now = await census(env);
    // File descriptors close asynchronously (HTTP/2 streams, exit watchers); give them a moment.
    await eventually(
      "the census to return to baseline",
      async () => {
        now = await census(env);
        return JSON.stringify(counts(now)) === JSON.stringify(counts(baseline));
      },
      5_000,
    ).catch(() => {});
    assert.deepEqual(counts(now), counts(baseline), `leftovers: ${JSON.stringify(diff(baseline, now), null, 1)}`);
  });
});

/** What a pod could leave behind, as lists so a failure can say what is left. */
interface Census {
  mounts: string[];
  conmons: string[];
  containerProcesses: string[];
  cgroups: string[];
  netns: string[];
  sandboxDirs: string[];
  bundles: string[];
  rootfsDirs: string[];
  snapshots: string[];
  ipamAllocations: string[];
  daemonFds: string[];
}

async function census(env: PodEnv): Promise<Census> {
  const state = env.d.state;
  const ls = (dir: string) => readdir(dir).catch(() => [] as string[]);
  const mountinfo = await readFile("/proc/self/mountinfo", "utf8");
  const mounts = mountinfo
    .split("\n")
    .map((l) => l.split(" ")[4] ?? "")
    .filter((mp) => mp.startsWith(`${env.dir}/`));
  const conmons: string[] = [];
  const containerProcesses: string[] = [];
  for (const pid of (await ls("/proc")).filter((p) => /^\d+$/.test(p))) {
    const argv = (await readFile(`/proc/${pid}/cmdline`, "utf8").catch(() => "")).split("\0");
    if (basename(argv[0] ?? "") === "conmon" && argv.some((a) => a.includes(env.dir)))
      conmons.push(`${pid} ${argv.join(" ").slice(0, 120)}`);
    const cgroup = await readFile(`/proc/${pid}/cgroup`, "utf8").catch(() => "");
    if (cgroup.includes(`${CGROUP_PARENT}/`)) containerProcesses.push(`${pid} ${argv.join(" ").slice(0, 80)}`);
  }
  const cgroups: string[] = [];
  for (const subsystem of await ls("/sys/fs/cgroup")) {
    const walk = async (dir: string): Promise<void> => {
      for (const e of await readdir(dir, { withFileTypes: true }).catch(() => [])) {
        if (!e.isDirectory()) continue;
        cgroups.push(join(dir, e.name));
        await walk(join(dir, e.name));
      }
    };
    await walk(join("/sys/fs/cgroup", subsystem, CGROUP_PARENT));
  }
  const fdDir = `/proc/${env.d.pid}/fd`;
  const daemonFds = await Promise.all(
    (await ls(fdDir)).map(async (fd) => `${fd} ${await readlink(join(fdDir, fd)).catch(() => "?")}`),
  );
  const ipamDir = join(env.dir, "ipam", "bte2e-lk");
  return {
    mounts,
    conmons,
    containerProcesses,
    cgroups,
    netns: await ls(join(state, "netns")),
    sandboxDirs: await ls(join(state, "sandboxes")),
    bundles: await ls(join(state, "runtime", "containers")),
    rootfsDirs: await ls(join(state, "rootfs")),
    snapshots: await ls(join(env.d.root, "snapshots", "overlay", "snapshots")),
    ipamAllocations: (await ls(ipamDir)).filter((f) => /^\d/.test(f)),
    daemonFds,
  };
}

function counts(c: Census): Record<string, number> {
  return Object.fromEntries(Object.entries(c).map(([k, v]: [string, string[]]) => [k, v.length]));
}

function diff(before: Census, after: Census): Record<string, { gone: string[]; added: string[] }> {
  const out: Record<string, { gone: string[]; added: string[] }> = {};
  for (const k of Object.keys(before) as (keyof Census)[]) {
    const b = new Set(before[k]);
    const a = new Set(after[k]);
    const added = [...a].filter((x) => !b.has(x));
    const gone = [...b].filter((x) => !a.has(x));
    if (added.length + gone.length > 0) out[k] = { gone, added };
  }
  return out;
}
