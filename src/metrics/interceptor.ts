import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import type { Metrics } from "./metrics.js";

/**
 * A connect interceptor recording every CRI RPC in `metrics`: count, duration and, on failure,
 * the gRPC code. Place it outside the interceptor that turns domain errors into ConnectErrors,
 * so it sees the code the client gets. A server stream is measured to its end, however it ends
 * (its last message, an error, or the client going away: Canceled).
 */
export function metricsInterceptor(metrics: Pick<Metrics, "rpc">): Interceptor {
  return (next) => async (req) => {
    const started = process.hrtime.bigint();
    const method = req.method.name;
    const done = (err: unknown) => metrics.rpc(method, err === undefined ? "OK" : codeName(err), secondsSince(started));
    let res: Awaited<ReturnType<typeof next>>;
    try {
      res = await next(req);
    } catch (err) {
      done(err);
      throw err;
    }
    if (!res.stream) {
      done(undefined);
      return res;
    }
    return { ...res, message: observed(res.message, done) };
  };
}

/** Passes a stream through and reports how it ended, exactly once. */
async function* observed<T>(source: AsyncIterable<T>, done: (err: unknown) => void): AsyncGenerator<T> {
  let outcome: unknown = new ConnectError("stream abandoned by the client", Code.Canceled);
  try {
    yield* source;
    outcome = undefined;
  } catch (err) {
    outcome = err;
    throw err;
  } finally {
    done(outcome);
  }
}

function codeName(err: unknown): string {
  return Code[ConnectError.from(err).code] ?? "Unknown";
}

function secondsSince(started: bigint): number {
  return Number(process.hrtime.bigint() - started) / 1e9;
}
