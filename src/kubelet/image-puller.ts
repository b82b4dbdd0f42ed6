/**
 * The pod worker's image puller (the kubelet's imagePuller): makes a container's image present
 * per its imagePullPolicy, recording the kubelet's events (Pulling, Pulled, Failed,
 * ErrImageNeverPull). A failed pull is not retried here: the result says when to retry (the
 * back-off, keyed `<pod uid>/<container>/pull`, doubles per failure) and the worker waits.
 */
import type { PodSandboxConfig } from "../api/gen/runtime/v1/api_pb.js";
import type { CriClient } from "../client/index.js";
import type { Backoff } from "./backoff.js";
import type { Clock } from "./clock.js";
import type { EventRecorder } from "./events.js";
import type { ContainerSpec, Pod } from "./types.js";

/** Why a container cannot start yet (its waiting reason), and when to try again. */
export type StepResult =
  | { ok: true }
  | { ok: false; waiting?: { reason: string; message: string } | undefined; retryInMs?: number | undefined };

/** Options of {@link ImagePuller}. */
export interface ImagePullerOptions {
  client: CriClient;
  clock: Clock;
  backoff: Backoff;
  events: EventRecorder;
  /** Deadline of one PullImage (ms). */
  pullTimeoutMs: number;
}

export class ImagePuller {
  constructor(private readonly o: ImagePullerOptions) {}

  /** Makes `ctr.image` present (or not, with the waiting reason why). `signal` aborts a pull. */
  async ensure(
    pod: Pod,
    ctr: ContainerSpec,
    o: { object: string; sandboxConfig: () => PodSandboxConfig; signal: AbortSignal },
  ): Promise<StepResult> {
    const { client, clock, backoff, events } = this.o;
    const image = ctr.image;
    if (ctr.imagePullPolicy !== "Always") {
      const r = await client.image.imageStatus({ image: { image } });
      if (r.image !== undefined && r.image.id !== "") {
        events.record("Normal", "Pulled", `Container image "${image}" already present on machine`, o.object);
        return { ok: true };
      }
    }
    if (ctr.imagePullPolicy === "Never") {
      const message = `Container image "${image}" is not present with pull policy of Never`;
      events.record("Warning", "ErrImageNeverPull", message, o.object);
      return { ok: false, waiting: { reason: "ErrImageNeverPull", message } };
    }
    const key = `${pod.metadata.uid}/${ctr.name}/pull`;
    events.record("Normal", "Pulling", `Pulling image "${image}"`, o.object);
    const started = clock.now();
    try {
      await client.image.pullImage(
        { image: { image }, sandboxConfig: o.sandboxConfig() },
        { timeoutMs: this.o.pullTimeoutMs, signal: o.signal },
      );
    } catch (err) {
      // The worker is stopping: no verdict on the image.
      if (o.signal.aborted) return { ok: false };
      const message = errorMessage(err);
      events.record("Warning", "Failed", `Failed to pull image "${image}": ${message}`, o.object);
      backoff.restarted(key);
      return { ok: false, waiting: { reason: "ErrImagePull", message }, retryInMs: backoff.current(key) };
    }
    backoff.forget(key);
    events.record(
      "Normal",
      "Pulled",
      `Successfully pulled image "${image}" in ${formatDelay(clock.now() - started)}`,
      o.object,
    );
    return { ok: true };
  }
}

/** The message of a CRI error (its gRPC message without the code prefix), or of any error. */
export function errorMessage(err: unknown): string {
  if (
    err &&
    typeof err === "object" &&
    "rawMessage" in err &&
    typeof (err as { rawMessage: unknown }).rawMessage === "string"
  ) {
    return (err as { rawMessage: string }).rawMessage;
  }
  return err instanceof Error ? err.message : String(err);
}

/** `10s`, `1m20s`, `350ms`, like Go's time.Duration. */
export function formatDelay(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)}ms`;
  const s = ms / 1000;
  if (s < 60) return `${Number.isInteger(s) ? s : s.toFixed(3).replace(/0+$/, "")}s`;
  const m = Math.floor(s / 60);
  const rest = Math.round(s - m * 60);
  return rest === 0 ? `${m}m0s` : `${m}m${rest}s`;
}
