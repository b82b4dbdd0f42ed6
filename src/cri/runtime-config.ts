import type { MessageInitShape } from "@bufbuild/protobuf";
import { CgroupDriver, type RuntimeConfigResponseSchema } from "../api/gen/runtime/v1/api_pb.js";
import type { CriContext } from "./context.js";

/** RuntimeConfig: the cgroup driver the kubelet must match (KubeletCgroupDriverFromCRI). */
export function runtimeConfig(ctx: CriContext): MessageInitShape<typeof RuntimeConfigResponseSchema> {
  const driver = ctx.config.runtime.cgroup_driver === "systemd" ? CgroupDriver.SYSTEMD : CgroupDriver.CGROUPFS;
  return { linux: { cgroupDriver: driver } };
}
