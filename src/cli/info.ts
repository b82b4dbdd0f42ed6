import type { Command } from "commander";
import { StatusResponseSchema } from "../api/gen/runtime/v1/api_pb.js";
import { withClient } from "./context.js";
import { messageJson, printStructured } from "./output.js";

/** `berth info`: the runtime's conditions (RuntimeReady, NetworkReady) and, with -v, its config and event-loop figures. */
export function registerInfo(program: Command): void {
  program
    .command("info")
    .description("show the runtime's status conditions")
    .option("-v, --verbose", "include the runtime's verbose info")
    .action(async (opts: { verbose?: boolean }, cmd: Command) =>
      withClient(cmd, async (client, g) => {
        const res = await client.runtime.status({ verbose: Boolean(opts.verbose) });
        const json = messageJson(StatusResponseSchema, res) as Record<string, unknown>;
        // Each verbose info value is JSON (berthd: config, eventLoop), shown as a value, not a string.
        const info = json.info as Record<string, unknown>;
        for (const [key, value] of Object.entries(res.info)) info[key] = parseOrKeep(value);
        printStructured(json, g.output === "yaml" ? "yaml" : "json");
      }),
    );
}

function parseOrKeep(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}
