export { type ContentStoreOptions, createContentStore, digestOf } from "./local-store.js";
export type { BlobInfo, ContentStore, Ingester, Manager, Provider } from "./types.js";
