/**
 * `logs`: a container's output, read from the CRI log file its ContainerStatus names (the CLI runs
 * on the node, like crictl). Also takes a pod (ID, unique prefix or name) with -c, so that
 * `berth logs POD -c CONTAINER` works like kubectl for pods run by `berth run`.
 */
import { Code, ConnectError } from "@connectrpc/connect";
import type { Command } from "commander";
import { type Container, ContainerState } from "../api/gen/runtime/v1/api_pb.js";
import type { CriClient } from "../client/index.js";
import { CriLogReader, type CriLogRecord, LineJoiner, type LogLine } from "../crilog/index.js";
import { nonNegativeInt } from "./args.js";
import { invalidArgumentStatus, notFoundStatus, withClient } from "./context.js";
import { parseSince } from "./duration.js";
import { resolveContainer, resolvePod } from "./resolve.js";

interface LogsOptions {
  follow?: boolean;
  tail?: number;
  timestamps?: boolean;
  since?: string;
  container?: string;
  namespace?: string;
}

/** Registers `logs`. */
export function registerLogs(program: Command): void {
  program
    .command("logs")
    .description("print a container's logs (a pod's with -c NAME)")
    .argument("<container-or-pod>", "container ID or unique prefix; or a pod's ID, prefix or name")
    .option("-f, --follow", "keep printing new output until the container stops (follows log rotation)")
    .option("--tail <n>", "only the last n lines", nonNegativeInt)
    .option("-t, --timestamps", "prefix each line with its RFC 3339 timestamp")
    .option("--since <when>", "only lines since a duration ago (10s, 5m, 2h) or an RFC 3339 time")
    .option("-c, --container <name>", "the pod's container to show (when the argument names a pod)")
    .option("-n, --namespace <namespace>", "the pod's namespace (when the argument is a pod name)")
    .action(async (ref: string, opts: LogsOptions, cmd: Command) =>
      withClient(cmd, async (client) => {
        const sinceMs = opts.since !== undefined ? parseSince(opts.since) : undefined;
        const container = await findContainer(client, ref, opts);
        const status = (await client.runtime.containerStatus({ containerId: container.id })).status;
        const path = status?.logPath ?? "";
        if (path === "")
          throw invalidArgumentStatus(`container ${container.id} has no log file (its config set no log_path)`);
        await printLogs(path, {
          ...(opts.tail !== undefined ? { tail: opts.tail } : {}),
          ...(sinceMs !== undefined ? { sinceMs } : {}),
          timestamps: Boolean(opts.timestamps),
          follow: Boolean(opts.follow),
          isRunning: async () => {
            const st = await client.runtime.containerStatus({ containerId: container.id }).catch(() => undefined);
            return (
              st?.status?.state === ContainerState.CONTAINER_RUNNING ||
              st?.status?.state === ContainerState.CONTAINER_CREATED
            );
          },
        });
      }),
    );
}

/** Options of {@link printLogs}. */
export interface PrintLogsOptions {
  tail?: number;
  sinceMs?: number;
  timestamps: boolean;
  follow: boolean;
  isRunning: () => Promise<boolean>;
  out?: NodeJS.WritableStream;
  err?: NodeJS.WritableStream;
  signal?: AbortSignal;
}

/**
 * Prints the log file at `path`: the lines already there (after --since, then the last --tail),
 * then with `follow` every new line until the container stops or `signal` aborts. stdout lines go
 * to `out`, stderr lines to `err`.
 */
