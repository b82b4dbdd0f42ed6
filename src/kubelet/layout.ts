/**
 * Where the pod runner keeps things on disk. Every path is built here.
 *
 * ```
 * <stateDir>/                                  default /var/lib/berth/kubelet
 *   runners/<manifestHash>.json                the process keeping a manifest's pods (berth run), {pid, ...}
 *   runners/<manifestHash>.log                 output of a detached runner (berth run -d)
 *   pods/<uid>/events.json                     the pod's events, for describe (written atomically)
 *   pods/<uid>/status.json                     readiness and waiting reasons only the runner knows
 *   pods/<uid>/volumes/kubernetes.io~empty-dir/<volume>/
 *   pods/<uid>/containers/<container>/<restartCount>   terminationMessagePath, bind-mounted
 * <logRoot>/<namespace>_<name>_<uid>/<container>/<restartCount>.log    default /var/log/pods (the kubelet's)
 * ```
 * Pod directories go when the pod is removed (berth down, a deleted static manifest).
 */
import { join, resolve } from "node:path";

export const DEFAULT_STATE_DIR = "/var/lib/berth/kubelet";
export const DEFAULT_LOG_ROOT = "/var/log/pods";

/** Paths of one runner installation. */
export interface Layout {
  readonly stateDir: string;
  readonly logRoot: string;
  runnerFile(manifestHash: string): string;
  runnerLog(manifestHash: string): string;
  podDir(uid: string): string;
  eventsFile(uid: string): string;
  statusFile(uid: string): string;
  emptyDir(uid: string, volume: string): string;
  terminationMessageFile(uid: string, container: string, restartCount: number): string;
  /** The sandbox's log directory. */
  podLogDir(namespace: string, name: string, uid: string): string;
  /** Container log path relative to the pod log directory (CRI's ContainerConfig.log_path). */
  containerLogPath(container: string, restartCount: number): string;
}

export function createLayout(options: { stateDir?: string; logRoot?: string } = {}): Layout {
  const stateDir = resolve(options.stateDir ?? DEFAULT_STATE_DIR);
  const logRoot = resolve(options.logRoot ?? DEFAULT_LOG_ROOT);
  const podDir = (uid: string) => join(stateDir, "pods", uid);
  return {
    stateDir,
    logRoot,
    runnerFile: (h) => join(stateDir, "runners", `${h}.json`),
    runnerLog: (h) => join(stateDir, "runners", `${h}.log`),
    podDir,
    eventsFile: (uid) => join(podDir(uid), "events.json"),
    statusFile: (uid) => join(podDir(uid), "status.json"),
    emptyDir: (uid, volume) => join(podDir(uid), "volumes", "kubernetes.io~empty-dir", volume),
    terminationMessageFile: (uid, container, n) => join(podDir(uid), "containers", container, String(n)),
    podLogDir: (namespace, name, uid) => join(logRoot, `${namespace}_${name}_${uid}`),
    containerLogPath: (container, n) => join(container, `${n}.log`),
  };
}
