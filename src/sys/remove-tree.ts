import { run } from "./exec.js";

/**
 * Removes the tree at `path`, as `rm -rf` does, for trees a container or an image filled. fs.rm names every
 * entry by its full path, so a container that nests directories past PATH_MAX (4 KiB) would make its own
 * snapshot unremovable (ENAMETOOLONG), and it walks on libuv's pool. GNU rm walks with openat, so depth and
 * size do not matter, and it runs in a child process. `--one-file-system` keeps it out of anything still
 * mounted inside. A missing `path` is not an error.
 */
export async function removeTree(path: string, options: { signal?: AbortSignal } = {}): Promise<void> {
  await run("rm", ["-rf", "--one-file-system", "--", path], {
    name: `remove ${path}`,
    ...(options.signal ? { signal: options.signal } : {}),
  });
}
