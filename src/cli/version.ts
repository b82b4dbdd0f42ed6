import type { Command } from "commander";
import { VersionResponseSchema } from "../api/gen/runtime/v1/api_pb.js";
import { withClient } from "./context.js";
import { messageJson, printStructured } from "./output.js";

/** `berth version`: the runtime's name and versions, as `crictl version` prints them. */
export function registerVersion(program: Command): void {
  program
    .command("version")
    .description("show the runtime's name and version")
    .action(async (_opts, cmd: Command) =>
      withClient(cmd, async (client, g) => {
        const v = await client.runtime.version({ version: "v1" });
        if (g.output !== "table") return printStructured(messageJson(VersionResponseSchema, v), g.output);
        process.stdout.write(
          `Version:  ${v.version}\nRuntimeName:  ${v.runtimeName}\nRuntimeVersion:  ${v.runtimeVersion}\nRuntimeApiVersion:  ${v.runtimeApiVersion}\n`,
        );
      }),
    );
}
