import type { MessageInitShape } from "@bufbuild/protobuf";
import type { StatusRequest, StatusResponseSchema } from "../api/gen/runtime/v1/api_pb.js";
import type { CriContext } from "./context.js";

/** Status: RuntimeReady and NetworkReady, the runtime handlers, and with verbose the daemon's view (one JSON value per info key). */
export function status(ctx: CriContext, req: StatusRequest): MessageInitShape<typeof StatusResponseSchema> {
  const runtime = ctx.runtimeCondition();
  const network = ctx.networkCondition();
  return {
    status: {
      conditions: [
        { type: "RuntimeReady", status: runtime.ready, reason: runtime.reason, message: runtime.message },
        { type: "NetworkReady", status: network.ready, reason: network.reason, message: network.message },
      ],
    },
    runtimeHandlers: Object.keys(ctx.config.runtime.handlers).map((name) => ({
      name,
      features: { recursiveReadOnlyMounts: true, userNamespaces: false },
    })),
    features: { supplementalGroupsPolicy: true, userNamespacesHostNetwork: false },
    info: req.verbose
      ? Object.fromEntries(Object.entries(ctx.verboseInfo()).map(([key, value]) => [key, JSON.stringify(value)]))
      : {},
  };
}
