/**
 * Issue 11: one image must never stall the node. Images whose /etc/passwd is a FIFO, 256 MiB, behind an
 * `/etc -> /etc` symlink or a directory: CreateContainer naming a user ends within seconds with a clear
 * FailedPrecondition naming the image and the file, while another client's Version and RunPodSandbox calls keep
 * answering, and the daemon still runs ordinary containers afterwards.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { Code } from "@connectrpc/connect";
import { NamespaceMode } from "../../src/api/gen/runtime/v1/api_pb.js";
import { type CriClient, createCriClient } from "../../src/client/index.js";
import { isRoot } from "../support/berthd.js";
import { HOSTILE_IMAGES, pushHostileImages } from "../support/hostile-images.js";
import { grpcError, logContent, type Pod, type PodEnv, shell, startPodEnv } from "../support/pods.js";
import { skipUnlessCi } from "../support/skip.js";

/**
 * The safety bound for another client's Version calls while hostile creates run (issue 11 allows 1 s).
 * RunPodSandbox spawns runc, whose time on a loaded machine alone can pass 1 s, so its bound is the larger of
 * 1 s and three times its worst time with nothing hostile running: a stall on a FIFO, or a drained thread
 * pool, blows through either.
 */
const BOUND_MS = 1000;
/** "Ends within seconds": the read deadline is 5 s, a refusal takes milliseconds. */
const CREATE_BOUND_MS = 10_000;

