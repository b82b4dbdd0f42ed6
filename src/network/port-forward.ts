/**
 * Port-forward (kubectl/crictl port-forward): one connection to a port on localhost inside a pod's network
 * namespace, relayed by `nsenter --net=<netns> socat STDIO TCP:localhost:<port>` (a thread of berthd cannot
 * enter the namespace; a child can). IPv4 is tried first, then IPv6.
 */
import type { Duplex } from "node:stream";
import { failedPrecondition } from "../errdefs/index.js";
import type { Logger } from "../log/index.js";
import { SOCAT_CONNECTED, type SocatOptions, startSocat } from "../sys/index.js";

/** Options of {@link forwardPort}. */
export interface ForwardPortOptions {
  /** The pod's network namespace; none for a pod on the host's network. */
  netnsPath?: string;
  port: number;
  /** Aborted when the client goes away: the relay is killed. */
  signal: AbortSignal;
  log: Logger;
}

/**
 * Copies bytes between `stream` and `localhost:<port>` in the namespace until the pod side closes (or the
 * client goes away). A port nobody listens on, in either family, is FailedPrecondition.
 */
export async function forwardPort(stream: Duplex, o: ForwardPortOptions): Promise<void> {
  for (const family of [4, 6] as const) {
    const result = await forwardOnce(
      {
        direction: "both",
        target: { kind: "tcp-loopback", family, port: o.port },
        ...(o.netnsPath ? { netnsPath: o.netnsPath } : {}),
      },
      stream,
      o.signal,
      o.log,
    );
    if (result !== "refused") return;
  }
  throw failedPrecondition(`port ${o.port}: connection refused`);
}

/**
 * Runs one socat relay between `stream` and the pod. Returns "refused" when the connection
 * was refused before any byte moved (so the caller may try the next address family).
 *
 * Either peer may go away at any moment: the pod's server closes its socket while the client is
 * still sending (socat exits, our writes to its stdin fail with EPIPE), or the client hangs up
 * mid-stream. Every stream here therefore has an error listener, and a broken direction only
 * ends that direction. Not `pipeline()`: it destroys every stream on the first error, and the
 * client's stream carries both directions, so the pod's last reply would be cut off with it.
 */
function forwardOnce(
  socat: SocatOptions,
  stream: Duplex,
  signal: AbortSignal,
  log: Logger,
): Promise<"done" | "refused"> {
  return new Promise((resolve, reject) => {
    const child = startSocat(socat);
    let connected = false;
    let stderr = "";
    const onAbort = () => child.kill("SIGKILL");
    signal.addEventListener("abort", onAbort, { once: true });
    const onStreamError = (err: Error) => {
      // The client went away; killing socat ends the relay (the session reports the hang-up).
      log.debug({ err: err.message }, "port-forward: client stream failed");
      child.kill("SIGKILL");
    };
    stream.on("error", onStreamError);
    child.stdin.on("error", (err) => {
      // EPIPE: the pod's side closed first. What the pod still sends keeps flowing to the client.
      log.debug({ err: err.message }, "port-forward: pod side closed its input");
      stream.unpipe(child.stdin);
    });
    child.stdout.on("error", (err) => log.debug({ err: err.message }, "port-forward: reading from the pod failed"));
    child.stderr.on("error", () => {});
    child.stderr.on("data", (b: Buffer) => {
      stderr = (stderr + b.toString()).slice(-8192);
      if (!connected && stderr.includes(SOCAT_CONNECTED)) {
        connected = true;
        // Only now read the client's bytes: a refused IPv4 attempt must not swallow them.
        stream.pipe(child.stdin);
        child.stdout.pipe(stream, { end: false });
      }
    });
    child.on("error", (err) => {
      cleanup();
      reject(err);
    });
    const cleanup = () => {
      signal.removeEventListener("abort", onAbort);
      stream.unpipe(child.stdin);
      child.stdout.unpipe(stream);
      stream.off("error", onStreamError);
    };
    child.on("close", (code) => {
      cleanup();
      if (!connected && /refused|Cannot assign|Network is unreachable/i.test(stderr)) return resolve("refused");
      if (!connected && code !== 0)
        return reject(new Error(`port-forward: ${stderr.trim().split("\n").pop() ?? "socat failed"}`));
      resolve("done");
    });
  });
}
