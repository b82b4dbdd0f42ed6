import assert from "node:assert/strict";
import { rm } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { Code } from "@connectrpc/connect";
import { ContainerState, NamespaceMode, PodSandboxState } from "../../src/api/gen/runtime/v1/api_pb.js";
import { mountsUnder, run } from "../../src/sys/index.js";
import { isRoot } from "../support/berthd.js";
import { grpcError, logContent, type Pod, type PodEnv, shell, startPodEnv } from "../support/pods.js";
import { skipUnlessCi } from "../support/skip.js";

describe("pod sandboxes", {
  skip: skipUnlessCi(isRoot() ? false : "needs root (runc, conmon, CNI, mounts)"),
  timeout: 120_000,
}, () => {
  let env: PodEnv;
  before(async () => {
    env = await startPodEnv({ bridge: "bte2e-sb", subnet: "10.231.11.0/24", images: ["berth-test/busybox"] });
  });
  after(async () => {
    await env?.close();
  });

  test("a container sees the pod's hostname, /etc/hosts with the pod IP and resolv.conf from DNSConfig", async () => {
    const pod = await env.runPod("dns", {
      hostname: "web-1",
      dnsConfig: {
        servers: ["10.96.0.10", "10.96.0.11"],
        searches: ["e2e.svc.cluster.local", "svc.cluster.local"],
        options: ["ndots:5"],
      },
    });
    const ip = (await env.d.client.runtime.podSandboxStatus({ podSandboxId: pod.id })).status?.network?.ip ?? "";
    assert.match(ip, /^10\.231\.11\.\d+$/);
    const { status, log } = await env.runToExit(
      pod,
      shell(env, "look", "hostname; cat /etc/hostname; echo ---; cat /etc/hosts; echo ---; cat /etc/resolv.conf"),
    );
    assert.equal(status.exitCode, 0, log);
    const [hostname = "", hosts = "", resolv = ""] = logContent(log, "stdout").split("---\n");
    assert.equal(hostname, "web-1\nweb-1\n");
    assert.match(hosts, /^127\.0\.0\.1\s+localhost$/m);
    assert.match(hosts, new RegExp(`^${ip.replaceAll(".", "\\.")}\\s+web-1$`, "m"));
    assert.equal(
      resolv,
      "nameserver 10.96.0.10\nnameserver 10.96.0.11\nsearch e2e.svc.cluster.local svc.cluster.local\noptions ndots:5\n",
    );
    await env.removePod(pod);
  });

  test("without DNSConfig the pod gets the host's resolv.conf", async () => {
    const { readFile } = await import("node:fs/promises");
    const host = await readFile("/etc/resolv.conf", "utf8");
    const pod = await env.runPod("hostdns");
    const { log } = await env.runToExit(pod, shell(env, "look", "cat /etc/resolv.conf"));
    assert.equal(logContent(log, "stdout"), host.endsWith("\n") ? host : `${host}\n`);
    await env.removePod(pod);
  });

  test("a second RunPodSandbox with the same metadata is AlreadyExists naming the existing ID", async () => {
    const pod = await env.runPod("twice");
    await assert.rejects(
      env.d.client.runtime.runPodSandbox({ config: pod.config }),
      grpcError(Code.AlreadyExists, new RegExp(pod.id)),
    );
    // Another attempt of the same pod is a different sandbox.
    const second = await env.d.client.runtime.runPodSandbox({
      config: { ...pod.config, metadata: { name: "twice", namespace: "e2e", uid: "uid-twice", attempt: 1 } },
    });
    assert.notEqual(second.podSandboxId, pod.id);
    await env.removePod({ ...pod, id: second.podSandboxId });
    await env.removePod(pod);
  });

  test("an unknown runtime handler is InvalidArgument and leaves nothing behind", async () => {
    const before = (await env.d.client.runtime.listPodSandbox({})).items.length;
    await assert.rejects(
      env.d.client.runtime.runPodSandbox({
        config: { metadata: { name: "kata", namespace: "e2e", uid: "uid-kata", attempt: 0 } },
        runtimeHandler: "kata",
      }),
      grpcError(Code.InvalidArgument, /kata/),
    );
    assert.equal((await env.d.client.runtime.listPodSandbox({})).items.length, before);
  });

  test("StopPodSandbox and RemovePodSandbox are idempotent and take the pod's containers with them", async () => {
    const pod = await env.runPod("idem");
    const c = await env.startContainer(pod, shell(env, "sleeper", "exec sleep 3600"));
    await env.d.client.runtime.stopPodSandbox({ podSandboxId: pod.id });
    const st = await env.d.client.runtime.podSandboxStatus({ podSandboxId: pod.id });
    assert.equal(st.status?.state, PodSandboxState.SANDBOX_NOTREADY);
    const cs = await env.d.client.runtime.containerStatus({ containerId: c });
    assert.equal(cs.status?.state, ContainerState.CONTAINER_EXITED, "stopping the pod stops its containers");
    await env.d.client.runtime.stopPodSandbox({ podSandboxId: pod.id });
    await env.d.client.runtime.removePodSandbox({ podSandboxId: pod.id });
    await env.d.client.runtime.removePodSandbox({ podSandboxId: pod.id });
    await assert.rejects(env.d.client.runtime.podSandboxStatus({ podSandboxId: pod.id }), grpcError(Code.NotFound));
    await assert.rejects(env.d.client.runtime.containerStatus({ containerId: c }), grpcError(Code.NotFound));
    assert.deepEqual((await env.d.client.runtime.listContainers({ filter: { podSandboxId: pod.id } })).containers, []);
  });

  test("RemovePodSandbox of a ready pod with a running container kills and removes it", async () => {
    const pod = await env.runPod("direct-remove");
    const c = await env.startContainer(pod, shell(env, "sleeper", "exec sleep 3600"));
    await env.d.client.runtime.removePodSandbox({ podSandboxId: pod.id });
    await assert.rejects(env.d.client.runtime.containerStatus({ containerId: c }), grpcError(Code.NotFound));
    assert.equal((await env.d.client.runtime.listPodSandbox({ filter: { id: pod.id } })).items.length, 0);
  });

  test("a pod whose state directory vanished (shm and namespaces unmounted, files deleted) is still stopped and removed", async () => {
    const pod = await env.runPod("vanished", {
      linux: { securityContext: { namespaceOptions: { pid: NamespaceMode.POD } } },
    });
    const c = await env.startContainer(pod, shell(env, "sleeper", "exec sleep 3600"));
    const dir = join(env.d.state, "sandboxes", pod.id);
    // As a reboot with the state on tmpfs, or an admin's cleanup, would leave it: nothing of the pod's dir.
    for (const mp of await mountsUnder(dir)) await run("umount", ["--lazy", mp], { name: "umount" });
    await rm(dir, { recursive: true, force: true });
    await env.d.client.runtime.stopPodSandbox({ podSandboxId: pod.id });
    const cs = await env.d.client.runtime.containerStatus({ containerId: c });
    assert.equal(cs.status?.state, ContainerState.CONTAINER_EXITED);
    await env.d.client.runtime.removePodSandbox({ podSandboxId: pod.id });
    assert.equal((await env.d.client.runtime.listPodSandbox({ filter: { id: pod.id } })).items.length, 0);
    await assert.rejects(env.d.client.runtime.containerStatus({ containerId: c }), grpcError(Code.NotFound));
    assert.deepEqual(await mountsUnder(dir), []);
  });

  test("ListPodSandbox filters by ID prefix, state and label selector", async () => {
    const a = await env.runPod("list-a", { labels: { app: "list", tier: "front" } });
    const b = await env.runPod("list-b", { labels: { app: "list", tier: "back" } });
    try {
      await env.d.client.runtime.stopPodSandbox({ podSandboxId: b.id });
      const list = async (filter: object) =>
        (await env.d.client.runtime.listPodSandbox({ filter })).items.map((i) => i.id).sort();
      assert.deepEqual(await list({ id: a.id.slice(0, 12) }), [a.id]);
      assert.deepEqual(await list({ id: a.id }), [a.id]);
      assert.deepEqual(await list({ id: "0000000000ff" }), []);
      assert.deepEqual(await list({ labelSelector: { app: "list" } }), [a.id, b.id].sort());
      assert.deepEqual(await list({ labelSelector: { app: "list", tier: "back" } }), [b.id]);
      assert.deepEqual(await list({ labelSelector: { app: "other" } }), []);
      assert.deepEqual(
        await list({ labelSelector: { app: "list" }, state: { state: PodSandboxState.SANDBOX_READY } }),
        [a.id],
      );
      assert.deepEqual(
        await list({ labelSelector: { app: "list" }, state: { state: PodSandboxState.SANDBOX_NOTREADY } }),
        [b.id],
      );
      const item = (await env.d.client.runtime.listPodSandbox({ filter: { id: a.id } })).items[0];
      assert.equal(item?.metadata?.name, "list-a");
      assert.equal(item?.state, PodSandboxState.SANDBOX_READY);
      assert.deepEqual(item?.labels, { app: "list", tier: "front" });
    } finally {
      await env.removePod(a);
      await env.removePod(b);
    }
  });

  test("ListContainers filters by ID prefix, state, sandbox ID and label selector", async () => {
    const a = await env.runPod("lc-a");
    const b = await env.runPod("lc-b");
    try {
      const running = await env.startContainer(a, shell(env, "run", "exec sleep 3600", { labels: { role: "server" } }));
      const created = (
        await env.d.client.runtime.createContainer({
          podSandboxId: a.id,
          sandboxConfig: a.config,
          config: shell(env, "created", "true", { labels: { role: "job" } }),
        })
      ).containerId;
      const { id: exited } = await env.runToExit(b, shell(env, "done", "true", { labels: { role: "job" } }));
      const list = async (filter: object) =>
        (await env.d.client.runtime.listContainers({ filter })).containers.map((c) => c.id).sort();
      const sorted = (...ids: string[]) => ids.sort();
      assert.deepEqual(await list({ id: running.slice(0, 12) }), [running]);
      assert.deepEqual(await list({ podSandboxId: a.id }), sorted(running, created));
      assert.deepEqual(await list({ podSandboxId: b.id.slice(0, 12) }), [exited]);
      assert.deepEqual(await list({ podSandboxId: a.id, state: { state: ContainerState.CONTAINER_RUNNING } }), [
        running,
      ]);
      assert.deepEqual(await list({ podSandboxId: a.id, state: { state: ContainerState.CONTAINER_CREATED } }), [
        created,
      ]);
      assert.deepEqual(await list({ podSandboxId: b.id, state: { state: ContainerState.CONTAINER_EXITED } }), [exited]);
      assert.deepEqual(await list({ labelSelector: { role: "job" } }), sorted(created, exited));
      assert.deepEqual(await list({ labelSelector: { role: "job" }, podSandboxId: b.id }), [exited]);
      assert.deepEqual(await list({ podSandboxId: "0000000000ff" }), []);
      const c = (await env.d.client.runtime.listContainers({ filter: { id: running } })).containers[0];
      assert.equal(c?.podSandboxId, a.id);
      assert.equal(c?.metadata?.name, "run");
      assert.equal(c?.image?.image, env.image("berth-test/busybox"));
      assert.equal(c?.imageRef, env.reg.image("berth-test/busybox").imageId);
    } finally {
      await env.removePod(a);
      await env.removePod(b);
    }
  });

  test("PodSandboxStatus reports IP, state, created_at, metadata, labels, annotations, handler, namespaces and verbose info", async () => {
    const t0 = BigInt(Date.now()) * 1_000_000n;
    const pod = await env.runPod("status", { labels: { app: "st" }, annotations: { "example.com/note": "hello" } });
    try {
      const r = await env.d.client.runtime.podSandboxStatus({ podSandboxId: pod.id, verbose: true });
      const s = r.status;
      assert.equal(s?.id, pod.id);
      assert.equal(s?.state, PodSandboxState.SANDBOX_READY);
      assert.deepEqual(
        {
          name: s?.metadata?.name,
          namespace: s?.metadata?.namespace,
          uid: s?.metadata?.uid,
          attempt: s?.metadata?.attempt,
        },
        { name: "status", namespace: "e2e", uid: "uid-status", attempt: 0 },
      );
      assert.match(s?.network?.ip ?? "", /^10\.231\.11\.\d+$/);
      assert.ok(
        (s?.createdAt ?? 0n) >= t0 - 1_000_000_000n && (s?.createdAt ?? 0n) <= BigInt(Date.now()) * 1_000_000n,
        "created_at is in nanoseconds",
      );
      assert.deepEqual(s?.labels, { app: "st" });
      assert.deepEqual(s?.annotations, { "example.com/note": "hello" });
      assert.equal(s?.runtimeHandler, "runc");
      assert.equal(s?.linux?.namespaces?.options?.network, NamespaceMode.POD);
      const info = JSON.parse(r.info.info ?? "") as Record<string, unknown>;
      assert.equal(info.id, pod.id);
      // A short prefix works for status too.
      const byPrefix = await env.d.client.runtime.podSandboxStatus({ podSandboxId: pod.id.slice(0, 12) });
      assert.equal(byPrefix.status?.id, pod.id);
      await env.d.client.runtime.stopPodSandbox({ podSandboxId: pod.id });
      const stopped = await env.d.client.runtime.podSandboxStatus({ podSandboxId: pod.id });
      assert.equal(stopped.status?.state, PodSandboxState.SANDBOX_NOTREADY);
    } finally {
      await env.removePod(pod);
    }
  });

  describe("namespaces", () => {
    const out = async (pod: Pod, name: string, script: string, extra: object = {}) => {
      const { status, log } = await env.runToExit(pod, shell(env, name, script, extra));
      assert.equal(status.exitCode, 0, log);
      return logContent(log, "stdout");
    };

    test("containers of a pod with PID namespace POD see each other's processes under the pod's PID 1", async () => {
      const podNs = { linux: { securityContext: { namespaceOptions: { pid: NamespaceMode.POD } } } };
      const shared = await env.runPod("sharedpid", podNs);
      const alone = await env.runPod("ownpid");
      try {
        await env.startContainer(shared, shell(env, "sleeper", "exec sleep 3600", podNs));
        const ps = await out(shared, "ps", "ps -o pid,args", podNs);
        assert.match(ps, /^\s*1 .*catatonit/m, "the pod's infra process is PID 1");
        assert.match(ps, /sleep 3600/, "a sibling container's process is visible");
        const own = await out(alone, "ps", "ps -o pid,args");
        assert.doesNotMatch(own, /sleep 3600|catatonit/);
        assert.match(own, /^\s*1 .*ps -o pid,args$/m, "a container of its own PID namespace is PID 1");
      } finally {
        await env.removePod(shared);
        await env.removePod(alone);
      }
    });

    test("a container with no PID mode (the CRI default, POD) joins its pod's PID namespace, as in containerd", async () => {
      const podNs = { linux: { securityContext: { namespaceOptions: { pid: NamespaceMode.POD } } } };
      const shared = await env.runPod("defaultpid", podNs);
      const hostPid = await env.runPod("defaulthostpid", {
        linux: { securityContext: { namespaceOptions: { pid: NamespaceMode.NODE } } },
      });
      try {
        // No namespace options at all, and options that leave pid at its zero value.
        assert.match(await out(shared, "bare", "ps -o pid,args"), /^\s*1 .*catatonit/m);
        const netOnly = { linux: { securityContext: { namespaceOptions: { network: NamespaceMode.POD } } } };
        assert.match(await out(shared, "netonly", "ps -o pid,args", netOnly), /^\s*1 .*catatonit/m);
        const { readlink } = await import("node:fs/promises");
        assert.equal(
          await out(hostPid, "bare", "readlink /proc/self/ns/pid"),
          `${await readlink("/proc/self/ns/pid")}\n`,
          "in a host-PID pod, the host's",
        );
      } finally {
        await env.removePod(shared);
        await env.removePod(hostPid);
      }
    });

    test("a pod with network NODE uses the host's network namespace", async () => {
      const { readlink } = await import("node:fs/promises");
      const pod = await env.runPod("hostnet", {
        linux: { securityContext: { namespaceOptions: { network: NamespaceMode.NODE } } },
      });
      try {
        assert.equal(await out(pod, "netns", "readlink /proc/self/ns/net"), `${await readlink("/proc/self/ns/net")}\n`);
        const st = (await env.d.client.runtime.podSandboxStatus({ podSandboxId: pod.id })).status;
        assert.equal(st?.linux?.namespaces?.options?.network, NamespaceMode.NODE);
      } finally {
        await env.removePod(pod);
      }
    });

    test("containers of one pod share its network and IPC namespaces and /dev/shm; another pod's do not", async () => {
      const a = await env.runPod("shm-a");
      const b = await env.runPod("shm-b");
      try {
        await out(a, "writer", "echo hi > /dev/shm/mark");
        const ns = "for n in net ipc uts; do readlink /proc/self/ns/$n; done";
        const [a1, a2, b1] = [
          await out(a, "ns1", ns),
          await out(a, "ns2", `${ns}; cat /dev/shm/mark`),
          await out(b, "ns1", `${ns}; ls /dev/shm`),
        ];
        assert.equal(a2, `${a1}hi\n`);
        assert.equal(
          b1
            .split("\n")
            .filter((l) => l.startsWith("net:") || l.startsWith("ipc:") || l.startsWith("uts:"))
            .some((l) => a1.includes(l)),
          false,
        );
        assert.doesNotMatch(b1, /mark/);
      } finally {
        await env.removePod(a);
        await env.removePod(b);
      }
    });

    test("the pod's sysctls apply inside its containers", async () => {
      const pod = await env.runPod("sysctl", { linux: { sysctls: { "net.ipv4.ip_unprivileged_port_start": "80" } } });
      try {
        assert.equal(await out(pod, "read", "cat /proc/sys/net/ipv4/ip_unprivileged_port_start"), "80\n");
      } finally {
        await env.removePod(pod);
      }
    });
  });
});
