import type { ImageRecord } from "./image-service.js";
import type { ContainerConfig } from "./manifest.js";

/** The image config fields a container inherits. */
type RunSetting = "User" | "Env" | "Entrypoint" | "Cmd" | "WorkingDir" | "StopSignal";

/** What a container is created from: the image's identity, its run settings and the snapshot to start on. */
export interface ImageForContainer {
  /** `sha256:<config digest>`. */
  id: string;
  /** The name to show (first repo tag, else the ID). */
  name: string;
  /** The image config's run settings; absent (or JSON null) ones are left out. */
  config: { [K in RunSetting]?: NonNullable<ContainerConfig[K]> };
  /** Chain ID of the top layer: the committed snapshot a container's rootfs is prepared on. */
  topChainId: string;
}

/** Image lookup for CreateContainer (the container manager's `ContainerImages`). */
export interface ContainerImageLookup {
  /** The image a reference names (tag, digest, ID or ID prefix), or undefined. */
  resolve(ref: string): Promise<ImageForContainer | undefined>;
}

/** Image lookup for containers over the image store (`status` of an ImageService). */
export function createContainerImages(images: { status(ref: string): ImageRecord | undefined }): ContainerImageLookup {
  return {
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
}
