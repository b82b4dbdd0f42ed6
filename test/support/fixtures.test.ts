import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { after, before, describe, it } from "node:test";
import { promisify } from "node:util";
import { gunzipSync } from "node:zlib";
import { ensureFixtureRegistry, type FixtureRegistry } from "./fixtures.js";
import { MANIFEST_MEDIA_TYPES, MediaTypes } from "./images.js";
import { createAgent, type Registry, type RegistryEndpoint, registryAvailable, registryRequest } from "./registry.js";
import { skipUnlessCi } from "./skip.js";

const execFileAsync = promisify(execFile);

const skip = skipUnlessCi(
  process.getuid?.() !== 0
    ? "needs root (end-to-end fixtures run as root)"
    : !(await registryAvailable())
      ? "docker-registry is not installed (apt-get install docker-registry)"
      : false,
);

function sha256(data: Uint8Array): string {
  return `sha256:${createHash("sha256").update(data).digest("hex")}`;
}

function processExists(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code !== "ESRCH";
  }
}

/** Every manifest (by tag, and index children by digest) and every blob of every fixture is served intact. */
async function checkServed(fx: FixtureRegistry, endpoint: RegistryEndpoint): Promise<number> {
  const agent = createAgent(endpoint);
  const accept = MANIFEST_MEDIA_TYPES.join(", ");
  let checked = 0;
  try {
    for (const info of Object.values(fx.images)) {
      const where = `${endpoint.url}/${info.reference}`;
      const refs: { ref: string; digest: string; mediaType: string }[] = [
        { ref: info.tag, digest: info.manifestDigest, mediaType: info.mediaType },
      ];
      if (info.manifests.length > 1 || info.manifests[0]?.descriptor.digest !== info.manifestDigest) {
        for (const m of info.manifests)
          refs.push({ ref: m.descriptor.digest, digest: m.descriptor.digest, mediaType: m.descriptor.mediaType });
      }
      for (const { ref, digest, mediaType } of refs) {
        const res = await registryRequest(endpoint, `/v2/${info.repository}/manifests/${ref}`, {
          agent,
          headers: { accept },
        });
        assert.equal(res.status, 200, `${where} manifest ${ref}: ${res.body.toString()}`);
        assert.equal(res.headers["docker-content-digest"], digest, `${where} manifest ${ref} digest header`);
        assert.equal(sha256(res.body), digest, `${where} manifest ${ref} body`);
        assert.equal(res.headers["content-type"], mediaType, `${where} manifest ${ref} content type`);
        checked++;
      }
      for (const m of info.manifests) {
        for (const d of [m.config, ...m.layers]) {
          const res = await registryRequest(endpoint, `/v2/${info.repository}/blobs/${d.digest}`, { agent });
          assert.equal(res.status, 200, `${where} blob ${d.digest}`);
          assert.equal(res.headers["docker-content-digest"], d.digest, `${where} blob ${d.digest} digest header`);
          assert.equal(res.body.length, d.size, `${where} blob ${d.digest} size`);
          assert.equal(sha256(res.body), d.digest, `${where} blob ${d.digest} body`);
          checked++;
        }
      }
    }
  } finally {
    agent.destroy();
  }
  return checked;
}

