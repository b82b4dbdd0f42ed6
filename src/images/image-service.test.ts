import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import http from "node:http";
import https from "node:https";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { gzipSync } from "node:zlib";
import { pack } from "tar-stream";
import { skipUnlessCi } from "../../test/support/skip.js";
import { type ContentStore, createContentStore } from "../content/index.js";
import { RuntimeError } from "../errdefs/index.js";
import { createOverlaySnapshotter, mountAll, type Snapshotter, unmount } from "../snapshots/index.js";
import { openStore, type Store } from "../store/index.js";
import { createImageService, type ImageService, type ImageServiceOptions, type LayerProgress } from "./index.js";
import { MediaType } from "./manifest.js";

/*
 * Integration tests: the image service with the real content store, overlay snapshotter and
 * archive, against an in-process fake registry (node:http on 127.0.0.1, so every pull also
 * exercises the localhost HTTPS→HTTP fallback). Root is needed to unpack layers (whiteouts are
 * character devices, opaque directories trusted xattrs) and to mount the result.
 */

const ROOT = process.getuid?.() === 0;
const ZSTD = (() => {
  try {
    execFileSync("zstd", ["--version"]);
    return true;
  } catch {
    return false;
  }
})();
const skip = skipUnlessCi(
  !ROOT
    ? "needs root: layers are unpacked with whiteout devices and mounted with overlayfs"
    : !ZSTD
      ? "needs the zstd binary"
      : false,
);

const sha = (b: Uint8Array | string) => `sha256:${createHash("sha256").update(b).digest("hex")}`;

// ---------- image building ----------

type Entry = {
  name: string;
  type?: "file" | "directory" | "symlink";
  content?: string;
  mode?: number;
  linkname?: string;
};

async function tarOf(entries: Entry[]): Promise<Buffer> {
  const p = pack();
  const chunks: Buffer[] = [];
  const done = (async () => {
    for await (const c of p) chunks.push(c as Buffer);
  })();
  for (const e of entries) {
    const type = e.type ?? "file";
    const header = {
      name: e.name,
      type,
      mode: e.mode ?? (type === "directory" ? 0o755 : 0o644),
      mtime: new Date("2024-01-01T00:00:00Z"),
      uid: 0,
      gid: 0,
      ...(e.linkname !== undefined ? { linkname: e.linkname } : {}),
    };
    await new Promise<void>((resolve, reject) => {
      const cb = (err?: Error | null) => (err ? reject(err) : resolve());
      if (type === "file") p.entry(header, e.content ?? "", cb);
      else p.entry(header, cb);
    });
  }
  p.finalize();
  await done;
  return Buffer.concat(chunks);
}

interface Layer {
  blob: Buffer;
  diffId: string;
  desc: { mediaType: string; digest: string; size: number };
}

async function layer(entries: Entry[], compression: "gzip" | "zstd" | "none", docker = false): Promise<Layer> {
  const tar = await tarOf(entries);
  const blob =
    compression === "gzip"
      ? gzipSync(tar)
      : compression === "zstd"
        ? execFileSync("zstd", ["-q", "-c"], { input: tar })
        : tar;
  const mediaType = docker
    ? MediaType.dockerLayerGzip
    : compression === "gzip"
      ? MediaType.ociLayerGzip
      : compression === "zstd"
        ? MediaType.ociLayerZstd
        : MediaType.ociLayer;
  return { blob, diffId: sha(tar), desc: { mediaType, digest: sha(blob), size: blob.length } };
}

/** Blobs and manifests a fake registry serves; shareable between an upstream and its mirror. */
class Content {
  blobs = new Map<string, Buffer>();
  /** repo -> tag or digest -> manifest */
  manifests = new Map<string, Map<string, { bytes: Buffer; mediaType: string }>>();

  blob(bytes: Buffer, mediaType: string) {
    this.blobs.set(sha(bytes), bytes);
    return { mediaType, digest: sha(bytes), size: bytes.length };
  }

  manifest(repo: string, tag: string | undefined, doc: unknown, mediaType: string) {
    const bytes = Buffer.from(JSON.stringify(doc));
    const m = this.manifests.get(repo) ?? new Map();
    this.manifests.set(repo, m);
    m.set(sha(bytes), { bytes, mediaType });
    if (tag !== undefined) m.set(tag, { bytes, mediaType });
    return { mediaType, digest: sha(bytes), size: bytes.length };
  }

