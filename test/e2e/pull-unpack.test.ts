/**
 * Layer application off berthd's event loop, end to end: a 200,000-file layer pulls while another
 * client's Version calls keep answering; a pull cancelled mid-unpack and a daemon killed
 * mid-unpack leave no snapshot, ingest file or unpack worker behind; a full disk and the
 * `[unpack]` limits fail a pull cleanly.
 *
 * The daemons of the big pulls run with their root on a tmpfs the test mounts (and unmounts): on
 * this machine's shared disk, creating 200,000 inodes takes minutes whoever creates them (GNU tar
 * included), and the point here is the daemon's responsiveness, not the disk's speed.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtemp, readdir, readFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { Code, ConnectError } from "@connectrpc/connect";
import { type CriClient, createCriClient } from "../../src/client/index.js";
import { isRoot, removeTestDir, startBerthd, type TestDaemon } from "../support/berthd.js";
import { type GeneratedImage, manyFilesImage, zeroFileImage } from "../support/big-layers.js";
import { ensureFixtureRegistry, type FixtureRegistry } from "../support/fixtures.js";
import { eventually, sleep } from "../support/pods.js";
import { pushImage } from "../support/registry.js";
import { skipUnlessCi } from "../support/skip.js";

const CONFIG = `[cni]\nconf_dir = "{dir}/cni"\n[registry]\nconfig_path = "{dir}/certs.d"\n`;
const skip = skipUnlessCi(isRoot() ? false : "needs root (tmpfs and overlay mounts)");
const FILES = 200_000;

/** Where a resource's cleanup goes (a test's context). */
interface Owner {
  after(fn: () => Promise<void>): void;
}

