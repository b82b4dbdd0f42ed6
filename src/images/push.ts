import { createReadStream } from "node:fs";
import type { ContentStore } from "../content/index.js";
import { RuntimeError } from "../errdefs/index.js";
import type { Logger } from "../log/index.js";
import { pullScope, pushScope, type RegistryCredentials } from "./auth.js";
import { type Descriptor, MAX_MANIFEST_SIZE, parseManifest } from "./manifest.js";
import { formatReference, type Reference } from "./reference.js";
import type { RegistryClient, Repository } from "./registry.js";
import { discard, errorDetail, type HttpResponse, redact } from "./transport.js";

/**
 * Pushing one image (the distribution spec's push flow): every blob (layers, then the config) is
 * checked with HEAD first and skipped when the registry has it; else mounted from another
 * repository of the same registry that is known to hold it (`POST uploads/?mount=&from=`, a 201
 * means done); else uploaded, monolithically (`POST uploads/` then `PUT <location>?digest=` with
 * the body) or, for blobs above the chunk size, in chunks (`PATCH <location>` with
 * `Content-Range`, following the new `Location` after each, then an empty `PUT ?digest=`). Then
 * the manifest goes up (`PUT manifests/<tag>` with its media type); an index goes up after its
 * children, each by digest.
 *
 * The registry must store exactly what berth has: a manifest PUT answered with another
 * `Docker-Content-Digest` fails the push. Bytes are read from the content store as they go; no
 * hashing happens here (every blob was verified when it was stored).
 */

/** Where one blob of a push is. */
export type PushState = "waiting" | "pushing" | "exists" | "mounted" | "done";

/** One progress event of one blob. */
export interface PushProgress {
  digest: string;
  total: number;
  done: number;
  state: PushState;
}

/** What to push: the manifest or index on top, and every manifest below it with its blobs. */
export interface PushPlan {
  /** The manifest or index the tag will point at. */
  target: Descriptor;
  /** Manifests in push order (an index's children first, the target last). */
  manifests: Descriptor[];
  /** Configs and layers, deduplicated, layers first. */
  blobs: Descriptor[];
}

/** Options of one push. */
export interface PushOptions {
  credentials?: RegistryCredentials;
  signal?: AbortSignal;
  onProgress?: (event: PushProgress) => void;
  /** Per blob digest: other repositories (paths) of the same registry that hold it. */
  mountSources?: (digest: string) => string[];
}

/** Dependencies and settings of a {@link Pusher}. */
export interface PusherOptions {
  content: ContentStore;
  registry: RegistryClient;
  log: Logger;
  /** Blobs larger than this are uploaded in chunks of this size; 0 = always in one request. */
  chunkBytes: number;
  /** Blobs uploaded at once (default 3). */
  maxConcurrentUploads?: number;
}

/** Pushes images; see the module comment. */
export class Pusher {
  constructor(private readonly o: PusherOptions) {}

  /** Pushes `plan` as `ref` (its tag, `latest` when none); resolves to the target's digest. */
  async push(ref: Reference, plan: PushPlan, options: PushOptions = {}): Promise<string> {
    const { signal } = options;
    const name = formatReference(ref);
    try {
      const repo = await this.o.registry.repository(
        ref,
        options.credentials ? { credentials: options.credentials } : {},
      );
      const progress = new Map(
        plan.blobs.map((b) => [b.digest, { digest: b.digest, total: b.size, done: 0, state: "waiting" as PushState }]),
      );
      const emit = (digest: string, patch: Partial<PushProgress>) => {
        const p = progress.get(digest);
        if (p === undefined) return;
        Object.assign(p, patch);
        try {
          options.onProgress?.({ ...p });
        } catch (err) {
          this.o.log.warn({ err }, "push progress callback failed");
        }
      };
      for (const b of plan.blobs) emit(b.digest, {});
      await runLimited(plan.blobs, this.o.maxConcurrentUploads ?? 3, (blob) =>
        this.pushBlob(repo, blob, { signal, emit, sources: options.mountSources?.(blob.digest) ?? [] }),
      );
      for (const m of plan.manifests) {
        const reference = m.digest === plan.target.digest ? (ref.tag ?? "latest") : m.digest;
        await this.putManifest(repo, m, reference, signal);
      }
      return plan.target.digest;
    } catch (err) {
      if (signal?.aborted) throw new RuntimeError("Canceled", `push ${name}: canceled`, { cause: signal.reason });
      if (err instanceof RuntimeError) throw new RuntimeError(err.kind, `push ${name}: ${err.message}`, { cause: err });
      throw new RuntimeError("Internal", `push ${name}: ${(err as Error).message ?? String(err)}`, { cause: err });
    }
  }

