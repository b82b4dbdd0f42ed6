import type { MessageInitShape } from "@bufbuild/protobuf";
import type {
  CheckpointContainerRequest,
  ContainerStatusRequest,
  ContainerStatusResponseSchema,
  CreateContainerRequest,
  ExecSyncRequest,
  ListContainersRequest,
  ListContainersResponseSchema,
  RemoveContainerRequest,
  ReopenContainerLogRequest,
  StartContainerRequest,
  StopContainerRequest,
  UpdateContainerResourcesRequest,
} from "../api/gen/runtime/v1/api_pb.js";
import { invalidArgument } from "../errdefs/index.js";
import { checkpointContainer } from "../pods/index.js";
import type { CriContext } from "./context.js";
import { fromCriContainerState, resources, toContainer, toContainerConfig, toContainerStatus } from "./convert.js";
import { validateArgv, validateContainerConfig } from "./validate.js";

// The container RPCs. Each is a thin conversion around ContainerManager (src/pods).

const encoder = new TextEncoder();

export async function createContainer(ctx: CriContext, req: CreateContainerRequest, signal: AbortSignal) {
  if (!req.podSandboxId) throw invalidArgument("pod sandbox id is required");
  const sandbox = ctx.pods.sandboxes.get(req.podSandboxId);
  const config = toContainerConfig(req.config, sandbox.config);
  validateContainerConfig(config);
  const id = await ctx.pods.containers.create(sandbox.id, config, { signal });
  return { containerId: id };
}

export async function startContainer(ctx: CriContext, req: StartContainerRequest) {
  await ctx.pods.containers.start(req.containerId);
  return {};
}

export async function stopContainer(ctx: CriContext, req: StopContainerRequest) {
  await ctx.pods.containers.stop(req.containerId, Number(req.timeout));
  return {};
}

export async function removeContainer(ctx: CriContext, req: RemoveContainerRequest) {
  if (!req.containerId) throw invalidArgument("container id is required");
  await ctx.pods.containers.remove(req.containerId);
  return {};
}

export function containerStatus(
  ctx: CriContext,
  req: ContainerStatusRequest,
): MessageInitShape<typeof ContainerStatusResponseSchema> {
  const rec = ctx.pods.containers.get(req.containerId);
  return { status: toContainerStatus(rec), info: req.verbose ? { info: JSON.stringify(rec) } : {} };
}

export function listContainers(
  ctx: CriContext,
  req: ListContainersRequest,
): MessageInitShape<typeof ListContainersResponseSchema> {
  const f = req.filter;
  const items = ctx.pods.containers.list({
    ...(f?.id ? { id: f.id } : {}),
    ...(f?.podSandboxId ? { sandboxId: f.podSandboxId } : {}),
    ...(f?.state ? { state: fromCriContainerState(f.state.state) } : {}),
    ...(f && Object.keys(f.labelSelector).length > 0 ? { labels: f.labelSelector } : {}),
  });
  return { containers: items.map(toContainer) };
}

export async function updateContainerResources(ctx: CriContext, req: UpdateContainerResourcesRequest) {
  if (!req.linux) throw invalidArgument("linux resources are required");
  await ctx.pods.containers.updateResources(req.containerId, resources(req.linux));
  return {};
}

export async function reopenContainerLog(ctx: CriContext, req: ReopenContainerLogRequest) {
  await ctx.pods.containers.reopenLog(req.containerId);
  return {};
}

export async function execSync(ctx: CriContext, req: ExecSyncRequest, signal: AbortSignal) {
  validateArgv(req.cmd, "cmd");
  const r = await ctx.pods.containers.execSync(req.containerId, req.cmd, Number(req.timeout), { signal });
  return { stdout: encoder.encode(r.stdout), stderr: encoder.encode(r.stderr), exitCode: r.exitCode };
}

export async function checkpoint(ctx: CriContext, req: CheckpointContainerRequest) {
  await checkpointContainer(ctx.pods.containers, req.containerId, { location: req.location });
  return {};
}
