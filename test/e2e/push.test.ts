/**
 * `berth push`, `tag`, `login`, `save` and `load` end to end: the built CLI against one berthd, a fresh
 * docker-registry behind a counting proxy (test/support/registry-proxy.ts) and an htpasswd registry; what
 * berth writes is checked by other tools (skopeo, umoci) and by the registry's own blobs, and what other tools
 * write is loaded by berth. berthd runs with `push_chunk_bytes = 262144`, so the ~1 MB busybox layer goes up
 * in PATCH chunks while the config goes up in one PUT.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { promisify } from "node:util";
import { Code, ConnectError } from "@connectrpc/connect";
import { pack as tarPack } from "tar-stream";
import { isRoot } from "../support/berthd.js";
import { type CliRun, runCli } from "../support/cli.js";
import { closePodEnv, type PodEnv, startPodEnv } from "../support/pods.js";
import { type Registry, registryRequest, startRegistry } from "../support/registry.js";
import { type RegistryProxy, startRegistryProxy } from "../support/registry-proxy.js";
import { skipUnlessCi } from "../support/skip.js";

const execFileAsync = promisify(execFile);
const CHUNK = 262144;

type Run = CliRun;

const sha256 = (b: Buffer) => `sha256:${createHash("sha256").update(b).digest("hex")}`;

async function tool(cmd: string, args: string[]): Promise<string> {
  const { stdout } = await execFileAsync(cmd, args, { encoding: "utf8", timeout: 60_000, maxBuffer: 16 << 20 });
  return stdout;
}

describe("push, tag, login, save and load", {
  skip: skipUnlessCi(isRoot() ? false : "needs root"),
  timeout: 240_000,
}, () => {
  let env: PodEnv;
  let work: string;
  let target: Registry;
  let proxy: RegistryProxy;
  let secure: Registry;
  const creds = { username: "pusher", password: "s3cret-pw" };

  const berth = (args: string[], input = ""): Promise<Run> =>
    runCli(["--socket", env.d.socket, ...args], {
      input,
      timeoutMs: 90_000,
      env: { DOCKER_CONFIG: join(work, "docker") },
    });
  async function ok(args: string[], input = ""): Promise<string> {
    const r = await berth(args, input);
    assert.equal(r.code, 0, `berth ${args.join(" ")} exited ${r.code}: ${r.stderr}`);
    return r.stdout;
  }

  before(async () => {
    work = await mkdtemp(join(tmpdir(), "berth-push-"));
    [env, target, secure] = await Promise.all([
      startPodEnv({
        bridge: "bte2e-push",
        subnet: "10.231.81.0/24",
        images: ["berth-test/busybox"],
        config: `[registry]\npush_chunk_bytes = ${CHUNK}\n`,
      }),
      startRegistry(),
      startRegistry({ auth: creds }),
    ]);
    proxy = await startRegistryProxy(target);
  });
  after(async () => {
    await proxy?.close();
    await Promise.all([target?.stop(), secure?.stop()]);
    await closePodEnv(env);
    if (work) await rm(work, { recursive: true, force: true });
  });

  const busybox = () => env.reg.image("berth-test/busybox");

  test("push: blobs HEADed, layer in PATCH chunks; skopeo and umoci accept it; the registry's blobs match", async () => {
    const name = `${proxy.host}/demo/busybox:1`;
    await ok(["tag", env.image("berth-test/busybox"), name]);
    const out = await ok(["push", name]);
    const info = busybox();
    assert.equal(out.trim(), `${name}: digest: ${info.manifestDigest}`);
    const layer = info.layers[0] as string;
    const layerSize = (await stat(env.reg.blobs.blobPath(layer))).size;
    const byMethod = (m: string) => proxy.requests.filter((r) => r.method === m);
    assert.equal(byMethod("HEAD").filter((r) => r.path.includes("/blobs/")).length, info.layers.length + 1);
    assert.equal(
      byMethod("PATCH").length,
      Math.ceil(layerSize / CHUNK),
      `one PATCH per chunk of the layer: ${JSON.stringify(proxy.requests.map((r) => `${r.method} ${r.path}${r.search}`))}`,
    );
    assert.ok(byMethod("PUT").some((r) => r.search.includes(`digest=${encodeURIComponent(info.configDigest)}`)));

    const inspected = JSON.parse(await tool("skopeo", ["inspect", "--tls-verify=false", `docker://${name}`])) as {
      Digest: string;
      Layers: string[];
    };
    assert.equal(inspected.Digest, info.manifestDigest);
    assert.deepEqual(inspected.Layers, info.layers);
    for (const d of [info.configDigest, ...info.layers]) {
      const res = await registryRequest(target, `/v2/demo/busybox/blobs/${d}`);
      assert.equal(res.status, 200);
      assert.equal(sha256(res.body), d, `the registry's blob ${d} hashes to its digest`);
    }
    const layout = join(work, "pushed-oci");
    await tool("skopeo", ["copy", "--src-tls-verify=false", `docker://${name}`, `oci:${layout}:one`]);
    const st = await tool("umoci", ["stat", "--image", `${layout}:one`, "--json"]);
    assert.ok(JSON.parse(st), "umoci reads the pushed image");
  });

  test("a second push only HEADs the blobs; a push to another repository mounts them", async () => {
    const info = busybox();
    const before = proxy.requests.length;
    await ok(["push", `${proxy.host}/demo/busybox:1`]);
    const again = proxy.requests.slice(before);
    assert.deepEqual(
      again.map((r) => r.method).sort(),
      [...Array(info.layers.length + 1).fill("HEAD"), "PUT"].sort(),
      `second push: ${JSON.stringify(again)}`,
    );
    const mark = proxy.requests.length;
    const other = `${proxy.host}/other/busybox:2`;
    await ok(["tag", env.image("berth-test/busybox"), other]);
    await ok(["push", other]);
    const mounted = proxy.requests.slice(mark);
    const mounts = mounted.filter((r) => r.method === "POST" && r.search.includes("mount="));
    assert.equal(mounts.length, info.layers.length + 1, `every blob mounted: ${JSON.stringify(mounted)}`);
    assert.ok(mounts.every((r) => r.search.includes("from=demo%2Fbusybox")));
    assert.ok(!mounted.some((r) => r.method === "PATCH" || (r.method === "PUT" && r.search.includes("digest="))));
    for (const d of info.layers)
      assert.equal((await registryRequest(target, `/v2/other/busybox/blobs/${d}`, { method: "HEAD" })).status, 200);
  });

  test("login checks the password, writes the docker config 0600, and push uses it", async () => {
    const name = `${secure.host}/private/busybox:1`;
    await ok(["tag", env.image("berth-test/busybox"), name]);
    const refused = await berth(["push", name]);
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /Unauthenticated|credentials required/);
    const wrong = await berth(["login", "-u", creds.username, "--password-stdin", secure.host], "nope\n");
    assert.equal(wrong.code, 1);
    assert.match(wrong.stderr, /rejected|Unauthenticated/);
    const configPath = join(work, "docker", "config.json");
    await assert.rejects(stat(configPath), "a failed login writes nothing");
    await ok(["login", "-u", creds.username, "--password-stdin", secure.host], `${creds.password}\n`);
    assert.equal((await stat(configPath)).mode & 0o777, 0o600);
    const doc = JSON.parse(await readFile(configPath, "utf8")) as { auths: Record<string, { auth: string }> };
    assert.equal(
      Buffer.from(doc.auths[secure.host]?.auth ?? "", "base64").toString(),
      `${creds.username}:${creds.password}`,
    );
    await ok(["push", name]);
    const res = await registryRequest(secure, `/v2/private/busybox/manifests/1`, {
      headers: {
        accept: "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json",
      },
    });
    assert.equal(res.status, 200);
    assert.equal(sha256(res.body), busybox().manifestDigest);
    assert.match(await ok(["logout", secure.host]), /Removing login credentials/);
    // A registry whose credentials a helper keeps gets a clear error, not an anonymous push.
    await writeFile(configPath, JSON.stringify({ credHelpers: { [secure.host]: "pass" } }));
    const r = await berth(["push", name]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /credential helper docker-credential-pass, which berth does not run/);
    await rm(join(work, "docker"), { recursive: true, force: true });
  });

  test("tag then run: a container starts from the new name", async () => {
    await ok(["tag", env.image("berth-test/busybox"), "web:dev"]);
    const pod = await env.runPod("tagged");
    try {
      const { status, log } = await env.runToExit(pod, {
        metadata: { name: "c" },
        image: { image: "web:dev" },
        command: ["sh", "-c", "echo from-tag"],
      });
      assert.equal(status.exitCode, 0);
      assert.match(log, /from-tag/);
      assert.equal(status.imageRef, busybox().imageId);
    } finally {
      await env.removePod(pod);
    }
  });

  test("save: skopeo reads the docker-archive; umoci validates the OCI layout", async () => {
    const dockerTar = join(work, "web.tar");
    await ok(["save", "-o", dockerTar, "web:dev"]);
    const dockerLayout = join(work, "from-docker-archive");
    await tool("skopeo", ["copy", `docker-archive:${dockerTar}`, `oci:${dockerLayout}:web`]);
    const copied = JSON.parse(await tool("skopeo", ["inspect", `oci:${dockerLayout}:web`])) as { Layers: string[] };
    assert.equal(copied.Layers.length, busybox().layers.length);
    const config = JSON.parse(await tool("skopeo", ["inspect", "--config", `docker-archive:${dockerTar}`])) as {
      rootfs: { diff_ids: string[] };
    };
    assert.deepEqual(config.rootfs.diff_ids, busybox().diffIds);

    const ociTar = join(work, "web-oci.tar");
    await ok(["save", "--format", "oci", "-o", ociTar, "web:dev"]);
    const ociDir = join(work, "oci-layout");
    await tool("mkdir", ["-p", ociDir]);
    await tool("tar", ["-xf", ociTar, "-C", ociDir]);
    const st = JSON.parse(await tool("umoci", ["stat", "--image", `${ociDir}:dev`, "--json"])) as { history?: unknown };
    assert.ok(st, "umoci reads berth's OCI layout");
    const bundle = join(work, "bundle");
    await tool("umoci", ["unpack", "--image", `${ociDir}:dev`, bundle]);
    assert.ok((await stat(join(bundle, "rootfs", "bin", "busybox"))).isFile(), "umoci unpacks it");
  });

  test("load: skopeo's docker-archive and oci-archive load, unpack and run", async () => {
    // Nothing of busybox is left, so the loads must unpack their layers themselves.
    for (const image of (await env.d.client.image.listImages({})).images)
      await env.d.client.image.removeImage({ image: { image: image.id } });
    const src = `docker://${proxy.host}/demo/busybox:1`;
    const a = join(work, "skopeo-docker.tar");
    const b = join(work, "skopeo-oci.tar");
    await tool("skopeo", ["copy", "--src-tls-verify=false", src, `docker-archive:${a}:loaded/one:1`]);
    await tool("skopeo", ["copy", "--src-tls-verify=false", src, `oci-archive:${b}:loaded/two:2`]);
    assert.equal((await ok(["load", "-i", a])).trim(), "Loaded image: docker.io/loaded/one:1");
    assert.equal((await ok(["load", "-i", b])).trim(), "Loaded image: docker.io/loaded/two:2");
    for (const name of ["loaded/one:1", "loaded/two:2"]) {
      const st = await env.d.client.image.imageStatus({ image: { image: name } });
      assert.equal(st.image?.id, busybox().imageId, name);
    }
    const pod = await env.runPod("loaded");
    try {
      const { status, log } = await env.runToExit(pod, {
        metadata: { name: "c" },
        image: { image: "loaded/one:1" },
        command: ["sh", "-c", "echo loaded-ok"],
      });
      assert.equal(status.exitCode, 0);
      assert.match(log, /loaded-ok/);
    } finally {
      await env.removePod(pod);
    }
  });

  test("hostile archives are refused with InvalidArgument and store nothing", async () => {
    const blobsDir = join(env.d.root, "content", "blobs", "sha256");
    const layer = Buffer.alloc(1024, 7);
    const config = (diff: string) =>
      Buffer.from(JSON.stringify({ architecture: "amd64", os: "linux", rootfs: { type: "layers", diff_ids: [diff] } }));
    const goodConfig = config(sha256(layer));
    const manifest = (layers: string[]) =>
      Buffer.from(JSON.stringify([{ Config: "c.json", RepoTags: ["evil:1"], Layers: layers }]));
    const cases: Array<[string, Array<[string, Buffer]>, RegExp]> = [
      [
        "path traversal",
        [
          ["../evil", layer],
          ["manifest.json", manifest(["l.tar"])],
        ],
        /path traversal/,
      ],
      [
        "huge manifest.json",
        [["manifest.json", Buffer.alloc(5 * 1024 * 1024, 32)]],
        /manifest\.json is \d+ bytes, more than the limit/,
      ],
      [
        "missing blob",
        [
          ["c.json", goodConfig],
          ["manifest.json", manifest(["missing.tar"])],
        ],
        /missing\.tar.* is missing/,
      ],
      [
        "wrong digest",
        [
          ["c.json", config(sha256(Buffer.from("other")))],
          ["l.tar", layer],
          ["manifest.json", manifest(["l.tar"])],
        ],
        /wrong digest/,
      ],
      ["not a tar", [], /not a tar|neither manifest\.json/],
    ];
    const imagesBefore = (await env.d.client.image.listImages({})).images.map((i) => i.id).sort();
    const blobsBefore = (await readdir(blobsDir)).sort();
    for (const [what, entries, message] of cases) {
      const bytes = entries.length > 0 ? await tarOf(entries) : Buffer.from("garbage ".repeat(200));
      const err = await env.d.client.berth.images
        .load(
          (async function* () {
            yield { data: bytes };
          })(),
        )
        .then(
          () => undefined,
          (e: unknown) => e,
        );
      assert.ok(err instanceof ConnectError, `${what}: refused`);
      assert.equal(err.code, Code.InvalidArgument, `${what}: ${err.message}`);
      assert.match(err.message, message, what);
    }
    assert.deepEqual((await env.d.client.image.listImages({})).images.map((i) => i.id).sort(), imagesBefore);
    assert.deepEqual((await readdir(blobsDir)).sort(), blobsBefore, "no blob stored");
    assert.deepEqual(await readdir(join(env.d.root, "content", "ingest")), [], "no staging left");
  });
});

/** A tar of `entries` in order (names as given, even hostile ones). */
async function tarOf(entries: Array<[string, Buffer]>): Promise<Buffer> {
  const p = tarPack();
  const chunks: Buffer[] = [];
  const done = (async () => {
    for await (const c of p) chunks.push(c as Buffer);
  })();
  for (const [name, data] of entries) p.entry({ name, size: data.length }, data);
  p.finalize();
  await done;
  return Buffer.concat(chunks);
}
