/**
 * The streaming server: the HTTP endpoint behind ExecResponse.url, AttachResponse.url and
 * PortForwardResponse.url (`cri-streaming/pkg/streaming/server.go`).
 *
 *   CRI Exec ──▶ prepareExec(req) ──▶ token in the RequestCache ──▶ http://127.0.0.1:<port>/exec/<token>
 *   client dials the URL (GET or POST, upgrade) ──▶ token consumed ──▶ SPDY/3.1 or WebSocket session
 *
 * An unknown, used or expired token, or a token of another kind, is 404. The request's options come
 * from the cached CRI request, never from the query string (except WebSocket port-forward ports when
 * the CRI request named none).
 */

import { createServer, type IncomingMessage, type Server, type ServerResponse, STATUS_CODES } from "node:http";
import type { AddressInfo } from "node:net";
import type { Duplex } from "node:stream";
import { createWebSocketStream, type WebSocket, WebSocketServer } from "ws";
import { invalidArgument } from "../errdefs/index.js";
import { type Logger, silentLogger } from "../log/index.js";
import {
  isSpdyRequest,
  isWebSocketRequest,
  type Negotiation,
  negotiateStreamProtocol,
  PROTOCOL_HEADER,
} from "./handshake.js";
import {
  PORT_FORWARD_SPDY_PROTOCOLS,
  parsePort,
  type SpdyPortForwardOptions,
  serveSpdyPortForward,
  serveWebSocketPortForward,
} from "./portforward.js";
import {
  type CommandSessionOptions,
  REMOTE_COMMAND_SPDY_PROTOCOLS,
  serveSpdyCommand,
  serveWebSocketCommand,
} from "./remotecommand.js";
import { RequestCache, type RequestCacheOptions } from "./request-cache.js";
import type { AttachRequest, ExecRequest, PortForwardRequest, ServingSession, StreamingBackend } from "./types.js";
import {
  type ChannelProtocol,
  offeredProtocols,
  PORT_FORWARD_WS_PROTOCOLS,
  REMOTE_COMMAND_WS_PROTOCOLS,
  selectProtocol,
} from "./websocket.js";

/** The three kinds of streaming request, which are also the URL's first path segment. */
export type StreamKind = "exec" | "attach" | "portforward";

/** A validated request waiting in the cache for its client. */
export type CachedRequest =
  | { kind: "exec"; request: ExecRequest }
  | { kind: "attach"; request: AttachRequest }
  | { kind: "portforward"; request: PortForwardRequest };

/** Options of a StreamingServer; defaults are the kubelet's and containerd's. */
export interface StreamingServerOptions {
  backend: StreamingBackend;
  /** Address to listen on (default 127.0.0.1: only the local kubelet should reach it). */
  address?: string;
  /** Port to listen on (default 0: an ephemeral port, read back through `address()`). */
  port?: number;
  /**
   * Absolute base of the returned URLs, e.g. `http://10.0.0.5:10010/` when clients reach the
   * server through another address. Defaults to `http://<listen address>:<port>/`; a path in it
   * prefixes every route.
   */
  baseUrl?: string;
  /** Close connections without a frame or message for this long (default 4 h). */
  idleTimeoutMs?: number;
  /** Told when a session of `kind` starts; the returned function is called once when it ends (metrics). */
  onSession?: (kind: StreamKind) => () => void;
  /** How long a SPDY client has to open the streams of a request (default 30 s). */
  streamCreationTimeoutMs?: number;
  /**
   * How long a SPDY port-forward session may go without opening any stream before it is closed
   * (default 10 min). kubectl opens a stream per local connection, so this is how long it may wait
   * for its first one; PINGs do not extend it, unlike the idle timeout.
   */
  portForwardUnusedTimeoutMs?: number;
  /**
   * Largest WebSocket message accepted (default 1 MiB); a longer one closes the connection with
   * 1009 (message too big). Clients send at most 32 KiB per message (Go's io.Copy buffer), and ws
   * would otherwise buffer up to 100 MiB of a message before handing it over.
   */
  maxWebSocketMessageBytes?: number;
  /** Token TTL, in-flight limit and clock of the request cache. */
  cache?: RequestCacheOptions;
  logger?: Logger;
}

