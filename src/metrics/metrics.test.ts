import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { test } from "node:test";
import { Code, ConnectError } from "@connectrpc/connect";
import { parseSamples, promtoolCheck, sampleValue } from "../../test/support/prom.js";
import { metricsInterceptor } from "./interceptor.js";
import { createMetrics, type EventLoopFigures } from "./metrics.js";

function fixture() {
  let loop: EventLoopFigures | undefined;
  const counts = { containers: { running: 2, exited: 1 } as Record<string, number>, sandboxes: { ready: 1 } };
  const metrics = createMetrics({
    containers: () => counts.containers,
    sandboxes: () => counts.sandboxes,
    eventLoop: () => loop,
  });
  return {
    metrics,
    counts,
    setLoop: (f: EventLoopFigures) => {
      loop = f;
    },
    samples: async () => parseSamples(await metrics.text()),
  };
}

test("recorded events appear as exactly those counts, per label", async () => {
  const f = fixture();
  const m = f.metrics;
  m.rpc("Version", "OK", 0.0005);
  m.rpc("Version", "OK", 0.002);
  m.rpc("ContainerStatus", "NotFound", 0.001);
  m.pull({ registry: "127.0.0.1:5000", bytes: 1000, seconds: 1.5, ok: true });
  m.pull({ registry: "127.0.0.1:5000", bytes: 24, seconds: 0.2, ok: false });
  m.pull({ registry: "docker.io", bytes: 0, seconds: 0.1, ok: true });
  m.cni({ operation: "add", seconds: 0.05, ok: true });
  m.cni({ operation: "del", seconds: 0.02, ok: false });
  m.oomKill();
  const endExec = m.session("exec");
  m.session("portforward");
  endExec();
  endExec(); // a second call does nothing
  const s = await f.samples();
  assert.equal(sampleValue(s, "berth_cri_requests_total", { method: "Version" }), 2);
  assert.equal(sampleValue(s, "berth_cri_requests_total", { method: "ContainerStatus" }), 1);
  assert.equal(sampleValue(s, "berth_cri_request_errors_total", { method: "ContainerStatus", code: "NotFound" }), 1);
  assert.equal(sampleValue(s, "berth_cri_request_errors_total", { method: "Version" }), undefined);
  assert.equal(sampleValue(s, "berth_cri_request_duration_seconds_count", { method: "Version" }), 2);
  assert.equal(sampleValue(s, "berth_cri_request_duration_seconds_bucket", { method: "Version", le: "0.001" }), 1);
  assert.equal(sampleValue(s, "berth_image_pulls_total", { registry: "127.0.0.1:5000" }), 2);
  assert.equal(sampleValue(s, "berth_image_pull_failures_total", { registry: "127.0.0.1:5000" }), 1);
  assert.equal(sampleValue(s, "berth_image_pull_bytes_total", { registry: "127.0.0.1:5000" }), 1024);
  assert.equal(sampleValue(s, "berth_image_pull_duration_seconds_sum", { registry: "127.0.0.1:5000" }), 1.7);
  assert.equal(sampleValue(s, "berth_image_pulls_total", { registry: "docker.io" }), 1);
  assert.equal(sampleValue(s, "berth_cni_operation_duration_seconds_count", { operation: "add" }), 1);
  assert.equal(sampleValue(s, "berth_cni_operation_failures_total", { operation: "add" }), 0);
  assert.equal(sampleValue(s, "berth_cni_operation_failures_total", { operation: "del" }), 1);
  assert.equal(sampleValue(s, "berth_container_oom_kills_total"), 1);
  assert.equal(sampleValue(s, "berth_streaming_sessions_total", { kind: "exec" }), 1);
  assert.equal(sampleValue(s, "berth_streaming_sessions_active", { kind: "exec" }), 0);
  assert.equal(sampleValue(s, "berth_streaming_sessions_active", { kind: "portforward" }), 1);
  assert.equal(sampleValue(s, "berth_streaming_sessions_total", { kind: "attach" }), 0);
});

