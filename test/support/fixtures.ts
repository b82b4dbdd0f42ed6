/**
 * The one entry point tests use for images: a plain-HTTP registry and a TLS + basic-auth registry, both local,
 * both holding every fixture image of ./images.ts.
 *
 * Lifecycle: the first ensureFixtureRegistry() call in a process builds (or reuses from the on-disk cache) the
 * fixture blobs, starts both registries and pushes every image to both; later calls in the same process return
 * the same promise. stop() (call it from an `after` hook) stops both and lets the next call start afresh; a
 * registry still running when the process exits is killed by registry.ts's exit hook. Under `node --test` each
 * test file is its own process, so each file gets its own pair of registries (about a second to start and push).
 */
import { randomBytes } from "node:crypto";
import {
  buildFixtureImages,
  type Descriptor,
  type FixtureImage,
  type FixtureImages,
  type FixtureManifest,
  hostArchitecture,
  MediaTypes,
  splitReference,
} from "./images.js";
import { type Credentials, createAgent, pushImage, type Registry, startRegistry } from "./registry.js";

/** What a test needs to know about one fixture image. */
export interface FixtureImageInfo {
  /** e.g. `berth-test/busybox`. */
  repository: string;
  /** e.g. `latest`. */
  tag: string;
  /** `repository:tag` (no registry host; prefix a registry's `host` and a slash to pull it). */
  reference: string;
  /** Media type of what the tag resolves to (manifest, index or manifest list). */
  mediaType: string;
  /** Digest of what the tag resolves to: the manifest, or for multi-platform images the index. */
  manifestDigest: string;
  /**
   * Config digest of the image a pull on this host resolves to (for an index, the child whose architecture is
   * the host's); a runtime reports it as the image ID.
   */
  configDigest: string;
  /** Same as configDigest: the image ID, `sha256:<hex>`. */
  imageId: string;
  /** Layer digests (compressed blobs) of that image, base first. */
  layers: string[];
  /** Uncompressed layer digests (rootfs.diff_ids) of that image, base first. */
  diffIds: string[];
  /** Every manifest of the image with its config and layers (index children carry their platform). */
  manifests: FixtureManifest[];
  /** The descriptor the tag resolves to. */
  target: Descriptor;
}

/** Two running registries with every fixture pushed to both. */
export interface FixtureRegistry {
  /** Plain HTTP, no auth: `host` is `127.0.0.1:<port>`, `url` is `http://127.0.0.1:<port>`. */
  plain: Registry;
  /** HTTPS with a self-signed CA ({@link caPath}) and basic auth ({@link credentials}). */
  secure: Registry;
  /** Basic-auth credentials of `secure`. */
  credentials: Credentials;
  /** PEM CA certificate that signed `secure`'s certificate (valid for IP 127.0.0.1 and localhost). */
  caPath: string;
  /** Every pushed fixture, keyed by `repository:tag` (e.g. `berth-test/busybox:latest`). */
  images: Record<string, FixtureImageInfo>;
  /** The fixture `reference` (`repository[:tag]`, tag defaulting to latest); throws if it was not pushed. */
  image(reference: string): FixtureImageInfo;
  /** The built blobs (an OCI image layout on disk), e.g. to import an image without a registry. */
  blobs: FixtureImages;
  /** How long each phase took, in milliseconds (start and push of both registries ran concurrently). */
  timings: { buildMs: number; startMs: number; pushMs: number; totalMs: number };
  /** Stops both registries and removes their directories; idempotent. */
  stop(): Promise<void>;
}

/** Options of {@link ensureFixtureRegistry}. */
export interface EnsureFixtureRegistryOptions {
  /** Also build and push `berth-test/big` (~100 MB); only the benchmark needs it. */
  big?: boolean;
  /** Fixture blob cache; default images.ts's DEFAULT_FIXTURES_DIR. */
  cacheDir?: string;
  signal?: AbortSignal;
}

let current: { big: boolean; promise: Promise<FixtureRegistry> } | undefined;

/**
 * Resolves to this process's fixture registries, starting them and pushing every fixture on the first call.
 * A call with `big: true` after one without restarts nothing: it pushes `big` to the running registries.
 * If start-up fails, nothing is left running and the next call tries again.
 */
export function ensureFixtureRegistry(options: EnsureFixtureRegistryOptions = {}): Promise<FixtureRegistry> {
  const big = options.big === true;
  if (current !== undefined && (current.big || !big)) return current.promise;
  const previous = current;
  const promise = previous === undefined ? startFixtureRegistry(options) : addBig(previous.promise, options);
  const entry = { big, promise };
  current = entry;
  promise.catch(() => {
    // A failed upgrade leaves the previous pair in place; a failed start leaves nothing.
    if (current === entry) current = previous;
  });
  return promise;
}

/** Pushes `big` to an already running pair. */
async function addBig(
  running: Promise<FixtureRegistry>,
  options: EnsureFixtureRegistryOptions,
): Promise<FixtureRegistry> {
  const reg = await running;
  const blobs = await buildFixtureImages(buildOptions(options, true));
  const missing = blobs.images.filter((i) => reg.images[`${i.repository}:${i.tag}`] === undefined);
  await pushAll(reg.plain, reg.secure, blobs, missing, options.signal);
  const images = describeAll(blobs.images);
  return { ...reg, blobs, images, image: lookup(images) };
}

