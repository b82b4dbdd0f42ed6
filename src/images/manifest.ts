import { RuntimeError } from "../errdefs/index.js";
import type { Platform } from "./platform.js";
import { isSha256Digest } from "./reference.js";

/**
 * OCI image-spec and Docker image manifest v2 schema 2 documents: descriptors, manifests,
 * indexes (manifest lists) and image configs, reduced to the fields berth reads, plus the
 * validation that turns untrusted registry JSON into these types.
 */

/** Media types berth understands. Docker schema 2 types are accepted wherever their OCI twin is. */
export const MediaType = {
  ociManifest: "application/vnd.oci.image.manifest.v1+json",
  ociIndex: "application/vnd.oci.image.index.v1+json",
  ociConfig: "application/vnd.oci.image.config.v1+json",
  ociLayer: "application/vnd.oci.image.layer.v1.tar",
  ociLayerGzip: "application/vnd.oci.image.layer.v1.tar+gzip",
  ociLayerZstd: "application/vnd.oci.image.layer.v1.tar+zstd",
  ociLayerNondistributable: "application/vnd.oci.image.layer.nondistributable.v1.tar",
  ociLayerNondistributableGzip: "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
  ociLayerNondistributableZstd: "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
  dockerManifest: "application/vnd.docker.distribution.manifest.v2+json",
  dockerManifestList: "application/vnd.docker.distribution.manifest.list.v2+json",
  dockerConfig: "application/vnd.docker.container.image.v1+json",
  dockerLayer: "application/vnd.docker.image.rootfs.diff.tar",
  dockerLayerGzip: "application/vnd.docker.image.rootfs.diff.tar.gzip",
  dockerLayerForeignGzip: "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
  dockerSchema1: "application/vnd.docker.distribution.manifest.v1+json",
  dockerSchema1Signed: "application/vnd.docker.distribution.manifest.v1+prettyjws",
} as const;

/** The Accept list sent for manifests: OCI first, then Docker schema 2 (never schema 1). */
export const MANIFEST_ACCEPT: readonly string[] = [
  MediaType.ociIndex,
  MediaType.ociManifest,
  MediaType.dockerManifestList,
  MediaType.dockerManifest,
];

/** Manifests and indexes are read into memory, so their size is capped (containerd uses 4 MiB too). */
export const MAX_MANIFEST_SIZE = 4 * 1024 * 1024;
/** Configs are read into memory as well. */
export const MAX_CONFIG_SIZE = 16 * 1024 * 1024;

/** How a layer's bytes are compressed, derived from its media type. */
export type Compression = "gzip" | "zstd" | "none";

const LAYER_COMPRESSION: Record<string, Compression> = {
  [MediaType.ociLayer]: "none",
  [MediaType.ociLayerGzip]: "gzip",
  [MediaType.ociLayerZstd]: "zstd",
  [MediaType.ociLayerNondistributable]: "none",
  [MediaType.ociLayerNondistributableGzip]: "gzip",
  [MediaType.ociLayerNondistributableZstd]: "zstd",
  [MediaType.dockerLayer]: "none",
  [MediaType.dockerLayerGzip]: "gzip",
  [MediaType.dockerLayerForeignGzip]: "gzip",
};

/** An OCI content descriptor. `digest` is validated as `sha256:<hex>`, `size` as a safe non-negative integer. */
export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  platform?: Platform;
  urls?: string[];
  annotations?: Record<string, string>;
}

/** An image manifest (OCI or Docker schema 2). */
export interface ImageManifest {
  kind: "manifest";
  mediaType: string;
  config: Descriptor;
  layers: Descriptor[];
}

/** An image index (OCI) or manifest list (Docker). */
export interface ImageIndex {
  kind: "index";
  mediaType: string;
  manifests: Descriptor[];
}

/** The runtime part of an image config: what a container inherits (Docker's field names). */
export interface ContainerConfig {
  User?: string;
  ExposedPorts?: Record<string, object>;
  Env?: string[];
  Entrypoint?: string[] | null;
  Cmd?: string[] | null;
  Volumes?: Record<string, object>;
  WorkingDir?: string;
  Labels?: Record<string, string>;
  StopSignal?: string;
  ArgsEscaped?: boolean;
}

/** An OCI image config (also what Docker's `container.image.v1` is). */
export interface ImageConfig {
  created?: string;
  author?: string;
  architecture: string;
  os: string;
  variant?: string;
  "os.version"?: string;
  config?: ContainerConfig;
  rootfs: { type: string; diff_ids: string[] };
  history?: { created?: string; created_by?: string; empty_layer?: boolean; comment?: string }[];
}

/** The compression of a layer media type; throws InvalidArgument for anything that is not a layer tar. */
export function layerCompression(mediaType: string): Compression {
  const c = LAYER_COMPRESSION[mediaType];
  if (c === undefined)
    throw new RuntimeError("InvalidArgument", `unsupported layer media type ${JSON.stringify(mediaType)}`);
  return c;
}

