import type { MessageInitShape } from "@bufbuild/protobuf";
import {
  type ListMetricDescriptorsResponseSchema,
  type ListPodSandboxMetricsResponseSchema,
  MetricType,
  type PodSandboxMetricsSchema,
} from "../api/gen/runtime/v1/api_pb.js";
import { collectPodMetrics, type MetricSample, metricDescriptors, type PodMetrics } from "../pods/index.js";
import type { CriContext } from "./context.js";

// ListMetricDescriptors and ListPodSandboxMetrics: cAdvisor-compatible metrics (see src/pods/pod-metrics.ts).

export function listMetricDescriptors(): MessageInitShape<typeof ListMetricDescriptorsResponseSchema> {
  return { descriptors: metricDescriptors().map(({ name, help, labelKeys }) => ({ name, help, labelKeys })) };
}

function toMetric(m: MetricSample) {
  return {
    name: m.name,
    // Live samples: the CRI asks for 0 rather than the time of reading.
    timestamp: 0n,
    metricType: m.type === "counter" ? MetricType.COUNTER : MetricType.GAUGE,
    labelValues: m.labelValues,
    value: { value: m.value },
  };
}

export function toPodSandboxMetrics(p: PodMetrics): MessageInitShape<typeof PodSandboxMetricsSchema> {
  return {
    podSandboxId: p.sandboxId,
    metrics: p.metrics.map(toMetric),
    containerMetrics: p.containers.map((c) => ({ containerId: c.containerId, metrics: c.metrics.map(toMetric) })),
  };
}

export async function listPodSandboxMetrics(
  ctx: CriContext,
  signal: AbortSignal,
): Promise<MessageInitShape<typeof ListPodSandboxMetricsResponseSchema>> {
  return { podMetrics: (await collectPodMetrics(ctx.pods, { signal })).map(toPodSandboxMetrics) };
}
