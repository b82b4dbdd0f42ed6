/**
 * `berth kubelet --manifests DIR`: the static-pod agent (agent.ts) in the foreground. It prints
 * what it does and the pods' events; SIGINT/SIGTERM stop it and leave the pods running (a
 * restarted agent adopts them).
 */
import { type Command, Option } from "commander";
import type { CriClient } from "../client/index.js";
import { ManifestDirAgent, readHostInfo } from "../kubelet/index.js";
import { withClient } from "./context.js";
import {
  backoffOf,
  err,
  type LayoutOpts,
  layoutOf,
  out,
  positive,
  type TimingOpts,
  withLayoutOptions,
  withTimingOptions,
} from "./pod-runner.js";

interface KubeletOpts extends LayoutOpts, TimingOpts {
  manifests: string;
  rescanMs: string;
  events: boolean;
}

export function registerKubelet(program: Command): void {
  withTimingOptions(
    withLayoutOptions(
      program
        .command("kubelet")
        .description("keep the pods of every manifest in a directory running (static pods)")
        .requiredOption("--manifests <dir>", "directory of Pod manifests (*.yaml, *.yml, *.json)")
        .addOption(new Option("--rescan-ms <ms>", "full rescan period, besides watching the directory").default("2000"))
        .option("--no-events", "do not print the pods' events"),
    ),
  ).action((opts: KubeletOpts, cmd: Command) => withClient(cmd, (client) => runAgent(client, opts)));
}

async function runAgent(client: CriClient, opts: KubeletOpts): Promise<void> {
  const stamp = () => new Date().toISOString().replace(/\.\d+Z$/, "Z");
  const report = (line: string) => out(`${stamp()} ${line}\n`);
  const agent = new ManifestDirAgent(opts.manifests, {
    client,
    layout: layoutOf(opts),
    host: await readHostInfo(),
    backoff: backoffOf(opts),
    syncPeriodMs: positive(opts.syncPeriodMs, "--sync-period-ms"),
    rescanMs: positive(opts.rescanMs, "--rescan-ms"),
    report,
    hooks: {
      ...(opts.events
        ? {
            onEvent: (pod, e) =>
              report(
                `[${pod.metadata.namespace}/${pod.metadata.name}] ${e.type === "Warning" ? "Warning " : ""}${e.reason}: ${e.message}`,
              ),
          }
        : {}),
      onError: (pod, e) => report(`[${pod.metadata.namespace}/${pod.metadata.name}] sync: ${(e as Error).message}`),
    },
  });
  report(`watching ${agent.dir} (owner label ${agent.owner})`);
  await agent.start();
  const signal = await new Promise<string>((resolve) => {
    process.once("SIGINT", () => resolve("SIGINT"));
    process.once("SIGTERM", () => resolve("SIGTERM"));
  });
  report(`${signal}: stopping; the pods keep running`);
  const force = () => {
    err("second signal: exiting now");
    process.exit(130);
  };
  process.once("SIGINT", force);
  process.once("SIGTERM", force);
  await agent.stop();
}