describe("layer application off the event loop", { skip, timeout: 240_000 }, () => {
  let reg: FixtureRegistry;
  let many: GeneratedImage;
  let zeros: GeneratedImage;
  const ref = (g: GeneratedImage) => `${reg.plain.host}/${g.image.repository}:${g.image.tag}`;

  before(async () => {
    reg = await ensureFixtureRegistry();
    [many, zeros] = await Promise.all([manyFilesImage(FILES), zeroFileImage(96 * 1024 * 1024)]);
    for (const g of [many, zeros]) {
      await pushImage(reg.plain, g.image.repository, g.image.tag, g.image, { blobs: g.blobs });
    }
  });
  after(async () => {
    await reg?.stop();
  });

  /** A daemon whose whole directory is a fresh tmpfs of `size`, unmounted when `owner` ends. */
  async function daemonOnTmpfs(owner: Owner, size: string, config = CONFIG): Promise<TestDaemon> {
    const dir = await mkdtemp(join(tmpdir(), "berth-e2e-unpack-"));
    execFileSync("mount", ["-t", "tmpfs", "-o", `size=${size},mode=0700`, "tmpfs", dir]);
    // Unmounts what berthd left below it and the tmpfs itself, then removes the directory.
    owner.after(() => removeTestDir(dir));
    const d = await startBerthd({ dir, config });
    owner.after(() => d.cleanup());
    return d;
  }

  /** Version calls from another client every 50 ms until `stop`, resolving to their latencies (ms). */
  async function pollVersion(socket: string, stop: AbortSignal): Promise<number[]> {
    const client: CriClient = createCriClient({ socket, timeoutMs: 10_000 });
    const latencies: number[] = [];
    try {
      while (!stop.aborted) {
        const t = performance.now();
        await client.runtime.version({});
        latencies.push(performance.now() - t);
        await sleep(50);
      }
    } finally {
      client.close();
    }
    return latencies;
  }

  /** The daemon's threads (main, libuv pool, V8 helpers, and unpack workers while they live). */
  const threads = async (d: TestDaemon) => (await readdir(`/proc/${d.pid}/task`)).length;

  /** Snapshot keys recorded, and snapshot directories and ingest files on disk. */
  async function leftovers(d: TestDaemon): Promise<{ keys: string[]; dirs: string[]; ingest: string[] }> {
    const meta = await readFile(join(d.root, "snapshots", "overlay", "metadata.json"), "utf8").catch(() => "{}");
    const keys = Object.keys((JSON.parse(meta) as { snapshots?: object }).snapshots ?? {});
    const dirs = await readdir(join(d.root, "snapshots", "overlay", "snapshots")).catch(() => []);
    const ingest = await readdir(join(d.root, "content", "ingest")).catch(() => []);
    return { keys, dirs, ingest };
  }

  /** Waits until an unpack of the daemon's has written into its extraction snapshot. */
  async function unpackStarted(d: TestDaemon): Promise<void> {
    await eventually(
      "an extraction snapshot to fill",
      async () => {
        const { keys, dirs } = await leftovers(d);
        if (!keys.some((k) => k.startsWith("extract-")) || dirs.length === 0) return false;
        const fs = join(d.root, "snapshots", "overlay", "snapshots", dirs[0] as string, "fs");
        return (await readdir(fs).catch(() => [])).length > 5;
      },
      60_000,
    );
  }

  test(`a ${FILES}-file layer pulls while another client's Version calls answer within 1 s`, async (t) => {
    const d = await daemonOnTmpfs(t, "3g");
    const idleThreads = await threads(d);
    const stop = new AbortController();
    const polling = pollVersion(d.socket, stop.signal);
    const started = performance.now();
    const { imageRef } = await d.client.image.pullImage({ image: { image: ref(many) } });
    const pullMs = performance.now() - started;
    stop.abort();
    const latencies = await polling;
    assert.equal(imageRef, many.image.manifests[0]?.config.digest);
    assert.ok(latencies.length > 5, "Version was called during the pull");
    const worst = Math.max(...latencies);
    t.diagnostic(`pull ${Math.round(pullMs)} ms; ${latencies.length} Version calls, worst ${Math.round(worst)} ms`);
    assert.ok(worst < 1000, `a Version call took ${Math.round(worst)} ms during the pull`);
    // The layer is there, whole, in one committed snapshot.
    const { keys, dirs, ingest } = await leftovers(d);
    assert.deepEqual(keys, [many.image.manifests[0]?.diffIds[0]]);
    assert.deepEqual(ingest, []);
    const fs = join(d.root, "snapshots", "overlay", "snapshots", dirs[0] as string, "fs");
    assert.equal((await readdir(fs)).length, FILES / 1000);
    assert.equal(
      await readFile(join(fs, "d199", `f${FILES - 1}`), "utf8"),
      `file ${String(FILES - 1).padStart(10, "0")}\n`,
    );
    await eventually("the unpack workers to exit when idle", async () => (await threads(d)) <= idleThreads, 15_000);
  });

  test("a pull cancelled mid-unpack leaves no snapshot, ingest file or worker", async (t) => {
    const d = await daemonOnTmpfs(t, "3g");
    const idleThreads = await threads(d);
    const ac = new AbortController();
    const pulling = d.client.image.pullImage({ image: { image: ref(many) } }, { signal: ac.signal });
    pulling.catch(() => {});
    await unpackStarted(d);
    assert.ok((await threads(d)) > idleThreads, "an unpack worker runs");
    ac.abort();
    await assert.rejects(pulling, (e: unknown) => e instanceof ConnectError && e.code === Code.Canceled);
    await eventually("the cancelled unpack to be removed", async () => {
      const l = await leftovers(d);
      return l.keys.length === 0 && l.dirs.length === 0 && l.ingest.length === 0;
    });
    await eventually("the unpack worker to exit", async () => (await threads(d)) <= idleThreads, 15_000);
    assert.deepEqual((await d.client.image.listImages({})).images, []);
    const web = reg.image("berth-test/web");
    const { imageRef } = await d.client.image.pullImage({ image: { image: `${reg.plain.host}/${web.reference}` } });
    assert.equal(imageRef, web.imageId);
  });

  test("berthd killed with SIGKILL mid-unpack comes back clean and pulls again", async (t) => {
    let d = await daemonOnTmpfs(t, "3g");
    const pulling = d.client.image.pullImage({ image: { image: ref(many) } });
    pulling.catch(() => {});
    await unpackStarted(d);
    await d.stop("SIGKILL");
    d = await startBerthd({ dir: d.dir, config: CONFIG });
    t.after(() => d.cleanup());
    assert.deepEqual(await leftovers(d), { keys: [], dirs: [], ingest: [] }, "no snapshot, directory or ingest");
    assert.deepEqual((await d.client.image.listImages({})).images, []);
    const web = reg.image("berth-test/web");
    const { imageRef } = await d.client.image.pullImage({ image: { image: `${reg.plain.host}/${web.reference}` } });
    assert.equal(imageRef, web.imageId);
  });

  test("a full disk fails the pull with ResourceExhausted and leaves nothing half-applied", async (t) => {
    // Room for the 100 KiB blob, not for the 96 MiB file in it.
    const d = await daemonOnTmpfs(t, "48m");
    const err = await d.client.image.pullImage({ image: { image: ref(zeros) } }).then(
      () => undefined,
      (e: unknown) => e,
    );
    assert.ok(err instanceof ConnectError, String(err));
    assert.equal(err.code, Code.ResourceExhausted, err.message);
    assert.match(err.message, /no space left/);
    await eventually("the failed unpack to be removed", async () => {
      const l = await leftovers(d);
      return l.keys.length === 0 && l.dirs.length === 0 && l.ingest.length === 0;
    }).catch(async (e: unknown) => {
      throw new Error(`${String(e)}: ${JSON.stringify(await leftovers(d))}`);
    });
    assert.deepEqual((await d.client.image.listImages({})).images, []);
    await d.client.runtime.version({});
  });

  test("[unpack] limits: a layer over max_layer_entries or max_layer_bytes fails its pull", async (t) => {
    const d = await startBerthd({
      config: `${CONFIG}[unpack]\nmax_layer_entries = 1000\nmax_layer_bytes = 1048576\n`,
    });
    t.after(async () => {
      await d.cleanup();
      await removeTestDir(d.dir);
    });
    for (const [image, pattern] of [
      [many, /more than 1000 entries \(unpack\.max_layer_entries\)/],
      [zeros, /exceeds the limit of 1048576 bytes \(unpack\.max_layer_bytes\)/],
    ] as const) {
      const err = await d.client.image.pullImage({ image: { image: ref(image) } }).then(
        () => undefined,
        (e: unknown) => e,
      );
      assert.ok(err instanceof ConnectError, String(err));
      assert.equal(err.code, Code.ResourceExhausted, err.message);
      assert.match(err.message, pattern);
    }
    await eventually("the refused unpacks to be removed", async () => {
      const l = await leftovers(d);
      return l.keys.length === 0 && l.dirs.length === 0 && l.ingest.length === 0;
    });
  });
});
