/** `attach`: connect to a running container's stdio through the runtime's streaming server. */
import type { Command } from "commander";
import { withClient } from "./context.js";
import { resolveContainer } from "./resolve.js";
import { runRemoteCommand } from "./stream-session.js";

/** Registers `attach`. */
export function registerAttach(program: Command): void {
  program
    .command("attach")
    .description("attach to a running container's stdin/stdout/stderr")
    .argument("<container>", "container ID or unique prefix")
    .option("-i, --stdin", "send stdin to the container (it must have been created with stdin)")
    .option("-t, --tty", "the container has a terminal (it must have been created with tty)")
    .action(async (ref: string, opts: { stdin?: boolean; tty?: boolean }, cmd: Command) =>
      withClient(cmd, async (client) => {
        const c = await resolveContainer(client, ref);
        const tty = Boolean(opts.tty);
        const res = await client.runtime.attach({
          containerId: c.id,
          stdin: Boolean(opts.stdin),
          tty,
          stdout: true,
          stderr: !tty,
        });
        process.exitCode = await runRemoteCommand(res.url, { stdin: Boolean(opts.stdin), tty });
      }),
    );
}
