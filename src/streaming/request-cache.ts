import { randomBytes } from "node:crypto";
import { performance } from "node:perf_hooks";
import { RuntimeError } from "../errdefs/index.js";

/** Options of a RequestCache; the defaults are the kubelet's (`request_cache.go`). */
export interface RequestCacheOptions {
  /** How long a token stays valid after insert (default 60 000 ms). */
  ttlMs?: number;
  /** Most tokens pending at once; one more insert fails with ResourceExhausted (default 1000). */
  maxInFlight?: number;
  /** Milliseconds from a monotonic clock (default `performance.now`); injectable for tests. */
  now?: () => number;
}

interface Entry<T> {
  request: T;
  expiresAt: number;
}

/**
 * Holds validated streaming requests between the CRI call that returns the URL and the client
 * dialling it. Each token is single use: `consume` removes it, whether or not it has expired.
 *
 * Tokens are 16 random bytes in base64url (22 characters). The kubelet's cache uses 6 bytes; the
 * streaming URL is unauthenticated, so the token is the only thing standing between a local process
 * and a shell in a container, and a longer one costs nothing.
 */
export class RequestCache<T> {
  readonly #ttlMs: number;
  readonly #max: number;
  readonly #now: () => number;
  // Insertion order is expiry order (one TTL, monotonic clock), so expired entries are always a prefix.
  readonly #entries = new Map<string, Entry<T>>();

  constructor(options: RequestCacheOptions = {}) {
    this.#ttlMs = options.ttlMs ?? 60_000;
    this.#max = options.maxInFlight ?? 1000;
    this.#now = options.now ?? (() => performance.now());
  }

  /** Stores `request` and returns its token. Throws ResourceExhausted when `maxInFlight` are pending. */
  insert(request: T): string {
    this.#evictExpired();
    if (this.#entries.size >= this.#max) {
      throw new RuntimeError(
        "ResourceExhausted",
        `streaming: maximum number of in-flight requests (${this.#max}) exceeded`,
      );
    }
    let token = newToken();
    while (this.#entries.has(token)) token = newToken();
    this.#entries.set(token, { request, expiresAt: this.#now() + this.#ttlMs });
    return token;
  }

  /** Removes the token and returns its request, or undefined when it is unknown, used or expired. */
  consume(token: string): T | undefined {
    const entry = this.#entries.get(token);
    if (entry === undefined) return undefined;
    this.#entries.delete(token);
    if (this.#now() > entry.expiresAt) return undefined;
    return entry.request;
  }

  /** Tokens pending (expired ones included until the next insert sweeps them). */
  get size(): number {
    return this.#entries.size;
  }

  #evictExpired(): void {
    const now = this.#now();
    for (const [token, entry] of this.#entries) {
      if (now <= entry.expiresAt) break;
      this.#entries.delete(token);
    }
  }
}

function newToken(): string {
  return randomBytes(16).toString("base64url");
}
