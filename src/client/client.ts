import { connect as netConnect } from "node:net";
import { type Client, createClient } from "@connectrpc/connect";
import { createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { Builder } from "../api/gen/berth/v1/build_pb.js";
import { Images } from "../api/gen/berth/v1/images_pb.js";
import { ImageService, RuntimeService } from "../api/gen/runtime/v1/api_pb.js";

/** berthd's default socket. */
export const DEFAULT_SOCKET = "/run/berth/berth.sock";

/** Options for reaching a CRI runtime. */
export interface CriClientOptions {
  /** Unix socket path, with or without a `unix://` prefix (berth's, containerd's, CRI-O's). */
  socket?: string;
  /** Default deadline for each call, in milliseconds (none by default). */
  timeoutMs?: number;
}

/**
 * A typed CRI v1 client over a unix socket: `runtime` and `image` expose every RPC with the
 * generated request/response types. It speaks plain gRPC, so it drives any CRI runtime.
 * One HTTP/2 connection is shared by both services; call `close()` to release it.
 */
export interface CriClient {
  readonly runtime: Client<typeof RuntimeService>;
  readonly image: Client<typeof ImageService>;
  /** berth's own extensions (pull with progress); other runtimes answer Unimplemented. */
  readonly berth: { images: Client<typeof Images>; builder: Client<typeof Builder> };
  readonly socket: string;
  close(): void;
}

/** Creates a client; nothing is dialled until the first call. */
export function createCriClient(options: CriClientOptions = {}): CriClient {
  const socket = (options.socket ?? DEFAULT_SOCKET).replace(/^unix:\/\//, "");
  const sessionManager = new Http2SessionManager(
    "http://localhost",
    { idleConnectionTimeoutMs: 60_000 },
    {
      createConnection: () => netConnect(socket),
    },
  );
  const transport = createGrpcTransport({
    baseUrl: "http://localhost",
    sessionManager,
    readMaxBytes: 64 * 1024 * 1024,
    ...(options.timeoutMs !== undefined ? { defaultTimeoutMs: options.timeoutMs } : {}),
  });
  return {
    runtime: createClient(RuntimeService, transport),
    image: createClient(ImageService, transport),
    berth: { images: createClient(Images, transport), builder: createClient(Builder, transport) },
    socket,
    close: () => sessionManager.abort(),
  };
}
