/** `port-forward`: forward local TCP ports to a pod's ports through the runtime's streaming server. */
import type { Command } from "commander";
import { withClient } from "./context.js";
import { resolvePod } from "./resolve.js";
import { parsePortMapping, startPortForward } from "./stream-session.js";

/** Registers `port-forward`. */
export function registerPortForward(program: Command): void {
  program
    .command("port-forward")
    .description("forward local ports to a pod until interrupted")
    .argument("<pod>", "pod ID or unique prefix")
    .argument("<ports...>", "[LOCAL:]REMOTE, e.g. 8080:80, 80, or :80 for any free local port")
    .option("--address <ip>", "local address to listen on", "127.0.0.1")
    .action(async (ref: string, specs: string[], opts: { address: string }, cmd: Command) =>
      withClient(cmd, async (client) => {
        const mappings = specs.map(parsePortMapping);
        const pod = await resolvePod(client, ref);
        const res = await client.runtime.portForward({ podSandboxId: pod.id, port: mappings.map((m) => m.remote) });
        const stop = new AbortController();
        const onSignal = () => stop.abort();
        process.once("SIGINT", onSignal);
        process.once("SIGTERM", onSignal);
        try {
          const fwd = await startPortForward(res.url, mappings, {
            address: opts.address,
            signal: stop.signal,
            onError: (message) => process.stderr.write(`berth: port-forward: ${message}\n`),
          });
          for (const l of fwd.listening)
            process.stdout.write(`Forwarding from ${l.address}:${l.local} -> ${l.remote}\n`);
          await fwd.done;
        } finally {
          process.off("SIGINT", onSignal);
          process.off("SIGTERM", onSignal);
        }
      }),
    );
}
