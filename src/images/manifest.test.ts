import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { test } from "node:test";
import {
  type ImageConfig,
  imageUser,
  layerCompression,
  MediaType,
  parseImageConfig,
  parseManifest,
} from "./manifest.js";
import { chainIds } from "./pull.js";

const D = (c: string) => `sha256:${c.repeat(64)}`;
const json = (v: unknown) => Buffer.from(JSON.stringify(v));

test("manifests and indexes are recognised by mediaType, Content-Type, or shape", () => {
  const manifest = {
    schemaVersion: 2,
    config: { mediaType: MediaType.ociConfig, digest: D("a"), size: 2 },
    layers: [{ mediaType: MediaType.ociLayerGzip, digest: D("b"), size: 3 }],
  };
  const m = parseManifest(json({ ...manifest, mediaType: MediaType.ociManifest }), undefined);
  assert.equal(m.kind, "manifest");
  assert.equal(
    parseManifest(json(manifest), `${MediaType.dockerManifest}; charset=utf-8`).mediaType,
    MediaType.dockerManifest,
  );
  const index = {
    schemaVersion: 2,
    manifests: [
      {
        mediaType: MediaType.ociManifest,
        digest: D("c"),
        size: 5,
        platform: { os: "linux", architecture: "arm64", variant: "v8" },
      },
    ],
  };
  const i = parseManifest(json(index), "application/json");
  assert.equal(i.kind, "index");
  assert.deepEqual(i.kind === "index" ? i.manifests[0]?.platform : undefined, {
    os: "linux",
    architecture: "arm64",
    variant: "v8",
  });
});

test("Docker schema 1 is refused as unsupported", () => {
  assert.throws(() => parseManifest(json({ schemaVersion: 1, name: "x", fsLayers: [] }), "application/json"), {
    name: "RuntimeError",
    message: /schema 1 is unsupported/,
  });
  assert.throws(() => parseManifest(json({}), MediaType.dockerSchema1Signed), /schema 1 is unsupported/);
});

test("untrusted descriptors are validated", () => {
  const bad = (layer: unknown) =>
    json({
      mediaType: MediaType.ociManifest,
      config: { mediaType: MediaType.ociConfig, digest: D("a"), size: 1 },
      layers: [layer],
    });
  assert.throws(
    () => parseManifest(bad({ mediaType: MediaType.ociLayer, digest: "sha256:xyz", size: 1 }), undefined),
    /malformed digest/,
  );
  assert.throws(
    () => parseManifest(bad({ mediaType: MediaType.ociLayer, digest: D("b"), size: -1 }), undefined),
    /bad size/,
  );
  assert.throws(() => parseManifest(Buffer.from("{"), undefined), /not JSON/);
  assert.throws(
    () => parseManifest(json({ mediaType: "application/vnd.example+json" }), undefined),
    /unsupported manifest media type/,
  );
});

test("layer media types: gzip, zstd and uncompressed, OCI and Docker", () => {
  assert.equal(layerCompression(MediaType.ociLayerGzip), "gzip");
  assert.equal(layerCompression(MediaType.ociLayerZstd), "zstd");
  assert.equal(layerCompression(MediaType.ociLayer), "none");
  assert.equal(layerCompression(MediaType.dockerLayerGzip), "gzip");
  assert.throws(
    () => layerCompression("application/vnd.cncf.helm.chart.content.v1.tar+gzip"),
    /unsupported layer media type/,
  );
});

test("configs must carry diff ids, os and architecture", () => {
  assert.throws(() => parseImageConfig(json({ os: "linux", architecture: "amd64" })), /no rootfs.diff_ids/);
  assert.throws(
    () => parseImageConfig(json({ os: "linux", architecture: "amd64", rootfs: { type: "layers", diff_ids: ["x"] } })),
    /bad diff id/,
  );
  assert.equal(
    parseImageConfig(json({ os: "linux", architecture: "amd64", rootfs: { type: "layers", diff_ids: [D("a")] } })).os,
    "linux",
  );
});

test('chain IDs follow the OCI definition: ChainID(n) = sha256(ChainID(n-1) + " " + DiffID(n))', () => {
  const diffs = [D("1"), D("2"), D("3")];
  const h = (s: string) => `sha256:${createHash("sha256").update(s).digest("hex")}`;
  const c1 = h(`${D("1")} ${D("2")}`);
  assert.deepEqual(chainIds(diffs), [D("1"), c1, h(`${c1} ${D("3")}`)]);
  assert.deepEqual(chainIds([]), []);
});

test("the image user: numeric is a uid, otherwise a username, as containerd reports it", () => {
  const withUser = (User?: string): ImageConfig => ({
    os: "linux",
    architecture: "amd64",
    rootfs: { type: "layers", diff_ids: [] },
    ...(User !== undefined ? { config: { User } } : {}),
  });
  assert.deepEqual(imageUser(withUser()), {});
  assert.deepEqual(imageUser(withUser("")), {});
  assert.deepEqual(imageUser(withUser("1000")), { uid: 1000 });
  assert.deepEqual(imageUser(withUser("0:0")), { uid: 0 });
  assert.deepEqual(imageUser(withUser("nobody")), { username: "nobody" });
  assert.deepEqual(imageUser(withUser("www-data:www-data")), { username: "www-data" });
});
