import type { AttachRequest, ExecRequest, PortForwardRequest } from "../api/gen/runtime/v1/api_pb.js";
import { failedPrecondition, invalidArgument } from "../errdefs/index.js";
import type { CriContext } from "./context.js";
import { validateArgv } from "./validate.js";

// Exec, Attach and PortForward: validate, cache the request under a one-time token, and
// return the absolute URL of the streaming server where the client continues.

function validateStreams(req: { tty: boolean; stdin: boolean; stdout: boolean; stderr: boolean }): void {
  if (req.tty && req.stderr)
    throw invalidArgument("tty and stderr cannot both be requested: a terminal has one output");
  if (!req.stdin && !req.stdout && !req.stderr)
    throw invalidArgument("one of stdin, stdout or stderr must be requested");
}

function runningContainer(ctx: CriContext, id: string) {
  if (!id) throw invalidArgument("container id is required");
  const rec = ctx.pods.containers.get(id);
  if (rec.state !== "running") throw failedPrecondition(`container ${rec.id} is not running`);
  return rec;
}

export function exec(ctx: CriContext, req: ExecRequest) {
  const rec = runningContainer(ctx, req.containerId);
  if (req.cmd.length === 0) throw invalidArgument("exec command is required");
  validateArgv(req.cmd, "cmd");
  validateStreams(req);
  const url = ctx.streaming.prepareExec({
    containerId: rec.id,
    cmd: [...req.cmd],
    tty: req.tty,
    stdin: req.stdin,
    stdout: req.stdout,
    stderr: req.stderr,
  });
  return { url };
}

export function attach(ctx: CriContext, req: AttachRequest) {
  const rec = runningContainer(ctx, req.containerId);
  validateStreams(req);
  if (req.stdin && !rec.config.stdin) throw invalidArgument(`container ${rec.id} was not created with stdin`);
  const url = ctx.streaming.prepareAttach({
    containerId: rec.id,
    tty: req.tty,
    stdin: req.stdin,
    stdout: req.stdout,
    stderr: req.stderr,
  });
  return { url };
}

export function portForward(ctx: CriContext, req: PortForwardRequest) {
  if (!req.podSandboxId) throw invalidArgument("pod sandbox id is required");
  const sb = ctx.pods.sandboxes.get(req.podSandboxId);
  if (sb.state !== "ready") throw failedPrecondition(`pod sandbox ${sb.id} is not ready`);
  for (const p of req.port) if (p < 1 || p > 65535) throw invalidArgument(`port ${p} is not 1-65535`);
  return { url: ctx.streaming.preparePortForward({ podSandboxId: sb.id, ports: [...req.port] }) };
}
