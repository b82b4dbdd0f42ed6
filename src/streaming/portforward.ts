/**
 * Port-forward sessions over SPDY or WebSocket (`cri-streaming/.../portforward`).
 *
 * SPDY (`portforward.k8s.io`): one connection carries many forwarded TCP connections. For each, the
 * client opens an `error` stream and a `data` stream with the same `port` and `requestID` headers:
 *
 *   error+data paired (within the stream-creation timeout) ──▶ backend.portForward(port, data)
 *        └─ backend settles ──▶ error text on failure ──▶ FIN on data and error
 *
 * Clients older than the requestID header are paired by stream id (error N with data N+2).
 * The connection lives until the client hangs up or the idle timeout fires.
 *
 * WebSocket: the ports come from the cached request; port i gets data channel 2i and error channel
 * 2i+1, and the first message on each is the port as a little-endian uint16. One TCP connection
 * per port, for the life of the WebSocket.
 */

import { Duplex } from "node:stream";
import { finished } from "node:stream/promises";
import type { WebSocket } from "ws";
import { messageOf } from "../errdefs/index.js";
import type { Logger } from "../log/index.js";
import { headerValue } from "./spdy/framing.js";
import { SpdySession, type SpdyStream } from "./spdy/session.js";
import type { ServingSession, StreamingBackend } from "./types.js";
import { ChannelConn, type ChannelProtocol } from "./websocket.js";

/** SPDY port-forward protocols. */
export const PORT_FORWARD_SPDY_PROTOCOLS: readonly string[] = ["portforward.k8s.io"];

/** What every port-forward session needs. */
export interface PortForwardSessionOptions {
  podSandboxId: string;
  backend: StreamingBackend;
  idleTimeoutMs: number;
  logger: Logger;
}

/** Options of a SPDY port-forward session. */
export interface SpdyPortForwardOptions extends PortForwardSessionOptions {
  /** How long a request has to open its second stream. */
  streamCreationTimeoutMs: number;
  /**
   * How long a session may go without opening its first stream (PINGs do not count) before it is
   * closed. Without it a client could park sessions for the whole idle timeout by pinging.
   */
  unusedTimeoutMs: number;
  /** Most requests waiting for their second stream at once (default 128); more are refused. */
  maxPendingRequests?: number;
}

/**
 * Requests waiting for their partner stream. Each holds one stream and a timer until it pairs or
 * the stream-creation timeout expires it; client-go opens the pair back to back, so a handful is
 * the most a real client ever has pending.
 */
const DEFAULT_MAX_PENDING_REQUESTS = 128;

interface StreamPair {
  requestId: string;
  error?: SpdyStream;
  data?: SpdyStream;
  timer: NodeJS.Timeout;
}

/** A port from a header or query value: a decimal in 1-65535, else undefined. */
export function parsePort(value: string | undefined): number | undefined {
  if (value === undefined || !/^\d{1,5}$/.test(value)) return undefined;
  const port = Number(value);
  return port >= 1 && port <= 65535 ? port : undefined;
}