describe("hostile images", { skip: skipUnlessCi(isRoot() ? false : "needs root"), timeout: 600_000 }, () => {
  let env: PodEnv;
  let pod: Pod;
  let other: CriClient;
  let refs: Map<string, string>;
  /** The probes' worst times with nothing hostile going on. */
  let baseline: { version: number; runPod: number };

  before(async () => {
    env = await startPodEnv({ bridge: "bte2e-hstl", subnet: "10.231.71.0/24", images: ["berth-test/busybox"] });
    other = createCriClient({ socket: env.d.socket, timeoutMs: 30_000 });
    refs = await pushHostileImages(join(env.dir, "hostile"), env.reg);
    for (const ref of refs.values()) await env.d.client.image.pullImage({ image: { image: ref } });
    pod = await env.runPod("hostile");
    baseline = await whileProbing(() => new Promise((r) => setTimeout(r, 3000)));
  });
  after(async () => {
    other?.close();
    await env?.close();
  });

  /**
   * Runs `work` while the other client calls Version every 50 ms and runs (then removes) host-network pods
   * back to back; returns the slowest answer of each.
   */
  async function whileProbing(work: () => Promise<void>): Promise<{ version: number; runPod: number }> {
    let stop = false;
    const worst = { version: 0, runPod: 0 };
    const timed = async (key: keyof typeof worst, call: () => Promise<unknown>) => {
      const t = performance.now();
      await call();
      worst[key] = Math.max(worst[key], performance.now() - t);
    };
    const versions = (async () => {
      while (!stop) {
        await timed("version", () => other.runtime.version({}));
        await new Promise((r) => setTimeout(r, 50));
      }
    })();
    let n = 0;
    const pods = (async () => {
      while (!stop) {
        const name = `probe-${n++}`;
        let id = "";
        await timed("runPod", async () => {
          id = (
            await other.runtime.runPodSandbox({
              config: {
                metadata: { name, namespace: "e2e", uid: `uid-${name}`, attempt: 0 },
                linux: { securityContext: { namespaceOptions: { network: NamespaceMode.NODE } } },
              },
            })
          ).podSandboxId;
        });
        await other.runtime.stopPodSandbox({ podSandboxId: id });
        await other.runtime.removePodSandbox({ podSandboxId: id });
      }
    })();
    try {
      await work();
    } finally {
      stop = true;
      await Promise.all([versions, pods]);
    }
    return worst;
  }

  for (const h of HOSTILE_IMAGES) {
    test(`${h.what}: CreateContainer fails fast naming ${h.file}; other calls keep answering`, async (t) => {
      const ref = refs.get(h.repository) as string;
      let slowestCreate = 0;
      const worst = await whileProbing(async () => {
        // Several attempts, both ways of naming a user: stuck reads would pile up and drain the thread pool.
        for (const [i, extra] of [{}, { linux: { securityContext: { runAsUsername: "app" } } }, {}].entries()) {
          const t = performance.now();
          await assert.rejects(
            env.d.client.runtime.createContainer({
              podSandboxId: pod.id,
              sandboxConfig: pod.config,
              config: { metadata: { name: `c${i}` }, image: { image: ref }, command: ["sh"], ...extra },
            }),
            grpcError(Code.FailedPrecondition, new RegExp(`image [^ ]*${h.repository}[^ ]*: ${h.message.source}`)),
          );
          const took = performance.now() - t;
          slowestCreate = Math.max(slowestCreate, took);
          assert.ok(took < CREATE_BOUND_MS, `CreateContainer took ${Math.round(took)} ms`);
        }
      });
      const podBound = Math.max(BOUND_MS, 3 * baseline.runPod);
      t.diagnostic(
        `slowest CreateContainer ${Math.round(slowestCreate)} ms; worst Version ${Math.round(worst.version)} ms, ` +
          `RunPodSandbox ${Math.round(worst.runPod)} ms (baseline ${Math.round(baseline.version)}, ${Math.round(baseline.runPod)})`,
      );
      assert.ok(worst.version < BOUND_MS, `Version took up to ${Math.round(worst.version)} ms`);
      assert.ok(worst.runPod < podBound, `RunPodSandbox took up to ${Math.round(worst.runPod)} ms (bound ${podBound})`);
      const { containers } = await env.d.client.runtime.listContainers({ filter: { podSandboxId: pod.id } });
      assert.deepEqual(containers, [], "failed creates leave no container behind");
    });
  }

  test("a writable layer deeper than PATH_MAX and 30,000 files wide is measured; stats calls keep answering", async () => {
    // Five chains of 151 directories moved under each other (no single path over PATH_MAX is ever named), then
    // a wide directory: the layer's deepest path is about 14 KiB long.
    const chain = Array.from({ length: 150 }, () => "d".repeat(18)).join("/");
    const script = [
      `mkdir -p /t/c/${chain}`,
      `for i in 1 2 3 4; do mkdir -p /t/n/${chain} && mv /t/c /t/n/${chain}/c && mv /t/n /t/c; done`,
      "mkdir /t/w && cd /t/w && seq 30000 | xargs touch && echo ready > /ready",
      "exec sleep 600",
    ].join("; ");
    const id = await env.startContainer(pod, shell(env, "deep", script));
    const wanted = 30_000n + 5n * 151n;
    let inodes = 0n;
    const deadline = Date.now() + 120_000;
    while (inodes < wanted && Date.now() < deadline) {
      const t = performance.now();
      const s = (await other.runtime.containerStats({ containerId: id })).stats;
      assert.ok(performance.now() - t < 5000, "ContainerStats answered from the cache");
      inodes = s?.writableLayer?.inodesUsed?.value ?? 0n;
      if (inodes < wanted) await new Promise((r) => setTimeout(r, 500));
    }
    assert.ok(inodes >= wanted, `writable layer inodes ${inodes}, want at least ${wanted}`);
    const { imageFilesystems } = await other.image.imageFsInfo({});
    assert.ok((imageFilesystems[0]?.inodesUsed?.value ?? 0n) >= wanted, "ImageFsInfo counts the container layer");
    await env.d.client.runtime.stopContainer({ containerId: id, timeout: 0n });
    await env.d.client.runtime.removeContainer({ containerId: id });
  });

  test("afterwards the daemon still runs an ordinary container", async () => {
    const r = await env.runToExit(pod, shell(env, "ordinary", "id -u; echo alive"));
    assert.equal(r.status.exitCode, 0);
    assert.equal(logContent(r.log), "0\nalive\n");
  });
});