  private async pushBlob(
    repo: Repository,
    blob: Descriptor,
    o: {
      signal: AbortSignal | undefined;
      emit: (digest: string, patch: Partial<PushProgress>) => void;
      sources: string[];
    },
  ): Promise<void> {
    const { signal, emit } = o;
    const sig = signal ? { signal } : {};
    const what = `blob ${blob.digest}`;
    const head = await repo.pushRequest("HEAD", ["blobs", blob.digest], sig);
    await discard(head);
    if (head.status === 200) {
      emit(blob.digest, { state: "exists", done: blob.size });
      return;
    }
    if (head.status !== 404) throw await unexpected(head, `check ${what}`);

    let started: HttpResponse | undefined;
    for (const from of o.sources.filter((s) => s !== repo.ref.path).slice(0, 3)) {
      const res = await repo.pushRequest("POST", ["blobs", "uploads", ""], {
        query: { mount: blob.digest, from },
        scopes: [pushScope(repo.ref.path), pullScope(from)],
        ...sig,
      });
      if (res.status === 201) {
        await discard(res);
        emit(blob.digest, { state: "mounted", done: blob.size });
        return;
      }
      if (res.status !== 202) {
        // A registry that refuses the mount request itself: upload instead.
        this.o.log.debug({ blob: blob.digest, from, status: res.status }, "cross-repository mount refused");
        await discard(res);
        continue;
      }
      // 202: the registry declined the mount and opened an ordinary upload instead.
      started = res;
      break;
    }
    started ??= await repo.pushRequest("POST", ["blobs", "uploads", ""], sig);
    let location = await uploadLocation(started, `start upload of ${what}`);
    emit(blob.digest, { state: "pushing", done: 0 });
    const path = this.o.content.blobPath(blob.digest);
    const chunk = this.o.chunkBytes;
    const octets = { "content-type": "application/octet-stream" };
    let put: HttpResponse;
    if (chunk > 0 && blob.size > chunk) {
      for (let start = 0; start < blob.size; start += chunk) {
        const end = Math.min(blob.size, start + chunk) - 1;
        const res = await repo.pushRequest("PATCH", location, {
          headers: { ...octets, "content-length": String(end - start + 1), "content-range": `${start}-${end}` },
          body: () => counted(createReadStream(path, { start, end }), start, (n) => emit(blob.digest, { done: n })),
          deadline: false,
          ...sig,
        });
        location = await uploadLocation(res, `upload chunk ${start}-${end} of ${what}`);
      }
      put = await repo.pushRequest("PUT", location, { query: { digest: blob.digest }, ...sig });
    } else {
      put = await repo.pushRequest("PUT", location, {
        query: { digest: blob.digest },
        headers: { ...octets, "content-length": String(blob.size) },
        body: () => counted(createReadStream(path), 0, (n) => emit(blob.digest, { done: n })),
        deadline: false,
        ...sig,
      });
    }
    if (put.status !== 201) throw await unexpected(put, `upload ${what}`);
    await discard(put);
    emit(blob.digest, { state: "done", done: blob.size });
  }

  private async putManifest(
    repo: Repository,
    manifest: Descriptor,
    reference: string,
    signal: AbortSignal | undefined,
  ): Promise<void> {
    const bytes = await this.o.content.readBlob(manifest.digest);
    const res = await repo.pushRequest("PUT", ["manifests", reference], {
      headers: { "content-type": manifest.mediaType },
      body: bytes,
      ...(signal ? { signal } : {}),
    });
    if (res.status !== 201) throw await unexpected(res, `put manifest ${reference}`);
    await discard(res);
    const stored = headerOf(res, "docker-content-digest");
    if (stored !== undefined && stored !== manifest.digest) {
      throw new RuntimeError(
        "FailedPrecondition",
        `put manifest ${reference}: the registry stored ${stored}, not ${manifest.digest}`,
      );
    }
  }
}

/**
 * The push plan of an image whose top blob is `top` (a manifest or an index) and whose platform
 * manifest is `manifestDigest`: the whole index when every manifest under it, and their blobs,
 * are in the store; else the platform manifest alone (an image pulled for one platform keeps only
 * that platform's blobs, and a registry refuses an index whose children are missing).
 */
