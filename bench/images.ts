/**
 * The images both runtimes pull, all from one local registry: the test fixtures (busybox for the pods,
 * `berth-test/big` for the cold pull) and a pause image for containerd's sandboxes.
 *
 * The pause image is the leanest that behaves: one layer holding the host's static `catatonit` (the same
 * binary berth runs as the infra process of shared-PID pods), entrypoint `/catatonit -P` (pause mode: sleep
 * until a signal, reap zombies, exit at once on SIGTERM/SIGKILL). busybox `sleep infinity` would be a bigger
 * binary, and as PID 1 it ignores SIGTERM, so every StopPodSandbox would wait for the kill timeout.
 *
 * The registry speaks plain HTTP on 127.0.0.1; both runtimes are told so through the same containerd-format
 * hosts directory (`<dir>/<host:port>/hosts.toml` with `[host."http://<host:port>"]`).
 */
import { createHash } from "node:crypto";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { pack as tarPack } from "tar-stream";
import {
  buildFixtureImages,
  type Descriptor,
  type FixtureImage,
  type FixtureImages,
  hostArchitecture,
  MediaTypes,
} from "../test/support/images.js";
import { createAgent, pushImage, type Registry, startRegistry } from "../test/support/registry.js";
import type { Cleanup } from "./cleanup.js";

/** Where things are, once the registry runs and every image is pushed. */
export interface BenchImages {
  registry: Registry;
  /** The containerd-format hosts directory that makes both runtimes speak plain HTTP to the registry. */
  hostsDir: string;
  /** `<host>/berth-test/busybox:latest`: the pod container image. */
  busybox: string;
  /** `<host>/berth-test/big:latest`: the cold-pull image. */
  big: string;
  /** Its manifest, config and layers (compressed), for the MB/s figure and the download floor. */
  bigBlobs: Descriptor[];
  /** Digests of those blobs that the busybox image has too (its base layer). */
  bigShared: string[];
  /** `<host>/berth-bench/pause:latest`. */
  pause: string;
  fixtures: FixtureImages;
}

/** Starts a plain-HTTP registry on 127.0.0.1 and pushes the fixtures (with `big`) and the pause image to it. */
export async function prepareImages(
  dir: string,
  cleanup: Cleanup,
  catatonit = "/usr/bin/catatonit",
): Promise<BenchImages> {
  const fixtures = await buildFixtureImages({ big: true, signal: cleanup.signal });
  const registry = await startRegistry({ signal: cleanup.signal });
  cleanup.defer("stop the registry", () => registry.stop());
  const pause = await buildPauseImage(join(dir, "pause"), catatonit);
  const agent = createAgent(registry);
  try {
    const push = (repo: string, tag: string, image: FixtureImage, blobs: FixtureImages | PauseBlobs) =>
      pushImage(registry, repo, tag, image, { blobs, agent, signal: cleanup.signal });
    await Promise.all([
      push("berth-test/busybox", "latest", fixtures.get("berth-test/busybox:latest"), fixtures),
      push("berth-test/big", "latest", fixtures.get("berth-test/big:latest"), fixtures),
      push("berth-bench/pause", "latest", pause.image, pause),
    ]);
  } finally {
    agent.destroy();
  }
  const hostsDir = join(dir, "certs.d");
  await mkdir(join(hostsDir, registry.host), { recursive: true });
  await writeFile(
    join(hostsDir, registry.host, "hosts.toml"),
    `server = "http://${registry.host}"\n\n[host."http://${registry.host}"]\n  capabilities = ["pull", "resolve"]\n`,
  );
  const big = fixtures.get("berth-test/big:latest").manifests[0];
  if (big === undefined) throw new Error("fixture berth-test/big has no manifest");
  const busyboxBlobs = new Set(
    fixtures
      .get("berth-test/busybox:latest")
      .manifests.flatMap((m) => [m.config.digest, ...m.layers.map((l) => l.digest)]),
  );
  return {
    registry,
    hostsDir,
    busybox: `${registry.host}/berth-test/busybox:latest`,
    big: `${registry.host}/berth-test/big:latest`,
    bigBlobs: [big.descriptor, big.config, ...big.layers],
    bigShared: big.layers.map((l) => l.digest).filter((d) => busyboxBlobs.has(d)),
    pause: `${registry.host}/berth-bench/pause:latest`,
    fixtures,
  };
}

/** A one-image blob store on disk (what pushImage reads). */
interface PauseBlobs {
  image: FixtureImage;
  blobPath(digest: string): string;
}

async function buildPauseImage(dir: string, catatonit: string): Promise<PauseBlobs> {
  const blobDir = join(dir, "blobs");
  await mkdir(blobDir, { recursive: true });
  const blobPath = (digest: string): string => join(blobDir, digest.replace("sha256:", ""));
  const store = async (data: Buffer, mediaType: string): Promise<Descriptor> => {
    const digest = `sha256:${createHash("sha256").update(data).digest("hex")}`;
    await writeFile(blobPath(digest), data);
    return { mediaType, digest, size: data.length };
  };

  // The layer: /catatonit plus the mount-point directories runc expects, fixed mtimes (reproducible).
  const binary = await readFile(catatonit);
  const tar = tarPack();
  const header = { mtime: new Date(0), uid: 0, gid: 0 };
  for (const d of ["dev", "proc", "sys"]) tar.entry({ ...header, name: d, type: "directory", mode: 0o755 });
  tar.entry({ ...header, name: "catatonit", type: "file", mode: 0o755, size: binary.length }, binary);
  tar.finalize();
  const chunks: Buffer[] = [];
  for await (const chunk of tar) chunks.push(chunk as Buffer);
  const raw = Buffer.concat(chunks);
  const diffId = `sha256:${createHash("sha256").update(raw).digest("hex")}`;
  const layer = await store(gzipSync(raw), MediaTypes.ociLayerGzip);
  const config = await store(
    Buffer.from(
      JSON.stringify({
        architecture: hostArchitecture(),
        os: "linux",
        config: { Entrypoint: ["/catatonit", "-P"] },
        rootfs: { type: "layers", diff_ids: [diffId] },
      }),
    ),
    MediaTypes.ociConfig,
  );
  const manifest = await store(
    Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: MediaTypes.ociManifest, config, layers: [layer] })),
    MediaTypes.ociManifest,
  );
  return {
    image: {
      repository: "berth-bench/pause",
      tag: "latest",
      target: manifest,
      manifests: [{ descriptor: manifest, config, layers: [layer], diffIds: [diffId] }],
    },
    blobPath,
  };
}
