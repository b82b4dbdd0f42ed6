import type { MessageInitShape } from "@bufbuild/protobuf";
import type { PullProgressSchema, PullRequest } from "../api/gen/berth/v1/images_pb.js";
import type { LayerProgress } from "../images/index.js";
import type { CriContext } from "./context.js";
import { pullImage } from "./image.js";

/** How often a progress snapshot is sent while bytes flow (the last one is always sent). */
const PROGRESS_INTERVAL_MS = 100;

/**
 * berth.v1.Images/Pull: PullImage with per-layer progress, for `berth pull`. Progress events
 * from the image service are folded into one snapshot of all layers and sent at most every
 * 100 ms, so a fast pull does not flood the client.
 */
export async function* berthPull(
  ctx: CriContext,
  req: PullRequest,
  signal: AbortSignal,
): AsyncGenerator<MessageInitShape<typeof PullProgressSchema>> {
  const layers = new Map<string, LayerProgress>();
  let dirty = false;
  let wake: (() => void) | undefined;
  const snapshot = () => ({
    layers: [...layers.values()].map((l) => ({
      digest: l.digest,
      total: BigInt(l.total),
      done: BigInt(l.done),
      state: l.state,
    })),
  });
  let result: { imageRef: string } | undefined;
  let failure: unknown;
  const pulling = pullImage(ctx, req, signal, (p) => {
    layers.set(p.digest, p);
    dirty = true;
    wake?.();
  }).then(
    (r) => {
      result = r;
      wake?.();
    },
    (err: unknown) => {
      failure = err;
      wake?.();
    },
  );
  let last = 0;
  while (result === undefined && failure === undefined) {
    await new Promise<void>((r) => {
      wake = r;
      setTimeout(r, PROGRESS_INTERVAL_MS);
    });
    wake = undefined;
    if (dirty && Date.now() - last >= PROGRESS_INTERVAL_MS) {
      dirty = false;
      last = Date.now();
      yield snapshot();
    }
  }
  await pulling;
  if (failure !== undefined) throw failure;
  yield { ...snapshot(), imageRef: result?.imageRef ?? "" };
}
