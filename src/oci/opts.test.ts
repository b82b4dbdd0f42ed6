import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { isKind } from "../errdefs/index.js";
import {
  buildSpec,
  CAPABILITIES,
  capabilitiesFromMask,
  clampOomScoreAdj,
  currentOomScoreAdj,
  DEFAULT_CAPABILITIES,
  defaultSpec,
  deviceFromPath,
  linuxResources,
  normalizeCapability,
  withBindMounts,
  withCapabilities,
  withDevices,
  withEnv,
  withHostNamespace,
  withNamespace,
  withOomScoreAdj,
  withPrivileged,
  withResources,
  withSeccomp,
  withUser,
} from "./index.js";

describe("defaultSpec", () => {
  test("has containerd's mounts, capabilities, masked paths, device rules and NOFILE limit", () => {
    const s = defaultSpec();
    assert.deepEqual(
      s.mounts?.map((m) => m.destination),
      ["/proc", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue", "/sys", "/sys/fs/cgroup"],
    );
    assert.ok(s.mounts?.find((m) => m.destination === "/sys")?.options?.includes("ro"));
    assert.ok(s.mounts?.find((m) => m.destination === "/sys/fs/cgroup")?.options?.includes("ro"));
    assert.deepEqual(s.process?.capabilities?.bounding, [...DEFAULT_CAPABILITIES]);
    assert.equal(DEFAULT_CAPABILITIES.length, 14);
    assert.ok(s.linux?.maskedPaths?.includes("/proc/kcore"));
    assert.ok(s.linux?.readonlyPaths?.includes("/proc/sys"));
    assert.deepEqual(s.linux?.resources?.devices?.[0], { allow: false, access: "rwm" });
    assert.ok(s.linux?.resources?.devices?.some((d) => d.allow && d.major === 1 && d.minor === 3));
    assert.deepEqual(s.process?.rlimits, [{ type: "RLIMIT_NOFILE", hard: 1024, soft: 1024 }]);
    assert.deepEqual(s.linux?.namespaces?.map((n) => n.type).sort(), ["ipc", "mount", "network", "pid", "uts"]);
  });

  test("two specs share no mutable state", () => {
    const a = defaultSpec();
    a.process?.capabilities?.bounding?.push("CAP_SYS_ADMIN");
    a.mounts?.[0]?.options?.push("ro");
    const b = defaultSpec();
    assert.ok(!b.process?.capabilities?.bounding?.includes("CAP_SYS_ADMIN"));
    assert.ok(!b.mounts?.[0]?.options?.includes("ro"));
  });
});

describe("capabilities", () => {
  const all = [...CAPABILITIES];

  test("add ALL then drop one leaves everything else", async () => {
    const s = await buildSpec(withCapabilities({ add: ["ALL"], drop: ["chown"] }, all));
    const caps = s.process?.capabilities;
    assert.equal(caps?.bounding?.length, all.length - 1);
    assert.ok(!caps?.effective?.includes("CAP_CHOWN"));
    assert.ok(caps?.permitted?.includes("CAP_SYS_ADMIN"));
  });

  test("drop ALL then add one leaves only that one", async () => {
    const s = await buildSpec(withCapabilities({ drop: ["ALL"], add: ["NET_RAW"] }, all));
    assert.deepEqual(s.process?.capabilities?.bounding, ["CAP_NET_RAW"]);
    assert.deepEqual(s.process?.capabilities?.effective, ["CAP_NET_RAW"]);
  });

  test("individual add and drop accept names with or without CAP_", async () => {
    const s = await buildSpec(withCapabilities({ add: ["sys_admin", "CAP_NET_ADMIN"], drop: ["KILL"] }));
    const b = s.process?.capabilities?.bounding ?? [];
    assert.ok(b.includes("CAP_SYS_ADMIN") && b.includes("CAP_NET_ADMIN") && !b.includes("CAP_KILL"));
  });

  test("an unknown capability is InvalidArgument", async () => {
    await assert.rejects(buildSpec(withCapabilities({ add: ["FLY"] })), (err) => isKind(err, "InvalidArgument"));
    assert.equal(normalizeCapability("all"), "ALL");
  });

  test("a capability mask decodes to names", () => {
    assert.deepEqual(capabilitiesFromMask(0b101n), ["CAP_CHOWN", "CAP_DAC_READ_SEARCH"]);
    // This host's root lacks CAP_SYS_RESOURCE (bit 24): 0x1fffeffffff.
    const names = capabilitiesFromMask(0x1fffeffffffn);
    assert.equal(names.length, 40);
    assert.ok(!names.includes("CAP_SYS_RESOURCE"));
  });
});

describe("privileged", () => {
  test("all given capabilities, no masks, writable sysfs and cgroupfs, no seccomp, all devices", async () => {
    const s = await buildSpec(
      withSeccomp("RuntimeDefault"),
      withPrivileged({ hostDevices: false, capabilities: ["CAP_SYS_ADMIN", "CAP_KILL"] }),
    );
    assert.deepEqual(s.process?.capabilities?.bounding, ["CAP_SYS_ADMIN", "CAP_KILL"]);
    assert.deepEqual(s.linux?.maskedPaths, []);
    assert.deepEqual(s.linux?.readonlyPaths, []);
    assert.equal(s.linux?.seccomp, undefined);
    assert.ok(s.mounts?.find((m) => m.type === "sysfs")?.options?.includes("rw"));
    assert.ok(!s.mounts?.find((m) => m.type === "cgroup")?.options?.includes("ro"));
    assert.deepEqual(s.linux?.resources?.devices, [{ allow: true, access: "rwm" }]);
    assert.equal(s.linux?.devices, undefined);
  });

  test("host devices are copied from /dev by default", async () => {
    const s = await buildSpec(withPrivileged());
    const devNull = s.linux?.devices?.find((d) => d.path === "/dev/null");
    assert.deepEqual([devNull?.type, devNull?.major, devNull?.minor], ["c", 1, 3]);
    assert.ok(!s.linux?.devices?.some((d) => d.path.startsWith("/dev/pts/") || d.path === "/dev/console"));
  });
});

describe("oom_score_adj", () => {
  test("is clamped to the daemon's own value", async () => {
    assert.equal(clampOomScoreAdj(-998, 0), 0);
    assert.equal(clampOomScoreAdj(500, 0), 500);
    assert.equal(clampOomScoreAdj(-500, -900), -500);
    assert.equal(clampOomScoreAdj(2000, 0), 1000);
    assert.equal((await buildSpec(withOomScoreAdj(-1000, { floor: 0 }))).process?.oomScoreAdj, 0);
    const floor = await currentOomScoreAdj();
    assert.equal((await buildSpec(withOomScoreAdj(-1000))).process?.oomScoreAdj, floor);
  });
});

describe("seccomp RuntimeDefault", () => {
  const allowed = (s: Awaited<ReturnType<typeof buildSpec>>, name: string) =>
    s.linux?.seccomp?.syscalls?.some(
      (r) => r.action === "SCMP_ACT_ALLOW" && r.names.includes(name) && !r.args?.length,
    ) ?? false;

  test("denies by default and blocks namespace and keyring syscalls without CAP_SYS_ADMIN", async () => {
    const s = await buildSpec(withSeccomp("RuntimeDefault"));
    assert.equal(s.linux?.seccomp?.defaultAction, "SCMP_ACT_ERRNO");
    for (const ok of ["read", "write", "execve", "openat", "futex"]) assert.ok(allowed(s, ok), ok);
    for (const no of ["unshare", "mount", "setns", "keyctl", "add_key", "request_key", "bpf", "clone3", "reboot"]) {
      assert.ok(!allowed(s, no), no);
    }
    const clone = s.linux?.seccomp?.syscalls?.find((r) => r.names.includes("clone"));
    assert.equal(clone?.args?.[0]?.op, "SCMP_CMP_MASKED_EQ");
    const clone3 = s.linux?.seccomp?.syscalls?.find((r) => r.names.includes("clone3"));
    assert.deepEqual([clone3?.action, clone3?.errnoRet], ["SCMP_ACT_ERRNO", 38]);
    if (process.arch === "x64")
      assert.deepEqual(s.linux?.seccomp?.architectures, ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]);
  });

  test("follows the bounding set it is built after", async () => {
    const s = await buildSpec(withCapabilities({ add: ["SYS_ADMIN"] }), withSeccomp("RuntimeDefault"));
    for (const name of ["unshare", "mount", "setns", "clone", "clone3"]) assert.ok(allowed(s, name), name);
    assert.ok(!allowed(s, "keyctl"));
    assert.equal((await buildSpec(withSeccomp("RuntimeDefault"), withSeccomp("Unconfined"))).linux?.seccomp, undefined);
  });
});

