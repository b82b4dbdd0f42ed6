/**
 * Pulling through what sits between berthd and a registry, end to end against a real berthd: a mirror from
 * hosts.toml, TLS with a configured CA and basic auth from PullImageRequest.auth, a registry that serves
 * corrupt bytes, concurrent pulls sharing downloads, and layers that try to write outside their snapshot.
 * Proxies (test/support/registry-proxy.ts) sit in front of the fixture registry to count or tamper.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { Code, ConnectError } from "@connectrpc/connect";
import { isRoot, removeTestDir, startBerthd, type TestDaemon } from "../support/berthd.js";
import { buildImage, type TarEntry } from "../support/build-image.js";
import { ensureFixtureRegistry, type FixtureRegistry } from "../support/fixtures.js";
import { pushImage, type Registry, startRegistry } from "../support/registry.js";
import { type RegistryProxy, startRegistryProxy } from "../support/registry-proxy.js";
import { skipUnlessCi } from "../support/skip.js";

const CONFIG = `[cni]\nconf_dir = "{dir}/cni"\n[registry]\nconfig_path = "{dir}/certs.d"\n`;

const skip = skipUnlessCi(isRoot() ? false : "needs root (overlay mounts)");

/** Where a resource's cleanup goes: a test's context (`t.after`), or a {@link Scope} for a describe block. */
interface Owner {
  after(fn: () => Promise<void>): void;
}

/** Cleanups of a describe block, run in reverse by its `after` hook. */
class Scope implements Owner {
  private readonly fns: (() => Promise<void>)[] = [];
  after(fn: () => Promise<void>): void {
    this.fns.push(fn);
  }
  async close(): Promise<void> {
    for (const fn of this.fns.reverse()) await fn().catch(() => {});
    this.fns.length = 0;
  }
}

