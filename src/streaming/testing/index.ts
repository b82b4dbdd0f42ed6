/**
 * Streaming test kit: SPDY and WebSocket clients that behave like kubectl/client-go, and a backend
 * that runs host processes. Used by the streaming server's tests and by berthd's end-to-end tests.
 */
export {
  decodeErrorStream,
  type ExecClientOptions,
  type ExecOutcome,
  UpgradeRejectedError,
} from "./common.js";
export { HostProcessBackend, type RecordedCall } from "./host-backend.js";
export { type KubeApiShim, type KubeApiShimOptions, type ShimRequest, startKubeApiShim } from "./kube-api-shim.js";
export {
  dialSpdy,
  type ForwardedConnection,
  openStream,
  roundTrip,
  type SpdyConnection,
  type SpdyDialOptions,
  type SpdyExecOptions,
  SpdyPortForwardClient,
  spdyExec,
} from "./spdy-client.js";
export {
  WsChannelClient,
  type WsDialOptions,
  type WsExecOptions,
  type WsForwardedPort,
  WsPortForwardClient,
  wsExec,
} from "./ws-client.js";
