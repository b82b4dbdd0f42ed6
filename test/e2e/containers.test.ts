import assert from "node:assert/strict";
import { mkdir, mkdtemp, readFile, rename, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { Code } from "@connectrpc/connect";
import {
  ContainerState,
  MountPropagation,
  SecurityProfile_ProfileType,
  Signal,
  SupplementalGroupsPolicy,
} from "../../src/api/gen/runtime/v1/api_pb.js";
import { mountsUnder, run } from "../../src/sys/index.js";
import { isRoot } from "../support/berthd.js";
import {
  type ContainerConfigInit,
  CRI_LOG_LINE,
  eventually,
  grpcError,
  logContent,
  type Pod,
  type PodEnv,
  shell,
  startPodEnv,
} from "../support/pods.js";
import { skipUnlessCi } from "../support/skip.js";

const MiB = 1024n * 1024n;
/** CRI KeyValue (berth's proto carries env values as bytes). */
const kv = (key: string, value: string) => ({ key, value: new TextEncoder().encode(value) });

describe("containers", {
  skip: skipUnlessCi(isRoot() ? false : "needs root (runc, conmon, CNI, mounts)"),
  timeout: 120_000,
}, () => {
  let env: PodEnv;
  let pod: Pod;
  let n = 0;
  /** A unique container name per call (names are unique per pod). */
  const name = (base: string) => `${base}-${++n}`;
  const sh = (base: string, script: string, extra: Partial<ContainerConfigInit> = {}) =>
    shell(env, name(base), script, extra);
  const exec = async (id: string, cmd: string[], timeout = 0n) => {
    const r = await env.d.client.runtime.execSync({ containerId: id, cmd, timeout });
    return {
      stdout: new TextDecoder().decode(r.stdout),
      stderr: new TextDecoder().decode(r.stderr),
      exitCode: r.exitCode,
    };
  };

  before(async () => {
    env = await startPodEnv({
      bridge: "bte2e-ct",
      subnet: "10.231.12.0/24",
      images: ["berth-test/busybox", "berth-test/users", "berth-test/entrypoint"],
    });
    pod = await env.runPod("containers");
  });
  after(async () => {
    await env?.close();
  });

  describe("stats", () => {
    test("ContainerStats, ListContainerStats, PodSandboxStats and ListPodSandboxStats report cgroup, layer and network usage", async () => {
      const statsPod = await env.runPod("stats");
      const id = await env.startContainer(
        statsPod,
        sh("stats", "dd if=/dev/zero of=/tmp/blob bs=1M count=3 2>/dev/null; while true; do sleep 1; done"),
      );
      // The writable layer holds the 3 MiB file once dd is done.
      let layer = 0n;
      for (let i = 0; i < 50 && layer < 3n * 1024n * 1024n; i++) {
        const s = (await env.d.client.runtime.containerStats({ containerId: id })).stats;
        layer = s?.writableLayer?.usedBytes?.value ?? 0n;
        if (layer < 3n * 1024n * 1024n) await new Promise((r) => setTimeout(r, 100));
      }
      const s = (await env.d.client.runtime.containerStats({ containerId: id })).stats;
      assert.equal(s?.attributes?.id, id);
      assert.ok((s?.cpu?.usageCoreNanoSeconds?.value ?? 0n) > 0n, "cpu time used");
      assert.ok((s?.memory?.workingSetBytes?.value ?? 0n) > 0n, "memory in use");
      assert.ok(layer >= 3n * 1024n * 1024n, `writable layer ${layer} bytes`);
      // A second sample gives the CPU rate.
      assert.ok(
        (await env.d.client.runtime.containerStats({ containerId: id })).stats?.cpu?.usageNanoCores !== undefined,
      );

      const listed = await env.d.client.runtime.listContainerStats({ filter: { podSandboxId: statsPod.id } });
      assert.deepEqual(
        listed.stats.map((x) => x.attributes?.id),
        [id],
      );

      const ps = (await env.d.client.runtime.podSandboxStats({ podSandboxId: statsPod.id })).stats;
      assert.equal(ps?.attributes?.id, statsPod.id);
      assert.deepEqual(
        ps?.linux?.containers.map((x) => x.attributes?.id),
        [id],
      );
      assert.ok((ps?.linux?.memory?.workingSetBytes?.value ?? 0n) > 0n, "pod memory");
      assert.ok((ps?.linux?.process?.processCount?.value ?? 0n) >= 2n, "sh and sleep");
      assert.equal(ps?.linux?.network?.defaultInterface?.name, "eth0");
      const all = await env.d.client.runtime.listPodSandboxStats({ filter: { id: statsPod.id } });
      assert.deepEqual(
        all.stats.map((x) => x.attributes?.id),
        [statsPod.id],
      );
      await assert.rejects(
        env.d.client.runtime.podSandboxStats({ podSandboxId: "nope" }),
        /not_found|NotFound|pod sandbox nope/,
      );
      await env.removePod(statsPod);
    });
  });

  describe("exit status", () => {
    test("a container that exits 0 is Completed with its timestamps in order", async () => {
      const { status } = await env.runToExit(pod, sh("ok", "exit 0"));
      assert.equal(status.exitCode, 0);
      assert.equal(status.reason, "Completed");
      const { createdAt, startedAt, finishedAt } = status;
      assert.ok(
        createdAt > 0n && startedAt >= createdAt && finishedAt >= startedAt,
        `created ${createdAt} <= started ${startedAt} <= finished ${finishedAt}`,
      );
      assert.ok(status.finishedAt <= BigInt(Date.now()) * 1_000_000n);
    });

    test("a container that exits non-zero is Error with its exit code", async () => {
      const { status } = await env.runToExit(pod, sh("fail", "exit 3"));
      assert.equal(status.exitCode, 3);
      assert.equal(status.reason, "Error");
    });

    test("a container whose start fails is EXITED with reason StartError, exit code 128 and the error, its process killed", async () => {
      // runc 1.1 checks the command at `runc create`, so a missing command fails CreateContainer (as in
      // CRI-O); `runc start` is made to fail here by removing the exec FIFO it opens to release the init.
      const runtime = env.d.client.runtime;
      const { containerId } = await runtime.createContainer({
        podSandboxId: pod.id,
        sandboxConfig: pod.config,
        config: sh("nostart", "exec sleep 3600"),
      });
      const pid = Number(
        (await readFile(join(env.d.state, "runtime", "containers", containerId, "pidfile"), "utf8")).trim(),
      );
      assert.ok(pid > 0);
      await rm(join(env.d.state, "runtime", "runc", containerId, "exec.fifo"));
      await assert.rejects(runtime.startContainer({ containerId }), /start container/);
      const st = (await runtime.containerStatus({ containerId })).status;
      assert.equal(st?.state, ContainerState.CONTAINER_EXITED);
      assert.equal(st?.reason, "StartError");
      assert.equal(st?.exitCode, 128);
      assert.match(st?.message ?? "", /start container .*runc/);
      assert.ok((st?.finishedAt ?? 0n) > 0n);
      await eventually("the process of the container whose start failed to be gone", async () => {
        const stat = await readFile(`/proc/${pid}/stat`, "utf8").catch(() => "");
        return stat === "" || / Z /.test(stat);
      });
      await assert.rejects(runtime.startContainer({ containerId }), grpcError(Code.FailedPrecondition, /exited/));
      const listed = await runtime.listContainers({ filter: { id: containerId } });
      assert.equal(listed.containers[0]?.state, ContainerState.CONTAINER_EXITED);
      await runtime.removeContainer({ containerId });
    });

    test("a container over its memory limit is OOMKilled", async () => {
      const { status, log } = await env.runToExit(
        pod,
        sh("oom", "head -c 100m /dev/zero | tail", {
          linux: { resources: { memoryLimitInBytes: 20n * MiB, memorySwapLimitInBytes: 20n * MiB } },
        }),
        30_000,
      );
      assert.equal(status.reason, "OOMKilled", log);
      assert.equal(status.exitCode, 137);
    });
  });

  describe("stop", () => {
    test("StopContainer kills a container ignoring SIGTERM once the timeout passes (exit 137)", async () => {
      const id = await env.startContainer(
        pod,
        sh("stubborn", "trap '' TERM; echo ready; while true; do usleep 100000; done"),
      );
      await eventually("the trap to be set", async () =>
        (await readFile(join(pod.logDir, `stubborn-${n}.log`), "utf8").catch(() => "")).includes("ready"),
      );
      const t0 = Date.now();
      await env.d.client.runtime.stopContainer({ containerId: id, timeout: 2n });
      const took = Date.now() - t0;
      assert.ok(took >= 1900 && took < 10_000, `stop took ${took} ms`);
      const s = (await env.d.client.runtime.containerStatus({ containerId: id })).status;
      assert.equal(s?.state, ContainerState.CONTAINER_EXITED);
      assert.equal(s?.exitCode, 137);
      assert.equal(s?.reason, "Error");
      // Idempotent.
      await env.d.client.runtime.stopContainer({ containerId: id, timeout: 2n });
    });

    test("StopContainer sends the image's STOPSIGNAL first", async () => {
      const config: ContainerConfigInit = {
        metadata: { name: name("stopsignal") },
        image: { image: env.image("berth-test/entrypoint") },
        command: [
          "/bin/sh",
          "-c",
          "trap 'echo got-int; exit 7' INT; trap '' TERM; echo ready; while true; do usleep 50000; done",
        ],
        logPath: `stopsignal-${n}.log`,
      };
      const id = await env.startContainer(pod, config);
      const logPath = join(pod.logDir, `stopsignal-${n}.log`);
      await eventually("the trap to be set", async () =>
        (await readFile(logPath, "utf8").catch(() => "")).includes("ready"),
      );
      assert.equal((await env.d.client.runtime.containerStatus({ containerId: id })).status?.stopSignal, Signal.SIGINT);
      const t0 = Date.now();
      await env.d.client.runtime.stopContainer({ containerId: id, timeout: 20n });
      assert.ok(Date.now() - t0 < 5_000, "the SIGINT handler ended it, not the SIGKILL after 20 s");
      const s = (await env.d.client.runtime.containerStatus({ containerId: id })).status;
      assert.equal(s?.exitCode, 7);
      assert.match(logContent(await readFile(logPath, "utf8")), /got-int/);
    });

    test("RemoveContainer kills a running container and is idempotent", async () => {
      const id = await env.startContainer(pod, sh("removed", "exec sleep 3600"));
      await env.d.client.runtime.removeContainer({ containerId: id });
      await assert.rejects(env.d.client.runtime.containerStatus({ containerId: id }), grpcError(Code.NotFound));
      await env.d.client.runtime.removeContainer({ containerId: id });
    });
  });

  describe("process", () => {
    const entry = (extra: Partial<ContainerConfigInit>): ContainerConfigInit => ({
      metadata: { name: name("entry") },
      image: { image: env.image("berth-test/entrypoint") },
      logPath: `entry-${n}.log`,
      ...extra,
    });
    const out = async (config: ContainerConfigInit) => {
      const { status, log } = await env.runToExit(pod, config);
      assert.equal(status.exitCode, 0, log);
      return logContent(log, "stdout");
    };

    test("the image's ENTRYPOINT and CMD run when the container sets neither command nor args", async () => {
      assert.equal(await out(entry({})), "entry cmd-default\n");
    });

    test("args replace the image's CMD and keep its ENTRYPOINT", async () => {
      assert.equal(await out(entry({ args: ["a1", "a2"] })), "entry a1 a2\n");
    });

    test("command replaces ENTRYPOINT and drops the image's CMD", async () => {
      assert.equal(await out(entry({ command: ["/bin/echo", "cmd"] })), "cmd\n");
    });

    test("command and args together replace both", async () => {
      assert.equal(await out(entry({ command: ["/bin/echo", "cmd"], args: ["x", "y"] })), "cmd x y\n");
    });

    test("the container's env overrides the image's by name and adds new variables", async () => {
      const env1 = await out(entry({ command: ["/bin/env"] }));
      assert.match(env1, /^FOO=bar$/m);
      assert.match(env1, /^PATH=\/usr\/local\/sbin:/m);
      assert.match(env1, /^HOSTNAME=containers$/m);
      const env2 = await out(entry({ command: ["/bin/env"], envs: [kv("FOO", "override"), kv("NEW", "1")] }));
      assert.match(env2, /^FOO=override$/m);
      assert.doesNotMatch(env2, /^FOO=bar$/m);
      assert.match(env2, /^NEW=1$/m);
    });

    test("the working dir is the image's WORKDIR unless the container sets one", async () => {
      assert.equal(await out(entry({ command: ["/bin/pwd"] })), "/work\n");
      assert.equal(await out(entry({ command: ["/bin/pwd"], workingDir: "/tmp" })), "/tmp\n");
    });
  });

  describe("user and groups", () => {
    const id = async (image: string, securityContext: object = {}) => {
      const { status, log } = await env.runToExit(pod, {
        metadata: { name: name("id") },
        image: { image: env.image(image) },
        command: ["id"],
        logPath: `id-${n}.log`,
        linux: { securityContext },
      });
      assert.equal(status.exitCode, 0, log);
      return { id: logContent(log, "stdout").trim(), status };
    };

    test("the image's USER name is resolved in its /etc/passwd, with its groups from /etc/group", async () => {
      const r = await id("berth-test/users");
      assert.equal(r.id, "uid=1000(app) gid=1000(app) groups=1000(app),2000(extra)");
    });

    test("run_as_user by uid overrides the image's USER", async () => {
      assert.equal(
        (await id("berth-test/users", { runAsUser: { value: 0n } })).id,
        "uid=0(root) gid=0(root) groups=0(root)",
      );
      assert.match((await id("berth-test/busybox", { runAsUser: { value: 1234n } })).id, /^uid=1234 gid=0\(root\)/);
    });

    test("run_as_username is resolved in the image's /etc/passwd", async () => {
      const r = await id("berth-test/users", { runAsUsername: "app" });
      assert.match(r.id, /^uid=1000\(app\) gid=1000\(app\)/);
      assert.equal(r.status.user?.linux?.uid, 1000n);
    });

    test("an unknown run_as_username fails CreateContainer naming the user", async () => {
      await assert.rejects(
        env.d.client.runtime.createContainer({
          podSandboxId: pod.id,
          sandboxConfig: pod.config,
          config: {
            metadata: { name: name("nouser") },
            image: { image: env.image("berth-test/busybox") },
            command: ["id"],
            linux: { securityContext: { runAsUsername: "ghost" } },
          },
        }),
        grpcError(Code.InvalidArgument, /ghost/),
      );
    });

    test("run_as_group sets the primary group and supplemental_groups add to the image's", async () => {
      const r = await id("berth-test/users", {
        runAsUser: { value: 1000n },
        runAsGroup: { value: 3000n },
        supplementalGroups: [4000n],
      });
      assert.match(r.id, /^uid=1000\(app\) gid=3000 groups=/);
      const groups = /groups=(.*)$/.exec(r.id)?.[1] ?? "";
      for (const g of ["2000(extra)", "3000", "4000"]) assert.ok(groups.split(",").includes(g), `${g} in ${groups}`);
      assert.deepEqual(
        [r.status.user?.linux?.uid, r.status.user?.linux?.gid, r.status.user?.linux?.supplementalGroups],
        [1000n, 3000n, [2000n, 3000n, 4000n]],
      );
    });

    test("supplemental_groups_policy Strict leaves out the image's /etc/group entries; Merge keeps them", async () => {
      const strict = await id("berth-test/users", {
        supplementalGroups: [4000n],
        supplementalGroupsPolicy: SupplementalGroupsPolicy.Strict,
      });
      assert.equal(strict.id, "uid=1000(app) gid=1000(app) groups=1000(app),4000");
      assert.deepEqual(strict.status.user?.linux?.supplementalGroups, [1000n, 4000n]);
      const merge = await id("berth-test/users", {
        supplementalGroups: [4000n],
        supplementalGroupsPolicy: SupplementalGroupsPolicy.Merge,
      });
      assert.deepEqual(merge.status.user?.linux?.supplementalGroups, [1000n, 2000n, 4000n]);
    });
  });

  describe("security", () => {
    test("a read-only rootfs refuses writes", async () => {
      const { status, log } = await env.runToExit(
        pod,
        sh("ro", "touch /probe", { linux: { securityContext: { readonlyRootfs: true } } }),
      );
      assert.notEqual(status.exitCode, 0);
      assert.match(logContent(log, "stderr"), /Read-only file system/);
      const rw = await env.runToExit(pod, sh("rw", "touch /probe"));
      assert.equal(rw.status.exitCode, 0, rw.log);
    });

    test("capabilities drop ALL then add NET_RAW leaves only CAP_NET_RAW in CapEff", async () => {
      const { log } = await env.runToExit(
        pod,
        sh("caps", "grep -E '^Cap(Eff|Bnd|Prm)' /proc/self/status", {
          linux: { securityContext: { capabilities: { dropCapabilities: ["ALL"], addCapabilities: ["NET_RAW"] } } },
        }),
      );
      const out = logContent(log, "stdout");
      for (const f of ["CapEff", "CapPrm", "CapBnd"])
        assert.match(out, new RegExp(`^${f}:\\s+0000000000002000$`, "m"), out);
    });

    test("the default capability set has CAP_CHOWN but not CAP_SYS_ADMIN", async () => {
      const { log } = await env.runToExit(pod, sh("defcaps", "grep '^CapEff' /proc/self/status"));
      const eff = BigInt(`0x${/CapEff:\s+([0-9a-f]+)/.exec(logContent(log))?.[1] ?? "0"}`);
      assert.equal(eff & 1n, 1n, "CAP_CHOWN");
      assert.equal((eff >> 21n) & 1n, 0n, "no CAP_SYS_ADMIN");
    });

    test("a privileged container has every capability and can mount", async () => {
      const priv = await env.runPod("privileged", { linux: { securityContext: { privileged: true } } });
      try {
        // Privileged means every capability berth itself has (its bounding set may lack some on this host).
        const all = /^CapBnd:\s+([0-9a-f]+)$/m.exec(await readFile("/proc/self/status", "utf8"))?.[1] ?? "?";
        const { status, log } = await env.runToExit(
          priv,
          shell(
            env,
            "priv",
            "grep '^CapEff' /proc/self/status; mkdir -p /mnt/t && mount -t tmpfs none /mnt/t && echo mounted; test -e /dev/loop-control && echo host-devices",
            {
              linux: { securityContext: { privileged: true } },
            },
          ),
        );
        assert.equal(status.exitCode, 0, log);
        const out = logContent(log, "stdout");
        assert.match(out, new RegExp(`^CapEff:\\s+${all}$`, "m"));
        assert.match(out, /^mounted$/m);
        assert.match(out, /^host-devices$/m);
      } finally {
        await env.removePod(priv);
      }
    });

    test("a privileged container in an unprivileged pod is refused", async () => {
      await assert.rejects(
        env.d.client.runtime.createContainer({
          podSandboxId: pod.id,
          sandboxConfig: pod.config,
          config: shell(env, name("priv"), "true", { linux: { securityContext: { privileged: true } } }),
        }),
        grpcError(Code.InvalidArgument, /privileged/),
      );
    });

    test("seccomp RuntimeDefault blocks unshare(2) that Unconfined allows", async () => {
      const script = "unshare -U true && echo allowed";
      const confined = await env.runToExit(
        pod,
        sh("seccomp-default", script, {
          linux: { securityContext: { seccomp: { profileType: SecurityProfile_ProfileType.RuntimeDefault } } },
        }),
      );
      assert.notEqual(confined.status.exitCode, 0, confined.log);
      assert.match(logContent(confined.log, "stderr"), /Operation not permitted/);
      const unconfined = await env.runToExit(
        pod,
        sh("seccomp-unconfined", script, {
          linux: { securityContext: { seccomp: { profileType: SecurityProfile_ProfileType.Unconfined } } },
        }),
      );
      assert.equal(unconfined.status.exitCode, 0, unconfined.log);
      assert.equal(logContent(unconfined.log, "stdout"), "allowed\n");
    });

    test("requesting an AppArmor profile on a host without AppArmor is a clear error", async () => {
      await assert.rejects(
        env.d.client.runtime.createContainer({
          podSandboxId: pod.id,
          sandboxConfig: pod.config,
          config: shell(env, name("aa"), "true", {
            linux: {
              securityContext: {
                apparmor: { profileType: SecurityProfile_ProfileType.Localhost, localhostRef: "my-profile" },
              },
            },
          }),
        }),
        grpcError(Code.InvalidArgument, /AppArmor/),
      );
    });
  });

  describe("mounts", () => {
    test("a readonly bind mount shows the host file and refuses writes", async () => {
      const host = await mkdtemp(join(tmpdir(), "berth-e2e-bind-"));
      try {
        await writeFile(join(host, "f"), "from-host\n");
        const { log } = await env.runToExit(
          pod,
          sh("bind", "cat /data/f; touch /data/new || echo write-refused; grep ' /data ' /proc/self/mountinfo", {
            mounts: [{ containerPath: "/data", hostPath: host, readonly: true }],
          }),
        );
        const out = logContent(log, "stdout");
        assert.match(out, /^from-host$/m);
        assert.match(out, /^write-refused$/m);
        assert.match(out, / \/data ro[, ]/);
      } finally {
        await rm(host, { recursive: true, force: true });
      }
    });

    test("a recursive read-only bind makes its submounts read-only too; a plain read-only bind does not", async () => {
      const host = await mkdtemp(join(tmpdir(), "berth-e2e-rro-"));
      const sub = join(host, "sub");
      const script = "for f in /data/a /data/sub/b; do touch $f && echo wrote $f || echo refused $f; done";
      const bind = (recursiveReadOnly: boolean) => ({
        containerPath: "/data",
        hostPath: host,
        readonly: true,
        recursiveReadOnly,
        propagation: MountPropagation.PROPAGATION_PRIVATE,
      });
      try {
        await mkdir(sub);
        await run("mount", ["-t", "tmpfs", "-o", "size=1m", "berth-e2e-rro", sub], { name: "mount" });
        const rro = await env.runToExit(pod, sh("rro", script, { mounts: [bind(true)] }));
        assert.match(logContent(rro.log, "stdout"), /^refused \/data\/a\nrefused \/data\/sub\/b$/m);
        const ro = await env.runToExit(pod, sh("ro", script, { mounts: [bind(false)] }));
        assert.match(logContent(ro.log, "stdout"), /^refused \/data\/a\nwrote \/data\/sub\/b$/m);
        const clones = async () => (await mountsUnder(env.d.state)).filter((m) => m.includes(`/rro/${rro.id}/`));
        assert.ok((await clones()).length >= 2, "the clone and its submount are mounted while the container exists");
        // RemoveContainer detaches the read-only clones: none is left mounted on the host.
        await env.d.client.runtime.removeContainer({ containerId: rro.id });
        assert.deepEqual(await clones(), []);
        await assert.rejects(
          env.d.client.runtime.createContainer({
            podSandboxId: pod.id,
            sandboxConfig: pod.config,
            config: sh("rro-rw", "true", { mounts: [{ ...bind(true), readonly: false }] }),
          }),
          grpcError(Code.InvalidArgument, /recursive_read_only requires readonly/),
        );
      } finally {
        await run("umount", [sub], { name: "umount" }).catch(() => {});
        await rm(host, { recursive: true, force: true });
      }
    });

    test("an image volume mounts another image read-only, whole or a sub path, and keeps its layers while in use", async () => {
      const web = env.image("berth-test/web");
      const rt = env.d.client.runtime;
      await env.d.client.image.pullImage({ image: { image: web } });
      const volume = (containerPath: string, imageSubPath = "") => ({
        containerPath,
        image: { image: web },
        imageSubPath,
        propagation: MountPropagation.PROPAGATION_PRIVATE,
      });
      const id = await env.startContainer(
        pod,
        sh("imagevol", "exec sleep 3600", { mounts: [volume("/vol"), volume("/site", "www")] }),
      );
      const volumes = async () => (await mountsUnder(env.d.state)).filter((m) => m.includes(`${id}-image-volume`));
      try {
        assert.equal((await volumes()).length, 2, "one snapshot mount per volume");
        assert.equal((await exec(id, ["cat", "/vol/www/index.html"])).stdout, "hello from berth\n");
        assert.equal((await exec(id, ["cat", "/site/index.html"])).stdout, "hello from berth\n");
        const write = await exec(id, ["sh", "-c", "touch /vol/x 2>&1; echo rc=$?"]);
        assert.match(write.stdout, /Read-only file system[\s\S]*rc=1/);
        const status = await rt.containerStatus({ containerId: id });
        const reported = status.status?.mounts.find((m) => m.containerPath === "/site");
        assert.deepEqual([reported?.image?.image, reported?.imageSubPath, reported?.readonly], [web, "www", true]);
        // Removing the image (and so collecting garbage) leaves the layers the volume is using.
        await env.d.client.image.removeImage({ image: { image: web } });
        assert.equal((await exec(id, ["cat", "/site/index.html"])).stdout, "hello from berth\n");
      } finally {
        await rt.removeContainer({ containerId: id });
      }
      assert.deepEqual(await volumes(), [], "RemoveContainer unmounted the volumes");
      await assert.rejects(
        rt.createContainer({
          podSandboxId: pod.id,
          sandboxConfig: pod.config,
          config: sh("imagevol-missing", "true", { mounts: [volume("/vol")] }),
        }),
        grpcError(Code.NotFound, /image volume .*berth-test\/web.* is not present/),
      );
    });

    test("a mount made by a privileged container under a BIDIRECTIONAL mount of a shared host dir reaches the host", async () => {
      // The host side must be a shared mount for anything to propagate (/ on this host is private),
      // as critest arranges it: bind the directory onto itself and make that shared.
      const host = await mkdtemp(join(tmpdir(), "berth-e2e-rshared-"));
      const priv = await env.runPod("rshared", { linux: { securityContext: { privileged: true } } });
      try {
        await run("mount", ["--bind", host, host], { name: "mount" });
        await run("mount", ["--make-shared", host], { name: "mount" });
        await env.startContainer(
          priv,
          shell(
            env,
            name("rshared"),
            "mkdir -p /shared/sub && mount -t tmpfs none /shared/sub && echo from-container > /shared/sub/f && exec sleep 3600",
            {
              linux: { securityContext: { privileged: true } },
              mounts: [
                { containerPath: "/shared", hostPath: host, propagation: MountPropagation.PROPAGATION_BIDIRECTIONAL },
              ],
            },
          ),
        );
        const seen = await eventually("the container's tmpfs on the host", async () =>
          readFile(join(host, "sub", "f"), "utf8").catch(() => undefined),
        );
        assert.equal(seen, "from-container\n");
        assert.ok((await mountsUnder(host)).includes(join(host, "sub")), "the host's mount table has it");
      } finally {
        await env.removePod(priv);
        for (const mp of [join(host, "sub"), host])
          await run("umount", ["--lazy", mp], { name: "umount" }).catch(() => {});
        await rm(host, { recursive: true, force: true });
      }
    });

    test("a missing host path fails CreateContainer naming the path", async () => {
      await assert.rejects(
        env.d.client.runtime.createContainer({
          podSandboxId: pod.id,
          sandboxConfig: pod.config,
          config: sh("nobind", "true", { mounts: [{ containerPath: "/data", hostPath: "/nonexistent/berth-e2e" }] }),
        }),
        grpcError(Code.InvalidArgument, /\/nonexistent\/berth-e2e/),
      );
    });
  });

  describe("logs", () => {
    test("output is written in the CRI log format, a line without newline tagged P", async () => {
      const { log, status } = await env.runToExit(
        pod,
        sh("log", "echo out1; echo err1 >&2; echo out2; printf partial"),
      );
      assert.equal(status.logPath, join(pod.logDir, `log-${n}.log`));
      const lines = log.split("\n").filter(Boolean);
      for (const l of lines) assert.match(l, CRI_LOG_LINE);
      const parsed = lines.map((l) => CRI_LOG_LINE.exec(l)?.slice(2, 5).join(" "));
      assert.deepEqual(
        parsed.filter((l) => l?.startsWith("stdout")),
        ["stdout F out1", "stdout F out2", "stdout P partial"],
      );
      assert.deepEqual(
        parsed.filter((l) => l?.startsWith("stderr")),
        ["stderr F err1"],
      );
      const ts = lines.map((l) => Date.parse(CRI_LOG_LINE.exec(l)?.[1] ?? ""));
      for (const t of ts) assert.ok(Math.abs(t - Date.now()) < 60_000, "timestamps are current");
    });

    test("after the log file is renamed, ReopenContainerLog makes logging continue in a new file", async () => {
      const id = await env.startContainer(
        pod,
        sh("rotate", "i=0; while true; do i=$((i+1)); echo tick $i; usleep 50000; done"),
      );
      const path = join(pod.logDir, `rotate-${n}.log`);
      await eventually("first ticks", async () => (await readFile(path, "utf8").catch(() => "")).includes("tick 2"));
      await rename(path, `${path}.1`);
      await env.d.client.runtime.reopenContainerLog({ containerId: id });
      await eventually(
        "ticks in the new file",
        async () => logContent(await readFile(path, "utf8").catch(() => "")).split("\n").length > 3,
      );
      const old = await readFile(`${path}.1`, "utf8");
      await new Promise((r) => setTimeout(r, 300));
      assert.equal(await readFile(`${path}.1`, "utf8"), old, "the rotated file no longer grows");
      const fresh = logContent(await readFile(path, "utf8"));
      const lastOld = Number(/tick (\d+)\n$/.exec(logContent(old))?.[1]);
      const firstNew = Number(/^tick (\d+)$/m.exec(fresh)?.[1]);
      assert.ok(firstNew > lastOld, `new file continues the sequence (${lastOld} then ${firstNew})`);
      await env.d.client.runtime.removeContainer({ containerId: id });
    });

    test("ReopenContainerLog of an exited container is an error", async () => {
      const { id } = await env.runToExit(pod, sh("reopen-exited", "true"));
      await assert.rejects(
        env.d.client.runtime.reopenContainerLog({ containerId: id }),
        grpcError(Code.FailedPrecondition),
      );
    });
  });

  describe("exec and resources", () => {
    let id: string;
    before(async () => {
      id = await env.startContainer(
        pod,
        sh("server", "exec sleep 3600", { linux: { resources: { memoryLimitInBytes: 64n * MiB, cpuShares: 512n } } }),
      );
    });

    test("ExecSync returns stdout and stderr separately with the exit code", async () => {
      const r = await exec(id, ["sh", "-c", "echo out; echo err >&2; exit 3"]);
      assert.deepEqual(r, { stdout: "out\n", stderr: "err\n", exitCode: 3 });
      assert.deepEqual(await exec(id, ["hostname"]), { stdout: "containers\n", stderr: "", exitCode: 0 });
    });

    test("ExecSync past its timeout kills the command and answers DeadlineExceeded", async () => {
      const t0 = Date.now();
      await assert.rejects(
        exec(id, ["sh", "-c", "echo started; exec sleep 30"], 1n),
        grpcError(Code.DeadlineExceeded, /timed out/),
      );
      const took = Date.now() - t0;
      assert.ok(took < 10_000, `returned after ${took} ms`);
      const ps = await exec(id, ["ps", "-o", "args"]);
      assert.doesNotMatch(ps.stdout, /sleep 30/, "the timed-out command was killed");
    });

    test("ExecSync past its timeout kills every process the command started before it answers", async () => {
      // The shell forks one sleep into the background and waits in another: both must be gone the
      // moment the RPC returns, not only the shell conmon started.
      await assert.rejects(
        exec(id, ["sh", "-c", "sleep 300 & sleep 301 & wait"], 1n),
        grpcError(Code.DeadlineExceeded),
      );
      const ps = await exec(id, ["ps", "-o", "pid,args"]);
      assert.doesNotMatch(ps.stdout, /sleep 30[01]/, `left running:\n${ps.stdout}`);
      // The container's own process is untouched.
      assert.match(ps.stdout, /sleep 3600/);
    });

    test("an ExecSync whose client gives up kills the command and what it started", async () => {
      await assert.rejects(
        env.d.client.runtime.execSync(
          { containerId: id, cmd: ["sh", "-c", "sleep 310 & sleep 311 & wait"], timeout: 0n },
          { timeoutMs: 1500 },
        ),
      );
      await eventually("the abandoned exec to be killed", async () => {
        const ps = await exec(id, ["ps", "-o", "args"]);
        return !/sleep 31[01]/.test(ps.stdout);
      });
    });

    test("ExecSync without a timeout still returns a command's output while its background child runs on", async () => {
      const r = await exec(id, ["sh", "-c", "echo hi; sleep 2 >/dev/null 2>&1 </dev/null &"]);
      assert.deepEqual(r, { stdout: "hi\n", stderr: "", exitCode: 0 });
    });

    test("a container whose state directory was deleted while it ran is still stopped and removed, its process gone", async () => {
      const victim = await env.startContainer(pod, sh("vanishing", "exec sleep 3600"));
      const stateDir = join(env.d.state, "runtime", "containers", victim);
      const pid = Number((await readFile(join(stateDir, "pidfile"), "utf8")).trim());
      assert.ok(pid > 0);
      await rm(stateDir, { recursive: true, force: true });
      await env.d.client.runtime.stopContainer({ containerId: victim, timeout: 0n });
      const st = (await env.d.client.runtime.containerStatus({ containerId: victim })).status;
      assert.equal(st?.state, ContainerState.CONTAINER_EXITED);
      await eventually("the container's process to be gone", async () => {
        const stat = await readFile(`/proc/${pid}/stat`, "utf8").catch(() => "");
        return stat === "" || / Z /.test(stat);
      });
      await env.d.client.runtime.removeContainer({ containerId: victim });
      await assert.rejects(env.d.client.runtime.containerStatus({ containerId: victim }), grpcError(Code.NotFound));
    });

    test("a container whose state directory was deleted is killed when berthd restarts, not left running as exited", async () => {
      const victim = await env.startContainer(pod, sh("lost", "exec sleep 3600"));
      const stateDir = join(env.d.state, "runtime", "containers", victim);
      const pid = Number((await readFile(join(stateDir, "pidfile"), "utf8")).trim());
      await env.restart({ kill: true, beforeStart: () => rm(stateDir, { recursive: true, force: true }) });
      const st = (await env.d.client.runtime.containerStatus({ containerId: victim })).status;
      assert.equal(st?.state, ContainerState.CONTAINER_EXITED);
      assert.equal(st?.exitCode, 255);
      await eventually("the lost container's process to be gone", async () => {
        const stat = await readFile(`/proc/${pid}/stat`, "utf8").catch(() => "");
        return stat === "" || / Z /.test(stat);
      });
      await env.d.client.runtime.removeContainer({ containerId: victim });
    });

    test("ExecSync of a missing executable is an error, and the container keeps running", async () => {
      await assert.rejects(exec(id, ["/no/such/binary"]));
      assert.equal(
        (await env.d.client.runtime.containerStatus({ containerId: id })).status?.state,
        ContainerState.CONTAINER_RUNNING,
      );
    });

    test("the memory limit is visible in the container's cgroup and UpdateContainerResources changes it", async () => {
      const limit = async () =>
        Number((await exec(id, ["cat", "/sys/fs/cgroup/memory/memory.limit_in_bytes"])).stdout.trim());
      assert.equal(await limit(), 64 * 1024 * 1024);
      await env.d.client.runtime.updateContainerResources({
        containerId: id,
        linux: { memoryLimitInBytes: 128n * MiB },
      });
      assert.equal(await limit(), 128 * 1024 * 1024);
      const s = (await env.d.client.runtime.containerStatus({ containerId: id })).status;
      assert.equal(s?.resources?.linux?.memoryLimitInBytes, 128n * MiB);
      assert.equal(s?.resources?.linux?.cpuShares, 512n, "fields not named in the update are kept");
      assert.equal(
        (await exec(id, ["cat", "/sys/fs/cgroup/cpu/cpu.shares"])).stdout,
        "512\n",
        "as the cgroup keeps them",
      );
    });
  });
});
