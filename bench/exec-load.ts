/**
 * Measurement 5, responsiveness under process-spawning load: how long other clients wait while the runtime
 * starts 10 pods at once, then runs 100 ExecSync calls at once (10 in each of those pods' containers).
 *
 * A second client, on its own connection, calls Version every 20 ms (the next call 20 ms after the previous
 * answer) from 1 s before the load until it ends; its latencies, idle and under each load, are what a kubelet's
 * other calls would see. For berth the daemon's own event-loop monitor (Status verbose `eventLoop`) is read
 * before and after each phase: stalls over 100 ms counted during the phase, and the daemon's worst delay.
 */
import { type CriClient, createCriClient } from "../src/client/index.js";
import type { RuntimeUnderTest } from "./runtime.js";
import { percentile } from "./stats.js";
import { type BenchPod, mapLimit, removePod, startPod } from "./workload.js";

/** Version-call latencies (ms) a probing client saw during one phase. */
export interface ProbeFigures {
  p50: number;
  p99: number;
  max: number;
  calls: number;
}

/** One phase's figures. */
export interface LoadPhase {
  wallMs: number;
  probe: ProbeFigures;
  /** berth only: stalls the daemon logged during the phase, and its worst event-loop delay so far. */
  daemon?: { stalls: number; maxDelayMs: number; p99DelayMs: number };
}

/** The whole measurement for one runtime. */
export interface ExecLoadResult {
  idle: ProbeFigures;
  podStarts: LoadPhase & { pods: number };
  execs: LoadPhase & { calls: number; failures: number };
}

const PROBE_PERIOD_MS = 20;

/** Runs the measurement; every pod it starts is removed before it returns. */
export async function measureExecLoad(
  rt: RuntimeUnderTest,
  o: { tag: string; logRoot: string; pods?: number; execs?: number; signal: AbortSignal },
): Promise<ExecLoadResult> {
  const nPods = o.pods ?? 10;
  const nExecs = o.execs ?? 100;
  const probeClient = createCriClient({ socket: rt.client.socket, timeoutMs: 60_000 });
  const pods: BenchPod[] = [];
  try {
    await probeClient.runtime.version({});
    const idle = await probeDuring(probeClient, () => new Promise((r) => setTimeout(r, 1000)));

    const podStarts = await phase(rt, probeClient, () =>
      mapLimit(
        Array.from({ length: nPods }, (_, i) => i),
        nPods,
        async (i) => {
          const { pod } = await startPod(rt, `${o.tag}-${i}`, { logRoot: o.logRoot, signal: o.signal });
          pods.push(pod);
        },
      ),
    );

    let failures = 0;
    const execs = await phase(rt, probeClient, () =>
      mapLimit(
        Array.from({ length: nExecs }, (_, i) => i),
        nExecs,
        async (i) => {
          const pod = pods[i % pods.length] as BenchPod;
          const r = await rt.client.runtime
            .execSync(
              { containerId: pod.containerId, cmd: ["sh", "-c", `echo exec-${i}`], timeout: 60n },
              {
                signal: o.signal,
              },
            )
            .catch(() => undefined);
          if (r?.exitCode !== 0 || new TextDecoder().decode(r.stdout) !== `exec-${i}\n`) failures++;
        },
      ),
    );
    return { idle, podStarts: { ...podStarts, pods: nPods }, execs: { ...execs, calls: nExecs, failures } };
  } finally {
    await mapLimit(pods, 10, (p) => removePod(rt, p).catch(() => {}));
    probeClient.close();
  }
}

/** Runs `work` while probing, and for berth reads the daemon's monitor around it. */
async function phase(rt: RuntimeUnderTest, probe: CriClient, work: () => Promise<unknown>): Promise<LoadPhase> {
  const before = rt.name === "berth" ? await eventLoop(probe) : undefined;
  const t0 = performance.now();
  let wallMs = 0;
  const figures = await probeDuring(probe, async () => {
    await work();
    wallMs = performance.now() - t0;
  });
  const after = rt.name === "berth" ? await eventLoop(probe) : undefined;
  return {
    wallMs,
    probe: figures,
    ...(before && after
      ? { daemon: { stalls: after.stalls - before.stalls, maxDelayMs: after.maxMs, p99DelayMs: after.p99Ms } }
      : {}),
  };
}

/** Calls Version every {@link PROBE_PERIOD_MS} while `work` runs; the latencies of those calls. */
async function probeDuring(client: CriClient, work: () => Promise<void>): Promise<ProbeFigures> {
  const samples: number[] = [];
  let done = false;
  const prober = (async () => {
    while (!done) {
      const t = performance.now();
      await client.runtime.version({});
      samples.push(performance.now() - t);
      await new Promise((r) => setTimeout(r, PROBE_PERIOD_MS));
    }
  })();
  try {
    await work();
  } finally {
    done = true;
    await prober;
  }
  return {
    p50: percentile(samples, 50),
    p99: percentile(samples, 99),
    max: samples.length ? Math.max(...samples) : Number.NaN,
    calls: samples.length,
  };
}

async function eventLoop(client: CriClient): Promise<{ stalls: number; maxMs: number; p99Ms: number }> {
  const s = await client.runtime.status({ verbose: true });
  const loop = JSON.parse(s.info.eventLoop ?? "{}") as { stalls?: number; maxMs?: number; p99Ms?: number };
  return { stalls: loop.stalls ?? Number.NaN, maxMs: loop.maxMs ?? Number.NaN, p99Ms: loop.p99Ms ?? Number.NaN };
}