export async function planPush(content: ContentStore, top: string, manifestDigest: string): Promise<PushPlan> {
  const describe = async (digest: string): Promise<{ desc: Descriptor; blobs: Descriptor[]; children: string[] }> => {
    const info = await content.info(digest);
    if (info === undefined) throw new RuntimeError("NotFound", `manifest ${digest} is not stored`);
    if (info.size > MAX_MANIFEST_SIZE) throw new RuntimeError("InvalidArgument", `manifest ${digest} is too large`);
    const doc = parseManifest(await content.readBlob(digest), undefined);
    const desc = { mediaType: doc.mediaType, digest, size: info.size };
    if (doc.kind === "index") return { desc, blobs: [], children: doc.manifests.map((m) => m.digest) };
    return { desc, blobs: [...doc.layers, doc.config], children: [] };
  };
  const stored = async (blobs: Descriptor[]) =>
    (await Promise.all(blobs.map((b) => content.info(b.digest)))).every((i) => i !== undefined);
  const platform = await describe(manifestDigest);
  const single: PushPlan = { target: platform.desc, manifests: [platform.desc], blobs: dedupe(platform.blobs) };
  if (top === manifestDigest || (await content.info(top)) === undefined) return single;
  const index = await describe(top).catch(() => undefined);
  if (index === undefined || index.children.length === 0) return single;
  const children: Descriptor[] = [];
  const blobs: Descriptor[] = [];
  for (const child of index.children) {
    const c = await describe(child).catch(() => undefined);
    if (c === undefined || c.children.length > 0 || !(await stored(c.blobs))) return single;
    children.push(c.desc);
    blobs.push(...c.blobs);
  }
  return { target: index.desc, manifests: [...children, index.desc], blobs: dedupe(blobs) };
}

function dedupe(blobs: Descriptor[]): Descriptor[] {
  const seen = new Map<string, Descriptor>();
  for (const b of blobs) if (!seen.has(b.digest)) seen.set(b.digest, b);
  return [...seen.values()];
}

/** The upload URL a 202 names, resolved against the request (Location may be relative). */
async function uploadLocation(res: HttpResponse, what: string): Promise<URL> {
  const location = headerOf(res, "location");
  if (res.status !== 202 || location === undefined) {
    if (res.status === 202) await discard(res);
    throw await unexpected(res, what, res.status === 202 ? "no Location header" : undefined);
  }
  await discard(res);
  try {
    const url = new URL(location, res.url);
    if (url.protocol !== "http:" && url.protocol !== "https:") throw new Error(url.protocol);
    return url;
  } catch {
    throw new RuntimeError("Unavailable", `${what}: bad upload location ${JSON.stringify(location.slice(0, 200))}`);
  }
}

async function unexpected(res: HttpResponse, what: string, why?: string): Promise<RuntimeError> {
  const detail = why ?? (await errorDetail(res));
  const kind =
    res.status === 401
      ? "Unauthenticated"
      : res.status === 403
        ? "PermissionDenied"
        : res.status === 404
          ? "NotFound"
          : res.status === 429
            ? "ResourceExhausted"
            : "Unavailable";
  return new RuntimeError(
    kind,
    `${what}: ${redact(res.url)}: unexpected status ${res.status}${detail ? `: ${detail}` : ""}`,
  );
}

function headerOf(res: HttpResponse, name: string): string | undefined {
  const v = res.headers[name];
  return Array.isArray(v) ? v[0] : v;
}

/** Passes `source` through, reporting the running byte count (from `offset`) about every 256 KiB. */
async function* counted(
  source: AsyncIterable<Uint8Array>,
  offset: number,
  onBytes: (n: number) => void,
): AsyncGenerator<Uint8Array> {
  let n = offset;
  let reported = offset;
  for await (const chunk of source) {
    n += chunk.length;
    if (n - reported >= 256 * 1024) {
      reported = n;
      onBytes(n);
    }
    yield chunk;
  }
  onBytes(n);
}

/** Runs `fn` over `items`, at most `n` at once; the first failure stops new starts and is thrown once all settle. */
async function runLimited<T>(items: T[], n: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  let failed: unknown;
  const lane = async () => {
    while (failed === undefined && next < items.length) {
      const item = items[next++] as T;
      try {
        await fn(item);
      } catch (err) {
        failed ??= err;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(n, items.length)) }, lane));
  if (failed !== undefined) throw failed;
}
