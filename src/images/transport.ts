import { readFile } from "node:fs/promises";
import http, { type IncomingHttpHeaders, type IncomingMessage } from "node:http";
import https from "node:https";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { rootCertificates } from "node:tls";
import { RuntimeError } from "../errdefs/index.js";
import type { Logger } from "../log/index.js";
import type { RegistryHost } from "./hosts.js";

/**
 * HTTP(S) requests to registry hosts over `node:http`/`node:https`, because per-host TLS
 * (custom CA added to the system roots, client certificates, skip_verify) needs agents that the
 * built-in `fetch` cannot take without the undici package. One keep-alive agent per distinct TLS
 * setting, so parallel layer downloads reuse connections. Hosts marked `httpFallback` are tried
 * with TLS first; a server that answers TLS with plain HTTP is remembered and spoken to in plain
 * HTTP from then on (containerd's HTTPFallback).
 *
 * No request can hang a pull: every request fails with DeadlineExceeded when no byte moves for
 * `idleTimeoutMs` (waiting for the answer, or in the middle of its body), and, unless it opts
 * out, when its answer is not complete within `requestTimeoutMs`. Blob downloads opt out of the
 * total deadline: a large layer that keeps moving may take as long as it needs.
 */

/** Timeouts of every request; see the module comment. */
export interface TransportTimeouts {
  /** Total deadline of a request and its body (manifests, tokens). Default 60 s. */
  requestTimeoutMs?: number;
  /** Longest time without a byte moving, for every request. Default 5 minutes. */
  idleTimeoutMs?: number;
}

const DEFAULT_REQUEST_TIMEOUT_MS = 60_000;
const DEFAULT_IDLE_TIMEOUT_MS = 5 * 60_000;

/** A response whose body the caller must consume or destroy. */
export interface HttpResponse {
  status: number;
  headers: IncomingHttpHeaders;
  /** Every value of every header (WWW-Authenticate may repeat). */
  headersDistinct: Record<string, string[]>;
  body: IncomingMessage;
  /** The URL actually requested (its scheme may differ after an HTTP fallback). */
  url: URL;
}

export interface HttpRequestOptions {
  method?: string;
  headers?: Record<string, string | string[]>;
  /**
   * The request body. A stream comes from a function, called once per attempt (an HTTP fallback
   * sends the request twice), so a blob upload can be sent again from the start.
   */
  body?: string | Uint8Array | (() => AsyncIterable<Uint8Array>);
  signal?: AbortSignal;
  /** Apply the total deadline (default true); false for bodies of unbounded length (blobs). */
  deadline?: boolean;
}

/** Keep-alive agents per TLS setting and the memory of which hosts speak plain HTTP. Has `close()`. */
export class Transport {
  private readonly agents = new Map<string, Promise<https.Agent>>();
  private readonly httpAgent = new http.Agent({ keepAlive: true, maxSockets: 16 });
  /** `host:port`s that answered a TLS handshake in plain HTTP. */
  private readonly plainHttp = new Set<string>();

  private readonly requestTimeoutMs: number;
  private readonly idleTimeoutMs: number;

  constructor(
    private readonly log: Logger,
    timeouts: TransportTimeouts = {},
  ) {
    this.requestTimeoutMs = timeouts.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS;
    this.idleTimeoutMs = timeouts.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS;
  }

  /**
   * Sends one request (no redirects followed). `host` supplies TLS settings and the fallback
   * rule when `url` is on that host. Network failures are Unavailable; aborts are Canceled.
   */
  async request(host: RegistryHost | undefined, url: URL, options: HttpRequestOptions = {}): Promise<HttpResponse> {
    const sameHost = host !== undefined && url.host === host.host;
    const fallback = sameHost && host.httpFallback && url.protocol === "https:";
    if (fallback && this.plainHttp.has(url.host)) return this.send(host, toHttp(url), options);
    try {
      return await this.send(sameHost ? host : undefined, url, options);
    } catch (err) {
      if (!fallback || !speaksPlainHttp(err)) throw err;
      this.log.info({ host: url.host }, "registry host does not speak TLS, falling back to plain HTTP");
      this.plainHttp.add(url.host);
      return this.send(host, toHttp(url), options);
    }
  }

