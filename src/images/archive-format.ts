/**
 * The image archive formats `berth save` writes and `berth load` reads, and the messages between
 * berthd's main thread (archive.ts) and the archive worker (archive-worker.ts).
 *
 * OCI image layout (format "oci"; skopeo's `oci-archive:`), as a tar:
 *
 *   oci-layout              {"imageLayoutVersion":"1.0.0"}
 *   index.json              one manifest descriptor per name, annotated with the full name
 *                           (`io.containerd.image.name`) and its tag (`org.opencontainers.image.ref.name`)
 *   blobs/sha256/<hex>      manifests, configs and layers as stored (compressed)
 *
 * docker-archive (format "docker", `docker save`/`docker load`, skopeo's `docker-archive:`):
 *
 *   manifest.json           [{"Config": "blobs/sha256/<hex>", "RepoTags": ["web:dev"], "Layers": [...]}]
 *   repositories            {"web": {"dev": "<top layer diff id hex>"}}
 *   blobs/sha256/<hex>      the config, and each layer uncompressed (its name is its diff ID)
 *
 * Loading accepts both, and the older docker layout (`<id>/layer.tar`, symlinks between layer
 * directories): what is read is what manifest.json or index.json names, through symlinks and
 * hard links resolved inside the archive by name, never on disk.
 */

/** Archive formats. */
export type ArchiveFormat = "docker" | "oci";

/** A blob to write into a saved archive. */
export interface SaveBlob {
  digest: string;
  mediaType: string;
  size: number;
  /** Its file in the content store. */
  path: string;
}

/** One image of a save: its names and what its platform manifest references. */
export interface SaveImage {
  /** Normalised names (`docker.io/library/web:dev`), with their familiar forms for manifest.json. */
  names: { full: string; familiar: string; tag: string }[];
  manifest: SaveBlob;
  config: SaveBlob;
  layers: SaveBlob[];
  diffIds: string[];
}

/** The worker's `save` job: write the archive to `out`. */
export interface SaveJob {
  out: string;
  format: ArchiveFormat;
  images: SaveImage[];
}

/** Limits on an archive being loaded (untrusted input). */
export interface LoadLimits {
  /** Most tar entries. */
  maxEntries: number;
  /** Most bytes of manifest.json, index.json and manifests. */
  maxManifestBytes: number;
  /** Most bytes of one image config. */
  maxConfigBytes: number;
  /** Most images in one archive. */
  maxImages: number;
}

/** The worker's `load` job: read the tar at `archive`, stage its verified blobs in `staging/<hex>`. */
export interface LoadJob {
  archive: string;
  staging: string;
  limits: LoadLimits;
  /** The platform to pick from an index, `os/arch[/variant]`. */
  platform: string;
}

/** A descriptor as the load job reports it. */
export interface LoadedDescriptor {
  digest: string;
  mediaType: string;
  size: number;
}

/** One image found in a loaded archive, every blob of it verified and staged. */
export interface LoadedImage {
  /** Names as the archive gives them (validated and normalised by the caller). */
  names: string[];
  /** The manifest (a fresh Docker schema 2 one for a docker-archive). */
  manifest: LoadedDescriptor;
  config: LoadedDescriptor;
  layers: LoadedDescriptor[];
  diffIds: string[];
}

/** What the load job found. */
export interface LoadResult {
  format: ArchiveFormat;
  images: LoadedImage[];
  /** Every staged blob (file `staging/<hex>`), deduplicated. */
  blobs: { digest: string; size: number }[];
}
