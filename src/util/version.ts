import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

let root: { dir: string; version: string } | undefined;

/** berth's package.json, found by walking up from this file (works from src/ and dist/). */
function findPackage(): { dir: string; version: string } {
  if (root) return root;
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 5; i++) {
    try {
      const pkg = JSON.parse(readFileSync(join(dir, "package.json"), "utf8")) as { name?: string; version?: string };
      if (pkg.name === "berth" && pkg.version) {
        root = { dir, version: pkg.version };
        return root;
      }
    } catch {
      // not here; keep walking up
    }
    dir = dirname(dir);
  }
  return { dir: "", version: "0.0.0-unknown" };
}

/** berth's version from its package.json. */
export function packageVersion(): string {
  return findPackage().version;
}

/** The directory holding berth's package.json ("" when not found), where dist/ and its native helpers live. */
export function packageRoot(): string {
  return findPackage().dir;
}