  /** Destroys every pooled connection. */
  close(): void {
    this.httpAgent.destroy();
    for (const a of this.agents.values())
      void a.then(
        (agent) => agent.destroy(),
        () => {},
      );
    this.agents.clear();
  }

  private async send(host: RegistryHost | undefined, url: URL, options: HttpRequestOptions): Promise<HttpResponse> {
    const secure = url.protocol === "https:";
    const agent = secure ? await this.agentFor(host) : this.httpAgent;
    const mod = secure ? https : http;
    const label = `${options.method ?? "GET"} ${redact(url)}`;
    return new Promise<HttpResponse>((resolve, reject) => {
      let response: IncomingMessage | undefined;
      let clearDeadline = () => {};
      // A timeout fails the body once there is one (its reader sees the error), else the request.
      const fail = (err: RuntimeError) => (response ? response.destroy(err) : req.destroy(err));
      const req = mod.request(
        url,
        {
          method: options.method ?? "GET",
          headers: { "user-agent": "berth/0.1", ...options.headers },
          agent,
          // Socket inactivity, both before the answer and while its body comes (see "timeout" below).
          timeout: this.idleTimeoutMs,
          ...(options.signal ? { signal: options.signal } : {}),
        },
        (res) => {
          response = res;
          res.once("end", clearDeadline);
          res.once("close", clearDeadline);
          // Readers see a failure through the stream itself; this listener only keeps the failure
          // of a body nobody reads yet from becoming an uncaught exception.
          res.on("error", () => {});
          resolve({
            status: res.statusCode ?? 0,
            headers: res.headers,
            headersDistinct: res.headersDistinct as Record<string, string[]>,
            body: res,
            url,
          });
        },
      );
      req.on("timeout", () =>
        fail(
          new RuntimeError(
            "DeadlineExceeded",
            `${label}: ${response ? "body stalled" : "no answer"}: nothing received for ${seconds(this.idleTimeoutMs)}`,
          ),
        ),
      );
      if (options.deadline !== false) {
        const timer = setTimeout(
          () =>
            fail(
              new RuntimeError(
                "DeadlineExceeded",
                `${label}: ${response ? "answer incomplete" : "no answer"} after ${seconds(this.requestTimeoutMs)}`,
              ),
            ),
          this.requestTimeoutMs,
        );
        // Over once the request failed, or its body was read or dropped.
        clearDeadline = () => clearTimeout(timer);
        req.once("close", () => {
          if (response === undefined) clearDeadline();
        });
      }
      const dialTimeout = host?.dialTimeoutMs;
      if (dialTimeout !== undefined) {
        // dial_timeout bounds connecting only (a pooled socket is already connected).
        req.on("socket", (socket) => {
          if (!socket.connecting) return;
          const timer = setTimeout(() => {
            req.destroy(new RuntimeError("DeadlineExceeded", `${label}: connect timed out`));
          }, dialTimeout);
          socket.once("connect", () => clearTimeout(timer));
          socket.once("close", () => clearTimeout(timer));
        });
      }
      req.on("error", (err) => {
        if (err instanceof RuntimeError || err.name === "AbortError") reject(err);
        else
          reject(
            Object.assign(new RuntimeError("Unavailable", `${label}: ${err.message}`, { cause: err }), {
              code: (err as NodeJS.ErrnoException).code,
            }),
          );
      });
      const body = options.body;
      if (typeof body === "function") {
        // A failed upload shows as the request's error (or its answer); the pipeline's own error adds nothing.
        pipeline(Readable.from(body()), req).catch((err: unknown) => req.destroy(err as Error));
      } else req.end(body);
    });
  }

