/**
 * Entry module of the fs worker threads (see ./fs-offload.ts): synchronous fs work on content an image or a
 * container controls, on a thread of its own.
 */
import { readFileInRootSync } from "./rootfs-read.js";
import { treeUsageSync } from "./tree-usage.js";
import { serveWorker } from "./worker-pool.js";

serveWorker({
  readFileInRoot: (a: { root: string; path: string; maxBytes: number }) =>
    readFileInRootSync(a.root, a.path, { maxBytes: a.maxBytes }),
  treeUsage: (a: { dir: string }) => treeUsageSync(a.dir),
});
