import type { MessageInitShape } from "@bufbuild/protobuf";
import type { VersionResponseSchema } from "../api/gen/runtime/v1/api_pb.js";
import type { CriContext } from "./context.js";

/** The CRI API version berth serves. */
export const CRI_API_VERSION = "v1";

/** Version: who we are. `version` in the request is the kubelet's CRI version and needs no answer. */
export function version(ctx: CriContext): MessageInitShape<typeof VersionResponseSchema> {
  return {
    version: "0.1.0",
    runtimeName: "berth",
    runtimeVersion: ctx.version,
    runtimeApiVersion: CRI_API_VERSION,
  };
}
