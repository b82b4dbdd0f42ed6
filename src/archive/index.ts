export { type ApplyOptions, type ApplyResult, applyLayer } from "./apply.js";
export { type Compression, compressionOfMagic, compressionOfMediaType } from "./compression.js";
