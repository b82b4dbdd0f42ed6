import assert from "node:assert/strict";
import { mkdir, mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { podCgroupDir } from "./cgroup-paths.js";
import { applyPodResources, podTotal } from "./pod-resources.js";
import type { SandboxRecord } from "./types.js";

const sandbox = (cgroupParent: string) =>
  ({ id: "sb1", cgroupDriver: "cgroupfs", config: { cgroupParent } }) as unknown as SandboxRecord;
const slice = (cgroupParent: string) =>
  ({ id: "sb1", cgroupDriver: "systemd", config: { cgroupParent } }) as unknown as SandboxRecord;

test("pod limits are resources plus overhead; zero fields stay unset", () => {
  assert.deepEqual(
    podTotal(
      { cpuShares: 1024, cpuQuota: 150000, cpuPeriod: 100000, memoryLimitBytes: 1000 },
      { cpuShares: 2, cpuQuota: 10000, memoryLimitBytes: 24 },
    ),
    { cpuShares: 1026, cpuQuota: 160000, cpuPeriod: 100000, memoryLimitBytes: 1024 },
  );
  assert.deepEqual(podTotal({ cpuShares: 0, memoryLimitBytes: 0 }, {}), {});
  assert.throws(() => podTotal({ memoryLimitBytes: -1 }, {}), /out of range/);
});

test("systemd slice names expand to their path; cgroupfs parents stay, escapes are refused", () => {
  assert.equal(
    podCgroupDir(slice("kubepods-burstable-pod12.slice")),
    "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod12.slice",
  );
  assert.equal(podCgroupDir(sandbox("/kubepods/burstable/pod12")), "/kubepods/burstable/pod12");
  assert.throws(() => podCgroupDir(sandbox("/kubepods/../../etc")), /climbs out/);
});

test("the limits land in the v2 files, and in the v1 files when the pod's cgroup is in the v1 hierarchies", async () => {
  const root = await mkdtemp(join(tmpdir(), "berth-podres-"));
  try {
    await mkdir(join(root, "kubepods", "pod1"), { recursive: true });
    const limits = {
      resources: { cpuShares: 1024, cpuQuota: 50000, cpuPeriod: 100000, memoryLimitBytes: 67108864 },
      overhead: {},
    };
    await applyPodResources(sandbox("/kubepods/pod1"), limits, { cgroupRoot: root });
    const v2 = (f: string) => readFile(join(root, "kubepods", "pod1", f), "utf8");
    assert.equal(await v2("cpu.weight"), "39");
    assert.equal(await v2("cpu.max"), "50000 100000");
    assert.equal(await v2("memory.max"), "67108864");
    for (const c of ["cpu", "memory"]) await mkdir(join(root, c, "kubepods", "pod2"), { recursive: true });
    await applyPodResources(sandbox("/kubepods/pod2"), limits, { cgroupRoot: root });
    assert.equal(await readFile(join(root, "cpu", "kubepods", "pod2", "cpu.shares"), "utf8"), "1024");
    assert.equal(await readFile(join(root, "cpu", "kubepods", "pod2", "cpu.cfs_quota_us"), "utf8"), "50000");
    assert.equal(await readFile(join(root, "memory", "kubepods", "pod2", "memory.limit_in_bytes"), "utf8"), "67108864");
    await assert.rejects(
      applyPodResources(sandbox("/kubepods/absent"), limits, { cgroupRoot: root }),
      /does not exist/,
    );
    await assert.rejects(applyPodResources(sandbox(""), limits, { cgroupRoot: root }), /no cgroup parent/);
  } finally {
    await rm(root, { recursive: true, force: true });
  }
});
