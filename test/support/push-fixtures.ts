/**
 * Pushes the fixture images to an already running registry (the README's main job and the benchmark use it).
 *
 *   npx tsx test/support/push-fixtures.ts --registry 127.0.0.1:5000 [--big] [--json]
 *       [--tls --ca ca.pem] [--username u --password p] [--cache-dir DIR] [--wait SECONDS]
 *
 * --registry is host:port (http, or https with --tls) or a full http(s):// URL. The command waits up to --wait
 * seconds (default 10) for `/v2/` to answer, builds or reuses the cached fixtures, pushes every image, and prints
 * one line per image (`host/repo:tag manifest-digest config-digest`), or a JSON object with --json. Exit status is
 * 0 on success, 1 on any failure, 2 on bad usage.
 */
import { readFile } from "node:fs/promises";
import { setTimeout as sleep } from "node:timers/promises";
import { parseArgs } from "node:util";
import { buildFixtureImages, MediaTypes } from "./images.js";
import { createAgent, pushImage, type RegistryEndpoint, registryRequest } from "./registry.js";

const USAGE =
  "usage: push-fixtures --registry HOST:PORT|URL [--big] [--json] [--tls] [--ca FILE] [--username U --password P] [--cache-dir DIR] [--wait SECONDS]\n";

const OPTIONS = {
  registry: { type: "string" },
  big: { type: "boolean", default: false },
  json: { type: "boolean", default: false },
  tls: { type: "boolean", default: false },
  ca: { type: "string" },
  username: { type: "string" },
  password: { type: "string" },
  "cache-dir": { type: "string" },
  wait: { type: "string", default: "10" },
  help: { type: "boolean", short: "h", default: false },
} as const;

function parse(argv: string[]) {
  return parseArgs({ args: argv, options: OPTIONS, strict: true, allowPositionals: false }).values;
}

async function main(argv: string[]): Promise<number> {
  let v: ReturnType<typeof parse>;
  try {
    v = parse(argv);
  } catch (err) {
    process.stderr.write(`push-fixtures: ${err instanceof Error ? err.message : String(err)}\n${USAGE}`);
    return 2;
  }
  if (v.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  const waitSeconds = Number(v.wait);
  if (
    v.registry === undefined ||
    (v.username === undefined) !== (v.password === undefined) ||
    !Number.isFinite(waitSeconds)
  ) {
    process.stderr.write(USAGE);
    return 2;
  }

  const url = /^https?:\/\//.test(v.registry)
    ? v.registry.replace(/\/+$/, "")
    : `${v.tls ? "https" : "http"}://${v.registry}`;
  const host = new URL(url).host;
  const endpoint: RegistryEndpoint = { url };
  if (v.ca !== undefined) endpoint.ca = await readFile(v.ca);
  if (v.username !== undefined && v.password !== undefined)
    endpoint.auth = { username: v.username, password: v.password };

  const started = performance.now();
  await waitForRegistry(endpoint, waitSeconds * 1000);
  const fixtures = await buildFixtureImages({
    big: v.big,
    ...(v["cache-dir"] !== undefined ? { cacheDir: v["cache-dir"] } : {}),
  });
  const agent = createAgent(endpoint);
  try {
    // Tags of a repository in order (later tags find shared blobs with HEAD), repositories in parallel.
    const byRepo = new Map<string, typeof fixtures.images>();
    for (const image of fixtures.images) byRepo.set(image.repository, [...(byRepo.get(image.repository) ?? []), image]);
    await Promise.all(
      [...byRepo.values()].map(async (tags) => {
        for (const image of tags)
          await pushImage(endpoint, image.repository, image.tag, image, { blobs: fixtures, agent });
      }),
    );
  } finally {
    agent.destroy();
  }

  const images: Record<
    string,
    { manifestDigest: string; mediaType: string; configDigests: string[]; layers: string[][] }
  > = {};
  for (const image of fixtures.images) {
    images[`${host}/${image.repository}:${image.tag}`] = {
      manifestDigest: image.target.digest,
      mediaType: image.target.mediaType,
      configDigests: image.manifests.map((m) => m.config.digest),
      layers: image.manifests.map((m) => m.layers.map((l) => l.digest)),
    };
  }
  if (v.json) {
    process.stdout.write(
      `${JSON.stringify({ registry: url, elapsedMs: Math.round(performance.now() - started), images }, null, 2)}\n`,
    );
  } else {
    for (const [ref, info] of Object.entries(images)) {
      const kind =
        info.mediaType === MediaTypes.ociIndex || info.mediaType === MediaTypes.dockerManifestList ? " (index)" : "";
      process.stdout.write(`${ref} ${info.manifestDigest} ${info.configDigests.join(",")}${kind}\n`);
    }
    process.stdout.write(
      `pushed ${Object.keys(images).length} images to ${url} in ${Math.round(performance.now() - started)} ms\n`,
    );
  }
  return 0;
}

/** Polls `/v2/` until it answers 200 (or 401 when we have no credentials to offer), or the time is up. */
async function waitForRegistry(endpoint: RegistryEndpoint, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = "";
  for (;;) {
    try {
      const res = await registryRequest(endpoint, "/v2/", { signal: AbortSignal.timeout(2000) });
      if (res.status === 200) return;
      if (res.status === 401 && endpoint.auth !== undefined)
        throw new Error(`${endpoint.url}/v2/: credentials refused (401)`);
      if (res.status === 401) return; // let the push report the missing credentials with context
      last = `status ${res.status}`;
    } catch (err) {
      if (err instanceof Error && err.message.includes("credentials refused")) throw err;
      last = err instanceof Error ? err.message : String(err);
    }
    if (Date.now() >= deadline) throw new Error(`registry ${endpoint.url} not reachable: ${last}`);
    await sleep(200);
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`push-fixtures: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 1;
  },
);
