import { chmodSync, mkdirSync } from "node:fs";
import { dirname } from "node:path";
import Database from "better-sqlite3";

/**
 * The daemon's one embedded store: a SQLite database (WAL mode) under the root directory.
 *
 * Every record is a JSON document in a named collection (images, sandboxes, containers, ...).
 * Each `put`/`delete` is its own transaction and is durable when it returns (synchronous=FULL),
 * so a daemon killed with SIGKILL at any moment comes back with every acknowledged write.
 * `transaction()` groups writes that must land together (e.g. a container and its sandbox link).
 */
export interface Store {
  /** A typed collection; created on first use. Names are fixed identifiers, never user input. */
  collection<T>(name: string): Collection<T>;
  /** Runs `fn` in one transaction: all its writes land or none do. `fn` must be synchronous. */
  transaction<R>(fn: () => R): R;
  close(): void;
}

/** A set of JSON records keyed by a string ID. */
export interface Collection<T> {
  get(id: string): T | undefined;
  put(id: string, value: T): void;
  delete(id: string): boolean;
  list(): T[];
  ids(): string[];
}

/** Opens (creating if needed) the store at `path`. */
export function openStore(path: string): Store {
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  const db = new Database(path);
  // Root-only even if the directory is ever opened up. SQLite gives new -wal and -shm files the
  // database's mode; ones an older berthd left are tightened here.
  for (const file of [path, `${path}-wal`, `${path}-shm`]) {
    try {
      chmodSync(file, 0o600);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
    }
  }
  db.pragma("journal_mode = WAL");
  db.pragma("synchronous = FULL");
  db.pragma("busy_timeout = 5000");
  db.exec(
    "CREATE TABLE IF NOT EXISTS records (kind TEXT NOT NULL, id TEXT NOT NULL, data TEXT NOT NULL, PRIMARY KEY (kind, id))",
  );
  const getStmt = db.prepare<[string, string], { data: string }>("SELECT data FROM records WHERE kind = ? AND id = ?");
  const putStmt = db.prepare<[string, string, string]>(
    "INSERT INTO records (kind, id, data) VALUES (?, ?, ?) ON CONFLICT (kind, id) DO UPDATE SET data = excluded.data",
  );
  const delStmt = db.prepare<[string, string]>("DELETE FROM records WHERE kind = ? AND id = ?");
  const listStmt = db.prepare<[string], { id: string; data: string }>(
    "SELECT id, data FROM records WHERE kind = ? ORDER BY id",
  );
  const collections = new Map<string, Collection<unknown>>();

  return {
    collection<T>(name: string): Collection<T> {
      let c = collections.get(name) as Collection<T> | undefined;
      if (c) return c;
      c = {
        get: (id) => {
          const row = getStmt.get(name, id);
          return row ? (JSON.parse(row.data) as T) : undefined;
        },
        put: (id, value) => {
          putStmt.run(name, id, JSON.stringify(value));
        },
        delete: (id) => delStmt.run(name, id).changes > 0,
        list: () => listStmt.all(name).map((r) => JSON.parse(r.data) as T),
        ids: () => listStmt.all(name).map((r) => r.id),
      };
      collections.set(name, c as Collection<unknown>);
      return c;
    },
    transaction: (fn) => db.transaction(fn)(),
    close: () => db.close(),
  };
}
