import { mkdir, readdir, readFile, rm } from "node:fs/promises";
import { join } from "node:path";
import { alreadyExists, failedPrecondition, invalidArgument, notFound, wrap } from "../errdefs/index.js";
import { removeTree, treeUsage } from "../sys/index.js";
import { ensureDir, KeyedMutex, writeFileAtomic } from "../util/index.js";
import type { Mount, SnapshotInfo, Snapshotter } from "./types.js";

/**
 * The overlay snapshotter. On-disk layout:
 *
 * ```
 * <root>/snapshots/overlay/
 *   metadata.json          every snapshot's record (key -> id, kind, parent, labels, usage), replaced atomically
 *   snapshots/<id>/fs      the snapshot's tree: the upperdir while active, a lowerdir once committed
 *   snapshots/<id>/work    the overlay workdir of the active snapshot
 * ```
 *
 * Snapshot directories are named by a small integer id, not by key: keys are chain IDs and
 * container IDs (long), and every lowerdir path costs bytes in the 4 KiB mount option page.
 * Committing renames nothing on disk: the record changes kind and key, and `fs` becomes a lower.
 *
 * Metadata is one JSON file rather than the daemon's SQLite store so that the snapshotter is
 * self-contained (the conformance suite opens one on a temp dir) and its records live next to
 * the directories they describe. Crash safety comes from ordering: directories are created
 * before a record names them and deleted after the record is gone, so a crash leaves at worst
 * an unnamed directory, which the next open deletes.
 */
export interface OverlaySnapshotterOptions {
  /** The daemon's root directory; the snapshotter owns `<root>/snapshots/overlay`. */
  root: string;
}

interface SnapshotRecord {
  id: number;
  kind: SnapshotInfo["kind"];
  parent?: string;
  createdAt: number;
  labels: Record<string, string>;
  /** Measured once at commit: a committed tree never changes, and walking every layer on each ImageFsInfo would. */
  usage?: Usage;
}

interface Usage {
  bytes: number;
  inodes: number;
}

interface Metadata {
  version: 1;
  nextId: number;
  snapshots: Record<string, SnapshotRecord>;
}

/**
 * Opens (creating if needed) the overlay snapshotter under `<root>/snapshots/overlay` and deletes
 * directories that no record names (left by a crash mid-prepare or mid-remove). One instance per
 * root: mutations are serialised in memory, not across processes.
 */
