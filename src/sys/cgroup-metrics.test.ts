import assert from "node:assert/strict";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { readCgroupMetrics, weightToShares } from "./cgroup-metrics.js";

/** Writes `files` (path -> content) under a fresh directory standing in for /sys/fs/cgroup. */
async function fakeCgroupRoot(files: Record<string, string>): Promise<string> {
  const root = await mkdtemp(join(tmpdir(), "berth-cgroup-"));
  for (const [path, content] of Object.entries(files)) {
    await mkdir(join(root, path, ".."), { recursive: true });
    await writeFile(join(root, path), content);
  }
  return root;
}

test("cgroup v2: CPU, memory, pids, OOM kills and CPU settings come from the unified files", async () => {
  const root = await fakeCgroupRoot({
    "pod/c1/cpu.stat":
      "usage_usec 2500000\nuser_usec 2000000\nsystem_usec 500000\nnr_periods 10\nnr_throttled 3\nthrottled_usec 7000\n",
    "pod/c1/memory.current": "104857600\n",
    "pod/c1/memory.stat": "anon 52428800\nfile 41943040\ninactive_file 20971520\n",
    "pod/c1/memory.peak": "209715200\n",
    "pod/c1/memory.max": "max\n",
    "pod/c1/memory.events": "low 0\nhigh 0\nmax 4\noom 2\noom_kill 1\n",
    "pod/c1/pids.current": "3\n",
    "pod/c1/cpu.weight": "79\n",
    "pod/c1/cpu.max": "50000 100000\n",
  });
  try {
    const m = await readCgroupMetrics("/pod/c1", root);
    assert.deepEqual(m, {
      version: "v2",
      cpu: {
        totalNs: 2_500_000_000n,
        userNs: 2_000_000_000n,
        systemNs: 500_000_000n,
        throttledPeriods: 3n,
        throttledNs: 7_000_000n,
      },
      memory: {
        usageBytes: 104857600n,
        workingSetBytes: 104857600n - 20971520n,
        rssBytes: 52428800n,
        cacheBytes: 41943040n,
        maxUsageBytes: 209715200n,
        limitBytes: undefined,
        oomKills: 1n,
      },
      processes: 3n,
      spec: { cpuShares: weightToShares(79n), cpuQuotaUs: 50000n, cpuPeriodUs: 100000n },
    });
    // cpu.max "max 100000" is no quota; a set memory.max is the limit.
    await writeFile(join(root, "pod/c1/cpu.max"), "max 100000\n");
    await writeFile(join(root, "pod/c1/memory.max"), "268435456\n");
    const again = await readCgroupMetrics("/pod/c1", root);
    assert.equal(again?.spec.cpuQuotaUs, undefined);
    assert.equal(again?.memory.limitBytes, 268435456n);
    assert.equal(await readCgroupMetrics("/pod/absent", root), undefined);
  } finally {
    await rm(root, { recursive: true, force: true });
  }
});

test("cgroup v1: the per-controller hierarchies are read, ticks become nanoseconds, no limit is undefined", async () => {
  const root = await fakeCgroupRoot({
    "cpuacct/pod/c1/cpuacct.usage": "3000000000\n",
    "cpuacct/pod/c1/cpuacct.stat": "user 250\nsystem 50\n",
    "cpu/pod/c1/cpu.stat": "nr_periods 5\nnr_throttled 1\nthrottled_time 1234\n",
    "cpu/pod/c1/cpu.shares": "512\n",
    "cpu/pod/c1/cpu.cfs_quota_us": "-1\n",
    "cpu/pod/c1/cpu.cfs_period_us": "100000\n",
    "memory/pod/c1/memory.usage_in_bytes": "8192000\n",
    "memory/pod/c1/memory.stat":
      "cache 100\nrss 200\ntotal_cache 4096000\ntotal_rss 2048000\ntotal_inactive_file 1024000\n",
    "memory/pod/c1/memory.max_usage_in_bytes": "9000000\n",
    "memory/pod/c1/memory.limit_in_bytes": "9223372036854771712\n",
    "memory/pod/c1/memory.oom_control": "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
    "pids/pod/c1/pids.current": "7\n",
  });
  try {
    assert.deepEqual(await readCgroupMetrics("/pod/c1", root), {
      version: "v1",
      cpu: {
        totalNs: 3_000_000_000n,
        userNs: 2_500_000_000n,
        systemNs: 500_000_000n,
        throttledPeriods: 1n,
        throttledNs: 1234n,
      },
      memory: {
        usageBytes: 8192000n,
        workingSetBytes: 8192000n - 1024000n,
        rssBytes: 2048000n,
        cacheBytes: 4096000n,
        maxUsageBytes: 9000000n,
        limitBytes: undefined,
        oomKills: 2n,
      },
      processes: 7n,
      spec: { cpuShares: 512n, cpuQuotaUs: undefined, cpuPeriodUs: 100000n },
    });
  } finally {
    await rm(root, { recursive: true, force: true });
  }
});

test("cpu.weight maps back to the shares runc mapped it from", () => {
  // runc: weight = 1 + ((shares - 2) * 9999) / 262142
  for (const shares of [2n, 102n, 1024n, 262144n]) {
    const weight = 1n + ((shares - 2n) * 9999n) / 262142n;
    const back = weightToShares(weight);
    assert.ok(back <= shares && shares - back < 27n, `${shares} -> ${weight} -> ${back}`);
  }
});
