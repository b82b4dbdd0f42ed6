import type { MessageInitShape } from "@bufbuild/protobuf";
import { type ContainerEventResponseSchema, ContainerEventType } from "../api/gen/runtime/v1/api_pb.js";
import type { ContainerEvent } from "../pods/index.js";
import type { CriContext } from "./context.js";
import { toContainerStatus, toPodSandboxStatus } from "./convert.js";

const TYPES: Record<ContainerEvent["type"], ContainerEventType> = {
  created: ContainerEventType.CONTAINER_CREATED_EVENT,
  started: ContainerEventType.CONTAINER_STARTED_EVENT,
  stopped: ContainerEventType.CONTAINER_STOPPED_EVENT,
  deleted: ContainerEventType.CONTAINER_DELETED_EVENT,
};

/**
 * GetContainerEvents (Evented PLEG): a stream of container lifecycle events, each with the
 * pod's status and its containers' statuses at that moment, until the client goes away.
 * Events are buffered per stream, so a slow reader loses none (and holds their memory).
 */
export async function* getContainerEvents(
  ctx: CriContext,
  signal: AbortSignal,
): AsyncGenerator<MessageInitShape<typeof ContainerEventResponseSchema>> {
  const queue: ContainerEvent[] = [];
  let wake: (() => void) | undefined;
  const unsubscribe = ctx.pods.containers.onEvent((e) => {
    queue.push(e);
    wake?.();
  });
  const onAbort = () => wake?.();
  signal.addEventListener("abort", onAbort);
  try {
    while (!signal.aborted) {
      const e = queue.shift();
      if (!e) {
        await new Promise<void>((r) => {
          wake = r;
        });
        wake = undefined;
        continue;
      }
      let sandbox: ReturnType<typeof toPodSandboxStatus> | undefined;
      try {
        sandbox = toPodSandboxStatus(ctx.pods.sandboxes.get(e.sandboxId));
      } catch {
        sandbox = undefined; // the pod was removed meanwhile
      }
      yield {
        containerId: e.containerId,
        containerEventType: TYPES[e.type],
        createdAt: BigInt(e.at),
        ...(sandbox ? { podSandboxStatus: sandbox } : {}),
        containersStatuses: ctx.pods.containers.list({ sandboxId: e.sandboxId }).map(toContainerStatus),
      };
    }
  } finally {
    unsubscribe();
    signal.removeEventListener("abort", onAbort);
  }
}
