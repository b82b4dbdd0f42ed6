import type { ContentStore } from "../content/index.js";
import { isKind } from "../errdefs/index.js";
import type { Logger } from "../log/index.js";
import type { Snapshotter } from "../snapshots/index.js";
import type { KeyedMutex } from "../util/index.js";

/**
 * Garbage collection of image blobs and layer snapshots, and the leases that keep a pull's
 * not-yet-recorded blobs and snapshots alive (containerd's leases, reduced to a counted set).
 *
 * The race it closes: a pull finds a blob already present and skips the download while a
 * removal decides the same blob is unreferenced. Both sides use one per-digest lock: a pull
 * leases a digest *before* taking the lock to check or write it; the collector checks the lease
 * *inside* the lock before deleting. Snapshots work the same way, keyed by chain ID.
 */

/** Counted protection of digests and chain IDs while a pull (or a container create) needs them. */
export class Leases {
  private readonly counts = new Map<string, number>();

  /** A new lease; add keys as they become known, release once they are recorded (or no longer needed). */
  create(): Lease {
    const held: string[] = [];
    let released = false;
    return {
      add: (...keys: string[]) => {
        if (released) return;
        for (const k of keys) {
          held.push(k);
          this.counts.set(k, (this.counts.get(k) ?? 0) + 1);
        }
      },
      release: () => {
        if (released) return;
        released = true;
        for (const k of held) {
          const n = (this.counts.get(k) ?? 1) - 1;
          if (n <= 0) this.counts.delete(k);
          else this.counts.set(k, n);
        }
      },
    };
  }

  /** True while any lease holds `key`. */
  has(key: string): boolean {
    return this.counts.has(key);
  }
}

/** A set of protected keys; `release()` is idempotent. */
export interface Lease {
  add(...keys: string[]): void;
  release(): void;
}

/** Locks shared by pulls and the collector: one per blob digest, one per chain ID. */
export interface GcLocks {
  blobs: KeyedMutex;
  chains: KeyedMutex;
}

/** What the image records still reference. */
export interface References {
  blobs: ReadonlySet<string>;
  chainIds: ReadonlySet<string>;
}

/** A committed image-layer snapshot key (chain IDs are `sha256:<hex>`). */
const CHAIN_KEY = /^sha256:[a-f0-9]{64}$/;

/** What one collection removed. */
export interface GcResult {
  blobs: string[];
  snapshots: string[];
}

/**
 * Deletes every blob and committed layer snapshot that no image references and no lease holds.
 * Snapshots are removed leaves first; one with children (a container's active snapshot, or a
 * layer of another image) is never removed, so a running container keeps its lowers. Failures
 * are logged and skipped: the next collection retries.
 */
export async function collectGarbage(deps: {
  content: ContentStore;
  snapshotter: Snapshotter;
  references: () => References;
  leases: Leases;
  locks: GcLocks;
  log: Logger;
}): Promise<GcResult> {
  const { content, snapshotter, leases, locks, log } = deps;
  const removed: GcResult = { blobs: [], snapshots: [] };

  // Snapshots first: a layer blob outliving its snapshot is harmless, the reverse costs a re-pull.
  let progress = true;
  while (progress) {
    progress = false;
    const all = await snapshotter.list();
    const parents = new Set(all.map((s) => s.parent).filter((p): p is string => p !== undefined));
    const referenced = deps.references().chainIds;
    for (const s of all) {
      if (
        s.kind !== "committed" ||
        !CHAIN_KEY.test(s.key) ||
        parents.has(s.key) ||
        leases.has(s.key) ||
        referenced.has(s.key)
      )
        continue;
      const done = await locks.chains.run(s.key, async () => {
        // Re-check under the lock: references and leases may have changed while we listed.
        if (leases.has(s.key) || deps.references().chainIds.has(s.key)) return false;
        try {
          await snapshotter.remove(s.key);
          return true;
        } catch (err) {
          // FailedPrecondition: a child appeared since the listing (a container was created).
          if (!isKind(err, "NotFound") && !isKind(err, "FailedPrecondition"))
            log.warn({ err, snapshot: s.key }, "gc: remove snapshot");
          return false;
        }
      });
      if (done) {
        removed.snapshots.push(s.key);
        progress = true;
      }
    }
  }

  const referencedBlobs = deps.references().blobs;
  for (const b of await content.list()) {
    if (leases.has(b.digest) || referencedBlobs.has(b.digest)) continue;
    await locks.blobs.run(b.digest, async () => {
      if (leases.has(b.digest) || deps.references().blobs.has(b.digest)) return;
      try {
        await content.delete(b.digest);
        removed.blobs.push(b.digest);
      } catch (err) {
        if (!isKind(err, "NotFound")) log.warn({ err, digest: b.digest }, "gc: delete blob");
      }
    });
  }
  return removed;
}
