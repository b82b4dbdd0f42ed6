import type { DescService } from "@bufbuild/protobuf";
import { Code, type ConnectRouter, type Interceptor, type ServiceImpl } from "@connectrpc/connect";
import { type ConnectNodeAdapterOptions, connectNodeAdapter } from "@connectrpc/connect-node";
import { Builder } from "../api/gen/berth/v1/build_pb.js";
import { Images } from "../api/gen/berth/v1/images_pb.js";
import { ImageService, RuntimeService } from "../api/gen/runtime/v1/api_pb.js";
import { unimplemented } from "../errdefs/index.js";
import { berthBuild, berthBuildPrune } from "./berth-build.js";
import { berthLoad, berthLogin, berthPull, berthPush, berthSave, berthTag } from "./berth-pull.js";
import {
  checkpoint,
  containerStatus,
  createContainer,
  execSync,
  listContainers,
  removeContainer,
  reopenContainerLog,
  startContainer,
  stopContainer,
  updateContainerResources,
} from "./container.js";
import type { CriContext } from "./context.js";
import { edgeInterceptor, toConnectError } from "./errors.js";
import { getContainerEvents } from "./events.js";
import { imageFsInfo, imageStatus, listImages, pullImage, removeImage } from "./image.js";
import type { RpcTracker } from "./in-flight.js";
import {
  streamContainerStats,
  streamContainers,
  streamImages,
  streamPodSandboxes,
  streamPodSandboxMetrics,
  streamPodSandboxStats,
} from "./list-streams.js";
import { listMetricDescriptors, listPodSandboxMetrics } from "./metrics.js";
import {
  listPodSandbox,
  podSandboxStatus,
  removePodSandbox,
  runPodSandbox,
  stopPodSandbox,
  updatePodSandboxResources,
} from "./pod-sandbox.js";
import { runtimeConfig } from "./runtime-config.js";
import { containerStats, listContainerStats, listPodSandboxStats, podSandboxStats } from "./stats.js";
import { status } from "./status.js";
import { attach, exec, portForward } from "./streaming.js";
import { updateRuntimeConfig } from "./update-runtime-config.js";
import { version } from "./version.js";

/** The RuntimeService RPCs that work today; every other one answers UNIMPLEMENTED with its name. */
function runtimeServiceImpl(ctx: CriContext): Partial<ServiceImpl<typeof RuntimeService>> {
  return {
    version: () => version(ctx),
    status: (req) => status(ctx, req),
    runtimeConfig: () => runtimeConfig(ctx),
    updateRuntimeConfig: (req) => updateRuntimeConfig(ctx, req),
    runPodSandbox: (req, hc) => runPodSandbox(ctx, req, hc.signal),
    stopPodSandbox: (req) => stopPodSandbox(ctx, req),
    removePodSandbox: (req) => removePodSandbox(ctx, req),
    podSandboxStatus: (req) => podSandboxStatus(ctx, req),
    listPodSandbox: (req) => listPodSandbox(ctx, req),
    updatePodSandboxResources: (req) => updatePodSandboxResources(ctx, req),
    createContainer: (req, hc) => createContainer(ctx, req, hc.signal),
    startContainer: (req) => startContainer(ctx, req),
    stopContainer: (req) => stopContainer(ctx, req),
    removeContainer: (req) => removeContainer(ctx, req),
    containerStatus: (req) => containerStatus(ctx, req),
    listContainers: (req) => listContainers(ctx, req),
    updateContainerResources: (req) => updateContainerResources(ctx, req),
    reopenContainerLog: (req) => reopenContainerLog(ctx, req),
    checkpointContainer: (req) => checkpoint(ctx, req),
    execSync: (req, hc) => execSync(ctx, req, hc.signal),
    exec: (req) => exec(ctx, req),
    attach: (req) => attach(ctx, req),
    portForward: (req) => portForward(ctx, req),
    getContainerEvents: (_req, hc) => mapStreamErrors(getContainerEvents(ctx, hc.signal)),
    containerStats: (req) => containerStats(ctx, req),
    listContainerStats: (req) => listContainerStats(ctx, req),
    podSandboxStats: (req) => podSandboxStats(ctx, req),
    listPodSandboxStats: (req) => listPodSandboxStats(ctx, req),
    listMetricDescriptors: () => listMetricDescriptors(),
    listPodSandboxMetrics: (_req, hc) => listPodSandboxMetrics(ctx, hc.signal),
    streamPodSandboxes: (req) => mapStreamErrors(streamPodSandboxes(ctx, req)),
    streamContainers: (req) => mapStreamErrors(streamContainers(ctx, req)),
    streamContainerStats: (req) => mapStreamErrors(streamContainerStats(ctx, req)),
    streamPodSandboxStats: (req) => mapStreamErrors(streamPodSandboxStats(ctx, req)),
    streamPodSandboxMetrics: (_req, hc) => mapStreamErrors(streamPodSandboxMetrics(ctx, hc.signal)),
  };
}

