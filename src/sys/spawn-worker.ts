/**
 * The spawn worker's thread (see spawner.ts for why it exists). It runs each request's child to completion
 * (spawn-child.ts) and posts back what the child produced; its event loop, not berthd's, is the one that
 * waits while libuv forks and the child gets to exec.
 */
import { parentPort } from "node:worker_threads";
import { runChild } from "./spawn-child.js";
import type { SpawnReply, WorkerMessage } from "./spawn-protocol.js";

const port = parentPort;
if (!port) throw new Error("spawn-worker.js runs only as a worker thread");

const kills = new Map<number, () => void>();

port.on("message", (m: WorkerMessage) => {
  if (m.type === "kill") {
    kills.get(m.id)?.();
    return;
  }
  const id = m.request.id;
  let finished = false;
  const kill = runChild(m.request, (reply: SpawnReply) => {
    finished = true;
    kills.delete(id);
    port.postMessage(reply);
  });
  // A child that could not even be started has already replied.
  if (!finished) kills.set(id, kill);
});
