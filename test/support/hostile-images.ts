/**
 * Hostile images for the "one image must never stall the node" tests: each one's `/etc/passwd` (and sometimes
 * `/etc/group`) is something a runtime must refuse to read rather than wait on, read whole, or follow to the
 * host. Every image names a user (`USER app`), so creating a container from it makes the runtime look the name
 * up. Built with ./build-image.ts into a directory the test owns, pushed to the fixture registry.
 */
import { join } from "node:path";
import type { BuiltImage, TarEntry } from "./build-image.js";
import { buildImage } from "./build-image.js";
import type { FixtureRegistry } from "./fixtures.js";
import { pushImage } from "./registry.js";

/** One hostile image: its repository, what is wrong with it, and the file an error must name. */
export interface HostileImage {
  repository: string;
  what: string;
  /** The file the runtime's error must name. */
  file: string;
  /** What the error must say about it. */
  message: RegExp;
  entries: TarEntry[];
}

const GROUP = "root:x:0:\napp:x:1000:\n";

/** The hostile set (issue 11): FIFOs, a 256 MiB passwd (sparse on disk once unpacked), `/etc -> /etc`, a directory. */
export const HOSTILE_IMAGES: readonly HostileImage[] = [
  {
    repository: "berth-test/hostile-fifo",
    what: "/etc/passwd and /etc/group are FIFOs",
    file: "/etc/passwd",
    message: /\/etc\/passwd is a FIFO, not a regular file/,
    entries: [
      { type: "directory", name: "etc/" },
      { type: "fifo", name: "etc/passwd" },
      { type: "fifo", name: "etc/group" },
    ],
  },
  {
    repository: "berth-test/hostile-huge-passwd",
    what: "/etc/passwd is 256 MiB",
    file: "/etc/passwd",
    message: /\/etc\/passwd is 268435456 bytes, over the 4 MiB limit/,
    entries: [
      { type: "directory", name: "etc/" },
      { type: "zeros", name: "etc/passwd", size: 256 * 1024 * 1024 },
      { type: "file", name: "etc/group", content: GROUP },
    ],
  },
  {
    repository: "berth-test/hostile-etc-loop",
    what: "/etc is a symlink to /etc",
    file: "/etc/passwd",
    message: /\/etc\/passwd: too many levels of symbolic links/,
    entries: [{ type: "symlink", name: "etc", linkname: "/etc" }],
  },
  {
    repository: "berth-test/hostile-passwd-dir",
    what: "/etc/passwd is a directory",
    file: "/etc/passwd",
    message: /\/etc\/passwd is a directory, not a regular file/,
    entries: [
      { type: "directory", name: "etc/" },
      { type: "directory", name: "etc/passwd/" },
      { type: "file", name: "etc/group", content: GROUP },
    ],
  },
];

/**
 * Builds every hostile image under `dir` and pushes it to the fixture registry's plain endpoint; returns the
 * registry-qualified reference of each, by repository.
 */
export async function pushHostileImages(dir: string, reg: FixtureRegistry): Promise<Map<string, string>> {
  const refs = new Map<string, string>();
  for (const h of HOSTILE_IMAGES) {
    const built: BuiltImage = await buildImage(join(dir, h.repository.replace("/", "_")), {
      repository: h.repository,
      layers: [{ entries: h.entries }],
      config: { User: "app", Cmd: ["sh"] },
    });
    await pushImage(reg.plain, h.repository, "latest", built.image, { blobs: built });
    refs.set(h.repository, `${reg.plain.host}/${h.repository}:latest`);
  }
  return refs;
}
