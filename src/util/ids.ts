import { randomBytes } from "node:crypto";

/** A new 64-hex-digit ID, the form containerd and CRI-O use for sandboxes and containers. */
export function newId(): string {
  return randomBytes(32).toString("hex");
}

/** The first 13 characters of an ID, as crictl prints them. */
export function shortId(id: string): string {
  return id.slice(0, 13);
}

/**
 * Resolves `ref` (a full ID or a unique prefix) against `ids`.
 * Returns the full ID, or `undefined` when none matches; throws when the prefix is ambiguous.
 */
export function resolvePrefix(ref: string, ids: Iterable<string>): string | undefined {
  let found: string | undefined;
  for (const id of ids) {
    if (id === ref) return id;
    if (ref.length > 0 && id.startsWith(ref)) {
      if (found !== undefined) throw new AmbiguousPrefixError(ref);
      found = id;
    }
  }
  return found;
}

/** Thrown by resolvePrefix when more than one ID starts with the prefix. */
export class AmbiguousPrefixError extends Error {
  constructor(readonly prefix: string) {
    super(`id prefix ${prefix} matches more than one object`);
    this.name = "AmbiguousPrefixError";
  }
}
