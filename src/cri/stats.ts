import type { MessageInitShape } from "@bufbuild/protobuf";
import type {
  ContainerStatsRequest,
  ContainerStatsSchema,
  ListContainerStatsRequest,
  ListContainerStatsResponseSchema,
  ListPodSandboxStatsRequest,
  ListPodSandboxStatsResponseSchema,
  PodSandboxStatsRequest,
  PodSandboxStatsSchema,
} from "../api/gen/runtime/v1/api_pb.js";
import { type ContainerStatsRecord, podInterfaceCounters, type SandboxRecord } from "../pods/index.js";
import type { CriContext } from "./context.js";

// ContainerStats and ListContainerStats: cgroup CPU/memory and writable-layer usage per container.

function toContainerStats(s: ContainerStatsRecord): MessageInitShape<typeof ContainerStatsSchema> {
  const r = s.record;
  const c = s.cgroup;
  const u64 = (v: bigint | number) => ({ value: BigInt(v) });
  return {
    attributes: {
      id: r.id,
      metadata: { name: r.config.name, attempt: r.config.attempt },
      labels: r.config.labels,
      annotations: r.config.annotations,
    },
    ...(c
      ? {
          cpu: {
            timestamp: c.timestamp,
            usageCoreNanoSeconds: u64(c.cpuUsageNs),
            ...(s.nanoCores !== undefined ? { usageNanoCores: u64(s.nanoCores) } : {}),
          },
          memory: {
            timestamp: c.timestamp,
            workingSetBytes: u64(c.workingSetBytes),
            usageBytes: u64(c.memoryUsageBytes),
            rssBytes: u64(c.rssBytes),
            pageFaults: u64(c.pageFaults),
            majorPageFaults: u64(c.majorPageFaults),
            ...(c.memoryLimitBytes !== undefined && c.memoryLimitBytes >= c.workingSetBytes
              ? { availableBytes: u64(c.memoryLimitBytes - c.workingSetBytes) }
              : {}),
          },
        }
      : {}),
    ...(s.writableLayer
      ? {
          writableLayer: {
            timestamp: s.timestamp,
            fsId: { mountpoint: s.writableLayer.mountpoint },
            usedBytes: u64(s.writableLayer.bytes),
            inodesUsed: u64(s.writableLayer.inodes),
          },
        }
      : {}),
  };
}

export async function containerStats(ctx: CriContext, req: ContainerStatsRequest) {
  return { stats: toContainerStats(await ctx.pods.containers.stats(req.containerId)) };
}

export async function listContainerStats(
  ctx: CriContext,
  req: ListContainerStatsRequest,
): Promise<MessageInitShape<typeof ListContainerStatsResponseSchema>> {
  const f = req.filter;
  const records = ctx.pods.containers.list({
    ...(f?.id ? { id: f.id } : {}),
    ...(f?.podSandboxId ? { sandboxId: f.podSandboxId } : {}),
    ...(f && Object.keys(f.labelSelector).length > 0 ? { labels: f.labelSelector } : {}),
  });
  const stats = await Promise.all(records.map((r) => ctx.pods.containers.stats(r.id).catch(() => undefined)));
  return { stats: stats.filter((s): s is ContainerStatsRecord => s !== undefined).map(toContainerStats) };
}

/**
 * PodSandboxStats: the pod's CPU and memory as the sum over its running containers (berth runs
 * no process for a pod of its own), its process count, its network counters read from the
 * namespace of one of its processes, and every container's stats.
 */
async function toPodSandboxStats(
  ctx: CriContext,
  sb: SandboxRecord,
): Promise<MessageInitShape<typeof PodSandboxStatsSchema>> {
  const records = ctx.pods.containers.list({ sandboxId: sb.id });
  const stats = (await Promise.all(records.map((r) => ctx.pods.containers.stats(r.id).catch(() => undefined)))).filter(
    (s): s is ContainerStatsRecord => s !== undefined,
  );
  const now = BigInt(Date.now()) * 1_000_000n;
  const u64 = (v: bigint) => ({ value: v });
  const sum = (f: (s: ContainerStatsRecord) => bigint | undefined) => stats.reduce((a, s) => a + (f(s) ?? 0n), 0n);
  const running = stats.filter((s) => s.cgroup !== undefined);
  const pid = running[0]?.record.pid ?? sb.infraPid;
  const ifaces = await podInterfaceCounters(sb, pid);
  const toIface = (i: (typeof ifaces)[number]) => ({
    name: i.name,
    rxBytes: u64(i.rxBytes),
    rxErrors: u64(i.rxErrors),
    txBytes: u64(i.txBytes),
    txErrors: u64(i.txErrors),
  });
  const eth0 = ifaces.find((i) => i.name === "eth0") ?? ifaces[0];
  return {
    attributes: {
      id: sb.id,
      metadata: { ...sb.config.metadata },
      labels: sb.config.labels,
      annotations: sb.config.annotations,
    },
    linux: {
      cpu: {
        timestamp: now,
        usageCoreNanoSeconds: u64(sum((s) => s.cgroup?.cpuUsageNs)),
        ...(running.every((s) => s.nanoCores !== undefined) && running.length > 0
          ? { usageNanoCores: u64(sum((s) => s.nanoCores)) }
          : {}),
      },
      memory: {
        timestamp: now,
        workingSetBytes: u64(sum((s) => s.cgroup?.workingSetBytes)),
        usageBytes: u64(sum((s) => s.cgroup?.memoryUsageBytes)),
        rssBytes: u64(sum((s) => s.cgroup?.rssBytes)),
        pageFaults: u64(sum((s) => s.cgroup?.pageFaults)),
        majorPageFaults: u64(sum((s) => s.cgroup?.majorPageFaults)),
      },
      process: { timestamp: now, processCount: u64(sum((s) => (s.cgroup ? BigInt(s.cgroup.processCount) : 0n))) },
      ...(eth0
        ? { network: { timestamp: now, defaultInterface: toIface(eth0), interfaces: ifaces.map(toIface) } }
        : {}),
      containers: stats.map(toContainerStats),
    },
  };
}

export async function podSandboxStats(ctx: CriContext, req: PodSandboxStatsRequest) {
  return { stats: await toPodSandboxStats(ctx, ctx.pods.sandboxes.get(req.podSandboxId)) };
}

export async function listPodSandboxStats(
  ctx: CriContext,
  req: ListPodSandboxStatsRequest,
): Promise<MessageInitShape<typeof ListPodSandboxStatsResponseSchema>> {
  const f = req.filter;
  const sandboxes = ctx.pods.sandboxes.list({
    ...(f?.id ? { id: f.id } : {}),
    ...(f && Object.keys(f.labelSelector).length > 0 ? { labels: f.labelSelector } : {}),
    state: "ready",
  });
  return { stats: await Promise.all(sandboxes.map((sb) => toPodSandboxStats(ctx, sb))) };
}
