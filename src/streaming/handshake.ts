/**
 * HTTP-level negotiation before a connection is upgraded (`httpstream.Handshake` and the SPDY and
 * WebSocket upgrade checks). Pure functions of the request headers, so the server can answer with
 * plain HTTP errors before anything is hijacked.
 */

import type { IncomingHttpHeaders } from "node:http";

/** Request header carrying the client's stream protocols (repeated, or comma-separated). */
export const PROTOCOL_HEADER = "X-Stream-Protocol-Version";
/** Response header listing the server's protocols when none matched (one header per protocol). */
export const ACCEPTED_PROTOCOLS_HEADER = "X-Accepted-Stream-Protocol-Versions";

/** The outcome of protocol negotiation: the protocol, or the HTTP error to answer with. */
export type Negotiation =
  | { ok: true; protocol: string }
  | { ok: false; status: 400 | 403; message: string; headers: [string, string][] };

/**
 * Picks the first protocol the client lists that the server supports. A missing or empty header is
 * 400; no common protocol is 403 with one X-Accepted-Stream-Protocol-Versions per server protocol.
 */
export function negotiateStreamProtocol(
  values: readonly string[] | undefined,
  supported: readonly string[],
): Negotiation {
  const offered = (values ?? [])
    .flatMap((v) => v.split(","))
    .map((v) => v.trim())
    .filter((v) => v.length > 0);
  if (offered.length === 0) {
    return { ok: false, status: 400, message: `unable to upgrade: ${PROTOCOL_HEADER} is required`, headers: [] };
  }
  const match = offered.find((p) => supported.includes(p));
  if (match !== undefined) return { ok: true, protocol: match };
  return {
    ok: false,
    status: 403,
    message:
      `unable to upgrade: unable to negotiate protocol: client supports [${offered.join(" ")}], ` +
      `server accepts [${supported.join(" ")}]`,
    headers: supported.map((p) => [ACCEPTED_PROTOCOLS_HEADER, p]),
  };
}

/** True when the request asks for a WebSocket (`Upgrade: websocket`, `Connection` containing upgrade). */
export function isWebSocketRequest(headers: IncomingHttpHeaders): boolean {
  return headers.upgrade?.toLowerCase() === "websocket" && connectionHasUpgrade(headers);
}

/** True when the request asks for SPDY/3.1 (`Upgrade` containing spdy/3.1, `Connection` containing upgrade). */
export function isSpdyRequest(headers: IncomingHttpHeaders): boolean {
  return (headers.upgrade?.toLowerCase().includes("spdy/3.1") ?? false) && connectionHasUpgrade(headers);
}

function connectionHasUpgrade(headers: IncomingHttpHeaders): boolean {
  return headers.connection?.toLowerCase().includes("upgrade") ?? false;
}
