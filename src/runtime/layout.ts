import { join } from "node:path";
import { invalidArgument } from "../errdefs/index.js";

/**
 * The runtime's on-disk state, all under one `stateDir` (a tmpfs such as /run/berth/runtime in production,
 * because none of it should survive a reboot: the containers do not either):
 *
 * ```
 * <stateDir>/
 * ├── containers/
 * │   └── <id>/                 bundle (conmon -b, cwd of conmon) and persist dir (conmon -0); a symlink
 * │       │                     to the caller's bundle directory when createContainer was given one
 * │       ├── config.json       OCI spec, written atomically before conmon starts          (berth)
 * │       ├── monitor.json      handler, log path, stdio flags: what a restarted daemon needs (berth)
 * │       ├── container.log     the CRI log when the caller names none                      (conmon)
 * │       ├── pidfile           container init pid (runc create --pid-file, via conmon -p)  (runc)
 * │       ├── conmon.pid        the monitoring conmon's pid (conmon -P)                     (conmon)
 * │       ├── ctl               FIFO: "1 <h> <w>\n" resizes the tty, "2 0 0\n" reopens the log
 * │       ├── winsz             FIFO, conmon-internal
 * │       ├── attach            SOCK_SEQPACKET attach socket
 * │       ├── oom               empty; exists once the container's cgroup saw an OOM kill
 * │       └── exit              exit code (persist-dir copy)
 * ├── exits/<id>                exit code, written by conmon when the container exits; mtime = finish time
 * ├── rro/<id>/<n>              read-only clones of the mount trees of "rro" binds (runc 1.1 has no rro);
 * │                             outside the bundle, so removing a bundle never walks into a bind
 * ├── attach/<id> → containers/<id>   conmon's symlink, so `attach/<id>/attach` fits in sun_path (108 bytes)
 * └── exec/<id12>-<random>/     one execSync: process.json, pidfile, log; removed when it returns
 * ```
 *
 * runc keeps its own state under each handler's `--root` (`<root>/<id>/state.json`).
 */
export interface Layout {
  readonly stateDir: string;
  readonly containers: string;
  readonly exits: string;
  readonly attach: string;
  readonly exec: string;
  /** Every path of one container. */
  container(id: string): ContainerPaths;
}

/** The paths of one container; see the tree in `Layout`. */
export interface ContainerPaths {
  dir: string;
  config: string;
  monitor: string;
  defaultLog: string;
  pidfile: string;
  conmonPid: string;
  ctl: string;
  attachSocket: string;
  attachLink: string;
  oom: string;
  persistedExit: string;
  exitFile: string;
  /** Mount points of the container's recursive read-only bind sources. */
  readOnlyTrees: string;
}

// runc and containerd accept this shape; anything else could escape the state directory.
const ID_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;

/** Throws InvalidArgument unless `id` is safe as a single path component and as a runc container id. */
export function validateId(id: string): void {
  if (!ID_RE.test(id)) throw invalidArgument(`invalid container id ${JSON.stringify(id)}`);
}

/** The layout rooted at `stateDir`; the only place runtime paths are built. */
export function layout(stateDir: string): Layout {
  const containers = join(stateDir, "containers");
  const exits = join(stateDir, "exits");
  const attach = join(stateDir, "attach");
  return {
    stateDir,
    containers,
    exits,
    attach,
    exec: join(stateDir, "exec"),
    container(id: string): ContainerPaths {
      validateId(id);
      const dir = join(containers, id);
      return {
        dir,
        config: join(dir, "config.json"),
        monitor: join(dir, "monitor.json"),
        defaultLog: join(dir, "container.log"),
        pidfile: join(dir, "pidfile"),
        conmonPid: join(dir, "conmon.pid"),
        ctl: join(dir, "ctl"),
        // Through conmon's symlink, not `dir`, to stay short whatever the caller's bundle path is.
        attachSocket: join(attach, id, "attach"),
        attachLink: join(attach, id),
        oom: join(dir, "oom"),
        persistedExit: join(dir, "exit"),
        exitFile: join(exits, id),
        readOnlyTrees: join(stateDir, "rro", id),
      };
    },
  };
}
