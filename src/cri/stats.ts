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
import { type ContainerStatsRecord, type SandboxStatsRecord, sandboxStats } from "../pods/index.js";
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

/** PodSandboxStats as the CRI spells it; the figures are the sandbox domain's (see pods' sandboxStats). */
function toPodSandboxStats(s: SandboxStatsRecord): MessageInitShape<typeof PodSandboxStatsSchema> {
  const sb = s.record;
  const u64 = (v: bigint) => ({ value: v });
  const at = s.timestamp;
  const toIface = (i: SandboxStatsRecord["interfaces"][number]) => ({
    name: i.name,
    rxBytes: u64(i.rxBytes),
    rxErrors: u64(i.rxErrors),
    txBytes: u64(i.txBytes),
    txErrors: u64(i.txErrors),
  });
  return {
    attributes: {
      id: sb.id,
      metadata: { ...sb.config.metadata },
      labels: sb.config.labels,
      annotations: sb.config.annotations,
    },
    linux: {
      cpu: {
        timestamp: at,
        usageCoreNanoSeconds: u64(s.cpu.usageCoreNanoSeconds),
        ...(s.cpu.usageNanoCores !== undefined ? { usageNanoCores: u64(s.cpu.usageNanoCores) } : {}),
      },
      memory: {
        timestamp: at,
        workingSetBytes: u64(s.memory.workingSetBytes),
        usageBytes: u64(s.memory.usageBytes),
        rssBytes: u64(s.memory.rssBytes),
        pageFaults: u64(s.memory.pageFaults),
        majorPageFaults: u64(s.memory.majorPageFaults),
        ...(s.memory.availableBytes !== undefined ? { availableBytes: u64(s.memory.availableBytes) } : {}),
      },
      process: { timestamp: at, processCount: u64(s.processCount) },
      ...(s.defaultInterface
        ? {
            network: {
              timestamp: at,
              defaultInterface: toIface(s.defaultInterface),
              interfaces: s.interfaces.map(toIface),
            },
          }
        : {}),
      containers: s.containers.map(toContainerStats),
    },
  };
}

export async function podSandboxStats(ctx: CriContext, req: PodSandboxStatsRequest) {
  return {
    stats: toPodSandboxStats(await sandboxStats(ctx.pods.containers, ctx.pods.sandboxes.get(req.podSandboxId))),
  };
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
  const stats = await Promise.all(sandboxes.map((sb) => sandboxStats(ctx.pods.containers, sb)));
  return { stats: stats.map(toPodSandboxStats) };
}
