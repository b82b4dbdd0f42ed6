import assert from "node:assert/strict";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import type { ContainerStatsRecord } from "./containers.js";
import { sandboxStats } from "./sandbox-stats.js";
import type { SandboxRecord } from "./types.js";

test("pod stats: available memory is the pod cgroup's limit (as resized) less the containers' working set", async () => {
  const root = await mkdtemp(join(tmpdir(), "berth-sandbox-stats-"));
  try {
    const pod = join(root, "memory", "kubepods", "pod1");
    await mkdir(join(root, "cpuacct", "kubepods", "pod1"), { recursive: true });
    await mkdir(pod, { recursive: true });
    await writeFile(join(root, "cpuacct", "kubepods", "pod1", "cpuacct.usage"), "0\n");
    await writeFile(join(pod, "memory.usage_in_bytes"), "0\n");
    await writeFile(join(pod, "memory.limit_in_bytes"), `${64 * 1024 * 1024}\n`);
    const sb = {
      id: "p1",
      config: { cgroupParent: "/kubepods/pod1", namespaces: { network: "pod" } },
    } as unknown as SandboxRecord;
    const container = {
      record: { id: "c1", pid: 0 },
      cgroup: { cpuUsageNs: 5n, workingSetBytes: 4n * 1024n * 1024n, memoryUsageBytes: 0n, processCount: 1 },
    } as unknown as ContainerStatsRecord;
    const containers = { list: () => [container.record], stats: async () => container } as never;
    const s = await sandboxStats(containers, sb, { cgroupRoot: root });
    assert.equal(s.memory.workingSetBytes, 4n * 1024n * 1024n);
    assert.equal(s.memory.availableBytes, 60n * 1024n * 1024n);
    const noParent = { ...sb, config: { ...sb.config, cgroupParent: "" } } as SandboxRecord;
    assert.equal((await sandboxStats(containers, noParent, { cgroupRoot: root })).memory.availableBytes, undefined);
  } finally {
    await rm(root, { recursive: true, force: true });
  }
});
