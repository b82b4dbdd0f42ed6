import { dirname, relative, sep } from "node:path";
import { invalidArgument, kindOf, messageOf, RuntimeError } from "../errdefs/index.js";
import { run } from "../sys/index.js";
import { signalOption } from "../util/index.js";
import type { Mount } from "./types.js";

/**
 * The kernel copies mount(2) option data into one page; longer overlay options are cut. Past this
 * many bytes (leaving room for the terminating NUL) we switch to paths relative to `mount`'s cwd.
 */
const OPTION_PAGE = 4095;

/** The overlay options that carry directory paths. */
const PATH_OPTIONS = ["lowerdir", "upperdir", "workdir"] as const;

/**
 * argv and working directory for util-linux `mount` performing `m` at `target`. Overlay options
 * longer than a page are rewritten relative to the paths' common directory, which becomes the
 * cwd (the kernel resolves relative overlay paths against the mounting process's cwd), as
 * containerd does: `lowerdir=12/fs:11/fs` instead of full paths gives ~100 layers per page.
 */
export function mountCommand(m: Mount, target: string): { args: string[]; cwd?: string } {
  let options = m.options;
  let cwd: string | undefined;
  if (m.type === "overlay" && options.join(",").length > OPTION_PAGE) {
    cwd = commonDir(options.flatMap((o) => pathsOf(o)));
    const base = cwd;
    options = options.map((o) => {
      const [name, value] = splitOption(o);
      if (value === undefined || !isPathOption(name)) return o;
      return `${name}=${value
        .split(":")
        .map((p) => relative(base, p))
        .join(":")}`;
    });
    if (options.join(",").length > OPTION_PAGE) {
      throw invalidArgument(
        `mount overlay at ${target}: options exceed the ${OPTION_PAGE + 1}-byte page even with relative paths (too many layers)`,
      );
    }
  }
  const args = ["-t", m.type];
  if (options.length > 0) args.push("-o", options.join(","));
  args.push(m.source, target);
  return cwd !== undefined ? { args, cwd } : { args };
}

/**
 * Mounts `mounts` on `target` in order (later ones stack on earlier ones). All or nothing: if
 * one fails, those already mounted are unmounted again before the error is thrown.
 */
export async function mountAll(
  mounts: readonly Mount[],
  target: string,
  options: { signal?: AbortSignal } = {},
): Promise<void> {
  let done = 0;
  try {
    for (const m of mounts) {
      const { args, cwd } = mountCommand(m, target);
      await run("mount", args, {
        name: `mount ${m.type} at ${target}`,
        ...(cwd !== undefined ? { cwd } : {}),
        ...signalOption(options.signal),
      });
      done += 1;
    }
  } catch (err) {
    for (; done > 0; done -= 1) {
      try {
        await unmount(target);
      } catch (undoErr) {
        // The mount error is the one to report; a failed undo only adds to its message.
        throw new RuntimeError(
          kindOf(err),
          `${messageOf(err)} (unmounting ${target} again also failed: ${messageOf(undoErr)})`,
          { cause: err },
        );
      }
    }
    throw err;
  }
}

/** Unmounts the topmost mount at `target` (`umount`, or `umount --lazy` when `detach` is set). */
export async function unmount(target: string, options: { detach?: boolean; signal?: AbortSignal } = {}): Promise<void> {
  const args = options.detach ? ["--lazy", target] : [target];
  await run("umount", args, { name: `umount ${target}`, ...signalOption(options.signal) });
}

/**
 * The directories behind the mounts of an active snapshot: `upper` is where a layer is applied
 * (the bind source, or the overlay upperdir) and `lowers` are the parents' trees, nearest first.
 * Throws InvalidArgument for mounts this module did not produce.
 */
export function layerDirsOf(mounts: readonly Mount[]): { upper: string; lowers: string[] } {
  const [m] = mounts;
  if (mounts.length === 1 && m?.type === "bind") return { upper: m.source, lowers: [] };
  if (mounts.length === 1 && m?.type === "overlay") {
    const opts = new Map(m.options.map((o) => splitOption(o)));
    const upper = opts.get("upperdir");
    const lowers = opts.get("lowerdir");
    if (upper !== undefined && lowers !== undefined) return { upper, lowers: lowers.split(":") };
  }
  throw invalidArgument(`mounts ${JSON.stringify(mounts)}: not a writable snapshot's bind or overlay mount`);
}

function splitOption(o: string): [string, string | undefined] {
  const i = o.indexOf("=");
  return i < 0 ? [o, undefined] : [o.slice(0, i), o.slice(i + 1)];
}

function isPathOption(name: string): boolean {
  return (PATH_OPTIONS as readonly string[]).includes(name);
}

function pathsOf(option: string): string[] {
  const [name, value] = splitOption(option);
  return value !== undefined && isPathOption(name) ? value.split(":") : [];
}

/** The deepest directory containing every path (all absolute). */
function commonDir(paths: readonly string[]): string {
  let common = dirname(paths[0] ?? sep);
  while (!paths.every((p) => p === common || p.startsWith(common === sep ? sep : common + sep)))
    common = dirname(common);
  return common;
}
