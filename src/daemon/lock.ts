import { open, readFile, rm } from "node:fs/promises";
import { RuntimeError } from "../errdefs/index.js";

/**
 * A lock on a root directory: `<root>/berthd.lock` holds the owner's PID, created with
 * O_EXCL. A lock whose PID is dead (a daemon killed with SIGKILL) is stale and taken over;
 * a live owner makes the second daemon refuse to start. Node has no flock(2), and a PID file
 * checked against /proc is what a person can inspect too.
 */
export interface RootLock {
  release(): Promise<void>;
}

export async function lockRoot(path: string): Promise<RootLock> {
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      const fh = await open(path, "wx", 0o600);
      await fh.writeFile(`${process.pid}\n`);
      await fh.sync();
      await fh.close();
      return {
        release: async () => {
          const owner = await readPid(path);
          if (owner === process.pid) await rm(path, { force: true });
        },
      };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
      const owner = await readPid(path);
      if (owner !== undefined && owner !== process.pid && isAlive(owner)) {
        throw new RuntimeError("FailedPrecondition", `another berthd (pid ${owner}) is using this root (lock ${path})`);
      }
      await rm(path, { force: true });
    }
  }
  throw new RuntimeError("FailedPrecondition", `could not take the lock ${path}`);
}

async function readPid(path: string): Promise<number | undefined> {
  try {
    const n = Number.parseInt((await readFile(path, "utf8")).trim(), 10);
    return Number.isInteger(n) && n > 0 ? n : undefined;
  } catch {
    return undefined;
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}
