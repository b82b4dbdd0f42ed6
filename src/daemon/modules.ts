import { join } from "node:path";
import { type Builder, createBuilder } from "../build/index.js";
import type { Config } from "../config/index.js";
import { createContentStore } from "../content/index.js";
import {
  createContainerImages,
  createImageService,
  hostPlatform,
  type ImageService,
  type ImageServiceOptions,
  parsePlatform,
} from "../images/index.js";
import type { Logger } from "../log/index.js";
import {
  createNetworkManager,
  createSandboxNetworking,
  forwardPort,
  type NetworkManager,
  type NetworkManagerOptions,
} from "../network/index.js";
import { currentOomScoreAdj } from "../oci/index.js";
import {
  ContainerManager,
  createSandboxHost,
  createSandboxInfra,
  createStreamSessions,
  SandboxManager,
} from "../pods/index.js";
import { type ContainerRuntime, createContainerRuntime } from "../runtime/index.js";
import { createContainerRootfs, createOverlaySnapshotter } from "../snapshots/index.js";
import type { Store } from "../store/index.js";
import { StreamingServer, type StreamingServerOptions } from "../streaming/index.js";
import { ensureDir } from "../util/index.js";

/**
 * Builds the domain modules from the config and binds them together through the narrow
 * interfaces each declares: pods see images, networks and root filesystems only through the
 * adapters those domains offer (createContainerImages, createSandboxNetworking,
 * createContainerRootfs), and the streaming server sees the pods only as its backend
 * (createStreamSessions). Paths of the daemon-owned volatile tree:
 *
 *   <state>/runtime/          container runtime state (see src/runtime/layout.ts)
 *   <state>/runtime/<handler> runc --root of each handler without an explicit root
 *   <state>/sandboxes/<id>/   pinned namespaces, /dev/shm, hostname/hosts/resolv.conf
 *   <state>/netns/<id>        pinned network namespaces (unless [cni] netns_dir)
 *   <state>/rootfs/<id>       mounted container root filesystems
 *   <root>/cni/results/       cached CNI results (unless [cni] cache_dir)
 *   <state>/build/            builds in progress: mounts, runc state, contexts (see src/build/builder.ts)
 *   <root>/build/             RUN --mount=type=cache directories
 *
 * Each of these is 0700 (set again at every start), so no host user reaches a container's files
 * through them: not the rootfs mounts (whose own mode is the image's and must stay so), not the
 * pods' 1777 /dev/shm tmpfs, not the netns pins or the CNI results. A configured `netns_dir` may be
 * shared with `ip netns`, so it gets 0700 only when berth creates it.
 */
export interface Modules {
  images: ImageService;
  builder: Builder;
  network: NetworkManager;
  runtime: ContainerRuntime;
  sandboxes: SandboxManager;
  containers: ContainerManager;
  streaming: StreamingServer;
  close(): Promise<void>;
}

/** Observers the daemon hands to the modules (metrics); each is optional and must not throw. */
export interface ModuleObservers {
  onPull?: ImageServiceOptions["onPull"];
  onNetworkOperation?: NetworkManagerOptions["onOperation"];
  onSession?: StreamingServerOptions["onSession"];
}

