import type { DescService } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import type { Command } from "commander";
import { Builder } from "../api/gen/berth/v1/build_pb.js";
import { Images } from "../api/gen/berth/v1/images_pb.js";
import { ImageService, RuntimeService } from "../api/gen/runtime/v1/api_pb.js";
import { type CriClient, createCriClient, DEFAULT_SOCKET } from "../client/index.js";

/** Global options every command sees. */
export interface GlobalOptions {
  socket: string;
  output: "table" | "json" | "yaml";
  /** True when -o was given (inspect commands print JSON unless -o table was asked for). */
  outputGiven: boolean;
  timeout: number;
  /** True when --timeout was given: long calls (pull, exec, logs -f, events) have no deadline otherwise. */
  timeoutGiven: boolean;
  debug: boolean;
}

/** Reads the global options from the root command. */
export function globals(cmd: Command): GlobalOptions {
  const o = cmd.optsWithGlobals<{ socket?: string; output?: string; timeout?: string; debug?: boolean }>();
  let root = cmd;
  while (root.parent) root = root.parent;
  return {
    socket: o.socket ?? process.env.BERTH_SOCKET ?? DEFAULT_SOCKET,
    output: (o.output ?? "table") as GlobalOptions["output"],
    timeout: Number(o.timeout ?? 30),
    outputGiven: root.getOptionValueSource("output") === "cli",
    timeoutGiven: root.getOptionValueSource("timeout") === "cli",
    debug: Boolean(o.debug),
  };
}

/**
 * Call options for an RPC that may rightly run long (a pull, an exec, a followed stream): the
 * deadline of --timeout when the user gave one, none otherwise (0 disables connect's default).
 */
export function longCall(g: GlobalOptions): { timeoutMs: number } {
  return { timeoutMs: g.timeoutGiven ? g.timeout * 1000 : 0 };
}

/** Inspect commands print JSON by default; a field list only when -o table was asked for explicitly. */
export function isTable(g: GlobalOptions): boolean {
  return g.output === "table" && g.outputGiven;
}

/**
 * Runs `fn` with a client for the selected socket, always closing it. The client's RPCs turn a
 * gRPC Unimplemented into {@link UnsupportedError}, so every command reports a missing RPC alike.
 */
export async function withClient<T>(cmd: Command, fn: (client: CriClient, g: GlobalOptions) => Promise<T>): Promise<T> {
  const g = globals(cmd);
  const client = createCriClient({ socket: g.socket, timeoutMs: g.timeout * 1000 });
  try {
    return await fn(
      {
        runtime: supportAware(client.runtime, RuntimeService),
        image: supportAware(client.image, ImageService),
        berth: {
          images: supportAware(client.berth.images, Images),
          builder: supportAware(client.berth.builder, Builder),
        },
        socket: client.socket,
        close: () => client.close(),
      },
      g,
    );
  } finally {
    client.close();
  }
}

/** The runtime answered Unimplemented: it does not offer this RPC (yet). */
export class UnsupportedError extends Error {
  constructor(readonly rpc: string) {
    super(`not supported by this runtime: ${rpc}`);
    this.name = "UnsupportedError";
  }
}

/**
 * A gRPC NotFound status (a ConnectError, not an errdefs RuntimeError) for what the CLI itself finds missing
 * (a prefix matching nothing), so that it prints like the runtime's own NotFound.
 */
export function notFoundStatus(message: string): ConnectError {
  return new ConnectError(message, Code.NotFound);
}

/**
 * A gRPC InvalidArgument status (a ConnectError, not an errdefs RuntimeError) for an argument the CLI itself
 * rejects, so that it prints like the runtime's own InvalidArgument.
 */
export function invalidArgumentStatus(message: string): ConnectError {
  return new ConnectError(message, Code.InvalidArgument);
}

function asUnsupported(err: unknown, rpc: string): unknown {
  return err instanceof ConnectError && err.code === Code.Unimplemented ? new UnsupportedError(rpc) : err;
}

async function* rethrowing<T>(stream: AsyncIterable<T>, rpc: string): AsyncIterable<T> {
  try {
    yield* stream;
  } catch (err) {
    throw asUnsupported(err, rpc);
  }
}

/** Wraps every unary and server-streaming method of a generated client (see withClient). */
function supportAware<T extends object>(client: T, service: DescService): T {
  const methods = new Map(service.methods.map((m) => [m.localName, m]));
  return new Proxy(client, {
    get(target, prop, receiver) {
      const value: unknown = Reflect.get(target, prop, receiver);
      const method = typeof prop === "string" ? methods.get(prop) : undefined;
      if (typeof value !== "function" || method === undefined) return value;
      const fn = value as (...args: unknown[]) => unknown;
      if (method.methodKind === "server_streaming" || method.methodKind === "bidi_streaming") {
        return (...args: unknown[]) => rethrowing(fn.apply(target, args) as AsyncIterable<unknown>, method.name);
      }
      return async (...args: unknown[]) => {
        try {
          return await fn.apply(target, args);
        } catch (err) {
          throw asUnsupported(err, method.name);
        }
      };
    },
  });
}

/** One line for a failed command: a friendly hint when the daemon is not there, else the gRPC message. */
export function describeError(err: unknown, socket: string): string {
  if (err instanceof ConnectError) {
    if (/\bEACCES\b/.test(err.rawMessage) && /connect/.test(err.rawMessage)) {
      return `permission denied on ${socket}: run berth as root (or as a member of the socket's group)`;
    }
    if (/\b(ENOENT|ECONNREFUSED)\b/.test(err.rawMessage) && /connect/.test(err.rawMessage)) {
      return `cannot reach a CRI runtime at ${socket}: is berthd running? Start it with \`berthd\` (as root), or pass --socket`;
    }
    if (err.code === Code.Unimplemented) return `not supported by this runtime: ${err.rawMessage}`;
    return `${Code[err.code]}: ${err.rawMessage}`;
  }
  return err instanceof Error ? err.message : String(err);
}
