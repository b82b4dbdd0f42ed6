import { mkdir, rm } from "node:fs/promises";
import { join } from "node:path";
import { isKind } from "../errdefs/index.js";
import type { Logger } from "../log/index.js";
import { isMountPoint, treeUsage } from "../sys/index.js";
import { createRefreshingCache } from "../util/index.js";
import { layerDirsOf, mountAll, unmount } from "./mount.js";
import type { Snapshotter } from "./types.js";

/** Root filesystems of containers, as the container manager uses them (its `ContainerRootfs`), with close(). */
export interface ContainerRootfsManager {
  /** Prepares a writable snapshot on top of `chainId` (none: empty) and mounts it; returns the mount point. */
  prepare(containerId: string, chainId: string): Promise<string>;
  /** Unmounts and removes the container's snapshot. Idempotent. */
  release(containerId: string): Promise<void>;
  /** Disk used by the container's writable layer, and the directory it lives in (see below for freshness). */
  usage(containerId: string): Promise<{ bytes: number; inodes: number; mountpoint: string } | undefined>;
  /** Stops the periodic measurements. */
  close(): void;
}

/** Options of {@link createContainerRootfs}. */
export interface ContainerRootfsOptions {
  /** Where the root filesystems are mounted (`<state>/rootfs`, 0700). */
  dir: string;
  log: Logger;
  /** Runs after a container's snapshot was removed. */
  released: () => Promise<void>;
}

/** How often container writable layers are measured, and how old a figure ContainerStats may serve (ms). */
const LAYER_USAGE_PERIOD_MS = 10_000;
const LAYER_USAGE_STALE_MS = 2_000;
/** The first ContainerStats of a container waits this long for its first walk, then answers without the layer. */
const LAYER_USAGE_FIRST_WAIT_MS = 1_000;

/**
 * Container root filesystems: an active snapshot per container (key `container-<id>`, on its image's top
 * layer), mounted under `dir/<id>`. `released` runs after a container's snapshot is removed (so the caller
 * can collect image garbage).
 *
 * Writable-layer usage (ContainerStats) comes from a cache: the container controls that tree (it may hold
 * millions of files, be deeper than PATH_MAX, change while walked), so it is walked in a worker thread,
 * every LAYER_USAGE_PERIOD_MS and when a read finds the figure older than LAYER_USAGE_STALE_MS; stats calls
 * never wait for a walk, except the first one of a container, and that for at most LAYER_USAGE_FIRST_WAIT_MS.
 */
export function createContainerRootfs(snapshotter: Snapshotter, o: ContainerRootfsOptions): ContainerRootfsManager {
  const { dir, log, released } = o;
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
