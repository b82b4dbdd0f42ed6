import { lstat, rm } from "node:fs/promises";
import { connect } from "node:net";
import { RuntimeError } from "../errdefs/index.js";

/**
 * Makes `path` free for listening: a socket nobody answers on is stale (left by a killed
 * daemon) and is removed; one that answers belongs to a running daemon and is refused;
 * anything that is not a socket is never deleted.
 */
export async function clearStaleSocket(path: string): Promise<void> {
  let st: Awaited<ReturnType<typeof lstat>>;
  try {
    st = await lstat(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return;
    throw err;
  }
  if (!st.isSocket()) throw new RuntimeError("FailedPrecondition", `${path} exists and is not a socket`);
  if (await answers(path)) throw new RuntimeError("FailedPrecondition", `another process is serving on ${path}`);
  await rm(path, { force: true });
}

function answers(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(path);
    s.once("connect", () => {
      s.destroy();
      resolve(true);
    });
    s.once("error", () => resolve(false));
  });
}
