import { isIP } from "node:net";
import type { UpdateRuntimeConfigRequest } from "../api/gen/runtime/v1/api_pb.js";
import { invalidArgument } from "../errdefs/index.js";
import type { CriContext } from "./context.js";

/** UpdateRuntimeConfig: the kubelet hands over the node's pod CIDR (one, or a comma-separated dual-stack pair). */
export async function updateRuntimeConfig(
  ctx: CriContext,
  req: UpdateRuntimeConfigRequest,
): Promise<Record<string, never>> {
  const cidr = req.runtimeConfig?.networkConfig?.podCidr ?? "";
  if (cidr === "") return {};
  for (const part of cidr.split(",")) {
    const [addr, bits, extra] = part.trim().split("/");
    const family = isIP(addr ?? "");
    const max = family === 4 ? 32 : 128;
    const n = Number(bits);
    if (family === 0 || extra !== undefined || !Number.isInteger(n) || n < 0 || n > max || bits === "") {
      throw invalidArgument(`pod cidr "${part.trim()}" is not a valid CIDR`);
    }
  }
  await ctx.setPodCidr(cidr);
  return {};
}
