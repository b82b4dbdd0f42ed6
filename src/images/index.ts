export type { RegistryCredentials } from "./auth.js";
export type { GcResult } from "./gc.js";
export {
  createImageService,
  type ImageFsInfo,
  type ImagePullOptions,
  type ImageRecord,
  ImageService,
  type ImageServiceOptions,
  type PullOutcome,
} from "./image-service.js";
export { type ContainerConfig, type Descriptor, type ImageConfig, imageUser } from "./manifest.js";
export { formatPlatform, hostPlatform, type Platform, parsePlatform } from "./platform.js";
export type { LayerProgress, LayerState } from "./pull.js";
export {
  digestReference,
  formatReference,
  parseReference,
  type Reference,
  repositoryName,
  tagReference,
} from "./reference.js";
export { RegistryClient, type RegistryClientOptions } from "./registry.js";
