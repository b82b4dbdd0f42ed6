import type { MessageInitShape } from "@bufbuild/protobuf";
import type {
  ListPodSandboxRequest,
  ListPodSandboxResponseSchema,
  PodSandboxStatusRequest,
  PodSandboxStatusResponseSchema,
  RemovePodSandboxRequest,
  RunPodSandboxRequest,
  StopPodSandboxRequest,
  UpdatePodSandboxResourcesRequest,
} from "../api/gen/runtime/v1/api_pb.js";
import { PodSandboxState } from "../api/gen/runtime/v1/api_pb.js";
import { invalidArgument } from "../errdefs/index.js";
import { applyPodResources } from "../pods/index.js";
import type { CriContext } from "./context.js";
import { resources, toContainerStatus, toPodSandbox, toPodSandboxStatus, toSandboxConfig } from "./convert.js";
import { validateRuntimeHandler, validateSandboxConfig } from "./validate.js";

// The pod sandbox RPCs. Each is a thin conversion around SandboxManager (src/pods).

export async function runPodSandbox(ctx: CriContext, req: RunPodSandboxRequest, signal: AbortSignal) {
  validateRuntimeHandler(req.runtimeHandler, Object.keys(ctx.config.runtime.handlers));
  const config = toSandboxConfig(req.config);
  validateSandboxConfig(config);
  const id = await ctx.pods.sandboxes.run(config, req.runtimeHandler, { signal });
  return { podSandboxId: id };
}

export async function stopPodSandbox(ctx: CriContext, req: StopPodSandboxRequest) {
  if (!req.podSandboxId) throw invalidArgument("pod sandbox id is required");
  await ctx.pods.sandboxes.stop(req.podSandboxId);
  return {};
}

export async function removePodSandbox(ctx: CriContext, req: RemovePodSandboxRequest) {
  if (!req.podSandboxId) throw invalidArgument("pod sandbox id is required");
  await ctx.pods.sandboxes.remove(req.podSandboxId);
  return {};
}

export function podSandboxStatus(
  ctx: CriContext,
  req: PodSandboxStatusRequest,
): MessageInitShape<typeof PodSandboxStatusResponseSchema> {
  const rec = ctx.pods.sandboxes.get(req.podSandboxId);
  const containers = ctx.pods.containers.list({ sandboxId: rec.id });
  return {
    status: toPodSandboxStatus(rec),
    containersStatuses: containers.map(toContainerStatus),
    timestamp: BigInt(Date.now()) * 1_000_000n,
    info: req.verbose ? { info: JSON.stringify(rec) } : {},
  };
}

export function listPodSandbox(
  ctx: CriContext,
  req: ListPodSandboxRequest,
): MessageInitShape<typeof ListPodSandboxResponseSchema> {
  const f = req.filter;
  const items = ctx.pods.sandboxes.list({
    ...(f?.id ? { id: f.id } : {}),
    ...(f?.state
      ? { state: f.state.state === PodSandboxState.SANDBOX_READY ? ("ready" as const) : ("notready" as const) }
      : {}),
    ...(f && Object.keys(f.labelSelector).length > 0 ? { labels: f.labelSelector } : {}),
  });
  return { items: items.map(toPodSandbox) };
}

/** UpdatePodSandboxResources: the pod's cgroup gets resources + overhead; the record keeps what was applied. */
export async function updatePodSandboxResources(ctx: CriContext, req: UpdatePodSandboxResourcesRequest) {
  if (!req.podSandboxId) throw invalidArgument("pod sandbox id is required");
  await ctx.pods.sandboxes.resize(req.podSandboxId, (sb) =>
    applyPodResources(sb, { resources: resources(req.resources), overhead: resources(req.overhead) }),
  );
  return {};
}
