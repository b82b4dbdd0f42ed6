/**
 * Pull rows (issue 11): cold pulls of the 100 MB three-layer image, a 200,000-file single-layer image
 * and a 1 GiB single-layer image, each while another client calls Version every 50 ms; the worst and
 * p99 of those calls, beside the same figures with the daemon idle. Run alone with `--only pull`.
 * Figures are reported, never asserted; each is the median over rounds.
 */

import { bigFileImage, manyFilesImage } from "../test/support/big-layers.js";
import type { Descriptor } from "../test/support/images.js";
import { createAgent, pushImage, type Registry } from "../test/support/registry.js";
import type { BenchImages } from "./images.js";
import { measureColdPull } from "./pull.js";
import type { RuntimeName, RuntimeUnderTest } from "./runtime.js";
import { median, percentile } from "./stats.js";

/** The images pulled, by row name. */
export interface PullImages {
  images: { name: string; ref: string; blobs: Descriptor[]; shared: string[] }[];
}

/** One runtime's pull of one image in one round. */
export interface PullSample {
  seconds: number;
  versionWorstMs: number;
  versionP99Ms: number;
}

/** Per runtime: idle Version figures and each image's pulls, over rounds. */
export type PullRounds = Record<RuntimeName, { idle: PullSample[]; pulls: Record<string, PullSample[]> }>;

const MANY_FILES = 200_000;
const BIG_FILE = 1024 ** 3;

/** Builds (once, cached) and pushes the generated images next to the bench's `big` image. */
export async function preparePullImages(
  bench: BenchImages,
  signal: AbortSignal,
  sizes: { files?: number; bytes?: number } = {},
): Promise<PullImages> {
  const files = sizes.files ?? MANY_FILES;
  const bytes = sizes.bytes ?? BIG_FILE;
  const [many, big] = await Promise.all([manyFilesImage(files), bigFileImage(bytes)]);
  const agent = createAgent(bench.registry);
  try {
    for (const g of [many, big]) {
      await pushImage(bench.registry, g.image.repository, g.image.tag, g.image, { blobs: g.blobs, agent, signal });
    }
  } finally {
    agent.destroy();
  }
  const entry = (name: string, registry: Registry, g: typeof many) => {
    const m = g.image.manifests[0];
    if (m === undefined) throw new Error(`${g.image.repository}: no manifest`);
    return {
      name,
      ref: `${registry.host}/${g.image.repository}:${g.image.tag}`,
      blobs: [m.descriptor, m.config, ...m.layers],
      shared: [],
    };
  };
  return {
    images: [
      { name: "100 MB, 3 layers", ref: bench.big, blobs: bench.bigBlobs, shared: bench.bigShared },
      entry(`${files.toLocaleString("en")} files`, bench.registry, many),
      entry(
        `${bytes >= 1024 ** 3 ? `${bytes / 1024 ** 3} GiB` : `${bytes / 1024 ** 2} MiB`}, 1 layer`,
        bench.registry,
        big,
      ),
    ],
  };
}

/** Version every 50 ms on a second connection until `stop`; resolves to the latencies in ms. */
async function pollVersion(rt: RuntimeUnderTest, stop: AbortSignal): Promise<number[]> {
  const out: number[] = [];
  while (!stop.aborted) {
    const t = performance.now();
    await rt.client.runtime.version({}, { signal: AbortSignal.timeout(30_000) });
    out.push(performance.now() - t);
    await new Promise((r) => setTimeout(r, 50));
  }
  return out;
}

function sample(seconds: number, latencies: number[]): PullSample {
  return { seconds, versionWorstMs: percentile(latencies, 100), versionP99Ms: percentile(latencies, 99) };
}

