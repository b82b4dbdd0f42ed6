import assert from "node:assert/strict";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { readCgroupStats } from "./cgroups.js";

// Fixture trees stand in for /sys/fs/cgroup: this host is v1 (hybrid); most nodes run v2 only.
describe("readCgroupStats", () => {
  let root: string;
  before(async () => {
    root = await mkdtemp(join(tmpdir(), "berth-cgroups-"));
  });
  after(() => rm(root, { recursive: true, force: true }));

  const files = async (dir: string, entries: Record<string, string>) => {
    await mkdir(dir, { recursive: true });
    for (const [name, text] of Object.entries(entries)) await writeFile(join(dir, name), text);
  };

  test("v1: cpuacct, memory and pids hierarchies", async () => {
    const v1 = join(root, "v1");
    await files(join(v1, "cpuacct/berth/c1"), { "cpuacct.usage": "5000000000\n" });
    await files(join(v1, "memory/berth/c1"), {
      "memory.usage_in_bytes": "10485760\n",
      "memory.limit_in_bytes": "9223372036854771712\n",
      "memory.stat": "total_inactive_file 1048576\ntotal_rss 4194304\ntotal_pgfault 77\ntotal_pgmajfault 3\n",
    });
    await files(join(v1, "pids/berth/c1"), { "pids.current": "4\n" });
    const s = await readCgroupStats("/berth/c1", v1);
    assert.ok(s);
    assert.deepEqual(
      [s.cpuUsageNs, s.memoryUsageBytes, s.workingSetBytes, s.rssBytes, s.pageFaults, s.majorPageFaults],
      [5_000_000_000n, 10_485_760n, 9_437_184n, 4_194_304n, 77n, 3n],
    );
    assert.equal(s.processCount, 4);
    assert.equal(s.memoryLimitBytes, undefined, "the v1 'unlimited' value is no limit");
  });

  test("v2: cpu.stat, memory.current/stat/max and pids.current in one unified directory", async () => {
    const v2 = join(root, "v2");
    await files(join(v2, "kubepods.slice/berth-c2.scope"), {
      "cpu.stat": "usage_usec 2500000\nuser_usec 2000000\nsystem_usec 500000\n",
      "memory.current": "20971520\n",
      "memory.max": "67108864\n",
      "memory.stat": "anon 8388608\ninactive_file 2097152\npgfault 12\npgmajfault 1\n",
      "pids.current": "2\n",
    });
    const s = await readCgroupStats("/kubepods.slice/berth-c2.scope", v2);
    assert.ok(s);
    assert.deepEqual(
      [s.cpuUsageNs, s.memoryUsageBytes, s.workingSetBytes, s.rssBytes, s.pageFaults, s.majorPageFaults],
      [2_500_000_000n, 20_971_520n, 18_874_368n, 8_388_608n, 12n, 1n],
    );
    assert.equal(s.memoryLimitBytes, 67_108_864n);
    assert.equal(s.processCount, 2);
    await files(join(v2, "unlimited"), { "cpu.stat": "usage_usec 1\n", "memory.max": "max\n" });
    assert.equal((await readCgroupStats("/unlimited", v2))?.memoryLimitBytes, undefined);
  });

  test("a cgroup that is gone (container exited, pod removed) is undefined, not an error", async () => {
    assert.equal(await readCgroupStats("/berth/none", join(root, "v1")), undefined);
    assert.equal(await readCgroupStats("/none", join(root, "v2")), undefined);
  });
});
