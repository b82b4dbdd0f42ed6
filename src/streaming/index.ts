/**
 * The Kubernetes streaming server for Exec, Attach and PortForward over SPDY/3.1 and WebSocket.
 * The CRI adapter calls `prepareExec`/`prepareAttach`/`preparePortForward` and returns the URL; the
 * daemon constructs the server with a `StreamingBackend` that runs the processes and dials pod ports.
 * Test clients for both protocols live in `./testing/index.ts`.
 */
export { ACCEPTED_PROTOCOLS_HEADER, PROTOCOL_HEADER } from "./handshake.js";
export { PORT_FORWARD_SPDY_PROTOCOLS } from "./portforward.js";
export {
  decodeResizeEvents,
  exitStatus,
  internalErrorStatus,
  type KubeStatus,
  REMOTE_COMMAND_SPDY_PROTOCOLS,
  successStatus,
} from "./remotecommand.js";
export { RequestCache, type RequestCacheOptions } from "./request-cache.js";
export { type CachedRequest, StreamingServer, type StreamingServerOptions, type StreamKind } from "./server.js";
export type {
  AttachRequest,
  ExecRequest,
  ExecResult,
  PortForwardRequest,
  PortForwardTarget,
  StreamIO,
  StreamingBackend,
  TerminalSize,
} from "./types.js";
export { type ChannelProtocol, PORT_FORWARD_WS_PROTOCOLS, REMOTE_COMMAND_WS_PROTOCOLS } from "./websocket.js";
