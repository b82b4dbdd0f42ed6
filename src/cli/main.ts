import { Command, Option } from "commander";
import { registerKubelet } from "../kubelet/index.js";
import { packageVersion } from "../util/index.js";
import { registerAttach } from "./attach.js";
import { registerCompletion } from "./completion.js";
import { registerContainer } from "./container.js";
import { describeError, globals } from "./context.js";
import { registerEvents } from "./events.js";
import { registerExec, separateExecCommand } from "./exec.js";
import { registerImage } from "./image.js";
import { registerInfo } from "./info.js";
import { registerLogs } from "./logs.js";
import { registerPod } from "./pod.js";
import { registerPortForward } from "./port-forward.js";
import { registerStats } from "./stats.js";
import { registerVersion } from "./version.js";

/** Builds the `berth` command tree: one register function per noun. */
export function buildProgram(): Command {
  const program = new Command("berth")
    .description("berth: a crictl-like client for berthd or any CRI runtime")
    .version(packageVersion(), "--client-version", "print the client's version")
    .option("-s, --socket <path>", "CRI socket (env BERTH_SOCKET; default /run/berth/berth.sock)")
    .addOption(new Option("-o, --output <format>", "output format").choices(["table", "json", "yaml"]).default("table"))
    .option(
      "--timeout <seconds>",
      "per-call timeout in seconds (pull, exec, logs -f and events have none unless given)",
      "30",
    )
    .option("--debug", "print debug information on errors")
    .showHelpAfterError("(run with --help for usage)")
    .configureOutput({ outputError: (str, write) => write(`berth: ${str.replace(/^error: /, "")}`) });
  registerVersion(program);
  registerInfo(program);
  registerPod(program);
  registerContainer(program);
  registerImage(program);
  registerLogs(program);
  registerExec(program);
  registerAttach(program);
  registerPortForward(program);
  registerStats(program);
  registerEvents(program);
  // ---- pod runner (issue #7): `run`, `down`, `get`, `describe`, `kubelet` live in src/kubelet/. ----
  registerKubelet(program);
  // ---- end of pod runner ----
  registerCompletion(program);
  return program;
}

/** Runs the CLI; every failure is one line on stderr and exit code 1. */
export async function main(argv: string[]): Promise<void> {
  const program = buildProgram();
  try {
    await program.parseAsync([...argv.slice(0, 2), ...separateExecCommand(argv.slice(2))]);
  } catch (err) {
    const g = globals(program);
    process.stderr.write(`berth: ${describeError(err, g.socket)}\n`);
    if (g.debug && err instanceof Error && err.stack) process.stderr.write(`${err.stack}\n`);
    process.exitCode = 1;
  }
}
