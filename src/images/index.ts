export type { RegistryCredentials } from "./auth.js";
export { type ContainerImageLookup, createContainerImages, type ImageForContainer } from "./container-images.js";
export type { GcResult } from "./gc.js";
export {
  createImageService,
  type ImageFsInfo,
  type ImagePullOptions,
  type ImagePushOptions,
  type ImageRecord,
  ImageService,
  type ImageServiceOptions,
  type LocalImage,
  type PullOutcome,
} from "./image-service.js";
export { type ContainerConfig, type Descriptor, type ImageConfig, imageUser } from "./manifest.js";
export { formatPlatform, hostPlatform, type Platform, parsePlatform } from "./platform.js";
export type { LayerProgress, LayerState } from "./pull.js";
export { chainIds } from "./pull.js";
export type { PushProgress, PushState } from "./push.js";
export {
  digestReference,
  formatReference,
  parseReference,
  type Reference,
  repositoryName,
  tagReference,
} from "./reference.js";
export { RegistryClient, type RegistryClientOptions } from "./registry.js";
