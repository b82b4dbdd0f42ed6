/**
 * Named network namespaces pinned by a bind mount, as `ip netns add` does, but under berth's
 * own directory so berth never touches namespaces that `ip netns` users made.
 *
 * Lifecycle: `createNetns` -> (CNI ADD ... CNI DEL) -> `removeNetns`. A namespace lives as long
 * as its file stays mounted, whether or not any process runs in it; `removeNetns` unmounts and
 * unlinks, and the kernel frees the namespace once nothing else holds it.
 */
import { open } from "node:fs/promises";
import { wrap } from "../errdefs/index.js";
import {
  ensurePrivateMount,
  isPinnedNamespace,
  netnsArgv,
  type RunOptions,
  type RunResult,
  run,
  unpinNamespace,
} from "../sys/index.js";
import { signalOption } from "../util/index.js";
import { DEFAULT_NETNS_DIR, netnsPath } from "./paths.js";

// unshare/nsenter exec `ip` by PATH; a daemon started with a minimal PATH would miss /usr/sbin.
const TOOL_ENV = { ...process.env, PATH: `${process.env.PATH ?? ""}:/usr/local/sbin:/usr/sbin:/sbin:/usr/bin:/bin` };

/** Options of the netns functions. */
export interface NetnsOptions {
  /** Directory holding the namespace files (default `/run/berth/netns`). */
  dir?: string;
  signal?: AbortSignal;
}

/**
 * Creates (or finds) the network namespace `name` and returns the path of its file. On return
 * the namespace exists, is pinned by a bind mount at that path, and has `lo` up, so pods get
 * 127.0.0.1 without running the loopback plugin. Calling it again for a pinned name returns
 * the same path; a half-made file from a crash is reused.
 */
export async function createNetns(name: string, options: NetnsOptions = {}): Promise<string> {
  const dir = options.dir ?? DEFAULT_NETNS_DIR;
  const path = netnsPath(dir, name);
  const signal = options.signal;
  try {
    // Private, so namespace mounts never propagate into (and get pinned by) other mount namespaces.
    await ensurePrivateMount(dir);
    if (await isNetns(path)) {
      // Already pinned (a retry, or a crash right after unshare): make sure lo is up all the same.
      await runInNetns(path, ["ip", "link", "set", "lo", "up"], signalOption(signal));
      return path;
    }
  } catch (err) {
    throw wrap(err, `create netns ${name}`);
  }
  try {
    await (await open(path, "a", 0o444)).close();
    // unshare makes the namespace, binds it onto `path` and runs `ip` inside it: one exec.
    await run("unshare", [`--net=${path}`, "ip", "link", "set", "lo", "up"], {
      name: "unshare",
      env: TOOL_ENV,
      ...signalOption(signal),
    });
  } catch (err) {
    // Undo after a failed create: the create's own error is the one reported.
    await removeNetns(path).catch(() => {});
    throw wrap(err, `create netns ${name}`);
  }
  return path;
}

/**
 * Unmounts and unlinks a namespace file. Succeeds when the file is already gone, so it can be
 * retried; the namespace itself disappears when its last process and mount are gone.
 */
export async function removeNetns(path: string): Promise<void> {
  try {
    await unpinNamespace(path);
  } catch (err) {
    throw wrap(err, `remove netns ${path}`);
  }
}

/** True when `path` is a pinned namespace (an nsfs mount), false when absent or a plain file. */
export function isNetns(path: string): Promise<boolean> {
  return isPinnedNamespace(path);
}

/** Runs `argv` inside the network namespace at `path` (`nsenter --net=<path>`); a non-zero exit throws. */
export function runInNetns(path: string, argv: readonly string[], options: RunOptions = {}): Promise<RunResult> {
  const [file] = argv;
  const [nsenter, args] = netnsArgv(path, argv);
  return run(nsenter, args, {
    env: TOOL_ENV,
    ...options,
    name: `nsenter ${file ?? ""}`.trim(),
  });
}

/** The argv that runs a command inside a netns, for callers that need a long-lived child (`spawn`). */
export { netnsArgv };
