import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from "prom-client";

/**
 * berthd's Prometheus metrics. Other domains never import this module: each declares a small
 * observer (an `onPull` callback in images, `onOperation` in network, `onSession` in streaming)
 * and the daemon wires those to the recorder methods here. Counts by state are not kept up to
 * date as things change; they are read from the managers when a scrape asks (`sources`), which
 * costs one pass over in-memory records per scrape and cannot drift.
 *
 * Every name starts with `berth_`, except the standard process and Node.js metrics
 * (`process_resident_memory_bytes`, `process_cpu_seconds_total`, `process_open_fds`, `nodejs_*`),
 * which keep the names every dashboard expects.
 */
export interface Metrics {
  /** One finished CRI RPC: its method name, its gRPC status code name ("OK", "NotFound", ...), and duration. */
  rpc(method: string, code: string, seconds: number): void;
  /** One finished image pull from `registry` (host[:port]); `bytes` are the layer bytes downloaded. */
  pull(event: PullEvent): void;
  /** One CNI ADD or DEL of a pod's network (the whole plugin chain). */
  cni(event: CniEvent): void;
  /** A container was killed by the kernel's OOM killer. */
  oomKill(): void;
  /** A streaming session (exec, attach, portforward) began; call the result once when it ends. */
  session(kind: string): () => void;
  /** The exposition text of every metric. */
  text(): Promise<string>;
  /** The Content-Type of {@link text}. */
  readonly contentType: string;
}

export interface PullEvent {
  registry: string;
  bytes: number;
  seconds: number;
  ok: boolean;
}

export interface CniEvent {
  operation: "add" | "del";
  seconds: number;
  ok: boolean;
}

/** Event-loop delay figures in milliseconds (what berthd's loop monitor reports). */
export interface EventLoopFigures {
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  meanMs: number;
  stalls: number;
}

/** What is read at scrape time. Each must be cheap: no I/O, no walk over anything but memory. */
export interface MetricsSources {
  /** Number of containers per state ("created", "running", "exited", "unknown"). */
  containers(): Record<string, number>;
  /** Number of sandboxes per state ("ready", "notready"). */
  sandboxes(): Record<string, number>;
  /** The event loop's delay, or undefined before the monitor starts. */
  eventLoop(): EventLoopFigures | undefined;
}

/** Latency buckets (seconds) from 1 ms to 2 min: CRI RPCs span a Version (µs) to a RunPodSandbox (seconds). */
const RPC_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120];
/** Pulls take from milliseconds (already present) to many minutes. */
const PULL_BUCKETS = [0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800];
/** A CNI chain (bridge, portmap, bandwidth) takes tens of milliseconds to seconds. */
const CNI_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

const CONTAINER_STATES = ["created", "running", "exited", "unknown"];
const SANDBOX_STATES = ["ready", "notready"];
const SESSION_KINDS = ["exec", "attach", "portforward"];