function bad(what: string, why: string): RuntimeError {
  return new RuntimeError("InvalidArgument", `invalid ${what}: ${why}`);
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** Validates one descriptor from untrusted JSON. */
export function parseDescriptor(v: unknown, what: string): Descriptor {
  if (!isObject(v)) throw bad(what, "descriptor is not an object");
  const { mediaType, digest, size, platform, urls, annotations } = v;
  if (typeof mediaType !== "string") throw bad(what, "descriptor has no mediaType");
  if (typeof digest !== "string" || !isSha256Digest(digest)) {
    throw bad(what, `unsupported or malformed digest ${JSON.stringify(digest)}`);
  }
  if (typeof size !== "number" || !Number.isSafeInteger(size) || size < 0) throw bad(what, `bad size for ${digest}`);
  const d: Descriptor = { mediaType, digest, size };
  if (isObject(platform) && typeof platform.os === "string" && typeof platform.architecture === "string") {
    const p: Platform = { os: platform.os, architecture: platform.architecture };
    if (typeof platform.variant === "string" && platform.variant !== "") p.variant = platform.variant;
    if (typeof platform["os.version"] === "string" && platform["os.version"] !== "")
      p.osVersion = platform["os.version"];
    d.platform = p;
  }
  if (Array.isArray(urls) && urls.every((u) => typeof u === "string")) d.urls = urls as string[];
  if (isObject(annotations)) d.annotations = annotations as Record<string, string>;
  return d;
}

/**
 * Parses a manifest or index fetched with `contentType` (the registry's Content-Type, or the
 * parent descriptor's mediaType). The body's own `mediaType` wins when present; without either,
 * the shape decides (`manifests` → index, `config`+`layers` → manifest), as containerd does.
 * Docker schema 1 is refused with a clear Unimplemented error.
 */
export function parseManifest(bytes: Uint8Array, contentType: string | undefined): ImageManifest | ImageIndex {
  const ct = contentType?.split(";")[0]?.trim();
  if (ct === MediaType.dockerSchema1 || ct === MediaType.dockerSchema1Signed) throw schema1();
  let doc: unknown;
  try {
    doc = JSON.parse(Buffer.from(bytes).toString("utf8"));
  } catch (err) {
    throw bad("manifest", `not JSON: ${(err as Error).message}`);
  }
  if (!isObject(doc)) throw bad("manifest", "not a JSON object");
  if (doc.schemaVersion === 1) throw schema1();
  const mediaType =
    typeof doc.mediaType === "string" && doc.mediaType !== ""
      ? doc.mediaType
      : ct && ct !== "application/json" && ct !== "application/octet-stream"
        ? ct
        : Array.isArray(doc.manifests)
          ? MediaType.ociIndex
          : MediaType.ociManifest;
  switch (mediaType) {
    case MediaType.ociIndex:
    case MediaType.dockerManifestList: {
      if (!Array.isArray(doc.manifests)) throw bad("index", "no manifests array");
      return { kind: "index", mediaType, manifests: doc.manifests.map((m) => parseDescriptor(m, "index")) };
    }
    case MediaType.ociManifest:
    case MediaType.dockerManifest: {
      if (!Array.isArray(doc.layers)) throw bad("manifest", "no layers array");
      return {
        kind: "manifest",
        mediaType,
        config: parseDescriptor(doc.config, "manifest config"),
        layers: doc.layers.map((l) => parseDescriptor(l, "manifest layer")),
      };
    }
    case MediaType.dockerSchema1:
    case MediaType.dockerSchema1Signed:
      throw schema1();
    default:
      throw new RuntimeError("InvalidArgument", `unsupported manifest media type ${JSON.stringify(mediaType)}`);
  }
}

function schema1(): RuntimeError {
  return new RuntimeError(
    "Unimplemented",
    "docker image manifest schema 1 is unsupported (deprecated since 2017): push the image again with a current client",
  );
}

/** Parses and validates an image config: it must name os, architecture and the layers' diff IDs. */
export function parseImageConfig(bytes: Uint8Array): ImageConfig {
  let doc: unknown;
  try {
    doc = JSON.parse(Buffer.from(bytes).toString("utf8"));
  } catch (err) {
    throw bad("image config", `not JSON: ${(err as Error).message}`);
  }
  if (!isObject(doc)) throw bad("image config", "not a JSON object");
  const rootfs = doc.rootfs;
  if (!isObject(rootfs) || !Array.isArray(rootfs.diff_ids)) throw bad("image config", "no rootfs.diff_ids");
  for (const d of rootfs.diff_ids) {
    if (typeof d !== "string" || !isSha256Digest(d)) throw bad("image config", `bad diff id ${JSON.stringify(d)}`);
  }
  if (typeof doc.os !== "string" || typeof doc.architecture !== "string")
    throw bad("image config", "no os or architecture");
  return doc as unknown as ImageConfig;
}

/**
 * The user an image runs as, split the way containerd's CRI reports it in ImageStatus: a
 * numeric USER (`1000` or `1000:1000`) is a uid, anything else a username; no USER is neither.
 */
export function imageUser(config: ImageConfig): { uid?: number; username?: string } {
  const user = (config.config?.User ?? "").split(":")[0] ?? "";
  if (user === "") return {};
  return /^\d+$/.test(user) && Number.isSafeInteger(Number(user)) ? { uid: Number(user) } : { username: user };
}