function buildOptions(options: EnsureFixtureRegistryOptions, big: boolean): Parameters<typeof buildFixtureImages>[0] {
  return {
    big,
    ...(options.cacheDir !== undefined ? { cacheDir: options.cacheDir } : {}),
    ...(options.signal !== undefined ? { signal: options.signal } : {}),
  };
}

async function startFixtureRegistry(options: EnsureFixtureRegistryOptions): Promise<FixtureRegistry> {
  const t0 = performance.now();
  const blobs = await buildFixtureImages(buildOptions(options, options.big === true));
  const t1 = performance.now();
  const credentials: Credentials = { username: "berth", password: randomBytes(12).toString("hex") };
  const signal = options.signal;
  const started = await Promise.allSettled([
    startRegistry(signal ? { signal } : {}),
    startRegistry({ tls: true, auth: credentials, ...(signal ? { signal } : {}) }),
  ]);
  const [plainResult, secureResult] = started;
  if (plainResult?.status !== "fulfilled" || secureResult?.status !== "fulfilled") {
    await Promise.all(started.map((r) => (r.status === "fulfilled" ? r.value.stop() : undefined)));
    const failed = started.find((r): r is PromiseRejectedResult => r.status === "rejected");
    throw new Error(
      `start fixture registries: ${failed ? String(failed.reason instanceof Error ? failed.reason.message : failed.reason) : "unknown"}`,
    );
  }
  const plain = plainResult.value;
  const secure = secureResult.value;
  const t2 = performance.now();
  try {
    await pushAll(plain, secure, blobs, blobs.images, signal);
  } catch (err) {
    await Promise.all([plain.stop(), secure.stop()]);
    throw err;
  }
  const t3 = performance.now();
  const images = describeAll(blobs.images);
  const registry: FixtureRegistry = {
    plain,
    secure,
    credentials,
    caPath: secure.caPath ?? "",
    images,
    image: lookup(images),
    blobs,
    timings: { buildMs: t1 - t0, startMs: t2 - t1, pushMs: t3 - t2, totalMs: t3 - t0 },
    async stop() {
      if (current?.promise !== undefined && (await current.promise.catch(() => undefined))?.plain === plain)
        current = undefined;
      await Promise.all([plain.stop(), secure.stop()]);
    },
  };
  return registry;
}

async function pushAll(
  plain: Registry,
  secure: Registry,
  blobs: FixtureImages,
  images: FixtureImage[],
  signal: AbortSignal | undefined,
): Promise<void> {
  await Promise.all(
    [plain, secure].map(async (registry) => {
      const agent = createAgent(registry);
      try {
        // Tags of one repository go one after another so that their shared blobs are uploaded once (the later
        // tags find them with HEAD); repositories go in parallel.
        const byRepo = new Map<string, FixtureImage[]>();
        for (const image of images) byRepo.set(image.repository, [...(byRepo.get(image.repository) ?? []), image]);
        await Promise.all(
          [...byRepo.values()].map(async (tags) => {
            for (const image of tags) {
              await pushImage(registry, image.repository, image.tag, image, {
                blobs,
                agent,
                ...(signal ? { signal } : {}),
              });
            }
          }),
        );
      } finally {
        agent.destroy();
      }
    }),
  );
}

function describeAll(images: FixtureImage[]): Record<string, FixtureImageInfo> {
  const out: Record<string, FixtureImageInfo> = {};
  for (const image of images) out[`${image.repository}:${image.tag}`] = describe(image);
  return out;
}

function lookup(images: Record<string, FixtureImageInfo>): (reference: string) => FixtureImageInfo {
  return (reference) => {
    const [repository, tag] = splitReference(reference);
    const info = images[`${repository}:${tag}`];
    if (info === undefined) throw new Error(`fixture image ${repository}:${tag}: not pushed`);
    return info;
  };
}

/** The manifest a pull on this host would pick: the only one, or the index child for the host architecture. */
function hostManifest(image: FixtureImage): FixtureManifest {
  const isIndex =
    image.target.mediaType === MediaTypes.ociIndex || image.target.mediaType === MediaTypes.dockerManifestList;
  const arch = hostArchitecture();
  const chosen = isIndex
    ? image.manifests.find((m) => m.descriptor.platform?.architecture === arch)
    : image.manifests[0];
  if (chosen === undefined)
    throw new Error(`fixture image ${image.repository}:${image.tag}: no manifest for linux/${arch}`);
  return chosen;
}

function describe(image: FixtureImage): FixtureImageInfo {
  const m = hostManifest(image);
  return {
    repository: image.repository,
    tag: image.tag,
    reference: `${image.repository}:${image.tag}`,
    mediaType: image.target.mediaType,
    manifestDigest: image.target.digest,
    configDigest: m.config.digest,
    imageId: m.config.digest,
    layers: m.layers.map((l) => l.digest),
    diffIds: [...m.diffIds],
    manifests: image.manifests,
    target: image.target,
  };
}
