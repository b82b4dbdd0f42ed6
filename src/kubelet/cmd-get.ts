/**
 * `berth get pods`, `berth describe pod NAME` and `berth pod-logs POD`: pods as the runner sees
 * them, read from CRI (plus the runner's status and events files), so they work from any shell,
 * whichever process runs the pods. `pod-logs` is named so because `berth logs` is the CRI
 * container command (`berth logs CONTAINER`); it takes a pod name and a container name instead.
 */
import { readFile } from "node:fs/promises";
import { hostname } from "node:os";
import { dirname, join } from "node:path";
import type { Command } from "commander";
import {
  err,
  formatStructured,
  formatTable,
  type LayoutOpts,
  layoutOf,
  NotFoundError,
  out,
  withClient,
  withLayoutOptions,
} from "./cli-support.js";
import { describePod, POD_HEADERS, podRow } from "./describe.js";
import { readEvents } from "./events.js";
import { readHostInfo } from "./host.js";
import { createLayout } from "./layout.js";
import { followLog, readLogLines } from "./logs.js";
import { listPodViews, pidAlive } from "./pod-query.js";
import type { PodView } from "./pod-view.js";

const POD_ALIASES = ["pods", "pod", "po"];

interface GetOpts {
  namespace: string;
  allNamespaces?: boolean;
  selector?: string;
}

export function registerGet(program: Command): void {
  program
    .command("get")
    .description("list pods like kubectl get pods (NAME READY STATUS RESTARTS AGE IP)")
    .argument("<resource>", "pods (or pod, po)")
    .argument("[names...]", "only these pods")
    .option("-n, --namespace <ns>", "namespace", "default")
    .option("-A, --all-namespaces", "pods of every namespace")
    .option("-l, --selector <key=value,...>", "only pods with these labels")
    .action(async (resource: string, names: string[], opts: GetOpts, cmd: Command) => {
      if (!POD_ALIASES.includes(resource))
        throw new Error(`the server doesn't have a resource type "${resource}" (berth get supports: pods)`);
      await withClient(cmd, async (client, g) => {
        const host = await readHostInfo();
        const labels = parseSelector(opts.selector);
        let views = await listPodViews(client, {
          hostIP: host.hostIP,
          ...(opts.allNamespaces ? {} : { namespace: opts.namespace }),
        });
        views = views.filter((v) => Object.entries(labels).every(([k, val]) => v.labels[k] === val));
        if (names.length > 0) {
          const missing = names.filter((n) => !views.some((v) => v.name === n));
          views = views.filter((v) => names.includes(v.name));
          for (const n of missing) err(`Error from server (NotFound): pods "${n}" not found`);
          if (missing.length > 0) process.exitCode = 1;
        }
        if (g.output !== "table")
          return out(formatStructured(names.length === 1 && views.length === 1 ? views[0] : views, g.output));
        if (views.length === 0) {
          if (names.length === 0)
            err(`No resources found${opts.allNamespaces ? "" : ` in ${opts.namespace} namespace`}.`);
          return;
        }
        const now = Date.now();
        const headers = opts.allNamespaces ? ["NAMESPACE", ...POD_HEADERS] : POD_HEADERS;
        out(
          formatTable(
            headers,
            views.map((v) => podRow(v, now, opts.allNamespaces === true)),
          ),
        );
      });
    });

  program
    .command("describe")
    .description("show a pod's containers, probes, conditions, volumes and events")
    .argument("<resource>", "pod")
    .argument("<name>", "pod name")
    .option("-n, --namespace <ns>", "namespace", "default")
    .action(async (resource: string, name: string, opts: { namespace: string }, cmd: Command) => {
      if (!POD_ALIASES.includes(resource))
        throw new Error(`the server doesn't have a resource type "${resource}" (berth describe supports: pod)`);
      await withClient(cmd, async (client, g) => {
        const host = await readHostInfo();
        const view = await onePod(
          await listPodViews(client, { hostIP: host.hostIP, namespace: opts.namespace, name }),
          name,
          opts.namespace,
        );
        const { events, note } = await podEvents(view);
        if (g.output !== "table") return out(formatStructured({ ...view, events: events ?? [] }, g.output));
        out(describePod(view, { events, eventsNote: note, now: Date.now(), node: `${hostname()}/${host.hostIP}` }));
      });
    });

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
        const view = await onePod(
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

/** The events the pod's runner recorded, and a note on where they come from when there are none. */
async function podEvents(view: PodView): Promise<{ events: Awaited<ReturnType<typeof readEvents>>; note: string }> {
  if (!view.stateDir)
    return { events: undefined, note: "not started by berth run or berth kubelet: no events are recorded" };
  const layout = createLayout({ stateDir: view.stateDir });
  const events = await readEvents(layout.eventsFile(view.uid));
  if (events === undefined) return { events, note: `no events file at ${layout.eventsFile(view.uid)}` };
  const status = await readFile(layout.statusFile(view.uid), "utf8")
    .then((t) => JSON.parse(t) as { pid?: number })
    .catch(() => undefined);
  const alive = status?.pid !== undefined && pidAlive(status.pid);
  return { events, note: alive ? "" : "the runner that recorded these events is not running" };
}

async function onePod(views: PodView[], name: string, namespace: string): Promise<PodView> {
  const v = views[0];
  if (!v) throw new NotFoundError(`pods "${name}" not found in namespace ${namespace}`);
  return v;
}

function parseSelector(s: string | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const part of (s ?? "").split(",").filter(Boolean)) {
    const [k, v = ""] = part.split("=");
    if (!k) throw new Error(`invalid selector ${JSON.stringify(s)}: expected key=value[,key=value]`);
    out[k.trim()] = v.trim();
  }
  return out;
}
