/**
 * `exec`: run a command in a running container. Without -i/-t it is ExecSync (output collected by
 * the runtime, printed when the command ends); with -i or -t it is the streaming Exec (live
 * stdin/stdout, a terminal with -t). Either way berth exits with the command's exit code.
 */
import type { Command } from "commander";
import { invalidArgumentStatus, longCall, withClient } from "./context.js";
import { resolveContainer } from "./resolve.js";
import { runRemoteCommand } from "./stream-session.js";

/** Registers `exec`. */
export function registerExec(program: Command): void {
  program
    .command("exec")
    .description("run a command in a running container; exits with the command's exit code")
    .usage("[options] CONTAINER COMMAND [ARG...]")
    .argument("<container>", "container ID or unique prefix")
    .argument("<command...>", "the command and its arguments (options after CONTAINER belong to the command)")
    .option("-i, --interactive", "keep stdin open and send it to the command (streaming Exec)")
    .option("-t, --tty", "allocate a terminal (streaming Exec)")
    .addHelpText("after", "\nExamples:\n  berth exec 3f2a ls -l /\n  berth exec -it 3f2a sh")
    .action(async (ref: string, argv: string[], opts: { interactive?: boolean; tty?: boolean }, cmd: Command) =>
      withClient(cmd, async (client, g) => {
        if (argv.length === 0) throw invalidArgumentStatus("exec: a command is required");
        const c = await resolveContainer(client, ref);
        if (!opts.interactive && !opts.tty) {
          const res = await client.runtime.execSync(
            { containerId: c.id, cmd: argv, timeout: BigInt(g.timeoutGiven ? g.timeout : 0) },
            longCall(g),
          );
          process.stdout.write(res.stdout);
          process.stderr.write(res.stderr);
          process.exitCode = res.exitCode;
          return;
        }
        const tty = Boolean(opts.tty);
        const res = await client.runtime.exec({
          containerId: c.id,
          cmd: argv,
          tty,
          stdin: Boolean(opts.interactive),
          stdout: true,
          stderr: !tty,
        });
        process.exitCode = await runRemoteCommand(res.url, { stdin: Boolean(opts.interactive), tty });
      }),
    );
}

/**
 * Inserts `--` after the container argument of `exec`, so that options of the command run in the
 * container (`berth exec ID ls -la`) are not taken for berth's. `args` is process.argv without the
 * node and script entries; returned unchanged when the command is not exec or has `--` already.
 */
export function separateExecCommand(args: readonly string[]): string[] {
  const valued = new Set(["-s", "--socket", "-o", "--output", "--timeout"]);
  const out = [...args];
  let i = 0;
  // Global options before the subcommand.
  while (i < out.length && out[i]?.startsWith("-")) i += valued.has(out[i] as string) ? 2 : 1;
  if (out[i] !== "exec") return out;
  for (i++; i < out.length; i++) {
    const a = out[i] as string;
    if (a === "--") return out;
    if (a.startsWith("-")) {
      if (valued.has(a)) i++;
      continue;
    }
    // `a` is the container; everything after it belongs to the command.
    if (i + 1 < out.length && out[i + 1] !== "--") out.splice(i + 1, 0, "--");
    return out;
  }
  return out;
}
