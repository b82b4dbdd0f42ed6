import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import {
  buildSpec,
  type SpecOpt,
  withArgs,
  withBindMounts,
  withCapabilities,
  withCgroupsPath,
  withHostNamespace,
  withNamespace,
  withNoNewPrivileges,
  withOomScoreAdj,
  withReadonlyRootfs,
  withRootPath,
  withSysctls,
} from "../oci/index.js";
import { cgroupsPath } from "./cgroup-paths.js";
import type { Runtime } from "./runtime.js";
import type { SandboxRecord } from "./types.js";

/**
 * The infra process of a pod that shares one PID namespace between its containers
 * (`shareProcessNamespace`): catatonit from the host, run by runc under conmon like any
 * container, as PID 1 of the pod's PID namespace. It reaps zombies and holds the namespace
 * while containers come and go. Pods without a shared PID namespace need no process at all.
 */
export interface SandboxInfra {
  /** Creates and starts the infra container (ID = sandbox ID); returns its PID. */
  start(sandbox: SandboxRecord): Promise<number>;
  /** Stops it (SIGKILL: catatonit holds no state). Idempotent. */
  stop(sandboxId: string): Promise<void>;
  /** Removes it. Idempotent. */
  remove(sandboxId: string): Promise<void>;
}

export interface InfraOptions {
  runtime: Runtime;
  /** Static host binary run as PID 1 (`catatonit`), bind-mounted read-only into an empty rootfs. */
  binary: string;
  oomScoreAdjFloor?: number;
}

/** The catatonit-based infra (see SandboxInfra). */
export function createSandboxInfra(o: InfraOptions): SandboxInfra {
  return {
    start: async (sb) => {
      const rootfs = join(sb.dir, "infra-rootfs");
      await mkdir(rootfs, { recursive: true, mode: 0o755 });
      const ns = sb.config.namespaces;
      const opts: SpecOpt[] = [
        withRootPath(rootfs),
        withReadonlyRootfs(true),
        withArgs(["/catatonit", "-P"]),
        withBindMounts([{ hostPath: o.binary, containerPath: "/catatonit", readonly: true }]),
        withCapabilities({ drop: ["ALL"] }),
        withNoNewPrivileges(true),
        withNamespace("pid"),
        ns.network === "node" ? withHostNamespace("network") : withNamespace("network", sb.netnsPath),
        ns.ipc === "node" ? withHostNamespace("ipc") : withNamespace("ipc", sb.ipcPath),
        ns.network === "node" ? withHostNamespace("uts") : withNamespace("uts", sb.utsPath),
        withSysctls(sb.config.sysctls),
        withCgroupsPath(cgroupsPath(sb, sb.id)),
        // The infra process should be the last thing the OOM killer picks in its pod.
        withOomScoreAdj(-998, o.oomScoreAdjFloor !== undefined ? { floor: o.oomScoreAdjFloor } : {}),
      ];
      const spec = await buildSpec(...opts);
      // catatonit needs no /dev/shm, /dev/mqueue or the pod's files.
      spec.mounts = (spec.mounts ?? []).filter((m) => ["/proc", "/dev", "/catatonit"].includes(m.destination));
      const created = await o.runtime.createContainer({
        id: sb.id,
        spec,
        runtimeHandler: sb.runtimeHandler,
      });
      await o.runtime.start(sb.id);
      return created.pid;
    },
    stop: async (id) => {
      await o.runtime.stop(id, { timeoutSec: 0 }).catch((err: unknown) => {
        if ((err as { kind?: string }).kind !== "NotFound") throw err;
      });
    },
    remove: async (id) => {
      await o.runtime.delete(id);
    },
  };
}
