import { create, type MessageInitShape } from "@bufbuild/protobuf";
import {
  ListContainerStatsRequestSchema,
  ListContainersRequestSchema,
  ListImagesRequestSchema,
  ListPodSandboxRequestSchema,
  ListPodSandboxStatsRequestSchema,
  type StreamContainerStatsRequest,
  type StreamContainerStatsResponseSchema,
  type StreamContainersRequest,
  type StreamContainersResponseSchema,
  type StreamImagesRequest,
  type StreamImagesResponseSchema,
  type StreamPodSandboxesRequest,
  type StreamPodSandboxesResponseSchema,
  type StreamPodSandboxMetricsResponseSchema,
  type StreamPodSandboxStatsRequest,
  type StreamPodSandboxStatsResponseSchema,
} from "../api/gen/runtime/v1/api_pb.js";
import { podMetrics } from "../pods/index.js";
import { listContainers } from "./container.js";
import type { CriContext } from "./context.js";
import { listImages } from "./image.js";
import { toPodSandboxMetrics } from "./metrics.js";
import { listPodSandbox } from "./pod-sandbox.js";
import { listContainerStats, listPodSandboxStats } from "./stats.js";

// The Stream* RPCs (CRIListStreaming, KEP-5825): server-streaming twins of the List* RPCs with the same
// filters. Items go out in bounded batches, so no message grows with the node: a list of 500 containers
// is 8 messages, not one of several megabytes. Stats and metrics are also *measured* one batch at a time
// (not all at once and then sent), so a large node costs a batch's worth of cgroup reads in flight.

/** Items per message of the record lists (a Container or PodSandbox is well under 4 KiB). */
export const LIST_BATCH = 64;
/** Items per message of stats and metrics (a pod's metrics with several containers run to a few KiB). */
export const STATS_BATCH = 16;

/** Splits `items` into arrays of at most `size`; nothing for no items. */
function* chunks<T>(items: readonly T[], size: number): Generator<T[]> {
  for (let i = 0; i < items.length; i += size) yield items.slice(i, i + size);
}

/** Measures `ids` a batch at a time; yields each batch's non-empty results (an item gone meanwhile is skipped). */
async function* measured<T>(ids: readonly string[], measure: (id: string) => Promise<T[]>): AsyncGenerator<T[]> {
  for (const batch of chunks(ids, STATS_BATCH)) {
    const got = (await Promise.all(batch.map(measure))).flat();
    if (got.length > 0) yield got;
  }
}

export async function* streamPodSandboxes(
  ctx: CriContext,
  req: StreamPodSandboxesRequest,
): AsyncGenerator<MessageInitShape<typeof StreamPodSandboxesResponseSchema>> {
  const { items = [] } = listPodSandbox(
    ctx,
    create(ListPodSandboxRequestSchema, { ...(req.filter ? { filter: req.filter } : {}) }),
  );
  for (const podSandboxes of chunks(items, LIST_BATCH)) yield { podSandboxes };
}

export async function* streamContainers(
  ctx: CriContext,
  req: StreamContainersRequest,
): AsyncGenerator<MessageInitShape<typeof StreamContainersResponseSchema>> {
  const { containers = [] } = listContainers(
    ctx,
    create(ListContainersRequestSchema, { ...(req.filter ? { filter: req.filter } : {}) }),
  );
  for (const batch of chunks(containers, LIST_BATCH)) yield { containers: batch };
}

export async function* streamImages(
  ctx: CriContext,
  req: StreamImagesRequest,
): AsyncGenerator<MessageInitShape<typeof StreamImagesResponseSchema>> {
  const { images = [] } = listImages(
    ctx,
    create(ListImagesRequestSchema, { ...(req.filter ? { filter: req.filter } : {}) }),
  );
  for (const batch of chunks(images, LIST_BATCH)) yield { images: batch };
}

export async function* streamContainerStats(
  ctx: CriContext,
  req: StreamContainerStatsRequest,
): AsyncGenerator<MessageInitShape<typeof StreamContainerStatsResponseSchema>> {
  const f = req.filter;
  const ids = ctx.pods.containers
    .list({
      ...(f?.id ? { id: f.id } : {}),
      ...(f?.podSandboxId ? { sandboxId: f.podSandboxId } : {}),
      ...(f && Object.keys(f.labelSelector).length > 0 ? { labels: f.labelSelector } : {}),
    })
    .map((r) => r.id);
  // Each ID through ListContainerStats itself, so both RPCs report exactly the same figures.
  const measure = async (id: string) =>
    (await listContainerStats(ctx, create(ListContainerStatsRequestSchema, { filter: { id } }))).stats ?? [];
  for await (const containerStats of measured(ids, measure)) yield { containerStats };
}

export async function* streamPodSandboxStats(
  ctx: CriContext,
  req: StreamPodSandboxStatsRequest,
): AsyncGenerator<MessageInitShape<typeof StreamPodSandboxStatsResponseSchema>> {
  const f = req.filter;
  const ids = ctx.pods.sandboxes
    .list({
      ...(f?.id ? { id: f.id } : {}),
      ...(f && Object.keys(f.labelSelector).length > 0 ? { labels: f.labelSelector } : {}),
      state: "ready",
    })
    .map((s) => s.id);
  const measure = async (id: string) =>
    (await listPodSandboxStats(ctx, create(ListPodSandboxStatsRequestSchema, { filter: { id } }))).stats ?? [];
  for await (const podSandboxStats of measured(ids, measure)) yield { podSandboxStats };
}

export async function* streamPodSandboxMetrics(
  ctx: CriContext,
  signal: AbortSignal,
): AsyncGenerator<MessageInitShape<typeof StreamPodSandboxMetricsResponseSchema>> {
  for (const batch of chunks(ctx.pods.sandboxes.list({ state: "ready" }), STATS_BATCH)) {
    signal.throwIfAborted();
    const measured = await Promise.all(batch.map((sb) => podMetrics(ctx.pods, sb, { signal })));
    yield { podSandboxMetrics: measured.map(toPodSandboxMetrics) };
  }
}
