/**
 * Snapshotter interfaces, modelled on containerd's: a snapshot is a directory tree keyed by
 * a name; committed snapshots are immutable and form parent chains (one per layer, keyed by
 * the layer's chain ID); active snapshots are writable (a container's upper/work dirs over
 * committed parents) and are turned into overlay mounts.
 */

/** A mount the caller performs (or passes to an OCI runtime as its rootfs). */
export interface Mount {
  type: string;
  source: string;
  options: string[];
}

export type SnapshotKind = "committed" | "active";

export interface SnapshotInfo {
  key: string;
  parent?: string;
  kind: SnapshotKind;
  createdAt: number;
  labels: Record<string, string>;
}

export interface Snapshotter {
  /** Info of a snapshot, or undefined when absent. */
  stat(key: string): Promise<SnapshotInfo | undefined>;
  /**
   * Creates a writable snapshot on top of committed `parent` (or empty) and returns the mounts
   * that present it. Throws AlreadyExists when `key` exists, NotFound when `parent` does not,
   * FailedPrecondition when `parent` is not committed.
   */
  prepare(key: string, parent: string | undefined, options?: { labels?: Record<string, string> }): Promise<Mount[]>;
  /** Mounts of an existing active snapshot (again, e.g. after a daemon restart). FailedPrecondition for a committed one. */
  mounts(key: string): Promise<Mount[]>;
  /**
   * Turns active snapshot `activeKey` into committed snapshot `name` (immutable from then on);
   * `activeKey` is gone afterwards. AlreadyExists when `name` exists (e.g. another pull unpacked
   * the same chain ID first: the caller removes its own active snapshot and uses `name`).
   *
   * `parent` sets the parent of an active snapshot prepared without one whose tree was written
   * directly (a layer unpacked in parallel with the layers below it, before they were
   * committed): FailedPrecondition when the active snapshot already has a parent, NotFound or
   * FailedPrecondition for a missing or uncommitted `parent`.
   */
  commit(
    name: string,
    activeKey: string,
    options?: { labels?: Record<string, string>; parent?: string },
  ): Promise<void>;
  /** Removes a snapshot. Throws FailedPrecondition when other snapshots have it as parent. */
  remove(key: string): Promise<void>;
  list(): Promise<SnapshotInfo[]>;
  /**
   * Bytes (allocated, as `du` counts) and inodes used by all snapshots, or by snapshot `key` alone
   * (a container's writable layer). Throws NotFound for an unknown key.
   */
  usage(key?: string): Promise<{ bytes: number; inodes: number }>;
}
