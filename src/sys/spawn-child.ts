/**
 * Runs one child process to completion as a {@link SpawnRequest} describes and reports it once: exit status
 * and what was read from each fd. Used inside the spawn worker, and on the calling thread when no worker is
 * enabled (the CLI, tests), so both paths behave alike.
 */
import { type ChildProcess, spawn } from "node:child_process";
import type { Readable, Writable } from "node:stream";
import type { SpawnReply, SpawnRequest } from "./spawn-protocol.js";

/** Starts the child; `done` is called exactly once. Returns a function that SIGKILLs it (its group when detached). */
export function runChild(r: SpawnRequest, done: (reply: SpawnReply) => void): () => void {
  const reply = (x: Omit<SpawnReply, "id">) => done({ id: r.id, ...x });
  let child: ChildProcess;
  try {
    child = spawn(r.file, r.args, { env: r.env, cwd: r.cwd, stdio: r.stdio, detached: r.detached });
  } catch (err) {
    reply({ code: null, signal: null, output: {}, spawnError: err instanceof Error ? err.message : String(err) });
    return () => {};
  }
  const output: Record<number, string> = {};
  const waits: Array<Promise<void>> = [];
  const streams: Readable[] = [];
  for (const [fdText, read] of Object.entries(r.reads)) {
    const fd = Number(fdText);
    const stream = child.stdio[fd] as Readable | null;
    if (!stream) continue;
    streams.push(stream);
    output[fd] = "";
    stream.setEncoding("utf8");
    const done = new Promise<void>((resolve) => {
      stream.on("data", (chunk: string) => {
        if ((output[fd] as string).length < read.max)
          output[fd] += chunk.slice(0, read.max - (output[fd] as string).length);
        if (read.untilLine && (output[fd] as string).includes("\n")) {
          stream.destroy();
          resolve();
        }
      });
      stream.on("close", resolve);
      stream.on("error", () => resolve());
    });
    if (read.wait) waits.push(done);
  }
  for (const [fdText, data] of Object.entries(r.writes)) {
    const stream = child.stdio[Number(fdText)] as Writable | null;
    // A child that exits (or closes the fd) without reading is not our error; its exit code tells.
    stream?.on("error", () => {});
    stream?.end(typeof data === "string" ? data : Buffer.from(data));
  }
  let spawnError: string | undefined;
  const kill = () => {
    try {
      if (r.killGroup && r.detached && child.pid !== undefined) process.kill(-child.pid, "SIGKILL");
      else child.kill("SIGKILL");
    } catch {
      child.kill("SIGKILL");
    }
    // Grandchildren that escaped the group may still hold the pipes: stop waiting on them.
    for (const s of streams) s.destroy();
  };
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    // `on`, not `once`: a failed kill() later emits "error" again, and an unheard one would be uncaught.
    child.on("error", (e) => {
      spawnError ??= e.message;
      resolve({ code: null, signal: null });
    });
    child.once("exit", (code, signal) => resolve({ code, signal }));
  });
  void Promise.all([exited, ...waits]).then(([status]) => {
    for (const s of streams) s.destroy();
    reply({ ...status, output, ...(spawnError !== undefined ? { spawnError } : {}) });
  });
  return kill;
}