describe("mounts, namespaces, env, user, devices", () => {
  test("bind mounts replace a default at the same destination and carry propagation", async () => {
    const s = await buildSpec(
      withBindMounts([
        { hostPath: "/var/lib/x/shm", containerPath: "/dev/shm" },
        { hostPath: "/data/a/b", containerPath: "/data/a/b", readonly: true, propagation: "rslave" },
        { hostPath: "/data", containerPath: "/data", propagation: "rshared" },
      ]),
    );
    const shm = s.mounts?.filter((m) => m.destination === "/dev/shm");
    assert.deepEqual(shm, [
      { destination: "/dev/shm", type: "bind", source: "/var/lib/x/shm", options: ["rbind", "rprivate", "rw"] },
    ]);
    const dests = s.mounts?.map((m) => m.destination) ?? [];
    assert.ok(dests.indexOf("/data") < dests.indexOf("/data/a/b"), "parents mount first");
    assert.deepEqual(s.mounts?.find((m) => m.destination === "/data/a/b")?.options, ["rbind", "rslave", "ro"]);
    await assert.rejects(buildSpec(withBindMounts([{ hostPath: "/x", containerPath: "rel" }])), (e) =>
      isKind(e, "InvalidArgument"),
    );
  });

  test("an rshared bind makes the root mount rshared, an rslave one rslave; private binds leave it unset", async () => {
    const bind = (propagation: "private" | "rslave" | "rshared", dest = "/d") => ({
      hostPath: "/h",
      containerPath: dest,
      propagation,
    });
    const root = async (...groups: (readonly ReturnType<typeof bind>[])[]) =>
      (await buildSpec(...groups.map((g) => withBindMounts(g)))).linux?.rootfsPropagation;
    assert.equal(await root([bind("private")]), undefined);
    assert.equal(await root([bind("private"), bind("rslave", "/e")]), "rslave");
    assert.equal(await root([bind("rslave"), bind("rshared", "/e"), bind("rslave", "/f")]), "rshared");
    assert.equal(
      await root([bind("rshared")], [bind("rslave", "/e")]),
      "rshared",
      "a later rslave bind never narrows it",
    );
  });

  test("namespaces can join a path or use the host's", async () => {
    const s = await buildSpec(withNamespace("network", "/var/run/netns/cni-1"), withHostNamespace("pid"));
    assert.deepEqual(
      s.linux?.namespaces?.find((n) => n.type === "network"),
      { type: "network", path: "/var/run/netns/cni-1" },
    );
    assert.ok(!s.linux?.namespaces?.some((n) => n.type === "pid"));
    assert.equal(s.linux?.namespaces?.filter((n) => n.type === "network").length, 1);
  });

  test("env entries replace by key and append new keys", async () => {
    const s = await buildSpec(withEnv(["PATH=/bin", "A=1"]), withEnv(["A=2", "B=x=y"]));
    assert.deepEqual(s.process?.env, ["PATH=/bin", "A=2", "B=x=y"]);
  });

  test("user sets uid, gid and de-duplicated additional gids", async () => {
    const s = await buildSpec(withUser({ uid: 1000, gid: 1000, additionalGids: [5, 5, 27] }));
    assert.deepEqual(s.process?.user, { uid: 1000, gid: 1000, additionalGids: [5, 27] });
  });

  test("devices are stat'ed for major/minor and allowed in the cgroup", async () => {
    assert.deepEqual(
      { ...(await deviceFromPath("/dev/zero")), fileMode: undefined, uid: undefined, gid: undefined },
      { path: "/dev/zero", type: "c", major: 1, minor: 5, fileMode: undefined, uid: undefined, gid: undefined },
    );
    assert.equal(await deviceFromPath("/etc/hostname").catch(() => undefined), undefined);
    const s = await buildSpec(withDevices([{ hostPath: "/dev/null", containerPath: "/dev/xnull", permissions: "rw" }]));
    assert.deepEqual(
      s.linux?.devices?.map((d) => [d.path, d.type, d.major, d.minor]),
      [["/dev/xnull", "c", 1, 3]],
    );
    assert.deepEqual(s.linux?.resources?.devices?.at(-1), { allow: true, type: "c", major: 1, minor: 3, access: "rw" });
    await assert.rejects(buildSpec(withDevices([{ hostPath: "/no/such", containerPath: "/dev/x" }])), (e) =>
      isKind(e, "NotFound"),
    );
  });
});

