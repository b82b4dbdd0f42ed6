import assert from "node:assert/strict";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, test } from "node:test";
import { isKind } from "../errdefs/index.js";
import { buildSpec, withCgroupsPath } from "../oci/index.js";
import { conmonCreateArgv, createRunc } from "../runtime/index.js";
import { readCgroupStats } from "../sys/index.js";
import { cgroupDir, cgroupsPath, sliceDir, validateCgroupParent } from "./cgroup-paths.js";
import type { CgroupDriver, SandboxConfig } from "./types.js";

const pod = (cgroupDriver: CgroupDriver | undefined, cgroupParent: string) => ({
  config: { cgroupParent } as SandboxConfig,
  ...(cgroupDriver ? { cgroupDriver } : {}),
});
const notASlice = (e: unknown) =>
  isKind(e, "InvalidArgument") && /systemd cgroup driver needs a slice name/.test(String(e));

describe("cgroup paths", () => {
  test("systemd expands a slice name level by level at each dash", () => {
    assert.equal(sliceDir("-.slice"), "");
    assert.equal(sliceDir("system.slice"), "/system.slice");
    assert.equal(
      sliceDir("kubepods-besteffort-pod12ab.slice"),
      "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod12ab.slice",
    );
    for (const bad of ["kubepods", "a--b.slice", "-a.slice", "a-.slice", ".slice", "a b.slice"])
      assert.throws(() => sliceDir(bad), notASlice, bad);
  });

  test("cgroupfs: <parent>/<id>, /berth without a parent; records without a driver are cgroupfs", () => {
    assert.equal(cgroupsPath(pod("cgroupfs", "/kubepods/besteffort/pod1"), "c1"), "/kubepods/besteffort/pod1/c1");
    assert.equal(cgroupsPath(pod(undefined, ""), "c1"), "/berth/c1");
    assert.equal(cgroupDir(pod("cgroupfs", "/kubepods/pod1"), "c1"), "/kubepods/pod1/c1");
  });

  test("systemd: runc gets slice:berth:id and the scope lives under the expanded slice", () => {
    const p = pod("systemd", "kubepods-burstable-pod7.slice");
    assert.equal(cgroupsPath(p, "c1"), "kubepods-burstable-pod7.slice:berth:c1");
    assert.equal(
      cgroupDir(p, "c1"),
      "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod7.slice/berth-c1.scope",
    );
    // A path-shaped parent is reduced to its last component, as containerd and CRI-O do.
    assert.equal(
      cgroupsPath(pod("systemd", "/kubepods.slice/kubepods-pod7.slice"), "c1"),
      "kubepods-pod7.slice:berth:c1",
    );
    assert.equal(cgroupsPath(pod("systemd", ""), "c1"), "system.slice:berth:c1");
    assert.equal(cgroupDir(pod("systemd", ""), "c1"), "/system.slice/berth-c1.scope");
  });

  test("RunPodSandbox refuses a cgroupfs path under the systemd driver, and anything goes for cgroupfs here", () => {
    assert.throws(() => validateCgroupParent("/kubepods/besteffort/pod1", "systemd"), notASlice);
    validateCgroupParent("kubepods-pod1.slice", "systemd");
    validateCgroupParent("", "systemd");
    validateCgroupParent("/kubepods/besteffort/pod1", "cgroupfs");
  });

  test("the spec, runc and conmon carry the systemd driver's names and flags", async () => {
    const spec = await buildSpec(withCgroupsPath(cgroupsPath(pod("systemd", "kubepods-pod7.slice"), "c1")));
    assert.equal(spec.linux?.cgroupsPath, "kubepods-pod7.slice:berth:c1");
    const runc = createRunc({ path: "/usr/sbin/runc", root: "/run/berth/runc", systemdCgroup: true });
    assert.deepEqual(runc.globalArgs(), ["--root=/run/berth/runc", "--systemd-cgroup"]);
    const argv = conmonCreateArgv({
      id: "c1",
      bundleDir: "/b",
      persistDir: "/b",
      exitDir: "/e",
      logPath: "/l",
      conmonPidFile: "/p",
      containerPidFile: "/q",
      runtimePath: "/usr/sbin/runc",
      runtimeArgs: runc.globalArgs(),
      socketDir: "/s",
      terminal: false,
      stdin: false,
      leaveStdinOpen: false,
      systemdCgroup: true,
    });
    // conmon's own flag (it moves itself into a scope) and runc's, passed through as a runtime argument.
    assert.equal(argv.filter((a) => a === "--systemd-cgroup").length, 2);
    assert.equal(argv[argv.indexOf("--systemd-cgroup") - 1], "--runtime-arg");
    assert.notEqual(argv[argv.lastIndexOf("--systemd-cgroup") - 1], "--runtime-arg");
  });

  test("stats are read from the systemd scope's directory (a fixture v1 tree)", async () => {
    const root = await mkdtemp(join(tmpdir(), "berth-cgroup-fixture-"));
    try {
      const dir = cgroupDir(pod("systemd", "kubepods-besteffort-pod7.slice"), "c1");
      await mkdir(join(root, "cpuacct", dir), { recursive: true });
      await mkdir(join(root, "memory", dir), { recursive: true });
      await writeFile(join(root, "cpuacct", dir, "cpuacct.usage"), "123456789\n");
      await writeFile(join(root, "memory", dir, "memory.usage_in_bytes"), "8192\n");
      await writeFile(join(root, "memory", dir, "memory.stat"), "total_inactive_file 4096\ntotal_rss 2048\n");
      const stats = await readCgroupStats(dir, root);
      assert.equal(stats?.cpuUsageNs, 123456789n);
      assert.equal(stats?.workingSetBytes, 4096n);
      assert.equal(await readCgroupStats(cgroupDir(pod("systemd", "kubepods-pod8.slice"), "c1"), root), undefined);
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });
});
