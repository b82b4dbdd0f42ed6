import { realpathSync } from "node:fs";
import { isAbsolute } from "node:path";
import { Command, Option } from "commander";
import { type Config, defaultConfig, formatConfig, loadConfig } from "../config/index.js";
import { messageOf } from "../errdefs/index.js";
import { createLogger, LOG_LEVELS } from "../log/index.js";
import { defaultConflist } from "../network/index.js";
import { packageVersion } from "../util/index.js";
import { startDaemon } from "./daemon.js";
import { CONFIG_PATH, defaultConfigFile, install, serviceUnit, UNIT_PATH } from "./install.js";
import { installLastResortHandler } from "./last-resort.js";

const DEFAULT_CONFIG_PATH = "/etc/berth/config.toml";

interface DaemonFlags {
  config: string;
  root?: string;
  state?: string;
  socket?: string;
  logLevel?: string;
}

/**
 * berthd's command line: with no command, load the configuration and serve until SIGTERM/SIGINT (the first
 * starts a graceful stop, a second exits at once); `config default` and `cni-default` print what berthd
 * would use. Invalid flags or configuration exit with status 1 and one line on stderr.
 */
export async function berthdMain(argv: string[]): Promise<void> {
  const program = new Command("berthd")
    .description("berth daemon: serves the Kubernetes CRI v1 API on a unix socket")
    .version(packageVersion())
    .option("--config <path>", "configuration file (missing file = defaults)", DEFAULT_CONFIG_PATH)
    .option("--root <dir>", "persistent state directory (default from config: /var/lib/berth)")
    .option("--state <dir>", "volatile state directory (default from config: /run/berth)")
    .option("--socket <path>", "CRI socket path (default from config: /run/berth/berth.sock)")
    .addOption(new Option("--log-level <level>", "log level").choices(LOG_LEVELS as string[]))
    .action(async (flags: DaemonFlags) => {
      let config: Config;
      try {
        config = await loadConfig(flags.config);
      } catch (err) {
        fatal(`invalid configuration: ${messageOf(err)}`);
      }
      for (const key of ["root", "state", "socket"] as const) {
        const value = flags[key];
        if (value === undefined) continue;
        // The same rule as the config file's keys: a relative path would depend on the working directory.
        if (!isAbsolute(value)) fatal(`--${key}: ${JSON.stringify(value)} is not an absolute path`);
        config[key] = value;
      }
      if (flags.logLevel) config.log.level = flags.logLevel;
      const log = createLogger(config.log.level as (typeof LOG_LEVELS)[number]);
      // Logs whatever escaped with its context and exits for the supervisor to restart berthd;
      // containers keep running (see src/daemon/last-resort.ts for why exiting is the policy).
      installLastResortHandler(process, {
        log,
        exit: (code) => process.exit(code),
        context: () => ({ socket: config.socket, root: config.root }),
      });
      let daemon: Awaited<ReturnType<typeof startDaemon>>;
      try {
        daemon = await startDaemon(config, log);
      } catch (err) {
        log.fatal({ err: messageOf(err) }, "berthd failed to start");
        fatal(messageOf(err));
      }
      let stopping = false;
      const onSignal = (sig: NodeJS.Signals) => {
        if (stopping) {
          log.warn({ signal: sig }, "second signal: exiting now");
          process.exit(1);
        }
        stopping = true;
        log.info({ signal: sig }, "stopping gracefully (send again to exit at once)");
        daemon.close().then(
          () => {
            log.info("berthd stopped");
            process.exit(0);
          },
          (err: unknown) => {
            log.error({ err: messageOf(err) }, "shutdown failed");
            process.exit(1);
          },
        );
      };
      process.on("SIGTERM", onSignal);
      process.on("SIGINT", onSignal);
    });

  program
    .command("config")
    .description("configuration helpers")
    .command("default")
    .description("print the full default configuration as TOML")
    .action(() => {
      process.stdout.write(formatConfig(defaultConfig()));
    });

  program
    .command("cni-default")
    .description("print berth's default CNI conflist (bridge berth0, host-local IPAM, portmap)")
    .option("--subnet <cidr>", "pod subnet", "10.88.0.0/16")
    .action((opts: { subnet: string }) => {
      process.stdout.write(`${defaultConflist({ bridge: "berth0", subnet: opts.subnet })}\n`);
    });

  program
    .command("install")
    .description(
      `print the systemd unit and a default config; with --write, install them (${UNIT_PATH}, ${CONFIG_PATH})`,
    )
    .option("--write", "write the files instead of printing them (an existing config is kept)")
    .option("--dest <dir>", "install under this directory instead of / (packaging)", "/")
    .action(async (opts: { write?: boolean; dest: string }) => {
      if (!isAbsolute(opts.dest)) fatal(`--dest: ${JSON.stringify(opts.dest)} is not an absolute path`);
      // This very berthd, with the node flags it runs with (systemd does not read the script's #! line's PATH).
      const execStart = [process.execPath, ...process.execArgv, realpathSync(argv[1] ?? "")].join(" ");
      if (!opts.write) {
        process.stdout.write(`# ${UNIT_PATH}\n${serviceUnit(execStart)}\n# ${CONFIG_PATH}\n${defaultConfigFile()}`);
        return;
      }
      try {
        for (const r of await install(execStart, opts.dest)) process.stdout.write(`${r.action} ${r.path}\n`);
      } catch (err) {
        fatal(`install: ${messageOf(err)}`);
      }
      process.stdout.write("next: systemctl daemon-reload && systemctl enable --now berthd\n");
    });

  await program.parseAsync(argv);
}

function fatal(message: string): never {
  process.stderr.write(`berthd: ${message}\n`);
  process.exit(1);
}
