/**
 * `berth pod-logs POD [-c C]`: a pod container's log by pod and container name. It is named so
 * because `berth logs` is the CRI container command (`berth logs CONTAINER`).
 */
import { dirname, join } from "node:path";
import type { Command } from "commander";
import { followLog, listPodViews, readHostInfo, readLogLines } from "../kubelet/index.js";
import { withClient } from "./context.js";
import { type LayoutOpts, layoutOf, onePod, out, withLayoutOptions } from "./pod-runner.js";

export function registerPodLogs(program: Command): void {
  withLayoutOptions(
    program
      .command("pod-logs")
      .description("print the logs of a pod's container (berth logs takes a container ID)")
      .argument("<pod>", "pod name")
      .option("-c, --container <name>", "container (default: the pod's only container)")
      .option("-n, --namespace <ns>", "namespace", "default")
      .option("-f, --follow", "keep printing new lines")
      .option("-p, --previous", "the previous attempt (the one before the last restart)")
      .option("--tail <lines>", "only the last N lines")
      .option("--timestamps", "prefix each line with its timestamp"),
  ).action(
    async (
      podName: string,
      opts: LayoutOpts & {
        container?: string;
        namespace: string;
        follow?: boolean;
        previous?: boolean;
        tail?: string;
        timestamps?: boolean;
      },
      cmd: Command,
    ) => {
      await withClient(cmd, async (client) => {
        const host = await readHostInfo();
        const view = onePod(
          await listPodViews(client, { hostIP: host.hostIP, namespace: opts.namespace, name: podName }),
          podName,
          opts.namespace,
        );
        const all = [...view.initContainers, ...view.containers];
        let name = opts.container;
        if (!name) {
          if (view.containers.length !== 1)
            throw new Error(
              `a container name must be specified for pod ${podName}, choose one of: [${all.map((c) => c.name).join(" ")}]`,
            );
          name = view.containers[0]?.name ?? "";
        }
        const c = all.find((x) => x.name === name);
        if (!c) throw new Error(`container ${name} is not valid for pod ${podName}`);
        const attempt = opts.previous ? c.restartCount - 1 : c.restartCount;
        if (attempt < 0) throw new Error(`previous terminated container "${name}" in pod "${podName}" not found`);
        // The pod's log directory is where its containers' logs are (<dir>/<container>/<n>.log).
        const podLogDir = c.logPath
          ? dirname(dirname(c.logPath))
          : layoutOf(opts).podLogDir(view.namespace, view.name, view.uid);
        const path = join(podLogDir, name, `${attempt}.log`);
        const print = (l: { time: string; content: string }) =>
          out(`${opts.timestamps ? `${l.time} ` : ""}${l.content}\n`);
        if (!opts.follow) {
          const lines = await readLogLines(path).catch(() => {
            throw new Error(`no log for container ${name} of pod ${podName} (${path})`);
          });
          for (const l of opts.tail !== undefined ? lines.slice(-Number(opts.tail)) : lines) print(l);
          return;
        }
        const abort = new AbortController();
        const stop = () => abort.abort();
        process.once("SIGINT", stop);
        process.once("SIGTERM", stop);
        let skip = 0;
        if (opts.tail !== undefined) {
          const lines = await readLogLines(path).catch(() => []);
          skip = Math.max(0, lines.length - Number(opts.tail));
        }
        for await (const l of followLog(path, { signal: abort.signal })) {
          if (skip > 0) {
            skip--;
            continue;
          }
          print(l);
        }
      });
    },
  );
}
