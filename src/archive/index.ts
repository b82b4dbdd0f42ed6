export type { ApplyOptions, ApplyResult } from "./apply.js";
export { type Compression, compressionOfMagic, compressionOfMediaType, decompressor } from "./compression.js";
export {
  applyLayer,
  createUnpacker,
  defaultUnpacker,
  LayerFeed,
  type LayerSource,
  type Unpacker,
  type UnpackerOptions,
} from "./unpacker.js";
