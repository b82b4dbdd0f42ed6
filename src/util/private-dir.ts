import { chmod, mkdir } from "node:fs/promises";

/**
 * Creates `dir` (missing parents get the same mode) and sets its mode even when it already existed:
 * a tree made by an older berthd with looser modes is tightened at start-up. Used for berth's own
 * directories only, never for ones an admin shares with other tools.
 */
export async function ensureDir(dir: string, mode: number): Promise<void> {
  await mkdir(dir, { recursive: true, mode });
  await chmod(dir, mode);
}
