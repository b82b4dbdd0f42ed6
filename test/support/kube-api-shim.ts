/**
 * Just enough of a Kubernetes API server for a real kubectl to run `exec`, `attach` and
 * `port-forward` against a streaming server: discovery, one pod, and the three subresources, which
 * it proxies byte for byte to the URL `resolve` returns, as the kubelet proxies to a CRI runtime's
 * URL (`UpgradeAwareHandler`). kubectl's SPDY, WebSocket v5 and SPDY-over-WebSocket clients then
 * talk to our server unchanged. Loopback only; no authentication.
 */

import { once } from "node:events";
import { createServer, type IncomingMessage, type Server } from "node:http";
import { connect, type Socket } from "node:net";
import type { Duplex } from "node:stream";
import { pipeline } from "node:stream/promises";

/** A streaming request as kubectl sent it to the API server. */
export interface ShimRequest {
  kind: "exec" | "attach" | "portforward";
  namespace: string;
  pod: string;
  /** The query string: command, container, stdin, stdout, stderr, tty, ports. */
  query: URLSearchParams;
  /** The Upgrade header (`SPDY/3.1` or `websocket`) and the protocols offered, as kubectl sent them. */
  upgrade: string;
  protocols: string;
}

/** Options of startKubeApiShim. */
export interface KubeApiShimOptions {
  /** Returns the streaming URL for a request (typically from StreamingServer.prepare*). */
  resolve: (req: ShimRequest) => string;
  /** Pod names that exist (default ["p"]); each has one container "c". */
  pods?: readonly string[];
}

/** A running shim. */
export interface KubeApiShim {
  /** The `--server` URL for kubectl. */
  url: string;
  close(): Promise<void>;
}

const SUBRESOURCE = /^\/api\/v1\/namespaces\/([^/]+)\/pods\/([^/]+)\/(exec|attach|portforward)$/;

/** Starts the shim on an ephemeral loopback port. */
export async function startKubeApiShim(options: KubeApiShimOptions): Promise<KubeApiShim> {
  const pods = new Set(options.pods ?? ["p"]);
  const sockets = new Set<Duplex>();
  const server: Server = createServer((req, res) => {
    const json = (status: number, body: unknown) => {
      res.writeHead(status, { "Content-Type": "application/json" }).end(JSON.stringify(body));
    };
    const path = new URL(req.url ?? "/", "http://shim").pathname;
    if (path === "/api") return json(200, { kind: "APIVersions", versions: ["v1"], serverAddressByClientCIDRs: [] });
    if (path === "/apis") return json(200, { kind: "APIGroupList", apiVersion: "v1", groups: [] });
    if (path === "/api/v1") {
      const sub = (name: string, kind: string) => ({
        name,
        singularName: "",
        namespaced: true,
        kind,
        verbs: ["create", "get"],
      });
      return json(200, {
        kind: "APIResourceList",
        groupVersion: "v1",
        resources: [
          {
            name: "pods",
            singularName: "pod",
            namespaced: true,
            kind: "Pod",
            verbs: ["get", "list"],
            shortNames: ["po"],
          },
          sub("pods/exec", "PodExecOptions"),
          sub("pods/attach", "PodAttachOptions"),
          sub("pods/portforward", "PodPortForwardOptions"),
        ],
      });
    }
    const pod = /^\/api\/v1\/namespaces\/([^/]+)\/pods\/([^/]+)$/.exec(path);
    if (pod !== null && pods.has(pod[2]!)) {
      return json(200, {
        kind: "Pod",
        apiVersion: "v1",
        metadata: { name: pod[2], namespace: pod[1] },
        spec: { containers: [{ name: "c", image: "busybox" }] },
        status: { phase: "Running", containerStatuses: [{ name: "c", ready: true, state: { running: {} } }] },
      });
    }
    json(404, { kind: "Status", apiVersion: "v1", status: "Failure", reason: "NotFound", code: 404 });
  });
  server.on("upgrade", (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    sockets.add(socket);
    socket.once("close", () => sockets.delete(socket));
    socket.on("error", () => socket.destroy());
    const url = new URL(req.url ?? "/", "http://shim");
    const m = SUBRESOURCE.exec(url.pathname);
    if (m === null || !pods.has(m[2]!)) {
      socket.end("HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
      return;
    }
    const target = new URL(
      options.resolve({
        kind: m[3] as ShimRequest["kind"],
        namespace: m[1]!,
        pod: m[2]!,
        query: url.searchParams,
        upgrade: req.headers.upgrade ?? "",
        protocols: String(req.headers["sec-websocket-protocol"] ?? req.headers["x-stream-protocol-version"] ?? ""),
      }),
    );
    const upstream: Socket = connect(Number(target.port), target.hostname);
    sockets.add(upstream);
    upstream.once("close", () => sockets.delete(upstream));
    upstream.on("error", () => socket.destroy());
    socket.on("close", () => upstream.destroy());
    upstream.on("close", () => socket.destroy());
    upstream.once("connect", () => {
      // Replay the request line and headers toward the runtime, as the kubelet's proxy does.
      const lines = [`${req.method} ${target.pathname}${target.search} HTTP/1.1`, `Host: ${target.host}`];
      for (let i = 0; i < req.rawHeaders.length; i += 2) {
        if (req.rawHeaders[i]!.toLowerCase() !== "host") lines.push(`${req.rawHeaders[i]}: ${req.rawHeaders[i + 1]}`);
      }
      upstream.write(`${lines.join("\r\n")}\r\n\r\n`);
      if (head.length > 0) upstream.write(head);
      pipeline(socket, upstream).catch(() => undefined);
      pipeline(upstream, socket).catch(() => undefined);
    });
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const { port } = server.address() as { port: number };
  return {
    url: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
        for (const s of sockets) s.destroy();
      }),
  };
}