/** Builds the registry (one per daemon; tests may build several). */
export function createMetrics(sources: MetricsSources): Metrics {
  const registers = [new Registry()];
  const [register] = registers as [Registry];
  collectDefaultMetrics({ register });
  // Gauges that prom-client names like counters: `promtool check metrics` rejects them, and the
  // per-type breakdowns beside them (nodejs_active_handles{type}) say the same thing.
  for (const name of ["nodejs_active_handles_total", "nodejs_active_requests_total", "nodejs_active_resources_total"])
    register.removeSingleMetric(name);

  const requests = new Counter({
    name: "berth_cri_requests_total",
    help: "CRI RPCs finished, by method.",
    labelNames: ["method"],
    registers,
  });
  const errors = new Counter({
    name: "berth_cri_request_errors_total",
    help: "CRI RPCs that ended with a status other than OK, by method and gRPC code.",
    labelNames: ["method", "code"],
    registers,
  });
  const latency = new Histogram({
    name: "berth_cri_request_duration_seconds",
    help: "Time from a CRI RPC's arrival to its answer (to the end of the stream for server streams), by method.",
    labelNames: ["method"],
    buckets: RPC_BUCKETS,
    registers,
  });

  const pulls = new Counter({
    name: "berth_image_pulls_total",
    help: "Image pulls finished (successful or not), by registry host.",
    labelNames: ["registry"],
    registers,
  });
  const pullFailures = new Counter({
    name: "berth_image_pull_failures_total",
    help: "Image pulls that failed, by registry host.",
    labelNames: ["registry"],
    registers,
  });
  const pullBytes = new Counter({
    name: "berth_image_pull_bytes_total",
    help: "Layer bytes downloaded by image pulls (layers already present cost none), by registry host.",
    labelNames: ["registry"],
    registers,
  });
  const pullSeconds = new Histogram({
    name: "berth_image_pull_duration_seconds",
    help: "Duration of image pulls (successful or not), by registry host.",
    labelNames: ["registry"],
    buckets: PULL_BUCKETS,
    registers,
  });

  const cniLatency = new Histogram({
    name: "berth_cni_operation_duration_seconds",
    help: "Duration of a pod network CNI ADD or DEL (the whole plugin chain), by operation.",
    labelNames: ["operation"],
    buckets: CNI_BUCKETS,
    registers,
  });
  const cniFailures = new Counter({
    name: "berth_cni_operation_failures_total",
    help: "CNI ADD or DEL operations that failed, by operation.",
    labelNames: ["operation"],
    registers,
  });

  new Gauge({
    name: "berth_containers",
    help: "Containers known to berthd, by state.",
    labelNames: ["state"],
    registers,
    collect() {
      const counts = sources.containers();
      for (const s of new Set([...CONTAINER_STATES, ...Object.keys(counts)])) this.set({ state: s }, counts[s] ?? 0);
    },
  });
  new Gauge({
    name: "berth_sandboxes",
    help: "Pod sandboxes known to berthd, by state.",
    labelNames: ["state"],
    registers,
    collect() {
      const counts = sources.sandboxes();
      for (const s of new Set([...SANDBOX_STATES, ...Object.keys(counts)])) this.set({ state: s }, counts[s] ?? 0);
    },
  });
  const ooms = new Counter({
    name: "berth_container_oom_kills_total",
    help: "Containers that exited because the kernel's OOM killer killed them.",
    registers,
  });

  const sessionsTotal = new Counter({
    name: "berth_streaming_sessions_total",
    help: "Streaming sessions (exec, attach, port-forward) started, by kind.",
    labelNames: ["kind"],
    registers,
  });
  const sessionsActive = new Gauge({
    name: "berth_streaming_sessions_active",
    help: "Streaming sessions open now, by kind.",
    labelNames: ["kind"],
    registers,
  });
  for (const kind of SESSION_KINDS) {
    sessionsTotal.inc({ kind }, 0);
    sessionsActive.set({ kind }, 0);
  }

  new Gauge({
    name: "berth_event_loop_delay_seconds",
    help: "Delay of berthd's event loop since start (p50, p99, max, mean), from its loop monitor.",
    labelNames: ["stat"],
    registers,
    collect() {
      const f = sources.eventLoop();
      if (!f) return;
      for (const [stat, ms] of [
        ["p50", f.p50Ms],
        ["p99", f.p99Ms],
        ["max", f.maxMs],
        ["mean", f.meanMs],
      ] as const)
        this.set({ stat }, ms / 1000);
    },
  });
  let stallsSeen = 0;
  new Counter({
    name: "berth_event_loop_stalls_total",
    help: "Event-loop stalls longer than the monitor's threshold (each one is also logged with the RPCs in flight).",
    registers,
    collect() {
      const stalls = sources.eventLoop()?.stalls ?? 0;
      if (stalls > stallsSeen) this.inc(stalls - stallsSeen);
      stallsSeen = Math.max(stallsSeen, stalls);
    },
  });

  return {
    rpc(method, code, seconds) {
      requests.inc({ method });
      if (code !== "OK") errors.inc({ method, code });
      latency.observe({ method }, seconds);
    },
    pull({ registry, bytes, seconds, ok }) {
      pulls.inc({ registry });
      // Incremented by 0 on success too, so the series exists from the first pull (a rate needs both ends).
      pullFailures.inc({ registry }, ok ? 0 : 1);
      pullBytes.inc({ registry }, bytes);
      pullSeconds.observe({ registry }, seconds);
    },
    cni({ operation, seconds, ok }) {
      cniLatency.observe({ operation }, seconds);
      cniFailures.inc({ operation }, ok ? 0 : 1);
    },
    oomKill() {
      ooms.inc();
    },
    session(kind) {
      sessionsTotal.inc({ kind });
      sessionsActive.inc({ kind });
      let ended = false;
      return () => {
        if (ended) return;
        ended = true;
        sessionsActive.dec({ kind });
      };
    },
    text: () => register.metrics(),
    contentType: register.contentType,
  };
}
