import type { MessageInitShape } from "@bufbuild/protobuf";
import type { BuildEventSchema, BuildRequest, PruneResponseSchema } from "../api/gen/berth/v1/build_pb.js";
import type { BuildEvent, BuildSpec } from "../build/index.js";
import { invalidArgument, unavailable } from "../errdefs/index.js";
import type { CriContext } from "./context.js";

type EventInit = MessageInitShape<typeof BuildEventSchema>;

/**
 * berth.v1.Builder/Build: the first message is the header, the rest are context tar chunks. Events are
 * queued as the builder emits them and streamed in order; the result is the last message.
 */
export async function* berthBuild(
  ctx: CriContext,
  requests: AsyncIterable<BuildRequest>,
  signal: AbortSignal,
): AsyncGenerator<EventInit> {
  const builder = ctx.builder;
  if (!builder) throw unavailable("the builder is not available");
  const it = requests[Symbol.asyncIterator]();
  const first = await it.next();
  if (first.done || first.value.part.case !== "header")
    throw invalidArgument("build: the first message must be the header");
  const h = first.value.part.value;
  const compression = h.compression || "gzip";
  if (compression !== "gzip" && compression !== "zstd")
    throw invalidArgument(`build: compression ${JSON.stringify(compression)}: expected gzip or zstd`);
  const format = h.format || "oci";
  if (format !== "oci" && format !== "docker")
    throw invalidArgument(`build: format ${JSON.stringify(format)}: expected oci or docker`);
  if (!h.dockerfile) throw invalidArgument("build: the header carries no Dockerfile");
  const spec: BuildSpec = {
    dockerfile: h.dockerfile,
    dockerfileName: h.dockerfilePath || "Dockerfile",
    tags: h.tags,
    buildArgs: { ...h.buildArgs },
    ...(h.target ? { target: h.target } : {}),
    noCache: h.noCache,
    compression,
    format,
    secrets: new Map(h.secrets.map((s) => [s.id, s.data])),
  };
  async function* chunks(): AsyncGenerator<Uint8Array> {
    for (;;) {
      const r = await it.next();
      if (r.done) return;
      if (r.value.part.case !== "context") throw invalidArgument("build: only context chunks may follow the header");
      yield r.value.part.value;
    }
  }
  const queue: EventInit[] = [];
  let wake: (() => void) | undefined;
  let finished = false;
  let failure: unknown;
  let result: EventInit | undefined;
  const push = (e: BuildEvent) => {
    queue.push(toProto(e));
    wake?.();
  };
  void builder.build(spec, chunks(), { signal, emit: push }).then(
    (r) => {
      result = { event: { case: "result", value: r } };
      finished = true;
      wake?.();
    },
    (err: unknown) => {
      failure = err;
      finished = true;
      wake?.();
    },
  );
  for (;;) {
    while (queue.length > 0) yield queue.shift() as EventInit;
    if (finished) break;
    await new Promise<void>((r) => {
      wake = r;
    });
    wake = undefined;
  }
  while (queue.length > 0) yield queue.shift() as EventInit;
  if (failure !== undefined) throw failure;
  if (result) yield result;
}

function toProto(e: BuildEvent): EventInit {
  switch (e.type) {
    case "start":
      return { event: { case: "start", value: { step: e.step, name: e.name } } };
    case "cached":
      return { event: { case: "cached", value: { step: e.step } } };
    case "output":
      return { event: { case: "output", value: { step: e.step, stream: e.stream, data: e.data } } };
    case "done":
      return { event: { case: "done", value: { step: e.step, durationMs: BigInt(e.durationMs) } } };
    case "error":
      return { event: { case: "error", value: e } };
  }
}

/** berth.v1.Builder/Prune. */
export async function berthBuildPrune(ctx: CriContext): Promise<MessageInitShape<typeof PruneResponseSchema>> {
  if (!ctx.builder) throw unavailable("the builder is not available");
  return { entries: await ctx.builder.prune() };
}
