import {
  type CgroupMetrics,
  type InterfaceCounters,
  interfaceCounters,
  netnsInterfaceCounters,
  readCgroupMetrics,
} from "../sys/index.js";
import { cgroupDir, podCgroupDir } from "./cgroup-paths.js";
import type { ContainerManager } from "./containers.js";
import type { SandboxManager } from "./sandboxes.js";
import type { ContainerRecord, SandboxRecord } from "./types.js";

/**
 * The cAdvisor-compatible metrics berth reports through ListPodSandboxMetrics (KEP-2371), which
 * a kubelet with PodAndContainerStatsFromCRI re-exports on /metrics/cadvisor instead of running
 * cAdvisor. Names, help texts' meaning, units and label names follow cAdvisor, so dashboards built
 * on cAdvisor keep working: every metric carries cAdvisor's kubelet labels
 * (`container`, `id`, `image`, `name`, `namespace`, `pod`), network ones add `interface` and CPU
 * usage adds `cpu="total"`. Values are unsigned integers (the CRI's UInt64Value): seconds are
 * whole seconds, as CRI-O and containerd report them.
 *
 * Container metrics come from the container's cgroup (v1 or v2); pod metrics (network) from the
 * pod's network namespace, through a running container's /proc/<pid>/net/dev or, when none runs,
 * a short `nsenter` into the pinned namespace. Loopback is left out, as cAdvisor does.
 */
export interface MetricDescriptor {
  name: string;
  help: string;
  labelKeys: string[];
  type: "counter" | "gauge";
}

/** One sample: `labelValues` line up with its descriptor's `labelKeys`. */
export interface MetricSample {
  name: string;
  type: "counter" | "gauge";
  labelValues: string[];
  value: bigint;
}

/** The metrics of one pod sandbox and of each of its running containers. */
export interface PodMetrics {
  sandboxId: string;
  metrics: MetricSample[];
  containers: Array<{ containerId: string; metrics: MetricSample[] }>;
}

const BASE_LABELS = ["container", "id", "image", "name", "namespace", "pod"];

type Source = (m: CgroupMetrics) => bigint | undefined;
interface ContainerMetricDef extends MetricDescriptor {
  value: Source;
  extra?: string[];
}

const NS_PER_S = 1_000_000_000n;
const seconds = (ns: bigint | undefined) => (ns === undefined ? undefined : ns / NS_PER_S);

function def(
  name: string,
  type: MetricDescriptor["type"],
  help: string,
  value: Source,
  extra: Record<string, string> = {},
): ContainerMetricDef {
  return { name, type, help, labelKeys: [...BASE_LABELS, ...Object.keys(extra)], value, extra: Object.values(extra) };
}

/** Per-container metrics read from the container's cgroup. */
const CONTAINER_METRICS: ContainerMetricDef[] = [
  def(
    "container_cpu_usage_seconds_total",
    "counter",
    "Cumulative cpu time consumed in seconds.",
    (m) => seconds(m.cpu.totalNs),
    { cpu: "total" },
  ),
  def("container_cpu_user_seconds_total", "counter", "Cumulative user cpu time consumed in seconds.", (m) =>
    seconds(m.cpu.userNs),
  ),
  def("container_cpu_system_seconds_total", "counter", "Cumulative system cpu time consumed in seconds.", (m) =>
    seconds(m.cpu.systemNs),
  ),
  def(
    "container_cpu_cfs_throttled_periods_total",
    "counter",
    "Number of throttled period intervals.",
    (m) => m.cpu.throttledPeriods,
  ),
  def(
    "container_cpu_cfs_throttled_seconds_total",
    "counter",
    "Total time duration the container has been throttled.",
    (m) => seconds(m.cpu.throttledNs),
  ),
  def(
    "container_memory_usage_bytes",
    "gauge",
    "Current memory usage in bytes, including all memory regardless of when it was accessed.",
    (m) => m.memory.usageBytes,
  ),
  def("container_memory_working_set_bytes", "gauge", "Current working set in bytes.", (m) => m.memory.workingSetBytes),
  def("container_memory_rss", "gauge", "Size of RSS in bytes.", (m) => m.memory.rssBytes),
  def("container_memory_cache", "gauge", "Number of bytes of page cache memory.", (m) => m.memory.cacheBytes),
  def(
    "container_memory_max_usage_bytes",
    "gauge",
    "Maximum memory usage recorded in bytes.",
    (m) => m.memory.maxUsageBytes,
  ),
  def(
    "container_oom_events_total",
    "counter",
    "Count of out of memory events observed for the container.",
    (m) => m.memory.oomKills,
  ),
  def("container_processes", "gauge", "Number of processes running inside the container.", (m) => m.processes),
  // cAdvisor reports 0 for "no limit".
  def(
    "container_spec_memory_limit_bytes",
    "gauge",
    "Memory limit for the container.",
    (m) => m.memory.limitBytes ?? 0n,
  ),
  def("container_spec_cpu_shares", "gauge", "CPU share of the container.", (m) => m.spec.cpuShares),
  def("container_spec_cpu_quota", "gauge", "CPU quota of the container.", (m) => m.spec.cpuQuotaUs ?? 0n),
  def("container_spec_cpu_period", "gauge", "CPU period of the container.", (m) => m.spec.cpuPeriodUs),
];

const START_TIME: MetricDescriptor = {
  name: "container_start_time_seconds",
  type: "gauge",
  help: "Start time of the container since unix epoch in seconds.",
  labelKeys: BASE_LABELS,
};