  private agentFor(host: RegistryHost | undefined): Promise<https.Agent> {
    const tls = host
      ? { ca: host.caFiles, client: host.clientPairs, skip: host.skipVerify }
      : { ca: [], client: [], skip: false };
    const key = JSON.stringify(tls);
    let agent = this.agents.get(key);
    if (agent === undefined) {
      agent = (async () => {
        const options: https.AgentOptions = { keepAlive: true, maxSockets: 16, rejectUnauthorized: !tls.skip };
        if (tls.ca.length > 0) {
          // Node's `ca` replaces the system roots; containerd adds to them, so do the same.
          options.ca = [
            ...rootCertificates,
            ...(await Promise.all(tls.ca.map((f) => readTlsFile(f, "CA certificate")))),
          ];
        }
        if (tls.client.length > 0) {
          // Node presents one client certificate; containerd offers each pair, the first that loads wins.
          const first = tls.client[0] as { cert: string; key?: string };
          const cert = await readTlsFile(first.cert, "client certificate");
          options.cert = cert;
          options.key = first.key !== undefined ? await readTlsFile(first.key, "client key") : cert;
        }
        return new https.Agent(options);
      })();
      this.agents.set(key, agent);
      // A missing file is a configuration error that may be fixed later: don't cache the failure.
      agent.catch(() => this.agents.delete(key));
    }
    return agent;
  }
}

async function readTlsFile(path: string, what: string): Promise<Buffer> {
  try {
    return await readFile(path);
  } catch (err) {
    throw new RuntimeError("InvalidArgument", `read ${what} ${path}: ${(err as Error).message}`);
  }
}

function seconds(ms: number): string {
  return `${ms / 1000} s`;
}

function toHttp(url: URL): URL {
  const u = new URL(url);
  u.protocol = "http:";
  return u;
}

/** The errors a TLS client sees when the server speaks plain HTTP (or hangs up on the handshake). */
function speaksPlainHttp(err: unknown): boolean {
  const code = (err as { code?: unknown }).code;
  const msg = err instanceof Error ? err.message : "";
  return (
    code === "EPROTO" ||
    code === "ECONNRESET" ||
    (typeof code === "string" && code.startsWith("ERR_SSL_")) ||
    /wrong version number|packet length too long|http request/i.test(msg)
  );
}

/** A URL fit for logs and error messages: no credentials, no query (token URLs carry scopes only, but be safe). */
export function redact(url: URL): string {
  return `${url.protocol}//${url.host}${url.pathname}`;
}

/** Reads a whole body, failing with InvalidArgument when it exceeds `limit` bytes. */
export async function readBody(res: HttpResponse, limit: number, what: string): Promise<Buffer> {
  const declared = Number(res.headers["content-length"] ?? "-1");
  if (declared > limit) {
    res.body.destroy();
    throw new RuntimeError("InvalidArgument", `${what}: size ${declared} exceeds the limit of ${limit} bytes`);
  }
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of res.body as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > limit) {
      res.body.destroy();
      throw new RuntimeError("InvalidArgument", `${what}: size exceeds the limit of ${limit} bytes`);
    }
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}

/** Discards a body so its connection can be reused (small bodies) or closed (large ones). */
export async function discard(res: HttpResponse): Promise<void> {
  const len = Number(res.headers["content-length"] ?? "-1");
  if (len < 0 || len > 64 * 1024) {
    res.body.destroy();
    return;
  }
  try {
    for await (const _ of res.body) {
      // drain
    }
  } catch {
    // The connection is closed either way; nothing to report.
  }
}

/** The registry's error message from a distribution-spec error body, for error messages (truncated). */
export async function errorDetail(res: HttpResponse): Promise<string> {
  let text: string;
  try {
    text = (await readBody(res, 64 * 1024, "error body")).toString("utf8");
  } catch {
    return "";
  }
  try {
    const doc = JSON.parse(text) as { errors?: { code?: string; message?: string }[]; details?: string };
    const first = doc.errors?.[0];
    if (first) return [first.code, first.message].filter(Boolean).join(": ");
  } catch {
    // Not JSON: fall through to the raw text.
  }
  return text.trim().slice(0, 200);
}