  /** An image manifest (OCI or Docker) with its config; returns the manifest descriptor and the config digest. */
  image(
    repo: string,
    tag: string | undefined,
    layers: Layer[],
    options: { docker?: boolean; env?: string[]; arch?: string } = {},
  ) {
    for (const l of layers) this.blobs.set(l.desc.digest, l.blob);
    const config = {
      architecture: options.arch ?? "amd64",
      os: "linux",
      config: { Env: options.env ?? ["PATH=/bin"], Cmd: ["/bin/sh"], User: "1000:1000" },
      rootfs: { type: "layers", diff_ids: layers.map((l) => l.diffId) },
    };
    const configDesc = this.blob(
      Buffer.from(JSON.stringify(config)),
      options.docker ? MediaType.dockerConfig : MediaType.ociConfig,
    );
    const mediaType = options.docker ? MediaType.dockerManifest : MediaType.ociManifest;
    const desc = this.manifest(
      repo,
      tag,
      { schemaVersion: 2, mediaType, config: configDesc, layers: layers.map((l) => l.desc) },
      mediaType,
    );
    return { desc, configDigest: configDesc.digest };
  }
}

// ---------- the fake registry ----------

interface FakeOptions {
  /** repo -> auth required */
  auth?: Record<string, "bearer" | "basic">;
  /** digests served with flipped bytes */
  corrupt?: Set<string>;
  /** digests whose body stalls after half */
  slow?: Set<string>;
  /** digests whose body waits after half until `openGate()` */
  gated?: Set<string>;
  /** digests served through a 307 redirect */
  redirect?: Set<string>;
  /** digests (and manifest refs) answered 404 */
  missing?: Set<string>;
  /** repos whose manifest HEAD carries no Docker-Content-Digest */
  noDigestHeader?: Set<string>;
  /** serve HTTPS with this key pair, requiring a client certificate signed by `ca` */
  tls?: { key: Buffer; cert: Buffer; ca: Buffer };
}

class FakeRegistry {
  server: http.Server | https.Server;
  requests: { method: string; path: string; ns: string | null; auth: string | undefined }[] = [];
  tokenRequests = 0;
  /** Resolves when a slow blob's connection is closed by the client. */
  slowClosed: Promise<void>;
  private slowClosedResolve!: () => void;
  private gate: Promise<void>;
  openGate!: () => void;

  constructor(
    readonly content: Content,
    readonly o: FakeOptions = {},
  ) {
    this.slowClosed = new Promise((r) => {
      this.slowClosedResolve = r;
    });
    this.gate = new Promise((r) => {
      this.openGate = r;
    });
    const handler = (req: http.IncomingMessage, res: http.ServerResponse) => this.handle(req, res);
    this.server = o.tls
      ? https.createServer({ ...o.tls, requestCert: true, rejectUnauthorized: true }, handler)
      : http.createServer(handler);
  }

  async start(): Promise<this> {
    await new Promise<void>((r) => this.server.listen(0, "127.0.0.1", r));
    return this;
  }

  get host(): string {
    return `127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  blobGets(digest: string): number {
    return this.requests.filter((r) => r.method === "GET" && r.path.endsWith(`/blobs/${digest}`)).length;
  }

  reset(): void {
    this.requests = [];
    this.tokenRequests = 0;
  }

  async stop(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise((r) => this.server.close(r));
  }

  private handle(req: http.IncomingMessage, res: http.ServerResponse) {
    const url = new URL(req.url ?? "/", `http://${this.host}`);
    if (url.pathname === "/token") return this.token(req, url, res);
    if (url.pathname.startsWith("/redirected/"))
      return this.sendBlob(req, res, url.pathname.slice("/redirected/".length));
    this.requests.push({
      method: req.method ?? "",
      path: url.pathname,
      ns: url.searchParams.get("ns"),
      auth: req.headers.authorization,
    });
    const m = /^\/v2\/(.+)\/(manifests|blobs)\/([^/]+)$/.exec(url.pathname);
    if (!m) return end(res, url.pathname === "/v2/" ? 200 : 404);
    const [, repo, kind, ref] = m as unknown as [string, string, string, string];
    const auth = this.o.auth?.[repo];
    if (auth === "bearer" && req.headers.authorization !== `Bearer tok-${repo}`) {
      res.setHeader(
        "www-authenticate",
        `Bearer realm="http://${this.host}/token",service="fake",scope="repository:${repo}:pull"`,
      );
      return end(res, 401, { errors: [{ code: "UNAUTHORIZED", message: "authentication required" }] });
    }
    if (auth === "basic" && req.headers.authorization !== basic("user", "pass")) {
      res.setHeader("www-authenticate", 'Basic realm="fake"');
      return end(res, 401, { errors: [{ code: "UNAUTHORIZED", message: "authentication required" }] });
    }
    if (this.o.missing?.has(ref)) return end(res, 404, { errors: [{ code: "NOT_FOUND" }] });
    if (kind === "manifests") {
      const man = this.content.manifests.get(repo)?.get(ref);
      if (!man) return end(res, 404, { errors: [{ code: "MANIFEST_UNKNOWN" }] });
      res.setHeader("content-type", man.mediaType);
      res.setHeader("content-length", man.bytes.length);
      if (!this.o.noDigestHeader?.has(repo)) res.setHeader("docker-content-digest", sha(man.bytes));
      res.writeHead(200);
      return res.end(req.method === "HEAD" ? undefined : man.bytes);
    }
    if (this.o.redirect?.has(ref)) {
      res.writeHead(307, { location: `/redirected/${ref}` });
      return res.end();
    }
    return this.sendBlob(req, res, ref);
  }

