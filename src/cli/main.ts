import { Command, Option } from "commander";
import { packageVersion } from "../util/index.js";
import { describeError, globals } from "./context.js";
import { registerInfo } from "./info.js";
import { registerVersion } from "./version.js";

/** Builds the `berth` command tree: one register function per noun. */
export function buildProgram(): Command {
  const program = new Command("berth")
    .description("berth: a crictl-like client for berthd or any CRI runtime")
    .version(packageVersion(), "--client-version", "print the client's version")
    .option("-s, --socket <path>", "CRI socket (env BERTH_SOCKET; default /run/berth/berth.sock)")
    .addOption(new Option("-o, --output <format>", "output format").choices(["table", "json", "yaml"]).default("table"))
    .option("--timeout <seconds>", "per-call timeout in seconds", "30")
    .option("--debug", "print debug information on errors");
  registerVersion(program);
  registerInfo(program);
  return program;
}

/** Runs the CLI; every failure is one line on stderr and exit code 1. */
export async function main(argv: string[]): Promise<void> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv);
  } catch (err) {
    const g = globals(program);
    process.stderr.write(`berth: ${describeError(err, g.socket)}\n`);
    if (g.debug && err instanceof Error && err.stack) process.stderr.write(`${err.stack}\n`);
    process.exitCode = 1;
  }
}
