import type { MessageInitShape } from "@bufbuild/protobuf";
import type {
  ContainerStatsRequest,
  ContainerStatsSchema,
  ListContainerStatsRequest,
  ListContainerStatsResponseSchema,
} from "../api/gen/runtime/v1/api_pb.js";
import type { ContainerStatsRecord } from "../pods/index.js";
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
