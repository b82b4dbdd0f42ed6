/**
 * Clients of the Kubernetes streaming protocols (SPDY/3.1 and WebSocket channels), the counterparts of
 * client-go's executors and port forwarders: the CLI's exec, attach and port-forward use the SPDY client,
 * and the tests of the streaming server and of berthd use both.
 *
 * A folder of its own, not part of `client/index.ts`: the CLI loads it only for the commands that stream
 * (`import()` on first use), so no other command pays for loading it.
 */
export {
  decodeErrorStream,
  type ExecClientOptions,
  type ExecOutcome,
  UpgradeRejectedError,
} from "./common.js";
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
