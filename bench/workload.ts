/**
 * The workload, identical for both runtimes and sent through berth's own CRI client: a pod is a sandbox with
 * one busybox container running `sleep 3600`, configured as the kubelet configures a plain pod (pod network,
 * pod IPC, a PID namespace per container, a cgroup parent per pod, a log directory). Starting a pod is the
 * kubelet's three calls, RunPodSandbox, CreateContainer, StartContainer, each timed on the client side;
 * tearing one down is StopPodSandbox then RemovePodSandbox.
 */
import { randomUUID } from "node:crypto";
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { NamespaceMode } from "../src/api/gen/runtime/v1/api_pb.js";
import type { RuntimeUnderTest } from "./runtime.js";

/** One pod the benchmark started. */
export interface BenchPod {
  sandboxId: string;
  containerId: string;
  /** The pod's cgroup parent (the kubelet's pod cgroup); the runtime puts one cgroup per container below it. */
  cgroupParent: string;
}

/** Client-side latency of the three RPCs that start a pod, in milliseconds. */
export interface PodTimings {
  sandboxMs: number;
  createMs: number;
  startMs: number;
  totalMs: number;
}

const namespaceOptions = { network: NamespaceMode.POD, pid: NamespaceMode.CONTAINER, ipc: NamespaceMode.POD };

/** Starts pod `name` (sandbox, create, start) and returns it with its timings. */
export async function startPod(
  rt: RuntimeUnderTest,
  name: string,
  options: { logRoot: string; signal?: AbortSignal },
): Promise<{ pod: BenchPod; timings: PodTimings }> {
  const uid = randomUUID();
  const cgroupParent = `${rt.cgroupRoot}/pod${uid}`;
  const logDirectory = join(options.logRoot, `${name}_${uid}`);
  await mkdir(logDirectory, { recursive: true });
  const sandboxConfig = {
    metadata: { name, namespace: "bench", uid, attempt: 0 },
    hostname: name,
    logDirectory,
    labels: { app: "bench" },
    linux: { cgroupParent, securityContext: { namespaceOptions } },
  };
  const call = options.signal ? { signal: options.signal } : {};
  const t0 = performance.now();
  const { podSandboxId } = await rt.client.runtime.runPodSandbox({ config: sandboxConfig }, call);
  const t1 = performance.now();
  const { containerId } = await rt.client.runtime.createContainer(
    {
      podSandboxId,
      sandboxConfig,
      config: {
        metadata: { name: "sleep", attempt: 0 },
        image: { image: rt.image },
        command: ["sleep", "3600"],
        logPath: "sleep/0.log",
        linux: { securityContext: { namespaceOptions } },
      },
    },
    call,
  );
  const t2 = performance.now();
  await rt.client.runtime.startContainer({ containerId }, call);
  const t3 = performance.now();
  return {
    pod: { sandboxId: podSandboxId, containerId, cgroupParent },
    timings: { sandboxMs: t1 - t0, createMs: t2 - t1, startMs: t3 - t2, totalMs: t3 - t0 },
  };
}

/** StopPodSandbox (which stops the pod's containers) then RemovePodSandbox (which removes them). */
export async function removePod(rt: RuntimeUnderTest, pod: BenchPod, signal?: AbortSignal): Promise<void> {
  const call = signal ? { signal } : {};
  await rt.client.runtime.stopPodSandbox({ podSandboxId: pod.sandboxId }, call);
  await rt.client.runtime.removePodSandbox({ podSandboxId: pod.sandboxId }, call);
}

/** Runs `fn` over `items` with at most `limit` calls in flight; results in input order; first error wins. */
export async function mapLimit<T, R>(
  items: readonly T[],
  limit: number,
  fn: (item: T, i: number) => Promise<R>,
): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++;
      results[i] = await fn(items[i] as T, i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}