describe("pulling through mirrors, auth, and bad registries", { skip }, () => {
  let reg: FixtureRegistry;

  before(async () => {
    reg = await ensureFixtureRegistry();
  });
  after(async () => {
    await reg?.stop();
  });

  /** A fresh daemon (so every blob is downloaded again), stopped and removed when `owner` ends. */
  async function daemon(owner: Owner): Promise<TestDaemon> {
    const d = await startBerthd({ config: CONFIG });
    owner.after(() => d.cleanup());
    return d;
  }
  /** A proxy in front of the plain fixture registry, closed when `owner` ends. */
  async function proxy(owner: Owner, options: Parameters<typeof startRegistryProxy>[1] = {}): Promise<RegistryProxy> {
    const p = await startRegistryProxy(reg.plain, options);
    owner.after(() => p.close());
    return p;
  }
  /** Writes `<dir>/certs.d/<registry>/hosts.toml`. */
  async function hostsToml(d: TestDaemon, registry: string, text: string): Promise<void> {
    const dir = join(d.dir, "certs.d", registry);
    await mkdir(dir, { recursive: true });
    await writeFile(join(dir, "hosts.toml"), text);
  }
  const ids = async (d: TestDaemon) => (await d.client.image.listImages({})).images.map((i) => i.id).sort();

  describe("mirrors from hosts.toml", () => {
    const scope = new Scope();
    /** A real registry without any image, behind a counting proxy. */
    let empty: RegistryProxy;
    before(async () => {
      const registry: Registry = await startRegistry();
      scope.after(() => registry.stop());
      empty = await startRegistryProxy(registry);
      scope.after(() => empty.close());
    });
    after(() => scope.close());

    test("a mirror serves the pull and the upstream is not asked", async (t) => {
      const upstream = empty;
      const mirror = await proxy(t);
      const d = await daemon(t);
      await hostsToml(
        d,
        upstream.host,
        `server = "http://${upstream.host}"\n\n[host."http://${mirror.host}"]\ncapabilities = ["pull", "resolve"]\n`,
      );
      const info = reg.image("berth-test/busybox");
      const before = upstream.requests.length;
      const { imageRef } = await d.client.image.pullImage({
        image: { image: `${upstream.host}/berth-test/busybox:latest` },
      });
      assert.equal(imageRef, info.imageId);
      assert.deepEqual(upstream.requests.slice(before), [], "the upstream saw no request");
      assert.deepEqual(
        mirror.blobGets().map((r) => r.path.split("/").pop()),
        [info.configDigest, ...info.layers],
        "the mirror served every blob",
      );
      assert.ok(
        mirror.requests.every((r) => r.search === `?ns=${encodeURIComponent(upstream.host)}`),
        "mirror requests name the upstream in ?ns=",
      );
      const image = (await d.client.image.imageStatus({ image: { image: imageRef } })).image;
      assert.deepEqual(image?.repoTags, [`${upstream.host}/berth-test/busybox:latest`]);
    });

    test("a mirror without the image falls back to the upstream", async (t) => {
      const mirror = empty;
      const upstream = await proxy(t);
      const d = await daemon(t);
      await hostsToml(d, upstream.host, `server = "http://${upstream.host}"\n\n[host."http://${mirror.host}"]\n`);
      const before = mirror.requests.length;
      const info = reg.image("berth-test/users");
      const { imageRef } = await d.client.image.pullImage({
        image: { image: `${upstream.host}/berth-test/users:latest` },
      });
      assert.equal(imageRef, info.imageId);
      assert.ok(
        mirror.requests.slice(before).some((r) => r.path === "/v2/berth-test/users/manifests/latest"),
        "the mirror was asked first",
      );
      assert.deepEqual(
        upstream
          .blobGets()
          .map((r) => r.path.split("/").pop())
          .sort(),
        [info.configDigest, ...info.layers].sort(),
        "the upstream served every blob",
      );
    });
  });

  test("the anonymous bearer-token flow fetches one token and authorizes every request up front", async (t) => {
    const token = `tok-${randomBytes(8).toString("hex")}`;
    const tokened = await proxy(t, { bearerToken: token });
    const d = await daemon(t);
    const info = reg.image("berth-test/web");
    const { imageRef } = await d.client.image.pullImage({ image: { image: `${tokened.host}/berth-test/web:latest` } });
    assert.equal(imageRef, info.imageId);
    const tokens = tokened.requests.filter((r) => r.path === "/token");
    assert.equal(tokens.length, 1, "one token for the whole pull");
    const params = new URLSearchParams(tokens[0]?.search);
    assert.equal(params.get("service"), "berth-proxy");
    assert.deepEqual(params.getAll("scope"), ["repository:berth-test/web:pull"]);
    const blobs = tokened.blobGets().map((r) => r.path.split("/").pop());
    assert.deepEqual(
      blobs.sort(),
      [info.configDigest, ...info.layers].sort(),
      "no blob request was refused and retried",
    );
    assert.ok(!d.stderr().includes(token), "the token is not in berthd's log");
  });

  test("a registry token from PullImageRequest.auth is sent as the bearer token, with no token request", async (t) => {
    const token = `tok-${randomBytes(8).toString("hex")}`;
    const tokened = await proxy(t, { bearerToken: token });
    const d = await daemon(t);
    const info = reg.image("berth-test/users");
    const { imageRef } = await d.client.image.pullImage({
      image: { image: `${tokened.host}/berth-test/users:latest` },
      auth: { registryToken: token },
    });
    assert.equal(imageRef, info.imageId);
    assert.deepEqual(
      tokened.requests.filter((r) => r.path === "/token"),
      [],
    );
    assert.ok(!d.stderr().includes(token), "the token is not in berthd's log");
  });

  describe("TLS and basic auth", () => {
    const scope = new Scope();
    let d: TestDaemon;
    let secureRef: string;
    before(async () => {
      d = await daemon(scope);
      secureRef = `${reg.secure.host}/berth-test/busybox:latest`;
      await hostsToml(d, reg.secure.host, `server = "https://${reg.secure.host}"\nca = "${reg.caPath}"\n`);
    });
    after(() => scope.close());

    test("without credentials the pull is Unauthenticated and stores no image", async () => {
      const err = await d.client.image.pullImage({ image: { image: secureRef } }).then(
        () => assert.fail("pull succeeded without credentials"),
        (e: unknown) => e,
      );
      assert.ok(err instanceof ConnectError);
      assert.equal(err.code, Code.Unauthenticated, err.rawMessage);
      assert.match(err.rawMessage, /credentials required/);
      assert.deepEqual(await ids(d), []);
    });

    test("wrong credentials are Unauthenticated", async () => {
      await assert.rejects(
        d.client.image.pullImage({
          image: { image: secureRef },
          auth: { username: reg.credentials.username, password: "wrong-password" },
        }),
        (e: unknown) => e instanceof ConnectError && e.code === Code.Unauthenticated && /rejected/.test(e.rawMessage),
      );
    });

    test("credentials for another registry are not sent", async () => {
      await assert.rejects(
        d.client.image.pullImage({
          image: { image: secureRef },
          auth: { ...reg.credentials, serverAddress: "registry.example.com" },
        }),
        (e: unknown) => e instanceof ConnectError && e.code === Code.Unauthenticated,
      );
    });

    test("username and password from PullImageRequest.auth pull over TLS with the CA from hosts.toml", async () => {
      const { imageRef } = await d.client.image.pullImage({
        image: { image: secureRef },
        auth: { username: reg.credentials.username, password: reg.credentials.password },
      });
      assert.equal(imageRef, reg.image("berth-test/busybox").imageId);
      assert.ok(!d.stderr().includes(reg.credentials.password), "the password is not in berthd's log");
      const basic = Buffer.from(`${reg.credentials.username}:${reg.credentials.password}`).toString("base64");
      assert.ok(!d.stderr().includes(basic), "the basic credentials are not in berthd's log");
    });

    test("the base64 auth form of PullImageRequest.auth pulls too", async () => {
      const auth = Buffer.from(`${reg.credentials.username}:${reg.credentials.password}`).toString("base64");
      const { imageRef } = await d.client.image.pullImage({
        image: { image: `${reg.secure.host}/berth-test/users:latest` },
        // As kubelet sends it: the registry the credentials are for, and the Docker config `auth` string.
        auth: { auth, serverAddress: reg.secure.host },
      });
      assert.equal(imageRef, reg.image("berth-test/users").imageId);
      assert.ok(!d.stderr().includes(auth), "the auth string is not in berthd's log");
      assert.ok(!d.stderr().includes(reg.credentials.password), "the password is not in berthd's log");
    });
  });

  test("a TLS registry whose CA is not configured fails the pull with a certificate error", async (t) => {
    const d = await daemon(t);
    await hostsToml(d, reg.secure.host, `server = "https://${reg.secure.host}"\n`);
    const err = await d.client.image
      .pullImage({
        image: { image: `${reg.secure.host}/berth-test/busybox:latest` },
        auth: { username: reg.credentials.username, password: reg.credentials.password },
      })
      .then(
        () => assert.fail("pulled from a registry with an untrusted certificate"),
        (e: unknown) => e,
      );
    assert.ok(err instanceof ConnectError);
    assert.equal(err.code, Code.Unavailable, err.rawMessage);
    assert.match(err.rawMessage, /certificate/);
  });

  test("a blob served with wrong content fails naming its digest and leaves no image and no debris", async (t) => {
    const info = reg.image("berth-test/web");
    const bad = info.layers[1] as string;
    const corrupt = await proxy(t, { corruptBlob: bad, blobDelayMs: 500, delayBlobs: [info.layers[0] as string] });
    const d = await daemon(t);
    const before = await ids(d);
    const err = await d.client.image.pullImage({ image: { image: `${corrupt.host}/berth-test/web:latest` } }).then(
      () => assert.fail("a corrupt blob was accepted"),
      (e: unknown) => e,
    );
    assert.ok(err instanceof ConnectError);
    assert.match(err.rawMessage, new RegExp(bad));
    assert.match(err.rawMessage, /mismatch/);
    assert.deepEqual(await ids(d), before);
    assert.deepEqual(await readdir(join(d.root, "content", "ingest")), [], "no ingest left");
    const blobs = await readdir(join(d.root, "content", "blobs", "sha256"));
    assert.ok(!blobs.includes(bad.slice(7)), "the corrupt blob is not stored");
    const meta = await readFile(join(d.root, "snapshots", "overlay", "metadata.json"), "utf8").catch(() => "{}");
    const snapshots = (JSON.parse(meta) as { snapshots?: Record<string, { kind: string }> }).snapshots ?? {};
    assert.deepEqual(
      Object.entries(snapshots).filter(([, s]) => s.kind !== "committed"),
      [],
      "no extraction snapshot left",
    );
    t.diagnostic(`error: ${Code[err.code]}: ${err.rawMessage}`);
    t.diagnostic(`blobs left: ${blobs.length}, snapshots: ${Object.keys(snapshots).length}`);
    // The same image from the honest registry pulls on the same daemon.
    const { imageRef } = await d.client.image.pullImage({
      image: { image: `${reg.plain.host}/berth-test/web:latest` },
    });
    assert.equal(imageRef, info.imageId);
  });

  test("concurrent pulls of one image download each blob once", async (t) => {
    const counting = await proxy(t, { blobDelayMs: 200 });
    const d = await daemon(t);
    const info = reg.image("berth-test/multilayer");
    const name = `${counting.host}/berth-test/multilayer:latest`;
    const results = await Promise.all([1, 2, 3, 4].map(() => d.client.image.pullImage({ image: { image: name } })));
    assert.deepEqual(
      results.map((r) => r.imageRef),
      [info.imageId, info.imageId, info.imageId, info.imageId],
    );
    const gets = counting.blobGets().map((r) => r.path.split("/").pop());
    assert.deepEqual(gets.sort(), [info.configDigest, ...info.layers].sort(), "each blob fetched exactly once");
    assert.deepEqual(await ids(d), [info.imageId]);
  });

  test("concurrent pulls of images sharing a base layer download it once", async (t) => {
    const counting = await proxy(t, { blobDelayMs: 200 });
    const d = await daemon(t);
    const names = ["berth-test/busybox", "berth-test/users", "berth-test/web", "berth-test/entrypoint"];
    const results = await Promise.all(
      names.map((n) => d.client.image.pullImage({ image: { image: `${counting.host}/${reg.image(n).reference}` } })),
    );
    assert.deepEqual(
      results.map((r) => r.imageRef),
      names.map((n) => reg.image(n).imageId),
    );
    const base = reg.image("berth-test/busybox").layers[0] as string;
    assert.ok(
      names.every((n) => reg.image(n).layers[0] === base),
      "the fixtures share their base layer",
    );
    assert.equal(counting.blobGets(base).length, 1, "the shared base layer is fetched once");
    const gets = counting.blobGets().map((r) => r.path.split("/").pop());
    assert.equal(new Set(gets).size, gets.length, "no blob is fetched twice");
  });

  test("a PullImage cancelled by the client stops its downloads and records nothing", async (t) => {
    const info = reg.image("berth-test/web");
    const slow = await proxy(t, { blobDelayMs: 5_000, delayBlobs: info.layers });
    const d = await daemon(t);
    const name = `${slow.host}/berth-test/web:latest`;
    const pulling = d.client.image.pullImage({ image: { image: name } }, { signal: AbortSignal.timeout(700) });
    await assert.rejects(pulling, (e: unknown) => e instanceof ConnectError && e.code === Code.Canceled);
    const layerGets = () => slow.blobGets().filter((r) => info.layers.some((l) => r.path.endsWith(l)));
    await eventually(
      "berthd to drop its layer downloads",
      async () => layerGets().length === info.layers.length && layerGets().every((r) => r.abandoned),
    );
    assert.deepEqual(await ids(d), []);
    await eventually(
      "the ingest directory to empty",
      async () => (await readdir(join(d.root, "content", "ingest"))).length === 0,
    );
    // Nothing stuck: the same pull succeeds afterwards.
    const { imageRef } = await d.client.image.pullImage({
      image: { image: `${reg.plain.host}/berth-test/web:latest` },
    });
    assert.equal(imageRef, info.imageId);
  });

  test("cancelling one of two pulls of an image leaves the other's downloads running", async (t) => {
    const info = reg.image("berth-test/web");
    const slow = await proxy(t, { blobDelayMs: 1_500, delayBlobs: info.layers });
    const d = await daemon(t);
    const name = `${slow.host}/berth-test/web:latest`;
    const kept = d.client.image.pullImage({ image: { image: name } });
    await eventually("the layer downloads to start", async () => slow.blobGets().length === 1 + info.layers.length);
    const cancelled = d.client.image.pullImage({ image: { image: name } }, { signal: AbortSignal.timeout(300) });
    await assert.rejects(cancelled, (e: unknown) => e instanceof ConnectError && e.code === Code.Canceled);
    assert.equal((await kept).imageRef, info.imageId);
    for (const layer of info.layers) {
      const gets = slow.blobGets(layer);
      assert.equal(gets.length, 1, `layer ${layer} fetched once`);
      assert.ok(gets[0]?.finished, `layer ${layer} download completed`);
    }
  });

  test("a daemon killed mid-pull starts again with no ingest, no half-unpacked layer and no image", async (t) => {
    const info = reg.image("berth-test/multilayer");
    const last = info.layers[2] as string;
    const slow = await proxy(t, { blobDelayMs: 30_000, delayBlobs: [last] });
    let d = await startBerthd({ config: CONFIG });
    const dir = d.dir;
    t.after(async () => {
      await d.cleanup();
      await removeTestDir(dir);
    });
    const pulling = d.client.image.pullImage({ image: { image: `${slow.host}/berth-test/multilayer:latest` } });
    pulling.catch(() => {});
    await eventually("the last layer's download to start", async () => slow.blobGets(last).length === 1);
    await eventually("the first layers to be unpacked", async () => {
      const meta = await readFile(join(d.root, "snapshots", "overlay", "metadata.json"), "utf8").catch(() => "{}");
      return Object.keys((JSON.parse(meta) as { snapshots?: object }).snapshots ?? {}).length >= 2;
    });
    assert.notDeepEqual(await readdir(join(d.root, "content", "ingest")), [], "an ingest is in progress");
    await d.stop("SIGKILL");
    d = await startBerthd({ dir, config: CONFIG });
    assert.deepEqual(await ids(d), []);
    assert.deepEqual(await readdir(join(d.root, "content", "ingest")), [], "the interrupted ingest is gone");
    assert.deepEqual(await readdir(join(d.root, "content", "blobs", "sha256")), [], "unreferenced blobs collected");
    assert.deepEqual(
      await readdir(join(d.root, "snapshots", "overlay", "snapshots")),
      [],
      "unreferenced layers collected",
    );
    const { imageRef } = await d.client.image.pullImage({
      image: { image: `${reg.plain.host}/berth-test/multilayer:latest` },
    });
    assert.equal(imageRef, info.imageId);
  });

  describe("hostile layers", () => {
    const scope = new Scope();
    let d: TestDaemon;
    let outside: string;
    before(async () => {
      d = await daemon(scope);
      outside = await mkdtemp(join(tmpdir(), "berth-outside-"));
      scope.after(() => rm(outside, { recursive: true, force: true }));
    });
    after(() => scope.close());

    /** Pushes busybox plus one layer per entry list as `berth-test/hostile-<name>`; returns its reference. */
    async function pushHostile(name: string, ...layers: TarEntry[][]): Promise<string> {
      const busybox = reg.image("berth-test/busybox");
      const base = reg.blobs.get("berth-test/busybox").manifests[0];
      assert.ok(base?.layers[0]);
      const built = await buildImage(join(d.dir, "build", name), {
        repository: `berth-test/hostile-${name}`,
        layers: [
          { descriptor: base.layers[0], diffId: busybox.diffIds[0] as string },
          ...layers.map((entries) => ({ entries })),
        ],
        config: { Cmd: ["sh"] },
        fallback: reg.blobs,
      });
      await pushImage(reg.plain, built.image.repository, "latest", built.image, { blobs: built });
      return `${reg.plain.host}/${built.image.repository}:latest`;
    }

    /** Pulls `ref`, expecting InvalidArgument matching `why`, and checks nothing of it stayed. */
    async function expectRefused(ref: string, why: RegExp): Promise<void> {
      const before = await ids(d);
      const err = await d.client.image.pullImage({ image: { image: ref } }).then(
        () => assert.fail(`hostile image ${ref} was pulled`),
        (e: unknown) => e,
      );
      assert.ok(err instanceof ConnectError);
      assert.equal(err.code, Code.InvalidArgument, err.rawMessage);
      assert.match(err.rawMessage, why);
      assert.deepEqual(await ids(d), before, "no image recorded");
      assert.deepEqual(await readdir(outside), [], "nothing written outside");
      assert.deepEqual(await readdir(join(d.root, "content", "ingest")), [], "no ingest left");
      const meta = await readFile(join(d.root, "snapshots", "overlay", "metadata.json"), "utf8").catch(() => "{}");
      const snapshots = (JSON.parse(meta) as { snapshots?: Record<string, { kind: string }> }).snapshots ?? {};
      assert.deepEqual(
        Object.entries(snapshots).filter(([, s]) => s.kind !== "committed"),
        [],
        "the refused layer's extraction snapshot is gone",
      );
    }

    test("a layer entry with ../ fails the pull and writes nothing outside the snapshot", async () => {
      const marker = `escaped-${randomBytes(4).toString("hex")}`;
      const ref = await pushHostile("dotdot", [{ type: "file", name: `../${marker}`, content: "pwned\n" }]);
      await expectRefused(ref, /"\.\." component/);
      assert.deepEqual(await findNamed(d.dir, marker), [], "nothing written anywhere under the daemon's directory");
      const deep = await pushHostile("dotdot-deep", [
        { type: "directory", name: "a/" },
        { type: "file", name: `a/../../../../../../../../..${outside}/${marker}`, content: "pwned\n" },
      ]);
      await expectRefused(deep, /"\.\." component/);
    });

    test("a layer writing through a symlink that points outside fails and writes nothing there", async () => {
      const ref = await pushHostile("symlink", [
        { type: "symlink", name: "escape", linkname: outside },
        { type: "file", name: "escape/pwned", content: "pwned\n" },
      ]);
      await expectRefused(ref, /escape is a symlink/);
    });

    test("an absolute entry name stays inside the snapshot", async () => {
      const ref = await pushHostile("absolute", [{ type: "file", name: `${outside}/absolute`, content: "inside\n" }]);
      const { imageRef } = await d.client.image.pullImage({ image: { image: ref } });
      assert.deepEqual(await readdir(outside), [], "nothing written outside");
      const inside = await findNamed(join(d.root, "snapshots"), "absolute");
      assert.equal(inside.length, 1);
      assert.ok(inside[0]?.endsWith(`/fs${outside}/absolute`), inside[0]);
      await d.client.image.removeImage({ image: { image: imageRef } });
    });

    test("a later layer does not follow an earlier layer's symlink out of the rootfs", async (t) => {
      const ref = await pushHostile(
        "symlink-lower",
        [{ type: "symlink", name: "escape", linkname: outside }],
        [{ type: "file", name: "escape/pwned", content: "pwned\n" }],
      );
      // Applied as a directory shadowing the symlink, or refused: either way nothing lands outside.
      const pulled = await d.client.image.pullImage({ image: { image: ref } }).then(
        (r) => r.imageRef,
        (e: unknown) => {
          t.diagnostic(`refused: ${e instanceof ConnectError ? e.rawMessage : String(e)}`);
          return undefined;
        },
      );
      if (pulled !== undefined) t.diagnostic("pulled: the later layer's directory shadows the symlink");
      assert.deepEqual(await readdir(outside), [], "nothing written outside");
      if (pulled !== undefined) await d.client.image.removeImage({ image: { image: pulled } });
    });

    test("a device node in a layer fails the pull", async () => {
      const ref = await pushHostile("device", [
        { type: "character-device", name: "dev/mem2", devmajor: 1, devminor: 1 },
      ]);
      await expectRefused(ref, /character-device entries are not allowed/);
    });

    test("a hard link to a file outside the layer fails the pull", async () => {
      const ref = await pushHostile("hardlink", [
        { type: "link", name: "passwd", linkname: `../../../../../../../..${outside}/x` },
      ]);
      await expectRefused(ref, /"\.\." component/);
    });
  });
});

async function eventually(what: string, check: () => Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Paths under `dir` whose name is `name`. */
async function findNamed(dir: string, name: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { recursive: true, withFileTypes: true })) {
    if (e.name === name) out.push(join(e.parentPath ?? e.path, e.name));
  }
  return out;
}