/** Every round of the pull rows, the order of the runtimes alternating between rounds; returns the rounds and the table. */
export async function runPullRows(
  runtimes: Record<RuntimeName, RuntimeUnderTest>,
  images: PullImages,
  o: { rounds: number; signal: AbortSignal; log: (line: string) => void },
): Promise<{ rounds: PullRounds; table: string }> {
  const rounds: PullRounds = { berth: { idle: [], pulls: {} }, containerd: { idle: [], pulls: {} } };
  for (let round = 1; round <= o.rounds; round++) {
    const order: RuntimeName[] = round % 2 === 1 ? ["berth", "containerd"] : ["containerd", "berth"];
    for (const name of order) {
      const r = await measurePulls(runtimes[name], images, o.signal);
      rounds[name].idle.push(r.idle);
      for (const [image, s] of Object.entries(r.pulls)) {
        const list = rounds[name].pulls[image] ?? [];
        list.push(s);
        rounds[name].pulls[image] = list;
      }
      o.log(
        `round ${round} ${name} pulls: ${Object.entries(r.pulls)
          .map(([k, s]) => `${k} ${s.seconds.toFixed(2)} s (Version worst ${s.versionWorstMs.toFixed(0)} ms)`)
          .join(", ")}; idle Version worst ${r.idle.versionWorstMs.toFixed(1)} ms`,
      );
    }
  }
  return { rounds, table: formatPullTable(rounds, images) };
}

/** One round for one runtime: idle Version figures for 3 s, then each image's cold pull under Version calls. */
export async function measurePulls(
  rt: RuntimeUnderTest,
  images: PullImages,
  signal: AbortSignal,
): Promise<{ idle: PullSample; pulls: Record<string, PullSample> }> {
  const idleStop = AbortSignal.any([signal, AbortSignal.timeout(3000)]);
  const idle = sample(0, await pollVersion(rt, idleStop));
  const pulls: Record<string, PullSample> = {};
  for (const image of images.images) {
    const stop = new AbortController();
    const polling = pollVersion(rt, AbortSignal.any([signal, stop.signal]));
    try {
      // The 200,000-file and 1 GiB pulls take minutes on a loaded disk.
      const r = await measureColdPull(rt, image, signal, 30 * 60_000);
      stop.abort();
      pulls[image.name] = sample(r.seconds, await polling);
    } finally {
      stop.abort();
      await polling.catch(() => {});
    }
    // The next image's pull should not pay for this one's space.
    await rt.client.image.removeImage({ image: { image: image.ref } }, { signal }).catch(() => {});
  }
  return { idle, pulls };
}

/** The table: per image, pull seconds, berth/containerd ratio, worst and p99 Version latency during it. */
export function formatPullTable(rounds: PullRounds, images: PullImages): string {
  const f = (xs: PullSample[], k: keyof PullSample) => median(xs.map((x) => x[k]));
  const lines = [
    "| pull (median over rounds) | berth s | containerd s | berth/containerd | Version worst ms berth / containerd | Version p99 ms berth / containerd |",
    "| --- | --- | --- | --- | --- | --- |",
  ];
  const b = rounds.berth;
  const c = rounds.containerd;
  lines.push(
    `| idle (no pull) | | | | ${f(b.idle, "versionWorstMs").toFixed(1)} / ${f(c.idle, "versionWorstMs").toFixed(1)} | ${f(b.idle, "versionP99Ms").toFixed(1)} / ${f(c.idle, "versionP99Ms").toFixed(1)} |`,
  );
  for (const { name } of images.images) {
    const bs = b.pulls[name] ?? [];
    const cs = c.pulls[name] ?? [];
    const bt = f(bs, "seconds");
    const ct = f(cs, "seconds");
    lines.push(
      `| ${name} | ${bt.toFixed(2)} | ${ct.toFixed(2)} | ${(bt / ct).toFixed(2)} | ${f(bs, "versionWorstMs").toFixed(0)} / ${f(cs, "versionWorstMs").toFixed(0)} | ${f(bs, "versionP99Ms").toFixed(0)} / ${f(cs, "versionP99Ms").toFixed(0)} |`,
    );
  }
  return lines.join("\n");
}
