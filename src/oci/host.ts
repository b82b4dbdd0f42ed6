import { readFile, statfs } from "node:fs/promises";
import { join } from "node:path";
import { pathExists } from "../util/index.js";

/** What the host's cgroup setup can enforce; spec builders drop limits the host cannot apply. */
export interface CgroupFeatures {
  /** The unified (v2-only) hierarchy is mounted at the cgroup root. */
  v2: boolean;
  /** memory+swap limits can be set (v1 `memory.memsw.*`, or v2). */
  swap: boolean;
  /** A hugetlb controller runc can use. In hybrid mode runc 1.1 uses only v1 controllers. */
  hugetlb: boolean;
}

const CGROUP2_SUPER_MAGIC = 0x63677270;

/**
 * Detects `CgroupFeatures` under `root` (default /sys/fs/cgroup). On a hybrid host (v1 controllers plus a
 * v2 mount at `unified/`) only v1 controllers count, because that is what runc 1.1's cgroupfs driver uses.
 */
export async function detectCgroupFeatures(root = "/sys/fs/cgroup"): Promise<CgroupFeatures> {
  const v2 = (await statfs(root).catch(() => undefined))?.type === CGROUP2_SUPER_MAGIC;
  if (v2) {
    const controllers = await readFile(join(root, "cgroup.controllers"), "utf8").catch(() => "");
    return { v2, swap: true, hugetlb: controllers.split(/\s+/).includes("hugetlb") };
  }
  return {
    v2,
    swap: await pathExists(join(root, "memory", "memory.memsw.limit_in_bytes")),
    hugetlb: await pathExists(join(root, "hugetlb")),
  };
}

/** The daemon's own oom_score_adj: the lowest a container may ask for without CAP_SYS_RESOURCE. */
export async function currentOomScoreAdj(path = "/proc/self/oom_score_adj"): Promise<number> {
  const n = Number.parseInt((await readFile(path, "utf8")).trim(), 10);
  return Number.isFinite(n) ? n : 0;
}
