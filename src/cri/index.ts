export type { Condition, CriContext } from "./context.js";
export { toConnectError } from "./errors.js";
export { createRpcTracker, type RpcSpan, type RpcTracker } from "./in-flight.js";
export { createCriHandler, criRoutes } from "./server.js";
export { CRI_API_VERSION } from "./version.js";
