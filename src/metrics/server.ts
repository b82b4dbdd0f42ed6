import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import type { Logger } from "../log/index.js";
import { formatHostPort, parseHostPort } from "../util/index.js";
import type { Metrics } from "./metrics.js";

/** The Prometheus endpoint while it listens. */
export interface MetricsServer {
  /** The bound `ip:port` (the real port when the config asked for 0). */
  readonly address: string;
  /** Stops listening and drops open scrape connections. Idempotent. */
  close(): Promise<void>;
}

/** A scrape that takes longer than this is cut off: a stuck client must not hold a socket forever. */
const REQUEST_TIMEOUT_MS = 30_000;

/**
 * Serves `GET /metrics` (and HEAD) on `address` (`ip:port`, validated by the config); any other
 * path is 404 and any other method 405. Nothing but the exposition text is served, and nothing
 * a request sends is read beyond its headers.
 */
export async function serveMetrics(metrics: Metrics, address: string, log: Logger): Promise<MetricsServer> {
  const hp = parseHostPort(address);
  if (!hp) throw new Error(`metrics address ${JSON.stringify(address)} is not ip:port`);
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? "").split("?", 1)[0];
    if (path !== "/metrics") {
      res.writeHead(404, { "content-type": "text/plain" }).end("404 page not found\n");
      return;
    }
    if (req.method !== "GET" && req.method !== "HEAD") {
      res.writeHead(405, { allow: "GET, HEAD", "content-type": "text/plain" }).end("405 method not allowed\n");
      return;
    }
    metrics.text().then(
      (text) => {
        res.writeHead(200, { "content-type": metrics.contentType });
        res.end(req.method === "HEAD" ? undefined : text);
      },
      (err: unknown) => {
        log.error({ err }, "metrics: collect failed");
        res.writeHead(500, { "content-type": "text/plain" }).end("collect failed\n");
      },
    );
  });
  server.requestTimeout = REQUEST_TIMEOUT_MS;
  server.headersTimeout = REQUEST_TIMEOUT_MS;
  server.on("clientError", (_err, socket) => socket.destroy());
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(hp.port, hp.host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  server.on("error", (err) => log.error({ err }, "metrics: server error"));
  const bound = server.address() as AddressInfo;
  const boundAddress = formatHostPort({ host: bound.address, port: bound.port });
  log.info({ address: boundAddress }, "serving Prometheus metrics on /metrics");
  let closing: Promise<void> | undefined;
  return {
    address: boundAddress,
    close: () => {
      closing ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      return closing;
    },
  };
}