  private sendBlob(req: http.IncomingMessage, res: http.ServerResponse, digest: string) {
    const blob = this.content.blobs.get(digest);
    if (!blob) return end(res, 404, { errors: [{ code: "BLOB_UNKNOWN" }] });
    let body = blob;
    if (this.o.corrupt?.has(digest)) body = Buffer.from(blob.map((b) => b ^ 0xff));
    res.writeHead(200, { "content-type": "application/octet-stream", "content-length": body.length });
    if (req.method === "HEAD") return res.end();
    if (this.o.slow?.has(digest)) {
      res.write(body.subarray(0, body.length >> 1));
      res.on("close", () => this.slowClosedResolve());
      return; // never finishes: the client has to give up
    }
    if (this.o.gated?.has(digest)) {
      res.write(body.subarray(0, body.length >> 1));
      void this.gate.then(() => res.end(body.subarray(body.length >> 1)));
      return;
    }
    res.end(body);
  }

  private token(req: http.IncomingMessage, url: URL, res: http.ServerResponse) {
    this.tokenRequests++;
    if (req.headers.authorization !== basic("user", "pass"))
      return end(res, 401, { errors: [{ code: "UNAUTHORIZED" }] });
    const repo = /^repository:(.+):pull$/.exec(url.searchParams.get("scope") ?? "")?.[1];
    end(res, 200, { token: `tok-${repo}`, expires_in: 300 });
  }
}

function basic(u: string, p: string): string {
  return `Basic ${Buffer.from(`${u}:${p}`).toString("base64")}`;
}

/** A CA, a server certificate for 127.0.0.1 and a client certificate, made with the openssl binary. */
async function makeCerts(dir: string): Promise<Record<"caCrt" | "srvKey" | "srvCrt" | "cliKey" | "cliCrt", string>> {
  const f = (n: string) => join(dir, n);
  const ssl = (...args: string[]) => execFileSync("openssl", args, { stdio: "pipe" });
  ssl(
    "req",
    "-x509",
    "-newkey",
    "rsa:2048",
    "-nodes",
    "-keyout",
    f("ca.key"),
    "-out",
    f("ca.crt"),
    "-days",
    "2",
    "-subj",
    "/CN=berth test ca",
  );
  await writeFile(f("srv.ext"), "subjectAltName=IP:127.0.0.1\n");
  for (const [name, cn] of [
    ["srv", "127.0.0.1"],
    ["cli", "berth client"],
  ] as const) {
    ssl(
      "req",
      "-newkey",
      "rsa:2048",
      "-nodes",
      "-keyout",
      f(`${name}.key`),
      "-out",
      f(`${name}.csr`),
      "-subj",
      `/CN=${cn}`,
    );
    const ext = name === "srv" ? ["-extfile", f("srv.ext")] : [];
    ssl(
      "x509",
      "-req",
      "-in",
      f(`${name}.csr`),
      "-CA",
      f("ca.crt"),
      "-CAkey",
      f("ca.key"),
      "-CAcreateserial",
      "-out",
      f(`${name}.crt`),
      "-days",
      "2",
      ...ext,
    );
  }
  return { caCrt: f("ca.crt"), srvKey: f("srv.key"), srvCrt: f("srv.crt"), cliKey: f("cli.key"), cliCrt: f("cli.crt") };
}

function end(res: http.ServerResponse, status: number, body?: unknown) {
  const text = body === undefined ? "" : JSON.stringify(body);
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(text) });
  res.end(text);
}

// ---------- environment ----------

interface Env {
  root: string;
  store: Store;
  content: ContentStore;
  snapshotter: Snapshotter;
  service: ImageService;
  close(): void;
}

async function openEnv(root: string, configPath = "", extra: Partial<ImageServiceOptions> = {}): Promise<Env> {
  const store = openStore(join(root, "berth.db"));
  const content = await createContentStore({ root });
  const snapshotter = await createOverlaySnapshotter({ root });
  const service = await createImageService({
    store,
    content,
    snapshotter,
    mountpoint: root,
    platform: "linux/amd64",
    configPath,
    ...extra,
  });
  return {
    root,
    store,
    content,
    snapshotter,
    service,
    close() {
      service.close();
      store.close();
    },
  };
}

async function freshEnv(configPath = "", extra: Partial<ImageServiceOptions> = {}): Promise<Env> {
  return openEnv(await mkdtemp(join(tmpdir(), "berth-images-")), configPath, extra);
}

async function kindOf(p: Promise<unknown>): Promise<{ kind: string; message: string }> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof RuntimeError, `not a RuntimeError: ${String(err)}`);
    return { kind: err.kind, message: err.message };
  }
  assert.fail("expected a rejection");
}

// ---------- the tests ----------

