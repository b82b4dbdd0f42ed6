/**
 * The Kubernetes streaming server for Exec, Attach and PortForward over SPDY/3.1 and WebSocket.
 *
 * The CRI adapter validates and caches a request with `prepareExec`/`prepareAttach`/
 * `preparePortForward` and returns the URL; the daemon constructs the server with a
 * `StreamingBackend` that runs processes and dials pod ports, `listen()`s, and `close()`s it at
 * shutdown. Clients of both protocols are in `client/streaming/`; the tests' host-process backend and
 * kubectl harness in `test/support/`.
 */
export { PORT_FORWARD_SPDY_PROTOCOLS } from "./portforward.js";
export { type KubeStatus, REMOTE_COMMAND_SPDY_PROTOCOLS } from "./remotecommand.js";
export { RequestCache, type RequestCacheOptions } from "./request-cache.js";
export { type CachedRequest, StreamingServer, type StreamingServerOptions, type StreamKind } from "./server.js";
export {
  type FlowControlMode,
  SpdySession,
  type SpdySessionOptions,
  SpdyStream,
  SpdyStreamResetError,
} from "./spdy/session.js";
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