test("state counts are read from the sources at each scrape, every state listed", async () => {
  const f = fixture();
  let s = await f.samples();
  assert.equal(sampleValue(s, "berth_containers", { state: "running" }), 2);
  assert.equal(sampleValue(s, "berth_containers", { state: "created" }), 0);
  assert.equal(sampleValue(s, "berth_sandboxes", { state: "notready" }), 0);
  f.counts.containers = { running: 5 };
  s = await f.samples();
  assert.equal(sampleValue(s, "berth_containers", { state: "running" }), 5);
  assert.equal(sampleValue(s, "berth_containers", { state: "exited" }), 0);
});

test("event-loop figures become seconds, and stalls a counter that never goes down", async () => {
  const f = fixture();
  assert.equal(sampleValue(await f.samples(), "berth_event_loop_delay_seconds", { stat: "p99" }), undefined);
  f.setLoop({ p50Ms: 1, p99Ms: 12, maxMs: 250, meanMs: 2, stalls: 3 });
  let s = await f.samples();
  assert.equal(sampleValue(s, "berth_event_loop_delay_seconds", { stat: "p99" }), 0.012);
  assert.equal(sampleValue(s, "berth_event_loop_delay_seconds", { stat: "max" }), 0.25);
  assert.equal(sampleValue(s, "berth_event_loop_stalls_total"), 3);
  f.setLoop({ p50Ms: 1, p99Ms: 12, maxMs: 250, meanMs: 2, stalls: 4 });
  s = await f.samples();
  assert.equal(sampleValue(s, "berth_event_loop_stalls_total"), 4);
});

test("the standard process metrics are there (RSS, CPU, open fds)", async () => {
  const s = await fixture().samples();
  assert.ok((sampleValue(s, "process_resident_memory_bytes") ?? 0) > 1e6);
  assert.ok(sampleValue(s, "process_cpu_seconds_total") !== undefined);
  assert.ok((sampleValue(s, "process_open_fds") ?? 0) > 0);
});

test("promtool check metrics accepts the exposition", {
  skip: !existsSync("/usr/bin/promtool") && "no promtool",
}, async () => {
  const f = fixture();
  f.metrics.rpc("Version", "OK", 0.001);
  f.metrics.rpc("ContainerStatus", "NotFound", 0.001);
  f.metrics.pull({ registry: "[::1]:5000", bytes: 1, seconds: 1, ok: false });
  f.metrics.cni({ operation: "add", seconds: 0.05, ok: true });
  f.setLoop({ p50Ms: 1, p99Ms: 12, maxMs: 250, meanMs: 2, stalls: 0 });
  const { code, output } = await promtoolCheck(await f.metrics.text());
  assert.equal(code, 0, output);
  assert.equal(output.trim(), "", output);
});

test("the interceptor records unary outcomes with their gRPC code, and a server stream at its end", async () => {
  const seen: Array<[string, string]> = [];
  const interceptor = metricsInterceptor({ rpc: (method, code) => seen.push([method, code]) });
  const req = (name: string, stream: boolean) => ({ method: { name }, stream }) as never;
  const ok = interceptor(async () => ({ stream: false }) as never);
  await ok(req("Version", false));
  const failing = interceptor(async () => {
    throw new ConnectError("no such container", Code.NotFound);
  });
  await assert.rejects(failing(req("ContainerStatus", false)));
  const streaming = interceptor(
    async () =>
      ({
        stream: true,
        message: (async function* () {
          yield 1;
          yield 2;
        })(),
      }) as never,
  );
  const res = (await streaming(req("StreamContainers", true))) as unknown as { message: AsyncIterable<number> };
  assert.deepEqual(seen, [
    ["Version", "OK"],
    ["ContainerStatus", "NotFound"],
  ]);
  const got: number[] = [];
  for await (const m of res.message) got.push(m);
  assert.deepEqual(got, [1, 2]);
  assert.deepEqual(seen.at(-1), ["StreamContainers", "OK"]);
  const broken = interceptor(
    async () =>
      ({
        stream: true,
        message: (async function* () {
          yield 1;
          throw new ConnectError("gone", Code.Unavailable);
        })(),
      }) as never,
  );
  const res2 = (await broken(req("StreamPodSandboxes", true))) as unknown as { message: AsyncIterable<number> };
  await assert.rejects(async () => {
    for await (const _ of res2.message) {
      // drain
    }
  });
  assert.deepEqual(seen.at(-1), ["StreamPodSandboxes", "Unavailable"]);
});
