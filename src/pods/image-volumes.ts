import { lstat } from "node:fs/promises";
import { join } from "node:path";
import { failedPrecondition, invalidArgument, notFound } from "../errdefs/index.js";
import type { Mount } from "./types.js";

/** What image volumes need of the image store and the snapshots (ContainerImages, ContainerRootfs). */
interface VolumeImages {
  resolve(ref: string): Promise<{ topChainId: string } | undefined>;
}
interface VolumeSnapshots {
  prepare(key: string, chainId: string): Promise<string>;
  release(key: string): Promise<void>;
}

/**
 * Image volumes (CRI Mount.image, KEP 4639): an already-pulled image mounted read-only into a container.
 * Each volume is a snapshot on the image's top layer, like a container's rootfs, so its layers are unpacked
 * once however many pods mount the image, and the garbage collector keeps them while any volume uses them.
 * The bind into the container is read-only whatever the request says.
 *
 * Volume n of container <id> is the rootfs-like snapshot "<id>-image-volume-<n>".
 */
export const volumeKey = (containerId: string, n: number) => `${containerId}-image-volume-${n}`;

/** The container's mounts with each image volume replaced by a read-only bind of its mounted snapshot. */
export async function prepareImageVolumes(
  containerId: string,
  mounts: readonly Mount[],
  deps: { images: VolumeImages; rootfs: VolumeSnapshots },
): Promise<Mount[]> {
  const out: Mount[] = [];
  for (const [n, m] of mounts.entries()) {
    if (!m.image) {
      out.push(m);
      continue;
    }
    const image = await deps.images.resolve(m.image);
    if (!image) throw notFound(`mount ${m.containerPath}: image volume ${m.image} is not present (pull it first)`);
    const root = await deps.rootfs.prepare(volumeKey(containerId, n), image.topChainId);
    const hostPath = m.imageSubPath ? await subPathIn(root, m.imageSubPath, m) : root;
    out.push({ ...m, hostPath, readonly: true });
  }
  return out;
}

/** Releases the snapshots of every image volume `mounts` declares (idempotent, as ContainerRootfs.release). */
export async function releaseImageVolumes(
  containerId: string,
  mounts: readonly Mount[],
  rootfs: VolumeSnapshots,
): Promise<void> {
  for (const [n, m] of mounts.entries()) if (m.image) await rootfs.release(volumeKey(containerId, n));
}

/**
 * `sub` inside the image's mounted tree. Every component is checked with lstat, and a symlink anywhere is
 * refused: runc resolves a bind source on the host, so an image's `etc -> /etc` would otherwise bind the
 * host's directory into the pod.
 */
async function subPathIn(root: string, sub: string, m: Mount): Promise<string> {
  const parts = sub.split("/").filter((p) => p !== "" && p !== ".");
  if (parts.includes("..")) throw invalidArgument(`mount ${m.containerPath}: image_sub_path ${sub} climbs out with ..`);
  let path = root;
  for (const part of parts) {
    path = join(path, part);
    const st = await lstat(path).catch(() => undefined);
    if (!st) throw notFound(`mount ${m.containerPath}: image_sub_path ${sub} does not exist in image ${m.image}`);
    if (st.isSymbolicLink())
      throw failedPrecondition(`mount ${m.containerPath}: image_sub_path ${sub} of image ${m.image} is a symlink`);
  }
  return path;
}
