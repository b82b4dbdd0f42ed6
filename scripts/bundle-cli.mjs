// Bundles the berth CLI (src/bin/berth.ts) into dist/src/bin/berth.js, replacing tsc's output of that file:
// one ESM file for what every command needs, plus one chunk per lazily loaded command module
// (dist/src/bin/chunks/). Resolving and compiling ~150 separate modules was a third of a short command's
// start-up. Native packages stay external; CommonJS dependencies get a `require` from the banner.
// Run by `npm run build` after tsc; berthd is not bundled (it starts once).
import { rm } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";

const repo = join(dirname(fileURLToPath(import.meta.url)), "..");
const outdir = join(repo, "dist", "src", "bin");
await rm(join(outdir, "chunks"), { recursive: true, force: true });
await build({
  entryPoints: { berth: join(repo, "src", "bin", "berth.ts") },
  outdir,
  bundle: true,
  splitting: true,
  format: "esm",
  platform: "node",
  target: "node20",
  chunkNames: "chunks/[name]-[hash]",
  external: ["better-sqlite3", "node-pty"],
  banner: {
    js: 'import { createRequire as __berthRequire } from "node:module"; const require = __berthRequire(import.meta.url);',
  },
  minifySyntax: true,
  minifyWhitespace: true,
  legalComments: "none",
  logLevel: "warning",
});