/** The WebSocket subprotocol of SPDY-tunnelled port-forward. */
const SPDY_TUNNEL_PROTOCOL = `SPDY/3.1+${PORT_FORWARD_SPDY_PROTOCOLS[0]}`;

// How long close() waits for backend calls to return after aborting them.
const CLOSE_WAIT_MS = 10_000;

/**
 * Most ports one WebSocket port-forward may name (CRI request or ?port=): each gets a connection
 * into the pod at once, so the list must be bounded; kubectl users name a handful.
 */
const MAX_FORWARDED_PORTS = 128;

const ROUTE = /^\/(exec|attach|portforward)\/([A-Za-z0-9_-]+)$/;

/**
 * Serves exec, attach and port-forward sessions for the CRI. Lifecycle: construct, `listen()`,
 * hand out URLs with `prepareExec`/`prepareAttach`/`preparePortForward`, `close()`. Closing stops
 * listening, drops every live session (aborting its backend call) and resolves once all are gone.
 */
export class StreamingServer {
  readonly #backend: StreamingBackend;
  readonly #log: Logger;
  readonly #options: StreamingServerOptions;
  readonly #idleTimeoutMs: number;
  readonly #onSession: StreamingServerOptions["onSession"];
  readonly #streamCreationTimeoutMs: number;
  readonly #portForwardUnusedTimeoutMs: number;
  readonly #cache: RequestCache<CachedRequest>;
  readonly #http: Server;
  readonly #wss: WebSocketServer;
  readonly #sessions = new Set<ServingSession>();
  // Every socket handed to us by an upgrade, until it closes: close() must not wait on stragglers.
  readonly #upgraded = new Set<Duplex>();
  // The subprotocol chosen before handing a request to ws, read back by its handleProtocols hook.
  readonly #chosenProtocol = new WeakMap<IncomingMessage, string>();
  readonly #tunnelled = new WeakSet<IncomingMessage>();
  #base: URL | undefined;
  #basePath = "/";
  #closing: Promise<void> | undefined;

