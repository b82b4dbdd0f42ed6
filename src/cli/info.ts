import type { Command } from "commander";
import { StatusResponseSchema } from "../api/gen/runtime/v1/api_pb.js";
import { withClient } from "./context.js";
import { messageJson, printStructured } from "./output.js";

/** `berth info`: the runtime's conditions (RuntimeReady, NetworkReady) and, with -v, its config. */
export function registerInfo(program: Command): void {
  program
    .command("info")
    .description("show the runtime's status conditions")
    .option("-v, --verbose", "include the runtime's verbose info")
    .action(async (opts: { verbose?: boolean }, cmd: Command) =>
      withClient(cmd, async (client, g) => {
        const res = await client.runtime.status({ verbose: Boolean(opts.verbose) });
        const json = messageJson(StatusResponseSchema, res) as Record<string, unknown>;
        if (res.info.config) (json.info as Record<string, unknown>).config = JSON.parse(res.info.config);
        printStructured(json, g.output === "yaml" ? "yaml" : "json");
      }),
    );
}
