export { type ContainerRootfsManager, type ContainerRootfsOptions, createContainerRootfs } from "./container-rootfs.js";
export { layerDirsOf, mountAll, unmount } from "./mount.js";
export { createOverlaySnapshotter, type OverlaySnapshotterOptions } from "./overlay.js";
export type { Mount, SnapshotInfo, SnapshotKind, Snapshotter } from "./types.js";
