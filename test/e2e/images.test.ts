/**
 * The CRI ImageService end to end: a real berthd pulling from the fixture registry (Debian's docker-registry on
 * 127.0.0.1), unpacking into overlay snapshots, and running containers on them (runc, conmon). Registry
 * features (mirrors, TLS and auth, corrupt and hostile content, shared downloads) are in images-registry.test.ts.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { Code, ConnectError } from "@connectrpc/connect";
import { NamespaceMode } from "../../src/api/gen/runtime/v1/api_pb.js";
import { isRoot, removeTestDir, startBerthd, type TestDaemon } from "../support/berthd.js";
import { buildImage } from "../support/build-image.js";
import { ensureFixtureRegistry, type FixtureImageInfo, type FixtureRegistry } from "../support/fixtures.js";
import { pushImage } from "../support/registry.js";
import { skipUnlessCi } from "../support/skip.js";

/** No CNI (pods here use the host network) and no host registry configuration. */
const CONFIG = `[cni]\nconf_dir = "{dir}/cni"\n[registry]\nconfig_path = "{dir}/certs.d"\n`;

const skip = skipUnlessCi(isRoot() ? false : "needs root (overlay mounts, runc, conmon)");

describe("image service end to end", { skip }, () => {
  let reg: FixtureRegistry;
  /** Pulls, status and listing share one daemon; tests that count files or restart start their own. */
  let d: TestDaemon;
  const ref = (name: string) => `${reg.plain.host}/${reg.image(name).reference}`;
  const repo = (name: string) => `${reg.plain.host}/${reg.image(name).repository}`;
  const status = async (daemon: TestDaemon, image: string) =>
    (await daemon.client.image.imageStatus({ image: { image } })).image;

  before(async () => {
    reg = await ensureFixtureRegistry();
    d = await startBerthd({ config: CONFIG });
  });
  after(async () => {
    await d?.cleanup();
    await reg?.stop();
  });

  test("PullImage by tag returns the image ID and records the tag and the repo digest", async (t) => {
    const info = reg.image("berth-test/busybox");
    const started = performance.now();
    const { imageRef } = await d.client.image.pullImage({ image: { image: ref("berth-test/busybox") } });
    t.diagnostic(`cold pull of berth-test/busybox: ${(performance.now() - started).toFixed(0)} ms`);
    assert.equal(imageRef, info.imageId);
    assert.equal(imageRef, info.configDigest);
    assert.match(imageRef, /^sha256:[a-f0-9]{64}$/);
    const image = await status(d, ref("berth-test/busybox"));
    assert.equal(image?.id, info.imageId);
    assert.deepEqual(image?.repoTags, [`${reg.plain.host}/berth-test/busybox:latest`]);
    assert.deepEqual(image?.repoDigests, [`${reg.plain.host}/berth-test/busybox@${info.manifestDigest}`]);
  });

  test("PullImage by digest records the repo digest and no tag", async () => {
    const info = reg.image("berth-test/entrypoint");
    const byDigest = `${repo("berth-test/entrypoint")}@${info.manifestDigest}`;
    const { imageRef } = await d.client.image.pullImage({ image: { image: byDigest } });
    assert.equal(imageRef, info.imageId);
    const image = await status(d, byDigest);
    assert.equal(image?.id, info.imageId);
    assert.deepEqual(image?.repoTags, []);
    assert.deepEqual(image?.repoDigests, [byDigest]);
  });

  test("PullImage by tag and digest pulls the digest, whatever the tag", async () => {
    const info = reg.image("berth-test/web");
    // The tag does not exist on the registry: only the digest is used.
    const { imageRef } = await d.client.image.pullImage({
      image: { image: `${repo("berth-test/web")}:no-such-tag@${info.manifestDigest}` },
    });
    assert.equal(imageRef, info.imageId);
    const image = await status(d, info.imageId);
    assert.deepEqual(image?.repoTags, []);
    assert.deepEqual(image?.repoDigests, [`${repo("berth-test/web")}@${info.manifestDigest}`]);
  });

  test("ImageStatus reports the size and the username of a named USER", async () => {
    const info = reg.image("berth-test/users");
    await d.client.image.pullImage({ image: { image: ref("berth-test/users") } });
    const image = await status(d, ref("berth-test/users"));
    assert.equal(image?.size, BigInt(imageSize(info)));
    assert.ok((image?.size ?? 0n) > 0n);
    assert.equal(image?.username, "app");
    assert.equal(image?.uid, undefined);
    assert.equal(image?.spec?.image, info.imageId);
    assert.equal(image?.pinned, false);
  });

  test("ImageStatus reports the uid of a numeric USER", async () => {
    const busybox = reg.image("berth-test/busybox");
    const built = await buildImage(join(d.dir, "build-uid"), {
      repository: "berth-test/uid1000",
      layers: [{ descriptor: layerOf(busybox, 0), diffId: busybox.diffIds[0] as string }],
      config: { User: "1000", Cmd: ["sh"] },
      fallback: reg.blobs,
    });
    await pushImage(reg.plain, "berth-test/uid1000", "latest", built.image, { blobs: built });
    const name = `${reg.plain.host}/berth-test/uid1000:latest`;
    const { imageRef } = await d.client.image.pullImage({ image: { image: name } });
    assert.equal(imageRef, built.image.manifests[0]?.config.digest);
    const image = await status(d, name);
    assert.equal(image?.uid?.value, 1000n);
    assert.equal(image?.username, "");
  });

  test("ImageStatus finds an image by ID prefix and by repo digest", async () => {
    const info = reg.image("berth-test/busybox");
    await d.client.image.pullImage({ image: { image: ref("berth-test/busybox") } });
    assert.equal((await status(d, info.imageId.slice(7, 19)))?.id, info.imageId);
    assert.equal((await status(d, `${repo("berth-test/busybox")}@${info.manifestDigest}`))?.id, info.imageId);
  });

  test("pulling an image the registry does not have is NotFound naming it", async () => {
    const name = `${reg.plain.host}/berth-test/absent:latest`;
    await assert.rejects(
      d.client.image.pullImage({ image: { image: name } }),
      grpcError(Code.NotFound, /berth-test\/absent/),
    );
  });

  test("an invalid reference is InvalidArgument naming it", async () => {
    await assert.rejects(
      d.client.image.pullImage({ image: { image: "Invalid/UPPER:case" } }),
      grpcError(Code.InvalidArgument, /Invalid\/UPPER:case/),
    );
  });

  test("ImageStatus of an absent image returns no image and no error", async () => {
    const res = await d.client.image.imageStatus({ image: { image: `${reg.plain.host}/berth-test/absent:latest` } });
    assert.equal(res.image, undefined);
    const byId = await d.client.image.imageStatus({ image: { image: `sha256:${"0".repeat(64)}` } });
    assert.equal(byId.image, undefined);
  });

  test("ImageStatus verbose carries the image config as JSON", async () => {
    await d.client.image.pullImage({ image: { image: ref("berth-test/entrypoint") } });
    const res = await d.client.image.imageStatus({ image: { image: ref("berth-test/entrypoint") }, verbose: true });
    const info = JSON.parse(res.info.info ?? "{}") as { imageSpec?: { config?: { Entrypoint?: string[] } } };
    assert.deepEqual(info.imageSpec?.config?.Entrypoint, ["/bin/echo", "entry"]);
  });

  test("ListImages lists every image, and a filter selects one by reference or ID", async () => {
    await d.client.image.pullImage({ image: { image: ref("berth-test/busybox") } });
    await d.client.image.pullImage({ image: { image: ref("berth-test/users") } });
    const all = (await d.client.image.listImages({})).images;
    const ids = all.map((i) => i.id);
    assert.ok(ids.includes(reg.image("berth-test/busybox").imageId));
    assert.ok(ids.includes(reg.image("berth-test/users").imageId));
    assert.equal(new Set(ids).size, ids.length, "each image once");

    const byRef = (await d.client.image.listImages({ filter: { image: { image: ref("berth-test/users") } } })).images;
    assert.deepEqual(
      byRef.map((i) => i.id),
      [reg.image("berth-test/users").imageId],
    );
    const byId = (
      await d.client.image.listImages({ filter: { image: { image: reg.image("berth-test/busybox").imageId } } })
    ).images;
    assert.deepEqual(
      byId.map((i) => i.repoTags),
      [[`${reg.plain.host}/berth-test/busybox:latest`]],
    );
    const none = (
      await d.client.image.listImages({ filter: { image: { image: `${reg.plain.host}/berth-test/absent` } } })
    ).images;
    assert.deepEqual(none, []);
  });

  test("a multi-arch OCI index resolves to the linux/amd64 child and records the index digest", async () => {
    const info = reg.image("berth-test/multiarch");
    const { imageRef } = await d.client.image.pullImage({ image: { image: ref("berth-test/multiarch") } });
    const amd64 = info.manifests.find((m) => m.descriptor.platform?.architecture === "amd64");
    const arm64 = info.manifests.find((m) => m.descriptor.platform?.architecture === "arm64");
    assert.equal(imageRef, amd64?.config.digest);
    assert.notEqual(imageRef, arm64?.config.digest);
    const image = await status(d, imageRef);
    assert.deepEqual(image?.repoDigests, [`${repo("berth-test/multiarch")}@${info.manifestDigest}`]);
    assert.equal(image?.size, BigInt(imageSize(info)));
  });

  test("the registry.platform setting picks another child of a multi-arch index", async () => {
    const own = await startBerthd({ config: `${CONFIG}platform = "linux/arm64/v8"\n` });
    try {
      const info = reg.image("berth-test/multiarch");
      const arm64 = info.manifests.find((m) => m.descriptor.platform?.architecture === "arm64");
      const { imageRef } = await own.client.image.pullImage({ image: { image: ref("berth-test/multiarch") } });
      assert.equal(imageRef, arm64?.config.digest);
    } finally {
      await own.cleanup();
    }
  });

  test("a Docker manifest list resolves to the linux/amd64 child", async () => {
    const info = reg.image("berth-test/dockerlist");
    const { imageRef } = await d.client.image.pullImage({ image: { image: ref("berth-test/dockerlist") } });
    const amd64 = info.manifests.find((m) => m.descriptor.platform?.architecture === "amd64");
    assert.equal(imageRef, amd64?.config.digest);
  });

  test("a Docker schema 2 image pulls", async () => {
    const info = reg.image("berth-test/docker");
    const { imageRef } = await d.client.image.pullImage({ image: { image: ref("berth-test/docker") } });
    assert.equal(imageRef, info.imageId);
    // Its config is byte for byte busybox's, so it is the same image under one more tag and digest.
    const image = await status(d, ref("berth-test/docker"));
    assert.equal(image?.id, info.imageId);
    assert.ok(image?.repoTags.includes(ref("berth-test/docker")));
    assert.ok(image?.repoDigests.includes(`${repo("berth-test/docker")}@${info.manifestDigest}`));
  });

  test("gzip, zstd and uncompressed layers each unpack to the same tree", async () => {
    // The three tags share one config (same diff ID, same image ID): the image is removed between pulls so
    // that every compression is really unpacked, not found as an existing snapshot.
    const own = await startBerthd({ config: CONFIG });
    try {
      const busybox = createHash("sha256")
        .update(await readFile("/bin/busybox"))
        .digest("hex");
      for (const tag of ["gzip", "zstd", "uncompressed"]) {
        const info = reg.image(`berth-test/busybox:${tag}`);
        const { imageRef } = await own.client.image.pullImage({ image: { image: ref(`berth-test/busybox:${tag}`) } });
        assert.equal(imageRef, info.imageId, tag);
        const dirs = await snapshotDirs(own);
        assert.equal(dirs.length, 1, `${tag}: one layer snapshot`);
        const unpacked = await readFile(join(snapshotsRoot(own), dirs[0] as string, "fs", "bin", "busybox"));
        assert.equal(createHash("sha256").update(unpacked).digest("hex"), busybox, `${tag}: /bin/busybox intact`);
        await own.client.image.removeImage({ image: { image: imageRef } });
        assert.deepEqual(await snapshotDirs(own), [], `${tag}: snapshot collected`);
      }
    } finally {
      await own.cleanup();
    }
  });

  test("whiteouts and opaque directories hide lower files in a container's rootfs", async () => {
    await d.client.image.pullImage({ image: { image: ref("berth-test/multilayer") } });
    const pod = await runHostPod(d, "whiteouts");
    try {
      const { containerId } = await d.client.runtime.createContainer({
        podSandboxId: pod.id,
        sandboxConfig: pod.config,
        config: {
          metadata: { name: "ls" },
          image: { image: ref("berth-test/multilayer") },
          command: ["sleep", "3600"],
          logPath: "ls.log",
        },
      });
      await d.client.runtime.startContainer({ containerId });
      const res = await d.client.runtime.execSync({
        containerId,
        cmd: ["ls", "/data", "/data/dir", "/keep"],
        timeout: 10n,
      });
      assert.equal(Buffer.from(res.stderr).toString(), "");
      assert.equal(res.exitCode, 0);
      assert.equal(Buffer.from(res.stdout).toString(), "/data:\nb\ndir\n\n/data/dir:\ny\n\n/keep:\nk\n");
      const gone = await d.client.runtime.execSync({ containerId, cmd: ["cat", "/data/a"], timeout: 10n });
      assert.notEqual(gone.exitCode, 0, "/data/a is whited out");
    } finally {
      await removePod(d, pod.id);
    }
  });

  describe("removal and garbage collection", () => {
    let g: TestDaemon;
    before(async () => {
      g = await startBerthd({ config: CONFIG });
    });
    after(async () => {
      await g?.cleanup();
    });

    test("RemoveImage by one of two tags only untags", async () => {
      const { imageRef } = await g.client.image.pullImage({ image: { image: ref("berth-test/busybox:latest") } });
      // :gzip is the same manifest as :latest.
      await g.client.image.pullImage({ image: { image: ref("berth-test/busybox:gzip") } });
      assert.deepEqual((await status(g, imageRef))?.repoTags.sort(), [
        ref("berth-test/busybox:gzip"),
        ref("berth-test/busybox:latest"),
      ]);
      await g.client.image.removeImage({ image: { image: ref("berth-test/busybox:latest") } });
      const image = await status(g, imageRef);
      assert.deepEqual(image?.repoTags, [ref("berth-test/busybox:gzip")]);
      assert.equal(await status(g, ref("berth-test/busybox:latest")), undefined);
    });

    test("RemoveImage by ID removes the image with all its tags", async () => {
      const { imageRef } = await g.client.image.pullImage({ image: { image: ref("berth-test/busybox:latest") } });
      await g.client.image.pullImage({ image: { image: ref("berth-test/busybox:gzip") } });
      await g.client.image.removeImage({ image: { image: imageRef } });
      assert.equal(await status(g, imageRef), undefined);
      assert.equal(await status(g, ref("berth-test/busybox:gzip")), undefined);
      assert.equal(await status(g, ref("berth-test/busybox:latest")), undefined);
    });

    test("RemoveImage by repo digest removes an image pulled by digest", async () => {
      const info = reg.image("berth-test/entrypoint");
      const byDigest = `${repo("berth-test/entrypoint")}@${info.manifestDigest}`;
      await g.client.image.pullImage({ image: { image: byDigest } });
      await g.client.image.removeImage({ image: { image: byDigest } });
      assert.equal(await status(g, info.imageId), undefined);
    });

    test("RemoveImage of an absent image succeeds", async () => {
      await g.client.image.removeImage({ image: { image: `${reg.plain.host}/berth-test/absent:latest` } });
      await g.client.image.removeImage({ image: { image: `sha256:${"0".repeat(64)}` } });
    });

    test("removing the last image collects its blobs and layer snapshots", async () => {
      const before = { blobs: await blobFiles(g), snapshots: await snapshotDirs(g) };
      const { imageRef } = await g.client.image.pullImage({ image: { image: ref("berth-test/multilayer") } });
      const info = reg.image("berth-test/multilayer");
      const pulled = await blobFiles(g);
      for (const digest of [info.manifestDigest, info.configDigest, ...info.layers])
        assert.ok(pulled.includes(digest.slice(7)), `blob ${digest} stored`);
      assert.equal((await snapshotDirs(g)).length, before.snapshots.length + 3);
      await g.client.image.removeImage({ image: { image: imageRef } });
      assert.deepEqual(await blobFiles(g), before.blobs);
      assert.deepEqual(await snapshotDirs(g), before.snapshots);
    });

    test("a layer snapshot a container uses survives removal of its image", async () => {
      const before = await snapshotDirs(g);
      const { imageRef } = await g.client.image.pullImage({ image: { image: ref("berth-test/web") } });
      const layers = await snapshotDirs(g);
      assert.equal(layers.length, before.length + 2);
      const pod = await runHostPod(g, "keep-layers");
      try {
        const { containerId } = await g.client.runtime.createContainer({
          podSandboxId: pod.id,
          sandboxConfig: pod.config,
          config: {
            metadata: { name: "web" },
            image: { image: ref("berth-test/web") },
            command: ["sleep", "3600"],
            logPath: "web.log",
          },
        });
        await g.client.runtime.startContainer({ containerId });
        await g.client.image.removeImage({ image: { image: imageRef } });
        assert.equal(await status(g, imageRef), undefined);
        const after = await snapshotDirs(g);
        for (const dir of layers) assert.ok(after.includes(dir), `layer snapshot ${dir} kept`);
        const res = await g.client.runtime.execSync({ containerId, cmd: ["cat", "/www/index.html"], timeout: 10n });
        assert.equal(Buffer.from(res.stdout).toString(), "hello from berth\n");
      } finally {
        await removePod(g, pod.id);
      }
      // With the container gone nothing needs the layers any more.
      assert.deepEqual(await snapshotDirs(g), before, "the layers are collected once the container is removed");
    });

    test("a pull racing a removal of the same image leaves it either whole or gone", async () => {
      const name = ref("berth-test/users");
      for (let i = 0; i < 6; i++) {
        const { imageRef } = await g.client.image.pullImage({ image: { image: name } });
        const racers = [
          g.client.image.removeImage({ image: { image: imageRef } }),
          g.client.image.pullImage({ image: { image: name } }),
        ];
        await Promise.all(i % 2 === 0 ? racers : racers.reverse());
        const res = await g.client.image.imageStatus({ image: { image: imageRef }, verbose: true });
        if (res.image === undefined) continue;
        const { chainIds } = JSON.parse(res.info.info ?? "{}") as { chainIds: string[] };
        const info = reg.image("berth-test/users");
        const blobs = await blobFiles(g);
        for (const digest of [info.manifestDigest, info.configDigest, ...info.layers])
          assert.ok(blobs.includes(digest.slice(7)), `round ${i}: blob ${digest} present`);
        const meta = JSON.parse(await readFile(join(g.root, "snapshots", "overlay", "metadata.json"), "utf8")) as {
          snapshots: Record<string, { kind: string }>;
        };
        for (const c of chainIds) assert.equal(meta.snapshots[c]?.kind, "committed", `round ${i}: layer ${c} present`);
      }
    });

    test("a pull by tag moves the tag off the image it named before", async () => {
      const busybox = reg.image("berth-test/busybox");
      const base = { descriptor: layerOf(busybox, 0), diffId: busybox.diffIds[0] as string };
      const build = (env: string) =>
        buildImage(join(g.dir, "build", env), {
          repository: "berth-test/moving",
          layers: [base],
          config: { Env: [env], Cmd: ["sh"] },
          fallback: reg.blobs,
        });
      const first = await build("V=1");
      const second = await build("V=2");
      const name = `${reg.plain.host}/berth-test/moving:latest`;
      await pushImage(reg.plain, "berth-test/moving", "latest", first.image, { blobs: first });
      const one = (await g.client.image.pullImage({ image: { image: name } })).imageRef;
      await pushImage(reg.plain, "berth-test/moving", "latest", second.image, { blobs: second });
      const two = (await g.client.image.pullImage({ image: { image: name } })).imageRef;
      assert.notEqual(one, two);
      assert.equal((await status(g, name))?.id, two);
      const old = await status(g, one);
      assert.deepEqual(old?.repoTags, [], "the old image lost the tag");
      assert.deepEqual(old?.repoDigests, [`${reg.plain.host}/berth-test/moving@${first.image.target.digest}`]);
      await g.client.image.removeImage({ image: { image: one } });
      await g.client.image.removeImage({ image: { image: two } });
    });

    test("ImageFsInfo reports bytes and inodes used and the root as mountpoint", async () => {
      await g.client.image.pullImage({ image: { image: ref("berth-test/busybox") } });
      const { imageFilesystems } = await g.client.image.imageFsInfo({});
      assert.equal(imageFilesystems.length, 1);
      const fs = imageFilesystems[0];
      assert.equal(fs?.fsId?.mountpoint, g.root);
      assert.ok((fs?.usedBytes?.value ?? 0n) > BigInt(imageSize(reg.image("berth-test/busybox"))), "blobs and layers");
      assert.ok((fs?.inodesUsed?.value ?? 0n) > 0n);
      const nowNs = BigInt(Date.now()) * 1_000_000n;
      assert.ok(fs !== undefined && fs.timestamp > nowNs - 60_000_000_000n && fs.timestamp <= nowNs + 1_000_000_000n);
    });
  });

  test("images and their tags survive a daemon restart", async () => {
    let r = await startBerthd({ config: CONFIG });
    const dir = r.dir;
    try {
      await r.client.image.pullImage({ image: { image: ref("berth-test/busybox") } });
      await r.client.image.pullImage({ image: { image: ref("berth-test/users") } });
      await r.client.image.pullImage({
        image: { image: `${repo("berth-test/web")}@${reg.image("berth-test/web").manifestDigest}` },
      });
      const listed = (await r.client.image.listImages({})).images;
      assert.equal(listed.length, 3);
      assert.equal(await r.stop(), 0);
      const snapshots = await snapshotDirs(r);
      r = await startBerthd({ dir, config: CONFIG });
      assert.deepEqual((await r.client.image.listImages({})).images, listed);
      assert.deepEqual(await snapshotDirs(r), snapshots, "no layer collected at start-up");
      assert.equal((await status(r, ref("berth-test/users")))?.username, "app");
    } finally {
      await r.cleanup();
      await removeTestDir(dir);
    }
  });
});