describe("fixture registries", { skip }, () => {
  let fx: FixtureRegistry;
  let registries: Registry[] = [];

  before(async () => {
    fx = await ensureFixtureRegistry();
    registries = [fx.plain, fx.secure];
  });

  after(async () => {
    await fx?.stop();
  });

  it("start and push every fixture to both registries quickly", (t) => {
    const { buildMs, startMs, pushMs, totalMs } = fx.timings;
    t.diagnostic(
      `build ${buildMs.toFixed(0)} ms, start ${startMs.toFixed(0)} ms, push ${pushMs.toFixed(0)} ms, total ${totalMs.toFixed(0)} ms`,
    );
    assert.ok(Object.keys(fx.images).length >= 11, "every fixture is described");
    // Generous bound: the target is < 3 s, but a loaded CI machine must not make this flaky.
    assert.ok(totalMs < 30_000, `start + push took ${totalMs} ms`);
  });

  it("a second call in the same process returns the same registries", async () => {
    assert.equal(await ensureFixtureRegistry(), fx);
  });

  it("the plain registry serves every manifest and blob with its digest", async (t) => {
    t.diagnostic(`${await checkServed(fx, fx.plain)} objects checked`);
  });

  it("the TLS registry serves every manifest and blob with its digest to the credentials", async (t) => {
    assert.ok(fx.secure.url.startsWith("https://127.0.0.1:"));
    t.diagnostic(
      `${await checkServed(fx, { url: fx.secure.url, ca: fx.secure.ca ?? Buffer.alloc(0), auth: fx.credentials })} objects checked`,
    );
  });

  it("the TLS registry refuses anonymous access and wrong passwords", async () => {
    const endpoint = { url: fx.secure.url, ca: fx.secure.ca ?? Buffer.alloc(0) };
    const anonymous = await registryRequest(endpoint, "/v2/");
    assert.equal(anonymous.status, 401);
    assert.match(String(anonymous.headers["www-authenticate"]), /^Basic /);
    const manifest = await registryRequest(endpoint, "/v2/berth-test/busybox/manifests/latest");
    assert.equal(manifest.status, 401);
    const wrong = await registryRequest(
      { ...endpoint, auth: { username: fx.credentials.username, password: "wrong" } },
      "/v2/",
    );
    assert.equal(wrong.status, 401);
    const right = await registryRequest({ ...endpoint, auth: fx.credentials }, "/v2/");
    assert.equal(right.status, 200);
  });

  it("the TLS registry is not trusted without its CA", async () => {
    await assert.rejects(
      registryRequest({ url: fx.secure.url, auth: fx.credentials }, "/v2/"),
      /self[- ]signed|unable to verify|certificate/i,
    );
    assert.ok(existsSync(fx.caPath), "CA file exists");
  });

  it("image configs are valid and their diff_ids hash the uncompressed layers", async () => {
    for (const info of Object.values(fx.images)) {
      for (const m of info.manifests) {
        const config = JSON.parse(
          (await registryRequest(fx.plain, `/v2/${info.repository}/blobs/${m.config.digest}`)).body.toString("utf8"),
        ) as {
          architecture: string;
          os: string;
          rootfs: { type: string; diff_ids: string[] };
          history: unknown[];
        };
        assert.equal(config.os, "linux");
        assert.equal(config.architecture, m.descriptor.platform?.architecture ?? "amd64");
        assert.equal(config.rootfs.type, "layers");
        assert.deepEqual(config.rootfs.diff_ids, m.diffIds, `${info.reference} diff_ids`);
        assert.equal(config.history.length, m.layers.length);
        for (const [i, layer] of m.layers.entries()) {
          const blob = (await registryRequest(fx.plain, `/v2/${info.repository}/blobs/${layer.digest}`)).body;
          let tar: Buffer;
          if (layer.mediaType === MediaTypes.ociLayerZstd) {
            const { stdout } = await execFileAsync("zstd", ["-dc", fx.blobs.blobPath(layer.digest)], {
              encoding: "buffer",
              maxBuffer: 1 << 28,
            });
            tar = stdout;
          } else if (layer.mediaType === MediaTypes.ociLayer) {
            tar = blob;
          } else {
            tar = gunzipSync(blob);
          }
          assert.equal(sha256(tar), m.diffIds[i], `${info.reference} layer ${i} diff id`);
        }
      }
    }
  });

  it("stop kills both registries by pid and removes their directories", async () => {
    const pids = registries.map((r) => r.pid);
    const dirs = registries.map((r) => r.dir);
    assert.ok(pids.every(processExists), "registries are running before stop");
    await fx.stop();
    for (const pid of pids) assert.equal(processExists(pid), false, `registry pid ${pid} is gone`);
    for (const dir of dirs) assert.equal(existsSync(dir), false, `${dir} is removed`);
    await fx.stop(); // idempotent
  });
});
