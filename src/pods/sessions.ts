import type { Duplex } from "node:stream";
import { failedPrecondition, wrap } from "../errdefs/index.js";
import type { Logger } from "../log/index.js";
import { attachSession, type ContainerRuntime, execSession, type SessionIO } from "../runtime/index.js";
import type { ContainerManager } from "./containers.js";
import type { SandboxManager } from "./sandboxes.js";

/** Relays one connection to a port inside a pod's network namespace (network's `forwardPort`). */
export type PortForwarder = (
  stream: Duplex,
  options: { netnsPath?: string; port: number; signal: AbortSignal; log: Logger },
) => Promise<void>;

/** Options of {@link createStreamSessions}. */
export interface StreamSessionsOptions {
  containers: ContainerManager;
  sandboxes: SandboxManager;
  runtime: Pick<ContainerRuntime, "prepareExec" | "ctlFifoPath" | "attachSocketPath" | "defaultLogPath">;
  forwardPort: PortForwarder;
  log: Logger;
}

/** The interactive sessions of the pods' containers: exec, attach and port-forward. */
export interface StreamSessions {
  /** Runs `cmd` in a running container with the client's stdio; returns its exit code. */
  exec(
    req: { containerId: string; cmd: readonly string[]; tty: boolean },
    io: SessionIO,
  ): Promise<{ exitCode: number }>;
  /** Joins a running container's stdio until the client detaches or the container stops. */
  attach(
    req: { containerId: string; tty: boolean; stdin: boolean; stdout: boolean; stderr: boolean },
    io: SessionIO,
  ): Promise<void>;
  /** Relays `stream` to `localhost:<port>` inside a ready pod. */
  portForward(
    target: { podSandboxId: string; port: number },
    stream: Duplex,
    options: { signal: AbortSignal },
  ): Promise<void>;
}

/**
 * The pods' side of kubectl/crictl exec, attach and port-forward: the container must be running (the pod
 * ready), then the runtime runs the exec or attach and the network relays the port. The shapes are those
 * the streaming server asks of its backend, and the daemon passes this object as that backend; this
 * domain does not know the server or its protocols.
 */
export function createStreamSessions(o: StreamSessionsOptions): StreamSessions {
  const runningContainer = (id: string) => {
    const rec = o.containers.get(id);
    if (rec.state !== "running") throw failedPrecondition(`container ${rec.id} is not running`);
    return rec;
  };
  return {
    exec(req, io) {
      const rec = runningContainer(req.containerId);
      return execSession(o.runtime, rec.id, req.cmd, { tty: req.tty, io });
    },

    attach(req, io) {
      const rec = runningContainer(req.containerId);
      return attachSession(o.runtime, rec.id, {
        // Without a path from the kubelet, conmon logs to the runtime's default file.
        logPath: rec.logPath || o.runtime.defaultLogPath(rec.id),
        tty: req.tty,
        stdin: req.stdin && rec.config.stdin,
        stdout: req.stdout,
        stderr: req.stderr,
        io,
        // A container removed under the session has stopped running too.
        isRunning: () => {
          try {
            return o.containers.get(rec.id).state === "running";
          } catch {
            return false;
          }
        },
        log: o.log,
      });
    },

    async portForward(target, stream, options) {
      const sb = o.sandboxes.get(target.podSandboxId);
      if (sb.state !== "ready") throw failedPrecondition(`pod sandbox ${sb.id} is not ready`);
      await o
        .forwardPort(stream, {
          ...(sb.netnsPath ? { netnsPath: sb.netnsPath } : {}),
          port: target.port,
          signal: options.signal,
          log: o.log,
        })
        .catch((err: unknown) => {
          throw wrap(err, `pod ${sb.id}`);
        });
    },
  };
}