  constructor(options: StreamingServerOptions) {
    this.#options = options;
    this.#backend = options.backend;
    this.#log = options.logger ?? silentLogger();
    this.#idleTimeoutMs = options.idleTimeoutMs ?? 4 * 60 * 60 * 1000;
    this.#onSession = options.onSession;
    this.#streamCreationTimeoutMs = options.streamCreationTimeoutMs ?? 30_000;
    this.#portForwardUnusedTimeoutMs = options.portForwardUnusedTimeoutMs ?? 10 * 60 * 1000;
    this.#cache = new RequestCache(options.cache);
    if (options.baseUrl !== undefined) this.#setBase(options.baseUrl);
    this.#http = createServer((req, res) => this.#onRequest(req, res));
    this.#http.on("upgrade", (req: IncomingMessage, socket: Duplex, head: Buffer) =>
      this.#onUpgrade(req, socket, head),
    );
    this.#http.on("clientError", (err, socket) => {
      this.#log.debug({ err }, "streaming: bad http request");
      socket.destroy();
    });
    this.#wss = new WebSocketServer({
      noServer: true,
      clientTracking: false,
      perMessageDeflate: false,
      maxPayload: options.maxWebSocketMessageBytes ?? 1024 * 1024,
      handleProtocols: (_offered, req) => this.#chosenProtocol.get(req) ?? false,
    });
    this.#wss.on("headers", (headers: string[], req: IncomingMessage) => {
      if (this.#tunnelled.has(req)) headers.push(`Sec-WebSocket-Protocol: ${SPDY_TUNNEL_PROTOCOL}`);
    });
  }

  /** Starts listening. Resolves once bound; URLs are available from then on. */
  async listen(): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      this.#http.once("error", reject);
      this.#http.listen(this.#options.port ?? 0, this.#options.address ?? "127.0.0.1", () => {
        this.#http.off("error", reject);
        resolve();
      });
    });
    if (this.#base === undefined) {
      const { address, port } = this.address();
      this.#setBase(`http://${urlHost(address)}:${port}/`);
    }
    this.#log.info({ url: this.#base?.href }, "streaming server listening");
  }

  /** The bound address and port. Throws before `listen()`. */
  address(): AddressInfo {
    const addr = this.#http.address();
    if (addr === null || typeof addr === "string") throw new Error("streaming server is not listening");
    return addr;
  }

  /** Sessions currently being served (for metrics and tests). */
  get activeSessions(): number {
    return this.#sessions.size;
  }

  /** The absolute URL of `token` for `kind`: `<base>/<kind>/<token>`. Throws before `listen()` unless `baseUrl` was given. */
  url(kind: StreamKind, token: string): string {
    if (this.#base === undefined) throw new Error("streaming server is not listening");
    return new URL(`${kind}/${token}`, this.#base).href;
  }

  /**
   * Validates an exec request (as the kubelet's `validateExecRequest`), caches it under a new token
   * and returns its URL. Throws InvalidArgument, or ResourceExhausted when too many are pending.
   */
  prepareExec(req: ExecRequest): string {
    validateStdio(req);
    if (req.cmd.length === 0) throw invalidArgument("cmd is required");
    const request: ExecRequest = { ...req, cmd: [...req.cmd] };
    return this.url("exec", this.#cache.insert({ kind: "exec", request }));
  }

  /** Like prepareExec, for attach. */
  prepareAttach(req: AttachRequest): string {
    validateStdio(req);
    return this.url("attach", this.#cache.insert({ kind: "attach", request: { ...req } }));
  }

  /** Validates a port-forward request (sandbox id required, ports 1-65535), caches it, returns its URL. */
  preparePortForward(req: PortForwardRequest): string {
    if (req.podSandboxId === "") throw invalidArgument("missing required pod_sandbox_id");
    if (req.ports.length > MAX_FORWARDED_PORTS) {
      throw invalidArgument(`${req.ports.length} ports: at most ${MAX_FORWARDED_PORTS} per port-forward`);
    }
    for (const port of req.ports) {
      if (!Number.isInteger(port) || port < 1 || port > 65535) throw invalidArgument(`invalid port ${port}`);
    }
    const request: PortForwardRequest = { podSandboxId: req.podSandboxId, ports: [...req.ports] };
    return this.url("portforward", this.#cache.insert({ kind: "portforward", request }));
  }

  /**
   * Stops listening and drops every session; resolves when they and their backend calls are done
   * (or, for a backend that ignores its abort signal, after 10 s with a warning).
   */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      const stopped = new Promise<void>((resolve) => this.#http.close(() => resolve()));
      this.#http.closeAllConnections();
      const sessions = [...this.#sessions];
      for (const s of sessions) s.terminate();
      // Backends must settle soon after their signal aborts; one that does not must not hang the
      // daemon's shutdown.
      let timer: NodeJS.Timeout | undefined;
      const settled = await Promise.race([
        Promise.all(sessions.map((s) => s.done)).then(() => true),
        new Promise<false>((resolve) => {
          timer = setTimeout(() => resolve(false), CLOSE_WAIT_MS);
        }),
      ]);
      clearTimeout(timer);
      if (!settled)
        this.#log.warn({ sessions: this.#sessions.size }, "streaming: backend calls still running at close");
      for (const socket of this.#upgraded) socket.destroy();
      this.#wss.close();
      await stopped;
    })();
    return this.#closing;
  }

  // ---- routing ----

  #setBase(href: string): void {
    const base = new URL(href);
    if (base.protocol !== "http:" && base.protocol !== "https:")
      throw invalidArgument(`streaming base url ${href}: not http(s)`);
    if (!base.pathname.endsWith("/")) base.pathname += "/";
    this.#base = base;
    this.#basePath = base.pathname;
  }

  /**
   * Resolves a request to its cached entry, consuming the token (as the kubelet does, before any
   * other check). Returns an HTTP error otherwise.
   */
  #route(req: IncomingMessage): { cached: CachedRequest; url: URL } | { status: number; message: string } {
    const url = new URL(req.url ?? "/", "http://streaming.invalid");
    const path = url.pathname.startsWith(this.#basePath) ? `/${url.pathname.slice(this.#basePath.length)}` : "";
    const m = ROUTE.exec(path);
    if (m === null) return { status: 404, message: "404 page not found" };
    if (req.method !== "GET" && req.method !== "POST") return { status: 405, message: "405 method not allowed" };
    const cached = this.#cache.consume(m[2]!);
    if (cached === undefined || cached.kind !== m[1]) return { status: 404, message: "404 page not found" };
    return { cached, url };
  }

  /** Plain (non-upgrade) requests can only be errors: streaming needs an upgraded connection. */
  #onRequest(req: IncomingMessage, res: ServerResponse): void {
    const routed = this.#route(req);
    if ("status" in routed) {
      respond(res, routed.status, routed.message);
      return;
    }
    if (!isWebSocketRequest(req.headers)) {
      const negotiation = this.#negotiateSpdy(routed.cached.kind, req);
      if (!negotiation.ok) {
        respond(res, negotiation.status, negotiation.message, negotiation.headers);
        return;
      }
    }
    respond(res, 400, "unable to upgrade: missing upgrade headers in request");
  }

  #onUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    socket.on("error", (err) => this.#log.debug({ err }, "streaming: connection error"));
    this.#upgraded.add(socket);
    socket.once("close", () => this.#upgraded.delete(socket));
    if (this.#closing !== undefined) {
      rejectUpgrade(socket, 503, "streaming server is shutting down");
      return;
    }
    const routed = this.#route(req);
    if ("status" in routed) {
      rejectUpgrade(socket, routed.status, routed.message);
      return;
    }
    const { cached, url } = routed;
    if (isWebSocketRequest(req.headers)) {
      this.#upgradeWebSocket(req, socket, head, cached, url);
      return;
    }
    const negotiation = this.#negotiateSpdy(cached.kind, req);
    if (!negotiation.ok) {
      rejectUpgrade(socket, negotiation.status, negotiation.message, negotiation.headers);
      return;
    }
    if (!isSpdyRequest(req.headers)) {
      rejectUpgrade(socket, 400, "unable to upgrade: missing upgrade headers in request");
      return;
    }
    socket.write(
      "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n" +
        `${PROTOCOL_HEADER}: ${negotiation.protocol}\r\n\r\n`,
    );
    if (head.length > 0) socket.unshift(head);
    const log = this.#log.child({ transport: "spdy", protocol: negotiation.protocol, ...describe(cached) });
    if (cached.kind === "portforward") {
      this.#track("portforward", serveSpdyPortForward(socket, this.#spdyPortForwardOptions(cached.request, log)));
    } else {
      this.#track(
        cached.kind,
        serveSpdyCommand(socket, {
          ...this.#commandOptions(cached, log),
          protocol: negotiation.protocol,
          streamCreationTimeoutMs: this.#streamCreationTimeoutMs,
        }),
      );
    }
  }

  #negotiateSpdy(kind: StreamKind, req: IncomingMessage): Negotiation {
    const supported = kind === "portforward" ? PORT_FORWARD_SPDY_PROTOCOLS : REMOTE_COMMAND_SPDY_PROTOCOLS;
    return negotiateStreamProtocol(req.headersDistinct[PROTOCOL_HEADER.toLowerCase()], supported);
  }

  #upgradeWebSocket(req: IncomingMessage, socket: Duplex, head: Buffer, cached: CachedRequest, url: URL): void {
    const supported = cached.kind === "portforward" ? PORT_FORWARD_WS_PROTOCOLS : REMOTE_COMMAND_WS_PROTOCOLS;
    const offered = offeredProtocols(req.headers["sec-websocket-protocol"]);
    if (cached.kind === "portforward" && offered.includes(SPDY_TUNNEL_PROTOCOL)) {
      this.#tunnelSpdy(req, socket, head, cached.request);
      return;
    }
    const protocol = selectProtocol(offered, supported);
    if (protocol === undefined) {
      const accepted = supported.map((p) => p.name || '""').join(", ");
      rejectUpgrade(
        socket,
        403,
        `requested protocol(s) are not supported: ${offered.join(", ")}; supports ${accepted}`,
      );
      return;
    }
    let ports: readonly number[] = [];
    if (cached.kind === "portforward") {
      ports = cached.request.ports.length > 0 ? cached.request.ports : queryPorts(url);
      if (ports.length === 0) {
        rejectUpgrade(socket, 400, 'query parameter "port" is required');
        return;
      }
      if (ports.length > MAX_FORWARDED_PORTS) {
        rejectUpgrade(socket, 400, `at most ${MAX_FORWARDED_PORTS} ports per port-forward`);
        return;
      }
    }
    if (protocol.name !== "") this.#chosenProtocol.set(req, protocol.name);
    this.#wss.handleUpgrade(req, socket, head, (ws: WebSocket) => {
      const log = this.#log.child({ transport: "websocket", protocol: protocol.name, ...describe(cached) });
      if (this.#closing !== undefined) {
        ws.terminate();
        return;
      }
      this.#track(cached.kind, this.#serveWebSocket(ws, protocol, cached, ports, log));
    });
  }

  /**
   * kubectl 1.31+ port-forward: SPDY frames carried in binary WebSocket messages (KEP-4006). The
   * kubelet normally unwraps this before the runtime; serving it here too costs one stream adapter.
   */
  #tunnelSpdy(req: IncomingMessage, socket: Duplex, head: Buffer, request: PortForwardRequest): void {
    // "/" is not a token character, so ws rejects this subprotocol (400). Hide it from ws and add
    // it to the 101 response ourselves ("headers" hook); gorilla/websocket, on the client, accepts it.
    delete req.headers["sec-websocket-protocol"];
    this.#tunnelled.add(req);
    this.#wss.handleUpgrade(req, socket, head, (ws: WebSocket) => {
      if (this.#closing !== undefined) {
        ws.terminate();
        return;
      }
      const log = this.#log.child({
        transport: "websocket+spdy",
        kind: "portforward",
        podSandboxId: request.podSandboxId,
      });
      this.#track(
        "portforward",
        serveSpdyPortForward(createWebSocketStream(ws), this.#spdyPortForwardOptions(request, log)),
      );
    });
  }

  #spdyPortForwardOptions(request: PortForwardRequest, log: Logger): SpdyPortForwardOptions {
    return {
      podSandboxId: request.podSandboxId,
      backend: this.#backend,
      idleTimeoutMs: this.#idleTimeoutMs,
      streamCreationTimeoutMs: this.#streamCreationTimeoutMs,
      unusedTimeoutMs: this.#portForwardUnusedTimeoutMs,
      logger: log,
    };
  }

  #serveWebSocket(
    ws: WebSocket,
    protocol: ChannelProtocol,
    cached: CachedRequest,
    ports: readonly number[],
    log: Logger,
  ): ServingSession {
    if (cached.kind === "portforward") {
      return serveWebSocketPortForward(ws, {
        protocol,
        ports,
        podSandboxId: cached.request.podSandboxId,
        backend: this.#backend,
        idleTimeoutMs: this.#idleTimeoutMs,
        logger: log,
      });
    }
    return serveWebSocketCommand(ws, { ...this.#commandOptions(cached, log), protocol });
  }

  #commandOptions(cached: CachedRequest & { kind: "exec" | "attach" }, log: Logger): CommandSessionOptions {
    const { stdin, stdout, stderr, tty } = cached.request;
    const streams = { stdin, stdout, stderr, tty };
    if (cached.kind === "exec") {
      const request = cached.request;
      return {
        streams,
        run: async (io) => (await this.#backend.exec(request, io)).exitCode,
        failureContext: "error executing command in container",
        idleTimeoutMs: this.#idleTimeoutMs,
        logger: log,
      };
    }
    const request = cached.request;
    return {
      streams,
      run: async (io) => {
        await this.#backend.attach(request, io);
        return undefined;
      },
      failureContext: "error attaching to container",
      idleTimeoutMs: this.#idleTimeoutMs,
      logger: log,
    };
  }

  #track(kind: StreamKind, session: ServingSession): void {
    this.#sessions.add(session);
    let ended: (() => void) | undefined;
    try {
      ended = this.#onSession?.(kind);
    } catch (err) {
      this.#log.warn({ err }, "streaming session observer failed");
    }
    session.done
      .catch((err: unknown) => this.#log.error({ err }, "streaming session failed"))
      .finally(() => {
        this.#sessions.delete(session);
        ended?.();
      });
  }
}

function validateStdio(req: {
  containerId: string;
  tty: boolean;
  stdin: boolean;
  stdout: boolean;
  stderr: boolean;
}): void {
  if (req.containerId === "") throw invalidArgument("missing required container_id");
  // A terminal has one output stream; the kubelet refuses to multiplex stderr into it.
  if (req.tty && req.stderr) throw invalidArgument("tty and stderr cannot both be true");
  if (!req.stdin && !req.stdout && !req.stderr) throw invalidArgument("one of stdin, stdout, or stderr must be set");
}

/** Log context of a request: ids, never the token. */
function describe(cached: CachedRequest): Record<string, string> {
  if (cached.kind === "portforward") return { kind: cached.kind, podSandboxId: cached.request.podSandboxId };
  return { kind: cached.kind, containerId: cached.request.containerId };
}

/** Ports from repeated `?port=` parameters, comma lists allowed (wsstream's NewV4Options). */
function queryPorts(url: URL): number[] {
  const ports: number[] = [];
  for (const value of url.searchParams.getAll("port")) {
    for (const part of value.split(",")) {
      const port = parsePort(part.trim());
      if (port === undefined) return [];
      ports.push(port);
    }
  }
  return ports;
}

/** A host for a URL: unspecified addresses become loopback (the kubelet dials from this host). */
function urlHost(address: string): string {
  if (address === "0.0.0.0" || address === "") return "127.0.0.1";
  if (address === "::") return "[::1]";
  return address.includes(":") ? `[${address}]` : address;
}

function respond(res: ServerResponse, status: number, message: string, headers: [string, string][] = []): void {
  const grouped = new Map<string, string[]>();
  for (const [name, value] of headers) grouped.set(name, [...(grouped.get(name) ?? []), value]);
  for (const [name, values] of grouped) res.setHeader(name, values);
  res.setHeader("Content-Type", "text/plain; charset=utf-8");
  res.setHeader("X-Content-Type-Options", "nosniff");
  res.writeHead(status).end(`${message}\n`);
}

/** Answers an upgrade request with a plain HTTP error on the raw socket, then hangs up. */
function rejectUpgrade(socket: Duplex, status: number, message: string, headers: [string, string][] = []): void {
  const body = `${message}\n`;
  const lines = [
    `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? ""}`,
    "Content-Type: text/plain; charset=utf-8",
    "X-Content-Type-Options: nosniff",
    `Content-Length: ${Buffer.byteLength(body)}`,
    "Connection: close",
    ...headers.map(([name, value]) => `${name}: ${value}`),
  ];
  socket.end(`${lines.join("\r\n")}\r\n\r\n${body}`);
  // A client that never closes its side must not hold the socket forever.
  if ("setTimeout" in socket && typeof socket.setTimeout === "function") {
    socket.setTimeout(5000, () => socket.destroy());
  }
}