export async function printLogs(path: string, options: PrintLogsOptions): Promise<void> {
  const out = options.out ?? process.stdout;
  const err = options.err ?? process.stderr;
  const joiner = new LineJoiner();
  const wanted = (l: LogLine) => options.sinceMs === undefined || l.timeMs >= options.sinceMs;
  const write = (l: LogLine) =>
    (l.stream === "stderr" ? err : out).write(formatLogLine(l, { timestamps: options.timestamps }));
  // Each record goes through the joiner; `sink` gets the complete lines --since lets through.
  const feed = async (records: AsyncIterable<CriLogRecord>, sink: (l: LogLine) => void) => {
    for await (const rec of records) {
      const line = joiner.push(rec);
      if (line && wanted(line)) sink(line);
    }
  };
  const reader = await CriLogReader.open(path);
  try {
    // What is there now: keep the --tail window, print it.
    const tail = new TailBuffer<LogLine>(options.tail ?? -1);
    await feed(reader.read({ final: !options.follow }), (l) => tail.push(l));
    if (!options.follow) for (const line of joiner.flush()) if (wanted(line)) tail.push(line);
    for (const line of tail.items()) write(line);
    if (!options.follow) return;
    await feed(
      reader.follow({ isRunning: options.isRunning, ...(options.signal ? { signal: options.signal } : {}) }),
      write,
    );
    for (const line of joiner.flush()) if (wanted(line)) write(line);
  } finally {
    await reader.close();
  }
}

/** What `logs` prints for one line: the content (and with `timestamps` the entry's timestamp first), newline-terminated when complete. */
export function formatLogLine(line: LogLine, options: { timestamps?: boolean } = {}): string {
  const prefix = options.timestamps ? `${line.timestamp} ` : "";
  return `${prefix}${line.content}${line.complete ? "\n" : ""}`;
}

/** Keeps the last `n` items pushed (the --tail window); n < 0 keeps all. */
export class TailBuffer<T> {
  readonly #items: T[] = [];
  constructor(readonly n: number) {}

  push(item: T): void {
    if (this.n === 0) return;
    this.#items.push(item);
    if (this.n > 0 && this.#items.length > this.n) this.#items.shift();
  }

  items(): readonly T[] {
    return this.#items;
  }
}

/**
 * The container `ref` names: a container ID or unique prefix; else a pod (ID, prefix, or name)
 * whose container -c names, or its only container. Among attempts, the latest is taken.
 */
async function findContainer(client: CriClient, ref: string, opts: LogsOptions): Promise<Container> {
  if (opts.container === undefined) {
    try {
      return await resolveContainer(client, ref);
    } catch (err) {
      if (!isNotFound(err)) throw err;
    }
  }
  const podId = await findPodId(client, ref, opts.namespace);
  const { containers } = await client.runtime.listContainers({ filter: { podSandboxId: podId } });
  const mine = containers.filter((c) => c.podSandboxId === podId);
  const names = [...new Set(mine.map((c) => c.metadata?.name ?? ""))].sort();
  const name = opts.container ?? (names.length === 1 ? names[0] : undefined);
  if (name === undefined) {
    if (names.length === 0) throw notFoundStatus(`pod ${ref} has no containers`);
    throw invalidArgumentStatus(`pod ${ref} has several containers (${names.join(", ")}): choose one with -c`);
  }
  const candidates = mine
    .filter((c) => c.metadata?.name === name)
    .sort((a, b) => (b.metadata?.attempt ?? 0) - (a.metadata?.attempt ?? 0) || (b.createdAt > a.createdAt ? 1 : -1));
  const latest = candidates[0];
  if (!latest) throw notFoundStatus(`pod ${ref} has no container named ${name} (it has ${names.join(", ") || "none"})`);
  return latest;
}

function isNotFound(err: unknown): boolean {
  return err instanceof ConnectError && err.code === Code.NotFound;
}

async function findPodId(client: CriClient, ref: string, namespace: string | undefined): Promise<string> {
  try {
    return (await resolvePod(client, ref)).id;
  } catch (err) {
    if (!(err instanceof Error && /not found/.test(err.message))) throw err;
  }
  const { items } = await client.runtime.listPodSandbox({});
  const named = items
    .filter((p) => p.metadata?.name === ref && (namespace === undefined || p.metadata?.namespace === namespace))
    .sort((a, b) => (b.createdAt > a.createdAt ? 1 : b.createdAt < a.createdAt ? -1 : 0));
  const namespaces = new Set(named.map((p) => p.metadata?.namespace));
  if (named.length === 0) throw notFoundStatus(`no container or pod ${JSON.stringify(ref)}`);
  if (namespaces.size > 1)
    throw invalidArgumentStatus(
      `pod name ${ref} is in several namespaces (${[...namespaces].join(", ")}): choose one with -n`,
    );
  return (named[0] as (typeof named)[number]).id;
}
