import { mkdir, rm } from "node:fs/promises";
import { join } from "node:path";
import type { Config } from "../config/index.js";
import { createContentStore } from "../content/index.js";
import { isKind } from "../errdefs/index.js";
import { createImageService, type ImageService, type ImageServiceOptions } from "../images/index.js";
import type { Logger } from "../log/index.js";
import {
  bandwidthFromAnnotations,
  createNetns,
  createNetworkManager,
  type NetworkManager,
  type NetworkManagerOptions,
  netnsPath,
  removeNetns,
} from "../network/index.js";
import { currentOomScoreAdj } from "../oci/index.js";
import {
  type ContainerImages,
  ContainerManager,
  type ContainerRootfs,
  createSandboxInfra,
  createStreamingBackend,
  SandboxManager,
  type SandboxNetwork,
} from "../pods/index.js";
import { type ContainerRuntime, createContainerRuntime } from "../runtime/index.js";
import { createOverlaySnapshotter, layerDirsOf, mountAll, type Snapshotter, unmount } from "../snapshots/index.js";
import type { Store } from "../store/index.js";
import { StreamingServer, type StreamingServerOptions } from "../streaming/index.js";
import { isMountPoint, treeUsage } from "../sys/index.js";
import { createRefreshingCache, ensureDir } from "../util/index.js";

/**
 * Builds the domain modules from the config and binds them together through the narrow
 * interfaces each declares (pods see images, networks and root filesystems only through
 * adapters defined here). Paths of the daemon-owned volatile tree:
 *
 *   <state>/runtime/          container runtime state (see src/runtime/layout.ts)
 *   <state>/runtime/<handler> runc --root of each handler without an explicit root
 *   <state>/sandboxes/<id>/   pinned namespaces, /dev/shm, hostname/hosts/resolv.conf
 *   <state>/netns/<id>        pinned network namespaces (unless [cni] netns_dir)
 *   <state>/rootfs/<id>       mounted container root filesystems
 *   <root>/cni/results/       cached CNI results (unless [cni] cache_dir)
 *
 * Each of these is 0700 (set again at every start), so no host user reaches a container's files
 * through them: not the rootfs mounts (whose own mode is the image's and must stay so), not the
 * pods' 1777 /dev/shm tmpfs, not the netns pins or the CNI results. A configured `netns_dir` may be
 * shared with `ip netns`, so it gets 0700 only when berth creates it.
 */
