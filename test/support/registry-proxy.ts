/**
 * A tiny HTTP proxy in front of a plain-HTTP registry, for tests that must see or tamper with what a client asks
 * for: it records every request (method, path, query), can slow blob responses down (so that concurrent pulls
 * really overlap) and can corrupt one blob (same length, one byte flipped) so that its bytes no longer match
 * its digest. Lifecycle: startRegistryProxy() listens on 127.0.0.1 at a free port; close() stops it and drops
 * open connections.
 */
import { once } from "node:events";
import * as http from "node:http";
import type { AddressInfo } from "node:net";
import { pipeline } from "node:stream/promises";
import type { RegistryEndpoint } from "./registry.js";

/** One request the proxy forwarded. */
export interface ProxiedRequest {
  method: string;
  /** URL path, e.g. `/v2/berth-test/busybox/blobs/sha256:...`. */
  path: string;
  /** Query string including `?`, or "". */
  search: string;
  /** The whole response was sent. */
  finished: boolean;
  /** The client went away before the whole response was sent. */
  abandoned: boolean;
}

/** Options of {@link startRegistryProxy}. */
export interface RegistryProxyOptions {
  /** Serve this blob digest with one byte flipped. */
  corruptBlob?: string;
  /** Hold blob GETs this long before forwarding them. */
  blobDelayMs?: number;
  /** Only these blobs are held (default: every blob). */
  delayBlobs?: string[];
  /**
   * Require `Authorization: Bearer <token>` on /v2/ requests, answering 401 with a Bearer challenge whose realm
   * is the proxy's own `/token`, which hands out this token to anyone (Docker Hub's anonymous pull flow).
   */
  bearerToken?: string;
}

/** A running proxy. */
export interface RegistryProxy {
  /** `127.0.0.1:<port>`: the registry part of an image reference. */
  host: string;
  requests: ProxiedRequest[];
  /** GETs of blobs (all, or of one digest). */
  blobGets(digest?: string): ProxiedRequest[];
  close(): Promise<void>;
}

const BLOB_PATH = /^\/v2\/.+\/blobs\/(sha256:[a-f0-9]{64})$/;

/** Starts a proxy forwarding to `upstream` (which must be plain HTTP). */
export async function startRegistryProxy(
  upstream: RegistryEndpoint,
  options: RegistryProxyOptions = {},
): Promise<RegistryProxy> {
  const target = new URL(upstream.url);
  if (target.protocol !== "http:") throw new Error(`registry proxy: upstream ${upstream.url} is not plain HTTP`);
  const agent = new http.Agent({ keepAlive: true });
  const requests: ProxiedRequest[] = [];
  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? "/", "http://proxy");
    const record: ProxiedRequest = {
      method: req.method ?? "GET",
      path: url.pathname,
      search: url.search,
      finished: false,
      abandoned: false,
    };
    requests.push(record);
    res.once("finish", () => {
      record.finished = true;
    });
    res.once("close", () => {
      record.abandoned = !record.finished;
    });
    if (options.bearerToken !== undefined) {
      const token = options.bearerToken;
      if (url.pathname === "/token") {
        res.writeHead(200, { "content-type": "application/json" });
        res.end(JSON.stringify({ token, expires_in: 300, issued_at: new Date().toISOString() }));
        return;
      }
      if (req.headers.authorization !== `Bearer ${token}`) {
        const repo = /^\/v2\/(.+)\/(?:manifests|blobs)\//.exec(url.pathname)?.[1];
        const scope = repo !== undefined ? `,scope="repository:${repo}:pull"` : "";
        res.writeHead(401, {
          "content-type": "application/json",
          "www-authenticate": `Bearer realm="http://${req.headers.host}/token",service="berth-proxy"${scope}`,
        });
        res.end('{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}');
        return;
      }
      delete req.headers.authorization;
    }
    const blob = BLOB_PATH.exec(url.pathname)?.[1];
    const isBlobGet = req.method === "GET" && blob !== undefined;
    void (async () => {
      const delay = isBlobGet && (options.delayBlobs === undefined || options.delayBlobs.includes(blob));
      if (delay && options.blobDelayMs) {
        // Held until the delay passes or the client goes away, whichever comes first (no timer outlives close()).
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, options.blobDelayMs);
          res.once("close", () => {
            clearTimeout(timer);
            resolve();
          });
        });
      }
      if (res.destroyed) return;
      const headers = { ...req.headers, host: target.host };
      const up = http.request(
        { host: target.hostname, port: target.port, path: req.url, method: req.method, headers, agent },
        (upRes) => {
          void (async () => {
            if (isBlobGet && blob === options.corruptBlob && upRes.statusCode === 200) {
              const chunks: Buffer[] = [];
              for await (const c of upRes) chunks.push(c as Buffer);
              const body = Buffer.concat(chunks);
              const i = body.length >> 1;
              body[i] = (body[i] ?? 0) ^ 0xff;
              res.writeHead(200, upRes.headers);
              res.end(body);
              return;
            }
            // Upload locations name the upstream: point them back at the proxy, so uploads are seen too.
            const location = upRes.headers.location;
            if (location?.startsWith(`http://${target.host}/`))
              upRes.headers.location = `http://${req.headers.host}${location.slice(`http://${target.host}`.length)}`;
            res.writeHead(upRes.statusCode ?? 502, upRes.headers);
            await pipeline(upRes, res);
          })().catch(() => res.destroy());
        },
      );
      up.on("error", () => {
        if (!res.headersSent) res.writeHead(502);
        res.end();
      });
      await pipeline(req, up);
    })().catch(() => res.destroy());
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const { port } = server.address() as AddressInfo;
  return {
    host: `127.0.0.1:${port}`,
    requests,
    blobGets: (digest) =>
      requests.filter(
        (r) => r.method === "GET" && BLOB_PATH.test(r.path) && (digest === undefined || r.path.endsWith(digest)),
      ),
    async close() {
      server.closeAllConnections();
      server.close();
      agent.destroy();
    },
  };
}
