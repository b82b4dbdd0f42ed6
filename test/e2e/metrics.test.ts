import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
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

  test("the endpoint serves only GET /metrics", async () => {
    assert.equal((await fetch(`http://${address}/`)).status, 404);
    assert.equal((await fetch(`http://${address}/metrics`, { method: "POST" })).status, 405);
  });
});