type NetSource = (i: InterfaceCounters) => bigint;
const NETWORK_METRICS: Array<MetricDescriptor & { value: NetSource }> = (
  [
    ["receive_bytes_total", "Cumulative count of bytes received", (i) => i.rxBytes],
    ["receive_packets_total", "Cumulative count of packets received", (i) => i.rxPackets],
    ["receive_errors_total", "Cumulative count of errors encountered while receiving", (i) => i.rxErrors],
    ["receive_packets_dropped_total", "Cumulative count of packets dropped while receiving", (i) => i.rxDropped],
    ["transmit_bytes_total", "Cumulative count of bytes transmitted", (i) => i.txBytes],
    ["transmit_packets_total", "Cumulative count of packets transmitted", (i) => i.txPackets],
    ["transmit_errors_total", "Cumulative count of errors encountered while transmitting", (i) => i.txErrors],
    ["transmit_packets_dropped_total", "Cumulative count of packets dropped while transmitting", (i) => i.txDropped],
  ] as Array<[string, string, NetSource]>
).map(([suffix, help, value]) => ({
  name: `container_network_${suffix}`,
  type: "counter" as const,
  help,
  labelKeys: [...BASE_LABELS, "interface"],
  value,
}));

/** Every metric berth may report (ListMetricDescriptors). */
export function metricDescriptors(): MetricDescriptor[] {
  return [...CONTAINER_METRICS, START_TIME, ...NETWORK_METRICS].map(({ name, help, labelKeys, type }) => ({
    name,
    help,
    labelKeys: [...labelKeys],
    type,
  }));
}

/** What pod metrics are read from: the managers, and where cgroups live (tests point it at a fixture). */
export interface PodMetricsSource {
  sandboxes: Pick<SandboxManager, "list">;
  containers: Pick<ContainerManager, "list">;
  cgroupRoot?: string;
}

/** The metrics of every ready sandbox (ListPodSandboxMetrics), one sandbox at a time through `each` if given. */
export async function collectPodMetrics(
  src: PodMetricsSource,
  options: { signal?: AbortSignal } = {},
): Promise<PodMetrics[]> {
  const out: PodMetrics[] = [];
  for (const sb of src.sandboxes.list({ state: "ready" })) {
    options.signal?.throwIfAborted();
    out.push(await podMetrics(src, sb, options));
  }
  return out;
}

/** The metrics of one sandbox: its network, and each running container's cgroup figures. */
export async function podMetrics(
  src: PodMetricsSource,
  sb: SandboxRecord,
  options: { signal?: AbortSignal } = {},
): Promise<PodMetrics> {
  const running = src.containers.list({ sandboxId: sb.id, state: "running" });
  const containers = await Promise.all(
    running.map(async (c) => ({ containerId: c.id, metrics: await containerMetrics(src, sb, c) })),
  );
  const pod = [...(await podCgroupMetrics(src, sb)), ...(await networkMetrics(sb, running, options))];
  return { sandboxId: sb.id, metrics: pod, containers };
}

/**
 * The pod's own cgroup (its cgroup parent, when the kubelet gave one), with container="" as cAdvisor
 * labels a pod cgroup: CPU and memory of the whole pod, and the limits UpdatePodSandboxResources set.
 */
async function podCgroupMetrics(src: PodMetricsSource, sb: SandboxRecord): Promise<MetricSample[]> {
  if (!sb.config.cgroupParent) return [];
  let path: string;
  try {
    path = podCgroupDir(sb);
  } catch {
    return [];
  }
  const m = await readCgroupMetrics(path, src.cgroupRoot);
  return m ? cgroupSamples(m, podLabels(sb)) : [];
}

function podLabels(sb: SandboxRecord): string[] {
  return ["", sb.id, "", sb.config.metadata.name, sb.config.metadata.namespace, sb.config.metadata.name];
}

function cgroupSamples(m: CgroupMetrics, base: string[]): MetricSample[] {
  const out: MetricSample[] = [];
  for (const d of CONTAINER_METRICS) {
    const value = d.value(m);
    if (value !== undefined)
      out.push({ name: d.name, type: d.type, labelValues: [...base, ...(d.extra ?? [])], value });
  }
  return out;
}

async function containerMetrics(src: PodMetricsSource, sb: SandboxRecord, c: ContainerRecord): Promise<MetricSample[]> {
  const m = await readCgroupMetrics(cgroupDir(sb, c.id), src.cgroupRoot);
  const base = [
    c.config.name,
    c.id,
    c.config.image,
    c.config.name,
    sb.config.metadata.namespace,
    sb.config.metadata.name,
  ];
  const out = m ? cgroupSamples(m, base) : [];
  if (c.startedAt !== "0")
    out.push({ name: START_TIME.name, type: "gauge", labelValues: base, value: BigInt(c.startedAt) / NS_PER_S });
  return out;
}

async function networkMetrics(
  sb: SandboxRecord,
  running: ContainerRecord[],
  options: { signal?: AbortSignal },
): Promise<MetricSample[]> {
  if (sb.config.namespaces.network === "node") return [];
  const pid = running.find((c) => c.pid > 0)?.pid;
  let ifaces = pid ? await interfaceCounters(pid) : [];
  // No process of the pod (or it just exited): read the pinned namespace itself.
  if (ifaces.length === 0 && sb.netnsPath) ifaces = await netnsInterfaceCounters(sb.netnsPath, options).catch(() => []);
  const base = podLabels(sb);
  return ifaces.flatMap((i) =>
    NETWORK_METRICS.map((d) => ({ name: d.name, type: d.type, labelValues: [...base, i.name], value: d.value(i) })),
  );
}
