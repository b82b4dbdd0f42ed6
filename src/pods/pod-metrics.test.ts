import assert from "node:assert/strict";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { collectPodMetrics, metricDescriptors } from "./pod-metrics.js";
import type { ContainerRecord, SandboxRecord } from "./types.js";

test("every sample lines its labels up with its descriptor, from a cgroup v2 fixture tree", async () => {
  const root = await mkdtemp(join(tmpdir(), "berth-podmetrics-"));
  try {
    const dir = join(root, "kubepods", "pod1", "c1");
    await mkdir(dir, { recursive: true });
    await writeFile(join(dir, "cpu.stat"), "usage_usec 7300000\nuser_usec 7000000\nsystem_usec 300000\n");
    await writeFile(join(dir, "memory.current"), "1000\n");
    await writeFile(join(dir, "memory.stat"), "anon 600\nfile 300\ninactive_file 100\n");
    await writeFile(join(dir, "memory.max"), "max\n");
    const sb = {
      id: "pod1",
      state: "ready",
      config: {
        cgroupParent: "/kubepods/pod1",
        metadata: { name: "web", namespace: "prod" },
        namespaces: { network: "node" },
      },
    } as unknown as SandboxRecord;
    const c = {
      id: "c1",
      sandboxId: "pod1",
      state: "running",
      pid: 0,
      startedAt: "1700000000123456789",
      config: { name: "app", image: "registry/app:1" },
    } as unknown as ContainerRecord;
    const pods = await collectPodMetrics({
      sandboxes: { list: () => [sb] },
      containers: { list: () => [c] },
      cgroupRoot: root,
    });
    assert.equal(pods.length, 1);
    const byName = new Map(metricDescriptors().map((d) => [d.name, d]));
    const samples = pods[0]?.containers[0]?.metrics ?? [];
    for (const s of samples) assert.equal(s.labelValues.length, byName.get(s.name)?.labelKeys.length, s.name);
    const value = (name: string) => samples.find((s) => s.name === name)?.value;
    assert.equal(value("container_cpu_usage_seconds_total"), 7n);
    assert.deepEqual(samples.find((s) => s.name === "container_cpu_usage_seconds_total")?.labelValues, [
      "app",
      "c1",
      "registry/app:1",
      "app",
      "prod",
      "web",
      "total",
    ]);
    assert.equal(value("container_memory_working_set_bytes"), 900n);
    assert.equal(value("container_spec_memory_limit_bytes"), 0n);
    assert.equal(value("container_start_time_seconds"), 1700000000n);
    // Absent files give absent samples, not zeros.
    assert.equal(value("container_processes"), undefined);
    assert.deepEqual(pods[0]?.metrics, [], "a host-network pod reports no pod network");
  } finally {
    await rm(root, { recursive: true, force: true });
  }
});
