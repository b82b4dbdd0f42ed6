import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir, readdir, readFile, rmdir } from "node:fs/promises";
import { dirname, join } from "node:path";
import { after, before, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { Code, type ConnectError } from "@connectrpc/connect";
import { isRoot } from "../support/berthd.js";
import { closePodEnv, eventually, type PodEnv, shell, startPodEnv } from "../support/pods.js";
import { parseSamples, promtoolCheck, type Sample, sampleValue } from "../support/prom.js";
import { skipUnlessCi } from "../support/skip.js";
import { openSession } from "../support/streams.js";

const REPO = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const MiB = 1024n * 1024n;

describe("metrics and the metrics RPCs", {
  skip: skipUnlessCi(isRoot() ? false : "needs root (runc, conmon, CNI, mounts)"),
  timeout: 240_000,
}, () => {
  let env: PodEnv;
  let address = "";
  const scrape = async (): Promise<{ text: string; samples: Sample[] }> => {
    const res = await fetch(`http://${address}/metrics`, { signal: AbortSignal.timeout(10_000) });
    assert.equal(res.status, 200);
    const text = await res.text();
    return { text, samples: parseSamples(text) };
  };

  before(async () => {
    env = await startPodEnv({
      bridge: "bte2e-met",
      subnet: "10.231.41.0/24",
      images: ["berth-test/busybox"],
      config: `[metrics]\naddress = "127.0.0.1:0"\n`,
    });
    const info = (await env.d.client.runtime.status({ verbose: true })).info;
    address = (JSON.parse(info.metrics ?? "{}") as { address: string }).address;
    assert.match(address, /^127\.0\.0\.1:\d+$/);
  });
  after(async () => {
    await closePodEnv(env);
  });

  test("berth info -v shows the metrics address and the event-loop figures", () => {
    const r = spawnSync(
      process.execPath,
      [join(REPO, "dist", "src", "bin", "berth.js"), "--socket", env.d.socket, "info", "-v"],
      {
        encoding: "utf8",
        timeout: 30_000,
      },
    );
    assert.equal(r.status, 0, r.stderr);
    const info = (JSON.parse(r.stdout) as { info: Record<string, Record<string, unknown>> }).info;
    assert.equal(info.metrics?.address, address);
    assert.equal(typeof info.eventLoop?.p99Ms, "number");
    assert.equal(typeof info.eventLoop?.stalls, "number");
  });

  test("after a known series of calls the counters moved by exactly that much, and promtool accepts the text", async () => {
    const rt = env.d.client.runtime;
    const busybox = env.reg.image("berth-test/busybox");
    const layerBytes = (busybox.manifests[0]?.layers ?? []).reduce((a, l) => a + l.size, 0);
    const registry = env.reg.plain.host;
    const a = await scrape();
    // The pull of busybox made by the environment, before anything else.
    assert.equal(sampleValue(a.samples, "berth_image_pulls_total", { registry }), 1);
    assert.equal(sampleValue(a.samples, "berth_image_pull_failures_total", { registry }), 0);
    assert.equal(sampleValue(a.samples, "berth_image_pull_bytes_total", { registry }), layerBytes);

    let statusCalls = 0;
    for (let i = 0; i < 3; i++) await rt.version({});
    for (let i = 0; i < 2; i++) {
      statusCalls++;
      await assert.rejects(
        rt.containerStatus({ containerId: "0000nope" }),
        (e) => (e as ConnectError).code === Code.NotFound,
      );
    }
    await assert.rejects(env.d.client.image.pullImage({ image: { image: `${registry}/berth-test/absent:1` } }));
    await env.d.client.image.pullImage({ image: { image: env.image("berth-test/busybox") } });
    const pod = await env.runPod("metrics");
    const mid = await scrape();
    assert.equal(sampleValue(mid.samples, "berth_sandboxes", { state: "ready" }), 1);
    // A container killed by the OOM killer.
    const oom = await env.startContainer(
      pod,
      shell(env, "oom", "head -c 100m /dev/zero | tail", {
        linux: { resources: { memoryLimitInBytes: 20n * MiB, memorySwapLimitInBytes: 20n * MiB } },
      }),
    );
    await eventually(
      "the OOM kill",
      async () => {
        statusCalls++;
        return (await rt.containerStatus({ containerId: oom })).status?.reason === "OOMKilled";
      },
      30_000,
    );
    // One exec session.
    const runner = await env.startContainer(pod, shell(env, "runner", "sleep 600"));
    const { url } = await rt.exec({ containerId: runner, cmd: ["echo", "hi"], stdout: true });
    const session = await openSession(url, { transport: "spdy", stdout: true, stderr: false });
    assert.equal((await session.outcome).stdout.toString(), "hi\n");
    await env.removePod(pod);

    const b = await eventually("the exec session to end", async () => {
      const s = await scrape();
      return sampleValue(s.samples, "berth_streaming_sessions_active", { kind: "exec" }) === 0 && s;
    });
    const delta = (name: string, labels: Record<string, string> = {}) =>
      (sampleValue(b.samples, name, labels) ?? 0) - (sampleValue(a.samples, name, labels) ?? 0);
    assert.equal(delta("berth_cri_requests_total", { method: "Version" }), 3);
    assert.equal(delta("berth_cri_request_duration_seconds_count", { method: "Version" }), 3);
    assert.equal(
      sampleValue(b.samples, "berth_cri_request_errors_total", { method: "Version", code: "NotFound" }),
      undefined,
    );
    assert.equal(delta("berth_cri_requests_total", { method: "ContainerStatus" }), statusCalls);
    assert.equal(delta("berth_cri_request_errors_total", { method: "ContainerStatus", code: "NotFound" }), 2);
    assert.equal(delta("berth_cri_requests_total", { method: "PullImage" }), 2);
    assert.equal(delta("berth_cri_request_errors_total", { method: "PullImage", code: "NotFound" }), 1);
    assert.equal(delta("berth_cri_requests_total", { method: "RunPodSandbox" }), 1);
    assert.equal(delta("berth_cri_requests_total", { method: "CreateContainer" }), 2);
    assert.equal(delta("berth_cri_requests_total", { method: "StartContainer" }), 2);
    assert.equal(delta("berth_cri_requests_total", { method: "Exec" }), 1);
    assert.equal(delta("berth_cri_requests_total", { method: "StopPodSandbox" }), 1);
    assert.equal(delta("berth_cri_requests_total", { method: "RemovePodSandbox" }), 1);
    assert.equal(delta("berth_image_pulls_total", { registry }), 2);
    assert.equal(delta("berth_image_pull_failures_total", { registry }), 1);
    assert.equal(delta("berth_image_pull_bytes_total", { registry }), 0, "the second pull found every layer present");
    assert.equal(delta("berth_cni_operation_duration_seconds_count", { operation: "add" }), 1);
    assert.equal(delta("berth_cni_operation_duration_seconds_count", { operation: "del" }), 1);
    assert.equal(delta("berth_cni_operation_failures_total", { operation: "add" }), 0);
    assert.equal(delta("berth_container_oom_kills_total"), 1);
    assert.equal(delta("berth_streaming_sessions_total", { kind: "exec" }), 1);
    assert.equal(delta("berth_streaming_sessions_total", { kind: "attach" }), 0);
    assert.equal(sampleValue(b.samples, "berth_sandboxes", { state: "ready" }), 0);
    assert.equal(sampleValue(b.samples, "berth_containers", { state: "running" }), 0);
    assert.ok((sampleValue(b.samples, "process_resident_memory_bytes") ?? 0) > 10e6);
    assert.ok((sampleValue(b.samples, "process_open_fds") ?? 0) > 0);
    assert.notEqual(sampleValue(b.samples, "berth_event_loop_delay_seconds", { stat: "p99" }), undefined);
    const lint = await promtoolCheck(b.text);
    assert.equal(lint.code, 0, lint.output);
    assert.equal(lint.output.trim(), "");
  });

  test("ListPodSandboxMetrics: a CPU burner, a memory allocator and pod traffic show increasing cAdvisor figures; the Stream* RPCs match their List* twins", async () => {
    const rt = env.d.client.runtime;
    const descriptors = new Map((await rt.listMetricDescriptors({})).descriptors.map((d) => [d.name, d.labelKeys]));
    for (const name of [
      "container_cpu_usage_seconds_total",
      "container_memory_working_set_bytes",
      "container_network_receive_bytes_total",
    ])
      assert.ok(descriptors.has(name), name);
    const server = await env.runPod("metrics-a");
    const client = await env.runPod("metrics-b");
    const serverIp = (await rt.podSandboxStatus({ podSandboxId: server.id })).status?.network?.ip ?? "";
    const burner = await env.startContainer(server, shell(env, "burner", "while :; do :; done"));
    const allocator = await env.startContainer(
      server,
      shell(
        env,
        "allocator",
        "x=$(head -c 20000000 /dev/zero | tr '\\0' a); sleep 2; y=$(head -c 40000000 /dev/zero | tr '\\0' b); sleep 600",
      ),
    );
    await env.startContainer(server, shell(env, "listener", "sleep 600 | nc -l -p 8080 > /dev/null"));
    /** One metric of the container (or, without one, of the pod) by name and interface, checking label alignment. */
    const read = async (podId: string, name: string, containerId?: string, iface?: string) => {
      const pods = (await rt.listPodSandboxMetrics({})).podMetrics;
      const pod = pods.find((p) => p.podSandboxId === podId);
      const metrics = containerId
        ? pod?.containerMetrics.find((c) => c.containerId === containerId)?.metrics
        : pod?.metrics;
      for (const m of metrics ?? []) assert.equal(m.labelValues.length, descriptors.get(m.name)?.length, m.name);
      const keys = descriptors.get(name) ?? [];
      const m = (metrics ?? []).find(
        (x) => x.name === name && (!iface || x.labelValues[keys.indexOf("interface")] === iface),
      );
      return m?.value?.value;
    };
    const cpu0 = await eventually("a CPU sample", () => read(server.id, "container_cpu_usage_seconds_total", burner));
    await eventually(
      "CPU time to grow",
      async () => ((await read(server.id, "container_cpu_usage_seconds_total", burner)) ?? 0n) >= cpu0 + 1n,
      60_000,
    );
    const mem0 = await eventually(
      "the first allocation",
      async () => {
        const v = await read(server.id, "container_memory_working_set_bytes", allocator);
        return v !== undefined && v >= 20_000_000n && v;
      },
      30_000,
    );
    await eventually(
      "the second allocation",
      async () =>
        ((await read(server.id, "container_memory_working_set_bytes", allocator)) ?? 0n) >= mem0 + 30_000_000n,
      30_000,
    );
    const rx0 = (await read(server.id, "container_network_receive_bytes_total", undefined, "eth0")) ?? -1n;
    assert.ok(rx0 >= 0n, "the pod's eth0 is reported");
    const sent = await env.runToExit(
      client,
      shell(env, "sender", `head -c 5000000 /dev/zero | nc ${serverIp} 8080`),
      30_000,
    );
    assert.equal(sent.status.exitCode, 0, sent.log);
    await eventually(
      "the bytes received to count",
      async () =>
        ((await read(server.id, "container_network_receive_bytes_total", undefined, "eth0")) ?? 0n) >= rx0 + 5_000_000n,
    );
    // The client pod has no running container now: its namespace is read directly.
    const tx = (await read(client.id, "container_network_transmit_bytes_total", undefined, "eth0")) ?? 0n;
    assert.ok(tx >= 5_000_000n, `client transmitted ${tx}`);
    // The Stream* twins answer what their List* twins answer, with the same filters.
    const drain = async <T>(stream: AsyncIterable<T>) => {
      const out: T[] = [];
      for await (const m of stream) out.push(m);
      return out;
    };
    const onServer = { podSandboxId: server.id };
    const listed = (await rt.listContainers({ filter: onServer })).containers.map((c) => c.id).sort();
    const streamed = (await drain(rt.streamContainers({ filter: onServer }))).flatMap((m) =>
      m.containers.map((c) => c.id),
    );
    assert.deepEqual(streamed.sort(), listed);
    assert.equal(listed.length, 3);
    const pods = (await drain(rt.streamPodSandboxes({ filter: { labelSelector: {} } }))).flatMap((m) => m.podSandboxes);
    assert.deepEqual(pods.map((p) => p.id).sort(), (await rt.listPodSandbox({})).items.map((p) => p.id).sort());
    const images = (await drain(env.d.client.image.streamImages({}))).flatMap((m) => m.images.map((i) => i.id));
    const listedImages = (await env.d.client.image.listImages({})).images.map((i) => i.id);
    assert.ok(listedImages.length > 0);
    assert.deepEqual(images.sort(), listedImages.sort());
    const stats = (await drain(rt.streamContainerStats({ filter: onServer }))).flatMap((m) => m.containerStats);
    assert.deepEqual(stats.map((x) => x.attributes?.id).sort(), listed);
    const podStats = (await drain(rt.streamPodSandboxStats({ filter: { id: server.id } }))).flatMap(
      (m) => m.podSandboxStats,
    );
    assert.deepEqual(
      podStats.map((x) => x.attributes?.id),
      [server.id],
    );
    const metrics = (await drain(rt.streamPodSandboxMetrics({}))).flatMap((m) => m.podSandboxMetrics);
    assert.deepEqual(metrics.map((m) => m.podSandboxId).sort(), [server.id, client.id].sort());
    assert.equal(metrics.find((m) => m.podSandboxId === server.id)?.containerMetrics.length, 3);
    await env.removePod(client);
    await env.removePod(server);
  });

  test("UpdatePodSandboxResources writes the pod's cgroup, and pod metrics and PodSandboxStatus show the new limits", async () => {
    const rt = env.d.client.runtime;
    // The kubelet creates the pod cgroup; here the test stands in for it.
    const parent = `/berth-e2e-resize-${process.pid}`;
    const v1 = existsSync("/sys/fs/cgroup/memory");
    const dirs = v1
      ? ["cpu", "cpuacct", "memory", "pids"].map((c) => join("/sys/fs/cgroup", c, parent))
      : [join("/sys/fs/cgroup", parent)];
    for (const d of dirs) await mkdir(d, { recursive: true });
    try {
      const pod = await env.runPod("resize", { linux: { cgroupParent: parent } });
      await env.startContainer(pod, shell(env, "app", "sleep 600"));
      await rt.updatePodSandboxResources({
        podSandboxId: pod.id,
        resources: { cpuShares: 512n, cpuQuota: 50_000n, cpuPeriod: 100_000n, memoryLimitInBytes: 64n * MiB },
        overhead: { memoryLimitInBytes: 1n * MiB },
      });
      const limit = 65n * MiB;
      const file = (controller: string, name: string) =>
        readFile(v1 ? join("/sys/fs/cgroup", controller, parent, name) : join("/sys/fs/cgroup", parent, name), "utf8");
      if (v1) {
        assert.equal((await file("cpu", "cpu.shares")).trim(), "512");
        assert.equal((await file("cpu", "cpu.cfs_quota_us")).trim(), "50000");
        assert.equal((await file("memory", "memory.limit_in_bytes")).trim(), String(limit));
      } else {
        assert.equal((await file("", "memory.max")).trim(), String(limit));
        assert.equal((await file("", "cpu.max")).trim(), "50000 100000");
      }
      const keys = new Map((await rt.listMetricDescriptors({})).descriptors.map((d) => [d.name, d.labelKeys]));
      const podLevel =
        (await rt.listPodSandboxMetrics({})).podMetrics.find((p) => p.podSandboxId === pod.id)?.metrics ?? [];
      const podValue = (name: string) =>
        podLevel.find((m) => m.name === name && m.labelValues[keys.get(name)?.indexOf("container") ?? -1] === "")?.value
          ?.value;
      assert.equal(podValue("container_spec_memory_limit_bytes"), limit);
      assert.equal(podValue("container_spec_cpu_quota"), 50_000n);
      assert.ok((podValue("container_memory_usage_bytes") ?? 0n) > 0n, "the pod cgroup's usage includes its container");
      // PodSandboxStats shows the new limit too, as available memory (limit less the working set).
      const memory = (await rt.podSandboxStats({ podSandboxId: pod.id })).stats?.linux?.memory;
      const available = memory?.availableBytes?.value ?? 0n;
      assert.ok(available > 0n && available <= limit, `available ${available} within the new limit ${limit}`);
      assert.equal(available + (memory?.workingSetBytes?.value ?? 0n), limit);
      const info = (await rt.podSandboxStatus({ podSandboxId: pod.id, verbose: true })).info.info ?? "{}";
      const recorded = (JSON.parse(info) as { config: { overheadAndResources?: Record<string, number> } }).config;
      assert.deepEqual(recorded.overheadAndResources, {
        cpuShares: 512,
        cpuQuota: 50_000,
        cpuPeriod: 100_000,
        memoryLimitBytes: Number(limit),
      });
      await assert.rejects(
        rt.updatePodSandboxResources({ podSandboxId: "f".repeat(64), resources: { cpuShares: 2n } }),
        (e) => (e as ConnectError).code === Code.NotFound,
      );
      const plain = await env.runPod("no-parent");
      await assert.rejects(
        rt.updatePodSandboxResources({ podSandboxId: plain.id, resources: { cpuShares: 2n } }),
        (e) => (e as ConnectError).code === Code.FailedPrecondition,
      );
      await env.removePod(plain);
      await env.removePod(pod);
    } finally {
      // runc removed the container's cgroup with the container; the pod's (in every hierarchy runc
      // made it in, not only those the test made) is the test's to remove.
      const all = v1 ? (await readdir("/sys/fs/cgroup")).map((c) => join("/sys/fs/cgroup", c, parent)) : dirs;
      for (const d of all) await rmdir(d).catch(() => {});
    }
  });

  test("CheckpointContainer: NotFound, InvalidArgument, and where CRIU cannot run, FailedPrecondition quoting criu check", async () => {
    const rt = env.d.client.runtime;
    const criu = spawnSync("criu", ["check"], { encoding: "utf8", timeout: 30_000 });
    const pod = await env.runPod("checkpoint");
    const id = await env.startContainer(
      pod,
      shell(env, "counter", "i=0; while :; do i=$((i+1)); echo $i; sleep 1; done"),
    );
    const code = (want: Code) => (e: unknown) => (e as ConnectError).code === want;
    await assert.rejects(
      rt.checkpointContainer({ containerId: "f".repeat(64), location: "/tmp/x.tar" }),
      code(Code.NotFound),
    );
    await assert.rejects(
      rt.checkpointContainer({ containerId: id, location: "relative.tar" }),
      code(Code.InvalidArgument),
    );
    const location = join(env.dir, "checkpoint.tar");
    if (criu.status !== 0) {
      // CRIU's own last error line reaches the client (on Firecracker VMs: "... kerndat_vdso_fill_symtable failed ...").
      const last = `${criu.stderr}${criu.stdout}`.trim().split("\n").at(-1) ?? "";
      await assert.rejects(rt.checkpointContainer({ containerId: id, location }), (e) => {
        assert.equal((e as ConnectError).code, Code.FailedPrecondition);
        assert.ok((e as ConnectError).rawMessage.includes(last), (e as ConnectError).rawMessage);
        return true;
      });
    } else {
      // TODO(#14): the archive is not written yet; the RPC says so instead of claiming success.
      await assert.rejects(rt.checkpointContainer({ containerId: id, location }), code(Code.Unimplemented));
    }
    assert.equal(existsSync(location), false);
    assert.equal((await rt.containerStatus({ containerId: id })).status?.state, 1, "the container still runs");
    await env.removePod(pod);
  });

  test("the endpoint serves only GET /metrics", async () => {
    assert.equal((await fetch(`http://${address}/`)).status, 404);
    assert.equal((await fetch(`http://${address}/metrics`, { method: "POST" })).status, 405);
  });
});