export async function buildModules(
  config: Config,
  store: Store,
  log: Logger,
  observers: ModuleObservers = {},
): Promise<Modules> {
  const closers: Array<() => Promise<void> | void> = [];
  const rootfsDir = join(config.state, "rootfs");
  const sandboxesDir = join(config.state, "sandboxes");
  const resultDir = config.cni.cache_dir || join(config.root, "cni", "results");
  const netnsDir = config.cni.netns_dir || join(config.state, "netns");
  for (const dir of [rootfsDir, sandboxesDir, resultDir]) await ensureDir(dir, 0o700);
  if (!config.cni.netns_dir) await ensureDir(netnsDir, 0o700);
  const content = await createContentStore({ root: config.root });
  const snapshotter = await createOverlaySnapshotter({ root: config.root });
  // The build cache keeps its layers from GC; the builder is made after the image service, so the
  // service asks through this indirection.
  let builder: Builder | undefined;
  const images = await createImageService({
    extraReferences: () => builder?.references() ?? { blobs: [], chainIds: [] },
    store,
    content,
    snapshotter,
    mountpoint: config.root,
    configPath: config.registry.config_path,
    ...(config.registry.platform ? { platform: config.registry.platform } : {}),
    maxConcurrentDownloads: config.registry.max_concurrent_downloads,
    pushChunkBytes: config.registry.push_chunk_bytes,
    registryTimeouts: {
      requestTimeoutMs: config.registry.request_timeout_seconds * 1000,
      idleTimeoutMs: config.registry.idle_timeout_seconds * 1000,
    },
    stallTimeoutMs: config.registry.idle_timeout_seconds * 1000,
    unpack: {
      maxLayerBytes: config.unpack.max_layer_bytes,
      maxLayerEntries: config.unpack.max_layer_entries,
      ...(config.unpack.max_workers > 0 ? { maxWorkers: config.unpack.max_workers } : {}),
    },
    logger: log.child({ component: "images" }),
    ...(observers.onPull ? { onPull: observers.onPull } : {}),
  });
  closers.push(() => images.close());
  const runcHandler = config.runtime.handlers[config.runtime.default];
  builder = await createBuilder({
    images,
    content,
    snapshotter,
    store,
    stateDir: join(config.state, "build"),
    dataDir: join(config.root, "build"),
    runcPath: runcHandler?.path ?? "runc",
    platform: config.registry.platform ? parsePlatform(config.registry.platform) : hostPlatform(),
    log: log.child({ component: "build" }),
  });
  const builderReady = builder;
  closers.push(() => builderReady.close());

  const network = await createNetworkManager({
    confDir: config.cni.conf_dir,
    pluginDirs: config.cni.bin_dirs,
    resultDir,
    pluginTimeoutMs: config.cni.plugin_timeout_seconds * 1000,
    logger: log.child({ component: "network" }),
    ...(observers.onNetworkOperation ? { onOperation: observers.onNetworkOperation } : {}),
  });
  closers.push(() => network.close());
  const podCidr = store.collection<string>("settings").get("pod_cidr");
  if (podCidr) network.setPodCidr(podCidr);

  const handlers = Object.fromEntries(
    Object.entries(config.runtime.handlers).map(([name, h]) => [
      name,
      {
        path: h.path,
        root: h.root || join(config.state, "runtime", name),
        systemdCgroup: config.runtime.cgroup_driver === "systemd",
      },
    ]),
  );
  const runtime = await createContainerRuntime({
    stateDir: join(config.state, "runtime"),
    handlers,
    defaultHandler: config.runtime.default,
    conmonPath: config.runtime.conmon_path,
    logger: log,
  });
  closers.push(() => runtime.close());

  const oomScoreAdjFloor = config.runtime.restrict_oom_score_adj ? await currentOomScoreAdj() : undefined;
  const sandboxes = new SandboxManager({
    records: store.collection("sandboxes"),
    infra: createSandboxInfra({
      runtime,
      binary: config.sandbox.infra_binary,
      ...(oomScoreAdjFloor !== undefined ? { oomScoreAdjFloor } : {}),
    }),
    stateDir: sandboxesDir,
    host: createSandboxHost(sandboxesDir),
    network: createSandboxNetworking(network, { netnsDir }),
    handlers: Object.keys(config.runtime.handlers),
    defaultHandler: config.runtime.default,
    cgroupDriver: config.runtime.cgroup_driver === "systemd" ? "systemd" : "cgroupfs",
    log: log.child({ component: "sandboxes" }),
  });

  const rootfs = createContainerRootfs(snapshotter, {
    dir: rootfsDir,
    log,
    released: async () => {
      // The container's image may have been removed while the container used its layers: without a
      // collection now, those layers would stay on disk until the next RemoveImage or restart.
      await images.collectGarbage().catch((err: unknown) => log.warn({ err }, "collect image garbage"));
    },
  });
  closers.push(() => rootfs.close());
  const containers = new ContainerManager({
    records: store.collection("containers"),
    sandboxes,
    runtime,
    images: createContainerImages(images),
    rootfs,
    log: log.child({ component: "containers" }),
    ...(oomScoreAdjFloor !== undefined ? { oomScoreAdjFloor } : {}),
  });
  closers.push(() => containers.close());
  sandboxes.attachContainers(containers);

  await sandboxes.recover();
  await containers.recover();

  const streaming = new StreamingServer({
    backend: createStreamSessions({
      containers,
      sandboxes,
      runtime,
      forwardPort,
      log: log.child({ component: "streaming" }),
    }),
    address: config.streaming.address,
    port: config.streaming.port,
    idleTimeoutMs: config.streaming.idle_timeout_seconds * 1000,
    logger: log.child({ component: "streaming" }),
    ...(observers.onSession ? { onSession: observers.onSession } : {}),
  });
  await streaming.listen();
  closers.push(() => streaming.close());

  return {
    images,
    builder: builderReady,
    network,
    runtime,
    sandboxes,
    containers,
    streaming,
    close: async () => {
      for (const c of closers.reverse()) {
        try {
          await c();
        } catch (err) {
          log.error({ err }, "module close failed");
        }
      }
    },
  };
}