/** The ImageService RPCs that work today. */
function imageServiceImpl(ctx: CriContext): Partial<ServiceImpl<typeof ImageService>> {
  return {
    pullImage: (req, hc) => pullImage(ctx, req, hc.signal),
    imageStatus: (req) => imageStatus(ctx, req),
    listImages: (req) => listImages(ctx, req),
    streamImages: (req) => mapStreamErrors(streamImages(ctx, req)),
    removeImage: (req) => removeImage(ctx, req),
    imageFsInfo: () => imageFsInfo(ctx),
  };
}

/**
 * Fills every method missing from `impl` with one that fails UNIMPLEMENTED naming the RPC,
 * so a kubelet learns exactly what is missing instead of getting a fake success.
 */
function complete<S extends DescService>(service: S, impl: Partial<ServiceImpl<S>>): ServiceImpl<S> {
  const full: Record<string, unknown> = { ...impl };
  for (const method of service.methods) {
    if (full[method.localName] !== undefined) continue;
    const error = () => unimplemented(`${method.name} is not implemented by berth yet`);
    full[method.localName] =
      method.methodKind === "unary"
        ? () => {
            throw error();
          }
        : // biome-ignore lint/correctness/useYield: a stream that fails before its first message
          async function* () {
            // Errors raised inside a stream bypass the unary interceptor path: convert here.
            throw toConnectError(error());
          };
  }
  return full as ServiceImpl<S>;
}

/** Re-throws a stream's errors as gRPC statuses (stream errors bypass the unary interceptor path). */
async function* mapStreamErrors<T>(source: AsyncIterable<T>): AsyncGenerator<T> {
  try {
    yield* source;
  } catch (err) {
    throw toConnectError(err);
  }
}

/** Registers both CRI services, and berth's own extension API, on a router. */
export function criRoutes(ctx: CriContext): (router: ConnectRouter) => void {
  return (router) => {
    router.service(RuntimeService, complete(RuntimeService, runtimeServiceImpl(ctx)));
    router.service(ImageService, complete(ImageService, imageServiceImpl(ctx)));
    router.service(
      Images,
      complete(Images, {
        pull: (req, hc) => mapStreamErrors(berthPull(ctx, req, hc.signal)),
        push: (req, hc) => mapStreamErrors(berthPush(ctx, req, hc.signal)),
        tag: (req) => berthTag(ctx, req),
        login: (req, hc) => berthLogin(ctx, req, hc.signal),
        save: (req, hc) => mapStreamErrors(berthSave(ctx, req, hc.signal)),
        load: async (reqs, hc) => {
          try {
            return await berthLoad(ctx, reqs, hc.signal);
          } catch (err) {
            throw toConnectError(err);
          }
        },
      }),
    );
    router.service(Builder, {
      build: (reqs, hc) => mapStreamErrors(berthBuild(ctx, reqs, hc.signal)),
      prune: () => berthBuildPrune(ctx),
    });
  };
}

/**
 * An HTTP/2 request handler serving CRI v1 over gRPC (and only gRPC: the kubelet and crictl
 * speak nothing else). Mount it on an `http2.createServer()` listening on the unix socket.
 * `options.tracker` sees every RPC begin and end (see {@link RpcTracker}); `options.interceptors`
 * run outside the edge interceptor, so they see every error already as its gRPC status (metrics).
 */
export function createCriHandler(
  ctx: CriContext,
  options: { tracker?: RpcTracker; interceptors?: Interceptor[] } = {},
): ReturnType<typeof connectNodeAdapter> {
  return connectNodeAdapter({
    routes: criRoutes(ctx),
    grpc: true,
    grpcWeb: false,
    connect: false,
    interceptors: [...(options.interceptors ?? []), edgeInterceptor(ctx.log, options.tracker)],
    // ExecSync output may reach 2 x 16 MiB; ListContainers on a busy node is large too.
    readMaxBytes: 64 * 1024 * 1024,
    writeMaxBytes: 64 * 1024 * 1024,
    fallback: unknownMethod,
  });
}

/**
 * A method no route serves gets the gRPC answer UNIMPLEMENTED (trailers-only, HTTP 200), as grpc-go
 * gives, rather than a bare HTTP 404 without a gRPC status: a kubelet probing an RPC of a newer CRI
 * version must read a status, not a transport error.
 */
type NodeHandler = NonNullable<ConnectNodeAdapterOptions["fallback"]>;
function unknownMethod(...[req, res]: Parameters<NodeHandler>): void {
  const grpc = /^application\/grpc(\+|;|$)/.test(String(req.headers["content-type"] ?? ""));
  if (!grpc) {
    res.writeHead(415);
    res.end();
    return;
  }
  req.resume();
  res.writeHead(200, {
    "content-type": "application/grpc+proto",
    "grpc-status": String(Code.Unimplemented),
    "grpc-message": encodeURIComponent(`unknown method ${String(req.url).slice(0, 200)}`),
  });
  res.end();
}
