import type { MessageInitShape } from "@bufbuild/protobuf";
import type {
  LoadChunk,
  LoadResponseSchema,
  LoginRequest,
  LoginResponseSchema,
  PullProgressSchema,
  PullRequest,
  PushProgressSchema,
  PushRequest,
  SaveChunkSchema,
  SaveRequest,
  TagRequest,
  TagResponseSchema,
} from "../api/gen/berth/v1/images_pb.js";
import { invalidArgument } from "../errdefs/index.js";
import type { LayerProgress, PushProgress } from "../images/index.js";
import type { CriContext } from "./context.js";
import { credentialsOf, pullImage } from "./image.js";

/** How often a progress snapshot is sent while bytes flow (the last one is always sent). */
const PROGRESS_INTERVAL_MS = 100;

/** One layer's progress as both pull and push report it. */
type Progress = LayerProgress | PushProgress;

/**
 * Runs `work`, folding its progress events into one snapshot of all layers, sent at most every
 * 100 ms so that a fast transfer does not flood the client; the last snapshot comes with the
 * result. The work's failure ends the stream.
 */
async function* progressOf<R>(
  work: (onProgress: (p: Progress) => void) => Promise<R>,
): AsyncGenerator<{ layers: { digest: string; total: bigint; done: bigint; state: string }[]; result?: R }> {
  const layers = new Map<string, Progress>();
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
  let result: { value: R } | undefined;
  let failure: unknown;
  const running = work((p) => {
    layers.set(p.digest, p);
    dirty = true;
    wake?.();
  }).then(
    (value) => {
      result = { value };
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
  await running;
  if (failure !== undefined) throw failure;
  yield { ...snapshot(), ...(result ? { result: result.value } : {}) };
}

/**
 * berth.v1.Images/Pull: PullImage with per-layer progress, for `berth pull`. The last message
 * carries the image ID.
 */
export async function* berthPull(
  ctx: CriContext,
  req: PullRequest,
  signal: AbortSignal,
): AsyncGenerator<MessageInitShape<typeof PullProgressSchema>> {
  for await (const p of progressOf((onProgress) => pullImage(ctx, req, signal, onProgress))) {
    yield { layers: p.layers, ...(p.result ? { imageRef: p.result.imageRef } : {}) };
  }
}

/** berth.v1.Images/Push: pushes a local image with per-blob progress; the last message carries the digest. */
export async function* berthPush(
  ctx: CriContext,
  req: PushRequest,
  signal: AbortSignal,
): AsyncGenerator<MessageInitShape<typeof PushProgressSchema>> {
  if (!req.image) throw invalidArgument("image is required");
  const auth = credentialsOf(req.auth);
  const push = (onProgress: (p: Progress) => void) =>
    ctx.images.push(req.image, { signal, onProgress, ...(auth ? { auth } : {}) });
  for await (const p of progressOf(push)) yield { layers: p.layers, ...(p.result ? { digest: p.result } : {}) };
}

/** berth.v1.Images/Tag. */
export async function berthTag(ctx: CriContext, req: TagRequest): Promise<MessageInitShape<typeof TagResponseSchema>> {
  if (!req.source || !req.target) throw invalidArgument("source and target are required");
  const r = await ctx.images.tag(req.source, req.target);
  return { imageId: r.id, target: r.target };
}

/** berth.v1.Images/Login: checks credentials against the registry, storing nothing. */
export async function berthLogin(
  ctx: CriContext,
  req: LoginRequest,
  signal: AbortSignal,
): Promise<MessageInitShape<typeof LoginResponseSchema>> {
  if (!req.registry) throw invalidArgument("registry is required");
  const auth = credentialsOf(req.auth);
  if (auth === undefined || (!auth.username && !auth.auth && !auth.identityToken && !auth.registryToken))
    throw invalidArgument("login: credentials are required");
  await ctx.images.checkLogin(req.registry, auth, { signal });
  return {};
}

/** berth.v1.Images/Save: the archive in chunks of up to 1 MiB. */
export async function* berthSave(
  ctx: CriContext,
  req: SaveRequest,
  signal: AbortSignal,
): AsyncGenerator<MessageInitShape<typeof SaveChunkSchema>> {
  const format = req.format || "docker";
  if (format !== "docker" && format !== "oci")
    throw invalidArgument(`save: format must be docker or oci, not ${format}`);
  for await (const data of await ctx.images.save(req.images, format, { signal })) yield { data };
}

/** berth.v1.Images/Load: the archive as the client streams it. */
export async function berthLoad(
  ctx: CriContext,
  chunks: AsyncIterable<LoadChunk>,
  signal: AbortSignal,
): Promise<MessageInitShape<typeof LoadResponseSchema>> {
  async function* bytes(): AsyncGenerator<Uint8Array> {
    for await (const c of chunks) if (c.data.length > 0) yield c.data;
  }
  return { images: await ctx.images.load(bytes(), { signal }) };
}
