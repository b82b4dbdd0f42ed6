import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import { type ErrorKind, kindOf, messageOf } from "../errdefs/index.js";
import type { Logger } from "../log/index.js";
import type { RpcTracker } from "./in-flight.js";

/** The one place where error kinds become gRPC status codes. */
const CODES: Record<ErrorKind, Code> = {
  NotFound: Code.NotFound,
  AlreadyExists: Code.AlreadyExists,
  InvalidArgument: Code.InvalidArgument,
  FailedPrecondition: Code.FailedPrecondition,
  Unavailable: Code.Unavailable,
  Unauthenticated: Code.Unauthenticated,
  PermissionDenied: Code.PermissionDenied,
  ResourceExhausted: Code.ResourceExhausted,
  DeadlineExceeded: Code.DeadlineExceeded,
  Canceled: Code.Canceled,
  Unimplemented: Code.Unimplemented,
  Internal: Code.Internal,
};

/**
 * Longest status message sent. The message travels in the `grpc-message` trailer, and an error may
 * quote what the client sent (a 70 KB "ID"): peers refuse header blocks past their limit (nghttp2
 * resets the stream), so the caller would get a protocol error instead of the status.
 */
export const MAX_STATUS_MESSAGE = 2048;

/** Converts any thrown value into a ConnectError with the matching gRPC code and a bounded message. */
export function toConnectError(err: unknown): ConnectError {
  if (err instanceof ConnectError) {
    if (err.rawMessage.length <= MAX_STATUS_MESSAGE) return err;
    return new ConnectError(bounded(err.rawMessage), err.code, err.metadata, undefined, err);
  }
  return new ConnectError(bounded(messageOf(err)), CODES[kindOf(err)], undefined, undefined, err);
}

function bounded(message: string): string {
  if (message.length <= MAX_STATUS_MESSAGE) return message;
  return `${message.slice(0, MAX_STATUS_MESSAGE)}… (${message.length - MAX_STATUS_MESSAGE} more characters)`;
}

/**
 * Server interceptor at the edge: logs every RPC once (method, duration, outcome) and maps
 * domain errors to gRPC codes. Internal errors log at error level, expected ones
 * (NotFound, InvalidArgument, ...) at info, since kubelet probes for absent objects routinely.
 * With a tracker, every RPC is in its open set while it runs (a server stream until its last
 * message), so the event-loop monitor can name what was running during a stall.
 */
export function edgeInterceptor(log: Logger, tracker?: RpcTracker): Interceptor {
  return (next) => async (req) => {
    const started = process.hrtime.bigint();
    const rpc = req.method.name;
    const end = tracker?.begin(rpc);
    try {
      const res = await next(req);
      const level = !req.stream && LOUD_RPCS.has(rpc) ? "info" : "debug";
      log[level]({ rpc, ms: elapsedMs(started), code: "OK" }, "rpc");
      if (end && res.stream) return { ...res, message: endingWith(res.message, end) };
      end?.();
      return res;
    } catch (err) {
      end?.();
      const ce = toConnectError(err);
      const level = ce.code === Code.Internal || ce.code === Code.Unknown ? "error" : "info";
      log[level]({ rpc, ms: elapsedMs(started), code: Code[ce.code], err: ce.rawMessage }, "rpc failed");
      throw ce;
    }
  };
}

/**
 * RPCs that change state are logged at info; read-only ones (List*, *Status, Version) only at
 * debug, because kubelet polls them every second and they would drown the log.
 */
const LOUD_RPCS = new Set([
  "RunPodSandbox",
  "StopPodSandbox",
  "RemovePodSandbox",
  "CreateContainer",
  "StartContainer",
  "StopContainer",
  "RemoveContainer",
  "UpdateContainerResources",
  "ReopenContainerLog",
  "UpdateRuntimeConfig",
  "PullImage",
  "RemoveImage",
  "Exec",
  "Attach",
  "PortForward",
  "ExecSync",
]);

/** Passes a stream through and calls `end` once it is over, however it ends. */
async function* endingWith<T>(source: AsyncIterable<T>, end: () => void): AsyncGenerator<T> {
  try {
    yield* source;
  } finally {
    end();
  }
}

function elapsedMs(started: bigint): number {
  return Number((process.hrtime.bigint() - started) / 1000n) / 1000;
}
