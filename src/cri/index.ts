export type { Condition, CriContext } from "./context.js";
export { toConnectError } from "./errors.js";
export { createCriHandler, criRoutes } from "./server.js";
export { CRI_API_VERSION } from "./version.js";