describe("image service against a fake registry", { skip }, () => {
  const content = new Content();
  let reg: FakeRegistry;
  let L1: Layer, L2: Layer, L3: Layer, L4: Layer, LC: Layer, LS: Layer, L5: Layer, LG: Layer;
  let img: { desc: { digest: string }; configDigest: string };
  let other: { desc: { digest: string }; configDigest: string };
  let multiDigest: string;
  let multiAmd64: { desc: { digest: string }; configDigest: string };
  let arm64Digest: string;
  const envs: Env[] = [];
  const env = async (configPath = "", extra: Partial<ImageServiceOptions> = {}) => {
    const e = await freshEnv(configPath, extra);
    envs.push(e);
    return e;
  };
  const ref = (name: string) => `${reg.host}/${name}`;
  let escapeDir: string;

  before(async () => {
    escapeDir = await mkdtemp(join(tmpdir(), "berth-escape-"));
    L1 = await layer(
      [
        { name: "etc/", type: "directory" },
        { name: "etc/hello", content: "hello\n" },
        { name: "gone.txt", content: "bye" },
        { name: "keep/", type: "directory" },
        { name: "keep/x", content: "x" },
      ],
      "gzip",
    );
    L2 = await layer(
      [{ name: ".wh.gone.txt" }, { name: "etc/", type: "directory" }, { name: "etc/world", content: "world\n" }],
      "zstd",
    );
    L3 = await layer([{ name: "d.txt", content: "uncompressed" }], "none");
    L4 = await layer([{ name: "other.txt", content: "other" }], "gzip", true);
    L5 = await layer([{ name: "private.txt", content: "secret" }], "gzip");
    LC = await layer([{ name: "c.txt", content: "corrupt me" }], "gzip");
    LS = await layer([{ name: "big.bin", content: "z".repeat(4 << 20) }], "none");
    LG = await layer([{ name: "gated.bin", content: "g".repeat(2 << 20) }], "none");
    img = content.image("test/img", "latest", [L1, L2, L3]);
    content.manifests
      .get("test/img")
      ?.set("v2", content.manifests.get("test/img")?.get("latest") as { bytes: Buffer; mediaType: string });
    other = content.image("test/other", "latest", [L1, L4], { docker: true });
    multiAmd64 = content.image("multi/img", undefined, [L1], { env: ["MULTI=1"] });
    // The arm64 child is listed but never stored: fetching it would 404 and fail the pull.
    arm64Digest = sha("not stored");
    multiDigest = content.manifest(
      "multi/img",
      "latest",
      {
        schemaVersion: 2,
        mediaType: MediaType.ociIndex,
        manifests: [
          {
            mediaType: MediaType.ociManifest,
            digest: arm64Digest,
            size: 10,
            platform: { os: "linux", architecture: "arm64", variant: "v8" },
          },
          { ...multiAmd64.desc, platform: { os: "linux", architecture: "amd64" } },
          {
            mediaType: MediaType.ociManifest,
            digest: sha("attestation"),
            size: 5,
            platform: { os: "unknown", architecture: "unknown" },
          },
        ],
      },
      MediaType.ociIndex,
    ).digest;
    content.image("corrupt/img", "latest", [L1, LC]);
    content.image("private/img", "latest", [L1, L5]);
    content.image("basic/img", "latest", [L1, L4]);
    content.image("slow/img", "latest", [LS]);
    content.image("gated/img", "latest", [L1, LG]);
    content.image("hostile/dotdot", "latest", [await layer([{ name: "../escape-dotdot.txt", content: "x" }], "gzip")]);
    content.image("hostile/symlink", "latest", [
      await layer(
        [
          { name: "link", type: "symlink" as Entry["type"], linkname: escapeDir } as Entry,
          { name: "link/escape-symlink.txt", content: "x" },
        ],
        "gzip",
      ),
    ]);
    content.manifest(
      "old/img",
      "latest",
      { schemaVersion: 1, name: "old/img", tag: "latest", fsLayers: [] },
      MediaType.dockerSchema1Signed,
    );
    // A manifest stored under a digest its bytes do not have.
    const real = content.manifests.get("test/img")?.get("latest");
    content.manifests.set("liar/img", new Map([[sha("something else"), real as { bytes: Buffer; mediaType: string }]]));

    reg = await new FakeRegistry(content, {
      auth: { "private/img": "bearer", "basic/img": "basic" },
      corrupt: new Set([LC.desc.digest]),
      slow: new Set([LS.desc.digest]),
      gated: new Set([LG.desc.digest]),
      redirect: new Set([L3.desc.digest]),
      noDigestHeader: new Set(["basic/img"]),
    }).start();
  });

  after(async () => {
    for (const e of envs) {
      e.close();
      await rm(e.root, { recursive: true, force: true });
    }
    await reg?.stop();
    await rm(escapeDir, { recursive: true, force: true });
  });

  test("pull by tag: gzip, zstd and uncompressed layers unpacked into chain-ID snapshots, with progress", async () => {
    const e = await env();
    reg.reset();
    const events: LayerProgress[] = [];
    const record = await e.service.pull(ref("test/img"), { onProgress: (p) => events.push(p) });
    assert.equal(record.id, img.configDigest);
    assert.deepEqual(record.repoTags, [`${reg.host}/test/img:latest`]);
    assert.deepEqual(record.repoDigests, [`${reg.host}/test/img@${img.desc.digest}`]);
    assert.equal(record.manifestDigest, img.desc.digest);
    assert.equal(
      record.size,
      L1.desc.size + L2.desc.size + L3.desc.size + (content.blobs.get(img.configDigest)?.length ?? 0),
    );
    assert.equal(record.config.config?.User, "1000:1000");
    assert.equal(record.chainIds.length, 3);
    assert.equal(record.chainIds[0], L1.diffId);
    for (const c of record.chainIds) assert.equal((await e.snapshotter.stat(c))?.kind, "committed");
    assert.equal(e.service.rootfsChainId(record.id), record.chainIds[2]);
    assert.deepEqual(e.service.imageConfig(record.id).rootfs.diff_ids, [L1.diffId, L2.diffId, L3.diffId]);
    for (const l of [L1, L2, L3]) {
      const mine = events.filter((p) => p.digest === l.desc.digest);
      assert.equal(mine.at(-1)?.state, "done", `last event of ${l.desc.digest}`);
      assert.ok(mine.some((p) => p.state === "extracting"));
      assert.ok(mine.some((p) => p.state === "downloading" || p.state === "verifying"));
      assert.equal(mine.at(-1)?.done, l.desc.size);
    }
    // The redirected blob was fetched through its redirect, without our Authorization (there was none).
    assert.equal(reg.blobGets(L3.desc.digest), 1);

    // Mounted, the layers merge and the zstd layer's whiteout hides gone.txt.
    const target = join(e.root, "mnt");
    await mkdir(target);
    const mounts = await e.snapshotter.prepare("container-1", e.service.rootfsChainId(record.id));
    await mountAll(mounts, target);
    try {
      assert.equal(await readFile(join(target, "etc/hello"), "utf8"), "hello\n");
      assert.equal(await readFile(join(target, "etc/world"), "utf8"), "world\n");
      assert.equal(await readFile(join(target, "d.txt"), "utf8"), "uncompressed");
      assert.equal(existsSync(join(target, "gone.txt")), false);
    } finally {
      await unmount(target);
      await e.snapshotter.remove("container-1");
    }
  });

  test("status finds an image by ID, ID prefix, tag in any normalised form, and repo digest", async () => {
    const e = await env();
    const record = await e.service.pull(ref("test/img:latest"));
    const hex = record.id.slice(7);
    for (const q of [
      record.id,
      hex.slice(0, 12),
      `sha256:${hex.slice(0, 8)}`,
      ref("test/img"),
      ref("test/img:latest"),
      `${ref("test/img")}@${img.desc.digest}`,
    ]) {
      assert.equal(e.service.status(q)?.id, record.id, q);
    }
    assert.equal(e.service.status(ref("test/img:nope")), undefined);
    assert.equal(e.service.status("busybox"), undefined);
    assert.equal(e.service.status("NOT A REFERENCE"), undefined);
    assert.deepEqual(
      e.service.list().map((r) => r.id),
      [record.id],
    );
    assert.deepEqual(
      e.service.list(ref("test/img")).map((r) => r.id),
      [record.id],
    );
    assert.deepEqual(e.service.list(ref("test/other")), []);
    const fs = await e.service.fsInfo();
    assert.equal(fs.mountpoint, e.root);
    assert.ok(fs.usedBytes > 0 && fs.inodesUsed > 0 && fs.timestamp > 1_600_000_000n * 1_000_000_000n);
  });

  test("pull by digest and by tag+digest: the digest wins, only the repo digest is recorded", async () => {
    const e = await env();
    const byDigest = await e.service.pull(`${ref("test/img")}@${img.desc.digest}`);
    assert.equal(byDigest.id, img.configDigest);
    assert.deepEqual(byDigest.repoTags, []);
    assert.deepEqual(byDigest.repoDigests, [`${reg.host}/test/img@${img.desc.digest}`]);
    // The tag says "v2" but nothing is recorded for it: the digest decided what was pulled.
    const both = await e.service.pull(`${ref("test/img")}:v2@${img.desc.digest}`);
    assert.equal(both.id, img.configDigest);
    assert.deepEqual(both.repoTags, []);
    // A registry that serves other bytes under a digest is caught.
    const lie = await kindOf(e.service.pull(`${ref("liar/img")}@${sha("something else")}`));
    assert.equal(lie.kind, "InvalidArgument");
    assert.match(lie.message, /digest mismatch/);
  });

  test("a multi-arch index: the linux/amd64 child is chosen and the others never fetched", async () => {
    const e = await env();
    reg.reset();
    const record = await e.service.pull(ref("multi/img"));
    assert.equal(record.id, multiAmd64.configDigest);
    assert.equal(record.manifestDigest, multiAmd64.desc.digest);
    assert.deepEqual(record.repoDigests, [`${reg.host}/multi/img@${multiDigest}`]);
    assert.equal(reg.requests.filter((r) => r.path.endsWith(arm64Digest)).length, 0);
    // The platform manifest's digest also finds it.
    assert.equal(e.service.status(`${ref("multi/img")}@${multiAmd64.desc.digest}`)?.id, record.id);
  });

  test("concurrent pulls of one image and of an image sharing a layer fetch every blob once", async () => {
    const e = await env();
    reg.reset();
    const [a, b, c] = await Promise.all([
      e.service.pull(ref("test/img")),
      e.service.pull(ref("test/img")),
      e.service.pull(ref("test/other")),
    ]);
    assert.equal(a.id, b.id);
    assert.equal(c.id, other.configDigest);
    for (const d of [L1, L2, L3, L4].map((l) => l.desc.digest).concat(img.configDigest, other.configDigest)) {
      assert.equal(reg.blobGets(d), 1, `GETs of ${d}`);
    }
    // The shared base layer is one snapshot.
    assert.equal(a.chainIds[0], c.chainIds[0]);
    // A second pull of a present image downloads no blob at all.
    reg.reset();
    await e.service.pull(ref("test/img"));
    assert.deepEqual(
      reg.requests.filter((r) => r.path.includes("/blobs/")),
      [],
    );
  });

  test("a corrupted blob fails the pull naming the digest and leaves no image, blob or snapshot", async () => {
    const e = await env();
    const err = await kindOf(e.service.pull(ref("corrupt/img")));
    assert.equal(err.kind, "InvalidArgument");
    assert.match(err.message, new RegExp(LC.desc.digest));
    assert.deepEqual(e.service.list(), []);
    assert.equal(await e.content.info(LC.desc.digest), undefined);
    // L1 may have been downloaded and unpacked; garbage collection takes what no image references.
    await e.service.collectGarbage();
    assert.deepEqual(await e.content.list(), []);
    assert.deepEqual(await e.snapshotter.list(), []);
  });

  test("bearer token flow: credentials are exchanged for a token once; without them, Unauthenticated", async () => {
    const e = await env();
    reg.reset();
    const denied = await kindOf(e.service.pull(ref("private/img")));
    assert.equal(denied.kind, "Unauthenticated");
    assert.match(denied.message, /private\/img/);
    const wrong = await kindOf(e.service.pull(ref("private/img"), { auth: { username: "user", password: "nope" } }));
    assert.equal(wrong.kind, "Unauthenticated");
    assert.doesNotMatch(wrong.message, /nope/);
    reg.reset();
    const record = await e.service.pull(ref("private/img"), {
      auth: { username: "user", password: "pass", serverAddress: reg.host },
    });
    assert.deepEqual(record.repoTags, [`${reg.host}/private/img:latest`]);
    assert.equal(reg.tokenRequests, 1, "one token for the whole pull");
    // Credentials for another registry are not sent here.
    const elsewhere = await kindOf(
      e.service.pull(ref("private/img:latest"), {
        auth: { username: "user", password: "pass", serverAddress: "other.example" },
      }),
    );
    assert.equal(elsewhere.kind, "Unauthenticated");
  });

  test("basic auth flow, with credentials given as a Docker `auth` string", async () => {
    const e = await env();
    assert.equal((await kindOf(e.service.pull(ref("basic/img")))).kind, "Unauthenticated");
    const record = await e.service.pull(ref("basic/img"), {
      auth: { auth: Buffer.from("user:pass").toString("base64") },
    });
    assert.equal(record.chainIds.length, 2);
  });

  test("schema 1 manifests are refused as unsupported; a missing tag is NotFound; a bad reference InvalidArgument", async () => {
    const e = await env();
    const old = await kindOf(e.service.pull(ref("old/img")));
    assert.equal(old.kind, "Unimplemented");
    assert.match(old.message, /schema 1 is unsupported/);
    assert.equal((await kindOf(e.service.pull(ref("test/img:missing")))).kind, "NotFound");
    const bad = await kindOf(e.service.pull("Not/A:Ref!"));
    assert.equal(bad.kind, "InvalidArgument");
    assert.match(bad.message, /^invalid reference "Not\/A:Ref!"/);
  });

  test("cancelling a pull stops its download and leaves nothing; a later pull starts afresh", async () => {
    const e = await env();
    const controller = new AbortController();
    const pulling = e.service.pull(ref("slow/img"), {
      signal: controller.signal,
      onProgress: (p) => {
        if (p.done > 0) controller.abort();
      },
    });
    const err = await kindOf(pulling);
    assert.equal(err.kind, "Canceled");
    // Nothing of the pull runs on after it rejects: its partial ingest is already gone.
    assert.deepEqual(await readdir(join(e.root, "content", "ingest")), []);
    await reg.slowClosed; // the registry saw the connection go away
    assert.deepEqual(e.service.list(), []);
    assert.equal(await e.content.info(LS.desc.digest), undefined);
    assert.deepEqual(
      (await e.snapshotter.list()).filter((s) => s.kind === "active"),
      [],
    );
    // The aborted shared download is gone: the next pull opens its own (and times out here).
    const again = await kindOf(e.service.pull(ref("slow/img"), { signal: AbortSignal.timeout(300) }));
    assert.equal(again.kind, "DeadlineExceeded");
    assert.equal(reg.blobGets(LS.desc.digest), 2);
  });

  test("a download that stalls fails with DeadlineExceeded after the stall timeout", async () => {
    const e = await env("", { stallTimeoutMs: 200 });
    const err = await kindOf(e.service.pull(ref("slow/img")));
    assert.equal(err.kind, "DeadlineExceeded");
    assert.match(err.message, new RegExp(`blob ${LS.desc.digest}: no data received for 0.2 s`));
  });

  test("a download shared by two pulls survives the cancellation of one of them", async () => {
    const e = await env();
    reg.reset();
    const first = new AbortController();
    let bothWaiting!: () => void;
    const waiting = new Promise<void>((r) => {
      bothWaiting = r;
    });
    const seen = new Set<string>();
    const watch = (who: string) => (p: LayerProgress) => {
      if (p.digest === LG.desc.digest && p.done > 0) seen.add(who);
      if (seen.size === 2) bothWaiting();
    };
    const a = e.service.pull(ref("gated/img"), { signal: first.signal, onProgress: watch("a") });
    const b = e.service.pull(ref("gated/img"), { onProgress: watch("b") });
    await waiting;
    first.abort();
    assert.equal((await kindOf(a)).kind, "Canceled");
    reg.openGate();
    const record = await b;
    assert.equal(record.chainIds.length, 2);
    assert.equal(reg.blobGets(LG.desc.digest), 1);
  });

  test("hostile layers (.. and a symlink escape) fail the pull and write nothing outside", async () => {
    const e = await env();
    for (const name of ["hostile/dotdot", "hostile/symlink"]) {
      const err = await kindOf(e.service.pull(ref(name)));
      assert.equal(err.kind, "InvalidArgument", `${name}: ${err.message}`);
    }
    assert.equal(existsSync(join(escapeDir, "escape-symlink.txt")), false);
    assert.deepEqual(e.service.list(), []);
    assert.deepEqual(await e.snapshotter.list(), []);
  });

  test("close() cancels pulls in flight", async () => {
    const e = await env();
    const pulling = e.service.pull(ref("slow/img"), {
      onProgress: (p) => {
        if (p.done > 0) e.service.close();
      },
    });
    assert.equal((await kindOf(pulling)).kind, "Canceled");
  });

  test("remove: one tag of several only untags; the last reference removes the image; GC spares shared and in-use layers", async () => {
    const e = await env();
    const a = await e.service.pull(ref("test/img:latest"));
    await e.service.pull(ref("test/img:v2"));
    const o = await e.service.pull(ref("test/other"));
    assert.deepEqual(e.service.status(a.id)?.repoTags, [`${reg.host}/test/img:latest`, `${reg.host}/test/img:v2`]);

    await e.service.remove(ref("test/img:v2"));
    assert.deepEqual(e.service.status(a.id)?.repoTags, [`${reg.host}/test/img:latest`]);
    assert.ok(await e.content.info(L2.desc.digest));

    // A container on test/img: its layers must outlive the image.
    await e.snapshotter.prepare("container-2", e.service.rootfsChainId(a.id));
    await e.service.remove(ref("test/img"));
    assert.equal(e.service.status(a.id), undefined);
    for (const gone of [L2, L3].map((l) => l.desc.digest).concat(img.configDigest, img.desc.digest)) {
      assert.equal(await e.content.info(gone), undefined, `blob ${gone} collected`);
    }
    assert.ok(await e.content.info(L1.desc.digest), "the layer test/other shares stays");
    for (const c of a.chainIds) assert.ok(await e.snapshotter.stat(c), `snapshot ${c} under a container stays`);

    // Once the container is gone, the next collection takes its layers (but not test/other's).
    await e.snapshotter.remove("container-2");
    await e.service.collectGarbage();
    assert.equal(await e.snapshotter.stat(a.chainIds[2] as string), undefined);
    assert.equal(await e.snapshotter.stat(a.chainIds[1] as string), undefined);
    assert.ok(await e.snapshotter.stat(o.chainIds[0] as string));

    // By ID, every tag goes; absent images are no error.
    await e.service.remove(o.id.slice(7, 19));
    assert.deepEqual(e.service.list(), []);
    assert.deepEqual(await e.content.list(), []);
    assert.deepEqual(await e.snapshotter.list(), []);
    await e.service.remove(ref("test/img"));
    await e.service.remove("sha256:0000000000000000000000000000000000000000000000000000000000000000");
  });

  test("a tag moves to the newly pulled image; the old image keeps its repo digest", async () => {
    const e = await env();
    const first = await e.service.pull(ref("test/img"));
    const m = content.manifests.get("test/img");
    const saved = m?.get("latest");
    const otherManifest = content.manifests.get("test/other")?.get("latest") as { bytes: Buffer; mediaType: string };
    m?.set("latest", otherManifest);
    m?.set(other.desc.digest, otherManifest);
    try {
      // The repository now serves test/other's manifest under test/img:latest (same blobs exist).
      const second = await e.service.pull(ref("test/img"));
      assert.notEqual(second.id, first.id);
      assert.deepEqual(e.service.status(first.id)?.repoTags, []);
      assert.deepEqual(e.service.status(first.id)?.repoDigests, [`${reg.host}/test/img@${img.desc.digest}`]);
      assert.deepEqual(e.service.status(ref("test/img"))?.id, second.id);
    } finally {
      m?.set("latest", saved as { bytes: Buffer; mediaType: string });
      m?.delete(other.desc.digest);
    }
  });

  test("images, tags and layers survive a restart", async () => {
    const e = await env();
    const record = await e.service.pull(ref("test/img"));
    e.close();
    const again = await openEnv(e.root);
    envs.push(again);
    assert.deepEqual(again.service.status(ref("test/img")), record);
    assert.equal((await again.snapshotter.stat(again.service.rootfsChainId(record.id) as string))?.kind, "committed");
    reg.reset();
    await again.service.pull(ref("test/img"));
    assert.deepEqual(
      reg.requests.filter((r) => r.path.includes("/blobs/")),
      [],
    );
  });

  test("hosts.toml TLS: a custom CA and a client certificate; without them the pull fails", async () => {
    const dir = await mkdtemp(join(tmpdir(), "berth-tls-"));
    const certs = await makeCerts(dir);
    const secure = await new FakeRegistry(content, {
      tls: { key: await readFile(certs.srvKey), cert: await readFile(certs.srvCrt), ca: await readFile(certs.caCrt) },
    }).start();
    const hostDir = join(dir, "certs.d", secure.host);
    await mkdir(hostDir, { recursive: true });
    const write = (toml: string) => writeFile(join(hostDir, "hosts.toml"), toml);
    const name = `${secure.host}/test/img`;
    try {
      const e = await env(join(dir, "certs.d"));
      await write(`server = "https://${secure.host}"\nca = "${certs.caCrt}"\n`);
      const noClient = await kindOf(e.service.pull(name));
      assert.equal(noClient.kind, "Unavailable", noClient.message);
      await write(`server = "https://${secure.host}"\n`);
      const untrusted = await kindOf(e.service.pull(name));
      assert.equal(untrusted.kind, "Unavailable");
      assert.match(untrusted.message, /certificate/);
      await write(
        `server = "https://${secure.host}"\nca = "${certs.caCrt}"\nclient = [["${certs.cliCrt}", "${certs.cliKey}"]]\n`,
      );
      const record = await e.service.pull(name);
      assert.equal(record.id, img.configDigest);
      assert.ok(secure.blobGets(L1.desc.digest) >= 1);
    } finally {
      await secure.stop();
      await rm(dir, { recursive: true, force: true });
    }
  });

  test("mirrors from hosts.toml are tried first, with ?ns=; a 404 on the mirror falls through to upstream", async () => {
    const mirror = await new FakeRegistry(content, { missing: new Set([L3.desc.digest]) }).start();
    const cfg = await mkdtemp(join(tmpdir(), "berth-hosts-"));
    try {
      await mkdir(join(cfg, reg.host));
      await writeFile(
        join(cfg, reg.host, "hosts.toml"),
        `server = "http://${reg.host}"\n\n[host."http://${mirror.host}"]\n  capabilities = ["pull"]\n`,
      );
      const e = await env(cfg);
      reg.reset();
      await e.service.pull(ref("test/img"));
      // The tag was resolved upstream (the mirror may only pull); blobs came from the mirror, but L3.
      assert.deepEqual(
        reg.requests.map((r) => `${r.method} ${r.path.replace(/sha256:[a-f0-9]+/, "<d>")}`),
        ["HEAD /v2/test/img/manifests/latest", "GET /v2/test/img/blobs/<d>"],
      );
      assert.equal(reg.blobGets(L3.desc.digest), 1);
      assert.equal(mirror.blobGets(L1.desc.digest), 1);
      assert.equal(mirror.requests.find((r) => r.path.includes("/manifests/"))?.ns, reg.host);
      assert.ok(mirror.requests.every((r) => r.ns === reg.host));
    } finally {
      await mirror.stop();
      await rm(cfg, { recursive: true, force: true });
    }
  });
});