/** Serves port-forward on an upgraded SPDY connection (the 101 response already written). */
export function serveSpdyPortForward(socket: Duplex, options: SpdyPortForwardOptions): ServingSession {
  const log = options.logger;
  const pairs = new Map<string, StreamPair>();
  const forwards = new Set<Promise<void>>();
  const maxPending = options.maxPendingRequests ?? DEFAULT_MAX_PENDING_REQUESTS;
  let unusedTimer: NodeJS.Timeout | undefined = setTimeout(() => {
    log.warn({ unusedTimeoutMs: options.unusedTimeoutMs }, "port-forward: no stream opened in time, closing");
    session.destroy();
  }, options.unusedTimeoutMs);

  const onStream = (stream: SpdyStream): boolean | undefined => {
    const portHeader = headerValue(stream.headers, "port");
    const type = headerValue(stream.headers, "streamtype");
    if (parsePort(portHeader) === undefined) {
      log.warn({ port: portHeader }, "port-forward stream without a valid port header, refused");
      return false;
    }
    if (type !== "error" && type !== "data") {
      log.warn({ streamType: type }, "port-forward stream of invalid type, refused");
      return false;
    }
    const requestId = headerValue(stream.headers, "requestid") ?? legacyRequestId(stream.id, type);
    clearTimeout(unusedTimer);
    unusedTimer = undefined;
    let pair = pairs.get(requestId);
    if (pair === undefined) {
      if (pairs.size >= maxPending) {
        log.warn({ requestId, maxPending }, "port-forward: too many requests waiting for their second stream, refused");
        return false;
      }
      const created: StreamPair = {
        requestId,
        timer: setTimeout(() => {
          pairs.delete(requestId);
          log.warn({ requestId }, "port-forward: timed out waiting for streams");
          failPair(created, `timed out waiting for streams of request ${requestId}`);
        }, options.streamCreationTimeoutMs),
      };
      pair = created;
      pairs.set(requestId, pair);
    }
    if (pair[type] !== undefined) {
      const message = `error processing stream for request ${requestId}: ${type} stream already assigned`;
      log.warn({ requestId }, message);
      pair.error?.write(message);
      return false;
    }
    pair[type] = stream;
    if (pair.error !== undefined && pair.data !== undefined) {
      clearTimeout(pair.timer);
      pairs.delete(requestId);
      const forwarding = forward(pair.data, pair.error);
      forwards.add(forwarding);
      void forwarding.finally(() => forwards.delete(forwarding));
    }
    return undefined;
  };

  const session = new SpdySession(socket, {
    role: "server",
    idleTimeoutMs: options.idleTimeoutMs,
    logger: log,
    onStream,
  });

  const forward = async (data: SpdyStream, error: SpdyStream): Promise<void> => {
    const port = parsePort(headerValue(data.headers, "port"))!;
    try {
      await options.backend.portForward({ podSandboxId: options.podSandboxId, port }, data, { signal: session.signal });
    } catch (err) {
      // A client that resets its data stream (client-go does, once the pod side is done) or hangs up
      // caused the failure itself; there is nobody to tell.
      if (!session.signal.aborted && data.resetStatus === undefined) {
        const message = `error forwarding port ${port} to pod ${options.podSandboxId}: ${messageOf(err)}`;
        log.warn({ port }, message);
        error.write(message);
      }
    }
    await Promise.all([end(data, session.signal), end(error, session.signal)]);
  };

  const done = (async () => {
    await session.closed;
    clearTimeout(unusedTimer);
    for (const pair of pairs.values()) clearTimeout(pair.timer);
    pairs.clear();
    await Promise.all(forwards);
  })();
  return { done, terminate: () => session.destroy() };
}

/** Pairing for clients that send no requestID: error stream N and data stream N+2 share "N". */
function legacyRequestId(streamId: number, type: "error" | "data"): string {
  return String(type === "error" ? streamId : streamId - 2);
}

function failPair(pair: StreamPair, message: string): void {
  if (pair.error !== undefined && !pair.error.destroyed) {
    pair.error.write(message);
    pair.error.end();
  }
  pair.data?.reset();
}

/** Sends our FIN on a stream and waits until it is out (or the session is gone). */
async function end(stream: SpdyStream, signal: AbortSignal): Promise<void> {
  if (stream.destroyed) return;
  if (!stream.writableEnded) stream.end();
  await finished(stream, { readable: false, signal }).catch(() => undefined);
}

// ---- WebSocket ----

/** Options of a WebSocket port-forward session. */
export interface WebSocketPortForwardOptions extends PortForwardSessionOptions {
  protocol: ChannelProtocol;
  ports: readonly number[];
}

/**
 * Serves port-forward on an accepted WebSocket: one backend connection per port, started at once.
 * The WebSocket closes when every forward has ended, or when the client closes it.
 */
export function serveWebSocketPortForward(ws: WebSocket, options: WebSocketPortForwardOptions): ServingSession {
  const log = options.logger;
  const conn = new ChannelConn(ws, { protocol: options.protocol, idleTimeoutMs: options.idleTimeoutMs, logger: log });
  const forwards = options.ports.map((port, i) => {
    const dataChannel = 2 * i;
    const errorChannel = 2 * i + 1;
    // Both channels must exist before any message can arrive.
    const incoming = conn.readable(dataChannel);
    const outgoing = conn.writable(dataChannel);
    const portBytes = Buffer.alloc(2);
    portBytes.writeUInt16LE(port);
    void conn.send(dataChannel, portBytes);
    void conn.send(errorChannel, portBytes);
    const stream = Duplex.from({ readable: incoming, writable: outgoing });
    return (async () => {
      try {
        await options.backend.portForward({ podSandboxId: options.podSandboxId, port }, stream, {
          signal: conn.signal,
        });
      } catch (err) {
        if (!conn.signal.aborted) {
          const message = `error forwarding port ${port} to pod ${options.podSandboxId}: ${messageOf(err)}`;
          log.warn({ port }, message);
          await conn.send(errorChannel, Buffer.from(message));
        }
      }
    })();
  });
  const done = (async () => {
    await Promise.all(forwards);
    await conn.close();
  })();
  return { done, terminate: () => conn.terminate() };
}