describe("resources", () => {
  test("zero means unset, swap follows the memory limit, missing hugetlb drops hugepage limits", () => {
    assert.deepEqual(linuxResources({ cpuShares: 0, memoryLimitBytes: 0 }), {});
    assert.deepEqual(
      linuxResources({
        cpuShares: 512,
        cpuQuota: 50_000,
        cpuPeriod: 100_000,
        cpusetCpus: "0",
        memoryLimitBytes: 1 << 24,
        pidsLimit: 100,
      }),
      {
        cpu: { shares: 512, quota: 50_000, period: 100_000, cpus: "0" },
        memory: { limit: 1 << 24, swap: 1 << 24 },
        pids: { limit: 100 },
      },
    );
    assert.deepEqual(linuxResources({ memoryLimitBytes: 100 }, { swap: false }), { memory: { limit: 100 } });
    const huge = { hugepageLimits: [{ pageSize: "2MB", limit: 1 << 21 }] };
    assert.deepEqual(linuxResources(huge, { hugetlb: false }), {});
    assert.deepEqual(linuxResources(huge).hugepageLimits, [{ pageSize: "2MB", limit: 1 << 21 }]);
    assert.deepEqual(linuxResources({ unified: { "memory.high": "1G" } }).unified, { "memory.high": "1G" });
  });

  test("withResources keeps the device rules", async () => {
    const s = await buildSpec(withResources({ memoryLimitBytes: 1 << 24 }));
    assert.equal(s.linux?.resources?.memory?.limit, 1 << 24);
    assert.ok((s.linux?.resources?.devices?.length ?? 0) > 1);
  });
});