/** Compressed layer sizes plus the config's, for the image a pull on this host resolves to. */
function imageSize(info: FixtureImageInfo): number {
  const m = info.manifests.find((x) => x.config.digest === info.configDigest);
  assert.ok(m);
  return m.layers.reduce((n, l) => n + l.size, m.config.size);
}

function layerOf(info: FixtureImageInfo, i: number) {
  const m = info.manifests.find((x) => x.config.digest === info.configDigest);
  const l = m?.layers[i];
  assert.ok(l);
  return l;
}

function snapshotsRoot(d: TestDaemon): string {
  return join(d.root, "snapshots", "overlay", "snapshots");
}

/** Snapshot directories (one per layer and per container), sorted. */
async function snapshotDirs(d: TestDaemon): Promise<string[]> {
  return (await readdir(snapshotsRoot(d)).catch(() => [] as string[])).sort();
}

/** Hex names of committed blobs, sorted. */
async function blobFiles(d: TestDaemon): Promise<string[]> {
  return (await readdir(join(d.root, "content", "blobs", "sha256")).catch(() => [] as string[])).sort();
}

/** A sandbox on the host network (no CNI needed). */
async function runHostPod(d: TestDaemon, name: string) {
  const config = {
    metadata: { name, namespace: "e2e-images", uid: `uid-${name}`, attempt: 0 },
    hostname: name,
    logDirectory: join(d.dir, "logs", name),
    linux: { securityContext: { namespaceOptions: { network: NamespaceMode.NODE } } },
  };
  const { podSandboxId } = await d.client.runtime.runPodSandbox({ config });
  return { id: podSandboxId, config };
}

async function removePod(d: TestDaemon, id: string): Promise<void> {
  await d.client.runtime.stopPodSandbox({ podSandboxId: id });
  await d.client.runtime.removePodSandbox({ podSandboxId: id });
}

/** An assert.rejects predicate: a ConnectError with this code and a message matching `message`. */
function grpcError(code: Code, message: RegExp): (e: unknown) => boolean {
  return (e) => {
    assert.ok(e instanceof ConnectError, `expected a ConnectError, got ${String(e)}`);
    assert.equal(Code[e.code], Code[code], e.rawMessage);
    assert.match(e.rawMessage, message);
    return true;
  };
}
