export type { ApplyOptions, ApplyResult } from "./apply.js";
export { type Compression, compressionOfMagic, compressionOfMediaType } from "./compression.js";
export {
  applyLayer,
  createUnpacker,
  defaultUnpacker,
  LayerFeed,
  type LayerSource,
  type Unpacker,
  type UnpackerOptions,
} from "./unpacker.js";