export async function createOverlaySnapshotter(options: OverlaySnapshotterOptions): Promise<Snapshotter> {
  // Overlay options are split on "," and lowerdir lists on ":"; such a path cannot be expressed.
  if (/[,:]/.test(options.root))
    throw invalidArgument(`overlay snapshotter root ${options.root}: must not contain "," or ":"`);
  const base = join(options.root, "snapshots", "overlay");
  const snapshotsDir = join(base, "snapshots");
  const metadataPath = join(base, "metadata.json");
  // The one function that builds snapshot paths.
  const dirOf = (id: number, part?: "fs" | "work"): string =>
    part ? join(snapshotsDir, String(id), part) : join(snapshotsDir, String(id));

  // Root-only all the way down: a snapshot's fs/ holds image files as they are, setuid ones included.
  await ensureDir(join(options.root, "snapshots"), 0o700);
  await ensureDir(base, 0o700);
  await ensureDir(snapshotsDir, 0o700);
  let meta = await readMetadata(metadataPath);
  const named = new Set(Object.values(meta.snapshots).map((r) => String(r.id)));
  for (const entry of await readdir(snapshotsDir)) {
    if (!named.has(entry)) await removeTree(join(snapshotsDir, entry));
  }

  const lock = new KeyedMutex();
  /** Runs a mutation: `fn` returns the next metadata, which is persisted before memory changes. */
  const mutate = <T>(fn: (current: Metadata) => Promise<{ next: Metadata; result: T }>): Promise<T> =>
    lock.run("metadata", async () => {
      const { next, result } = await fn(meta);
      await writeFileAtomic(metadataPath, JSON.stringify(next), { mode: 0o600 });
      meta = next;
      return result;
    });

  const get = (key: string): SnapshotRecord => {
    const r = meta.snapshots[key];
    if (!r) throw notFound(`snapshot ${key}`);
    return r;
  };
  const infoOf = (key: string, r: SnapshotRecord): SnapshotInfo => ({
    key,
    ...(r.parent !== undefined ? { parent: r.parent } : {}),
    kind: r.kind,
    createdAt: r.createdAt,
    labels: { ...r.labels },
  });

  /** Lower directories of a snapshot's parent chain, nearest parent first (overlay's lowerdir order). */
  const lowersOf = (parent: string | undefined): string[] => {
    const lowers: string[] = [];
    for (let key = parent; key !== undefined; key = get(key).parent) lowers.push(dirOf(get(key).id, "fs"));
    return lowers;
  };

  const mountsOf = (r: SnapshotRecord): Mount[] => {
    const lowers = lowersOf(r.parent);
    // Without a parent there is nothing to overlay: a bind mount of the directory is cheaper and
    // needs no workdir. With one or more parents overlay is required even for a single lower,
    // so that the parent stays untouched.
    if (lowers.length === 0) return [{ type: "bind", source: dirOf(r.id, "fs"), options: ["rbind", "rw"] }];
    return [
      {
        type: "overlay",
        source: "overlay",
        options: [`workdir=${dirOf(r.id, "work")}`, `upperdir=${dirOf(r.id, "fs")}`, `lowerdir=${lowers.join(":")}`],
      },
    ];
  };

  return {
    async stat(key) {
      const r = meta.snapshots[key];
      return r ? infoOf(key, r) : undefined;
    },

    prepare(key, parent, opts = {}) {
      return mutate(async (cur) => {
        if (cur.snapshots[key]) throw alreadyExists(`snapshot ${key}`);
        if (parent !== undefined) {
          const p = cur.snapshots[parent];
          if (!p) throw notFound(`parent snapshot ${parent}`);
          if (p.kind !== "committed") throw failedPrecondition(`parent snapshot ${parent} is not committed`);
        }
        const id = cur.nextId;
        const record: SnapshotRecord = {
          id,
          kind: "active",
          ...(parent !== undefined ? { parent } : {}),
          createdAt: Date.now(),
          labels: { ...opts.labels },
        };
        try {
          await mkdir(dirOf(id, "fs"), { recursive: true, mode: 0o755 });
          await mkdir(dirOf(id, "work"), { mode: 0o700 });
        } catch (err) {
          await rm(dirOf(id), { recursive: true, force: true });
          throw wrap(err, `prepare snapshot ${key}`);
        }
        return { next: { ...cur, nextId: id + 1, snapshots: { ...cur.snapshots, [key]: record } }, result: record };
      }).then((record) => mountsOf(record));
    },

    async mounts(key) {
      const r = get(key);
      if (r.kind !== "active")
        throw failedPrecondition(`snapshot ${key} is committed: only active snapshots have mounts`);
      return mountsOf(r);
    },

    async commit(name, activeKey, opts = {}) {
      // Measured outside the lock (the caller has finished writing the active snapshot).
      const usage = await diskUsage(dirOf(get(activeKey).id, "fs"));
      return mutate(async (cur) => {
        const active = cur.snapshots[activeKey];
        if (!active) throw notFound(`snapshot ${activeKey}`);
        if (active.kind !== "active") throw failedPrecondition(`snapshot ${activeKey} is not active`);
        if (cur.snapshots[name]) throw alreadyExists(`snapshot ${name}`);
        const parent = opts.parent;
        if (parent !== undefined) {
          if (active.parent !== undefined)
            throw failedPrecondition(`commit ${activeKey} onto ${parent}: it already has parent ${active.parent}`);
          const p = cur.snapshots[parent];
          if (!p) throw notFound(`parent snapshot ${parent}`);
          if (p.kind !== "committed") throw failedPrecondition(`parent snapshot ${parent} is not committed`);
        }
        const committed: SnapshotRecord = {
          ...active,
          ...(parent !== undefined ? { parent } : {}),
          kind: "committed",
          createdAt: Date.now(),
          labels: { ...(opts.labels ?? active.labels) },
          usage,
        };
        const snapshots = { ...cur.snapshots, [name]: committed };
        delete snapshots[activeKey];
        return { next: { ...cur, snapshots }, result: undefined };
      });
    },

    async remove(key) {
      const id = await mutate(async (cur) => {
        const r = cur.snapshots[key];
        if (!r) throw notFound(`snapshot ${key}`);
        const children = Object.entries(cur.snapshots).filter(([, c]) => c.parent === key);
        if (children.length > 0) {
          throw failedPrecondition(
            `remove snapshot ${key}: it is the parent of ${children.map(([k]) => k).join(", ")}`,
          );
        }
        const snapshots = { ...cur.snapshots };
        delete snapshots[key];
        return { next: { ...cur, snapshots }, result: r.id };
      });
      // After the record is gone: a failure here leaves an unnamed directory that the next open deletes.
      await removeTree(dirOf(id));
    },

    async list() {
      return Object.entries(meta.snapshots).map(([key, r]) => infoOf(key, r));
    },

    async usage(key) {
      const records = key === undefined ? Object.values(meta.snapshots) : [get(key)];
      const total: Usage = { bytes: 0, inodes: 0 };
      for (const r of records) {
        const u = r.usage ?? (await diskUsage(dirOf(r.id, "fs")));
        total.bytes += u.bytes;
        total.inodes += u.inodes;
      }
      return total;
    },
  };
}

async function readMetadata(path: string): Promise<Metadata> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return { version: 1, nextId: 1, snapshots: {} };
    throw wrap(err, `read ${path}`);
  }
  const meta = JSON.parse(text) as Metadata;
  if (meta.version !== 1) throw failedPrecondition(`${path}: unsupported metadata version ${String(meta.version)}`);
  return meta;
}

/**
 * Allocated bytes (as `du` counts them) and inodes under `dir`, each inode counted once (hard links). The
 * walk runs in a worker thread (`treeUsage`): a layer or a writable layer may hold hundreds of thousands of
 * files, or be deeper than PATH_MAX, and neither the event loop nor libuv's pool may wait on that. Entries
 * removed during the walk (a concurrent remove, a running container) are skipped.
 */
async function diskUsage(dir: string): Promise<Usage> {
  const { bytes, inodes } = await treeUsage(dir);
  return { bytes, inodes };
}