export interface Modules {
  images: ImageService;
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
  const images = await createImageService({
    store,
    content,
    snapshotter,
    mountpoint: config.root,
    configPath: config.registry.config_path,
    ...(config.registry.platform ? { platform: config.registry.platform } : {}),
    maxConcurrentDownloads: config.registry.max_concurrent_downloads,
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

  const sandboxNetwork: SandboxNetwork = {
    netnsPath: (id) => netnsPath(netnsDir, id),
    createNetns: (id) => createNetns(id, { dir: netnsDir }),
    removeNetns: (path) => removeNetns(path),
    setUp: async (sb, options) => {
      const m = sb.config.metadata;
      const bandwidth = bandwidthFromAnnotations(sb.config.annotations);
      const net = await network.setUp({
        sandboxId: sb.id,
        netnsPath: sb.netnsPath ?? "",
        podName: m.name,
        podNamespace: m.namespace,
        podUid: m.uid,
        // A mapping without a host port only documents the container's port (the kubelet sends one for
        // every declared containerPort): the portmap plugin rejects host port 0, and containerd drops them too.
        portMappings: sb.config.portMappings
          .filter((p) => p.hostPort > 0)
          .map((p) => ({
            hostPort: p.hostPort,
            containerPort: p.containerPort,
            protocol: p.protocol,
            ...(p.hostIp ? { hostIP: p.hostIp } : {}),
          })),
        ...(bandwidth ? { bandwidth } : {}),
        ...(sb.config.dns ? { dns: sb.config.dns } : {}),
        ...(options.signal ? { signal: options.signal } : {}),
      });
      return { ips: net.ips };
    },
    tearDown: async (sb) => {
      await network.tearDown(sb.id, sb.netnsPath ?? "");
      if (sb.netnsPath) await removeNetns(sb.netnsPath);
    },
  };
  const oomScoreAdjFloor = config.runtime.restrict_oom_score_adj ? await currentOomScoreAdj() : undefined;
  const sandboxes = new SandboxManager({
    records: store.collection("sandboxes"),
    infra: createSandboxInfra({
      runtime,
      binary: config.sandbox.infra_binary,
      ...(oomScoreAdjFloor !== undefined ? { oomScoreAdjFloor } : {}),
    }),
    stateDir: sandboxesDir,
    network: sandboxNetwork,
    handlers: Object.keys(config.runtime.handlers),
    defaultHandler: config.runtime.default,
    cgroupDriver: config.runtime.cgroup_driver === "systemd" ? "systemd" : "cgroupfs",
    log: log.child({ component: "sandboxes" }),
  });

  const containerImages: ContainerImages = {
    resolve: async (ref) => {
      const rec = images.status(ref);
      if (!rec) return undefined;
      const c = rec.config.config ?? {};
      return {
        id: rec.id,
        name: rec.repoTags[0] ?? rec.id,
        // JSON null (an image that clears ENTRYPOINT) means the same as absent.
        config: {
          ...(c.User ? { User: c.User } : {}),
          ...(c.Env ? { Env: c.Env } : {}),
          ...(c.Entrypoint ? { Entrypoint: c.Entrypoint } : {}),
          ...(c.Cmd ? { Cmd: c.Cmd } : {}),
          ...(c.WorkingDir ? { WorkingDir: c.WorkingDir } : {}),
          ...(c.StopSignal ? { StopSignal: c.StopSignal } : {}),
        },
        topChainId: rec.chainIds.at(-1) ?? "",
      };
    },
  };
  const rootfs = containerRootfs(snapshotter, rootfsDir, log, async () => {
    // The container's image may have been removed while the container used its layers: without a
    // collection now, those layers would stay on disk until the next RemoveImage or restart.
    await images.collectGarbage().catch((err: unknown) => log.warn({ err }, "collect image garbage"));
  });
  closers.push(() => rootfs.close());
  const containers = new ContainerManager({
    records: store.collection("containers"),
    sandboxes,
    runtime,
    images: containerImages,
    rootfs,
    log: log.child({ component: "containers" }),
    ...(oomScoreAdjFloor !== undefined ? { oomScoreAdjFloor } : {}),
  });
  closers.push(() => containers.close());
  sandboxes.attachContainers(containers);

  await sandboxes.recover();
  await containers.recover();

  const streaming = new StreamingServer({
    backend: createStreamingBackend({ containers, sandboxes, runtime, log: log.child({ component: "streaming" }) }),
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

/** How often container writable layers are measured, and how old a figure ContainerStats may serve (ms). */
const LAYER_USAGE_PERIOD_MS = 10_000;
const LAYER_USAGE_STALE_MS = 2_000;
/** The first ContainerStats of a container waits this long for its first walk, then answers without the layer. */
const LAYER_USAGE_FIRST_WAIT_MS = 1_000;

/**
 * Container root filesystems: an active overlay snapshot per container, mounted under `dir/<id>`.
 * `released` runs after a container's snapshot is removed (image garbage collection).
 *
 * Writable-layer usage (ContainerStats) comes from a cache: the container controls that tree (it may hold
 * millions of files, be deeper than PATH_MAX, change while walked), so it is walked in a worker thread,
 * every LAYER_USAGE_PERIOD_MS and when a read finds the figure older than LAYER_USAGE_STALE_MS; stats calls
 * never wait for a walk, except the first one of a container, and that for at most LAYER_USAGE_FIRST_WAIT_MS.
 */
function containerRootfs(
  snapshotter: Snapshotter,
  dir: string,
  log: Logger,
  released: () => Promise<void>,
): ContainerRootfs & { close(): void } {
  const key = (id: string) => `container-${id}`;
  const usage = createRefreshingCache<string, { bytes: number; inodes: number; mountpoint: string } | undefined>({
    periodMs: LAYER_USAGE_PERIOD_MS,
    staleMs: LAYER_USAGE_STALE_MS,
    compute: async (id, signal) => {
      if (!(await snapshotter.stat(key(id)))) return undefined;
      const { upper } = layerDirsOf(await snapshotter.mounts(key(id)));
      const { bytes, inodes } = await treeUsage(upper, { signal });
      return { bytes, inodes, mountpoint: upper };
    },
    onError: (containerId, err) => log.warn({ err, containerId }, "measure writable layer"),
  });
  return {
    prepare: async (id, chainId) => {
      const target = join(dir, id);
      // The mount point's own mode is hidden by the mount (the container sees its image's root
      // directory unchanged); `dir`, 0700, is what keeps host users out, so no nosuid is needed.
      await mkdir(target, { recursive: true, mode: 0o700 });
      const mounts = (await snapshotter.stat(key(id)))
        ? await snapshotter.mounts(key(id))
        : await snapshotter.prepare(key(id), chainId || undefined);
      if (!(await isMountPoint(target))) await mountAll(mounts, target);
      return target;
    },
    usage: async (id) => {
      let timer: NodeJS.Timeout | undefined;
      const late = new Promise<undefined>((resolve) => {
        timer = setTimeout(resolve, LAYER_USAGE_FIRST_WAIT_MS, undefined);
      });
      // The walk goes on in its worker when we stop waiting; the next call is answered from the cache.
      return Promise.race([usage.get(id), late]).finally(() => clearTimeout(timer));
    },
    close: () => usage.close(),
    release: async (id) => {
      usage.delete(id);
      const target = join(dir, id);
      if (await isMountPoint(target)) await unmount(target, { detach: true });
      await rm(target, { recursive: true, force: true });
      await snapshotter.remove(key(id)).catch((err: unknown) => {
        if (!isKind(err, "NotFound")) throw err;
      });
      await released();
    },
  };
}
