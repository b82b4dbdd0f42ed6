import { Command, Option } from "commander";
import { packageVersion } from "../util/index.js";
import { describeError, globals } from "./context.js";
import { separateExecCommand } from "./exec.js";

type Register = (program: Command) => void;

/**
 * Which module registers which commands. A run loads only the module of the command it was given (start-up
 * time is most of a short command's cost: `berth version` should not load the pod runner, YAML, SPDY...);
 * help, completion and anything unrecognised load them all. Order here is the order of `berth --help`.
 */
const MODULES: ReadonlyArray<{ commands: readonly string[]; load: () => Promise<Register> }> = [
  { commands: ["version"], load: async () => (await import("./version.js")).registerVersion },
  { commands: ["info"], load: async () => (await import("./info.js")).registerInfo },
  {
    commands: ["pods", "runp", "stopp", "rmp", "inspectp"],
    load: async () => (await import("./pod.js")).registerPod,
  },
  {
    commands: ["ps", "create", "start", "stop", "rm", "inspect"],
    load: async () => (await import("./container.js")).registerContainer,
  },
  {
    commands: ["images", "image", "pull", "rmi", "prune", "inspecti", "imagefsinfo"],
    load: async () => (await import("./image.js")).registerImage,
  },
  { commands: ["build", "builder"], load: async () => (await import("./build.js")).registerBuild },
  { commands: ["push", "tag", "login", "logout"], load: async () => (await import("./push.js")).registerPush },
  { commands: ["save", "load"], load: async () => (await import("./archive.js")).registerArchive },
  { commands: ["logs"], load: async () => (await import("./logs.js")).registerLogs },
  { commands: ["exec"], load: async () => (await import("./exec.js")).registerExec },
  { commands: ["attach"], load: async () => (await import("./attach.js")).registerAttach },
  { commands: ["port-forward"], load: async () => (await import("./port-forward.js")).registerPortForward },
  { commands: ["stats"], load: async () => (await import("./stats.js")).registerStats },
  { commands: ["events"], load: async () => (await import("./events.js")).registerEvents },
  // The pod runner's commands (the library is src/kubelet/).
  { commands: ["run", "down"], load: async () => (await import("./run.js")).registerRun },
  { commands: ["get"], load: async () => (await import("./get.js")).registerGet },
  { commands: ["describe"], load: async () => (await import("./describe.js")).registerDescribe },
  { commands: ["pod-logs"], load: async () => (await import("./pod-logs.js")).registerPodLogs },
  { commands: ["kubelet"], load: async () => (await import("./kubelet.js")).registerKubelet },
  { commands: ["completion"], load: async () => (await import("./completion.js")).registerCompletion },
];

/** Global options that take a value (so the word after them is not the command). */
const VALUED_GLOBALS = new Set(["-s", "--socket", "-o", "--output", "--timeout"]);

/** The command word of `args` (the first word that is neither a global option nor its value). */
export function commandWord(args: readonly string[]): string | undefined {
  for (let i = 0; i < args.length; i++) {
    const a = args[i] as string;
    if (a === "--") return args[i + 1];
    if (!a.startsWith("-")) return a;
    if (VALUED_GLOBALS.has(a)) i++;
  }
  return undefined;
}

/**
 * Builds the `berth` command tree: one register function per noun. With `command`, only the module
 * registering it is loaded (when it is a known command); without, all of them.
 */
export async function buildProgram(command?: string): Promise<Command> {
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
  const one =
    command === undefined || command === "completion" ? undefined : MODULES.find((m) => m.commands.includes(command));
  for (const register of await Promise.all((one ? [one] : MODULES).map((m) => m.load()))) register(program);
  return program;
}

/**
 * `berth save -o FILE` is docker's spelling, but `-o` is the global output format: after `save`, it
 * means `--output-file`.
 */
function saveOutputFile(args: string[]): string[] {
  const at = args.indexOf("save");
  if (at < 0 || commandWord(args) !== "save") return args;
  return args.map((a, i) => (i > at && (a === "-o" || a === "--output") ? "--output-file" : a));
}

/** Runs the CLI; every failure is one line on stderr and exit code 1. */
export async function main(argv: string[]): Promise<void> {
  const args = saveOutputFile(separateExecCommand(argv.slice(2)));
  const program = await buildProgram(commandWord(args));
  try {
    await program.parseAsync([...argv.slice(0, 2), ...args]);
  } catch (err) {
    const g = globals(program);
    process.stderr.write(`berth: ${describeError(err, g.socket)}\n`);
    if (g.debug && err instanceof Error && err.stack) process.stderr.write(`${err.stack}\n`);
    process.exitCode = 1;
  }
}
