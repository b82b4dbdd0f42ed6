/**
 * Pod sandboxes: `pods`, `runp`, `stopp`, `rmp`, `inspectp` (crictl's sandbox.go).
 */
import { create } from "@bufbuild/protobuf";
import type { Command } from "commander";
import {
  ContainerStatusSchema,
  ListPodSandboxResponseSchema,
  type PodSandbox,
  PodSandboxConfigSchema,
  PodSandboxState,
  PodSandboxStatusSchema,
} from "../api/gen/runtime/v1/api_pb.js";
import type { CriClient } from "../client/index.js";
import { collect, forEachRef, nonNegativeInt, stopCall } from "./args.js";
import { readMessageFile } from "./config-file.js";
import { type GlobalOptions, invalidArgumentStatus, isTable, longCall, withClient } from "./context.js";
import { ago, parseLabels, parsePodState, podStateName, shortId } from "./format.js";
import {
  formatMap,
  formatTime,
  messageJson,
  parseInfo,
  printDocuments,
  printFields,
  printMessage,
  printTable,
} from "./output.js";
import { resolvePod } from "./resolve.js";

interface PodsOptions {
  id?: string;
  name?: string;
  namespace?: string;
  state?: string;
  label?: string[];
  quiet?: boolean;
  latest?: boolean;
  last?: number;
  trunc: boolean;
}

/** Registers the pod sandbox commands. */
export function registerPod(program: Command): void {
  program
    .command("pods")
    .description("list pod sandboxes")
    .option("--id <id>", "only pods whose ID starts with this")
    .option("--name <regexp>", "only pods whose name matches")
    .option("--namespace <regexp>", "only pods whose namespace matches")
    .option("--state <state>", "only pods in this state: ready or notready")
    .option("--label <key=value>", "only pods with this label (repeatable)", collect)
    .option("-q, --quiet", "print full pod IDs only")
    .option("-l, --latest", "only the most recently created pod")
    .option("--last <n>", "only the n most recently created pods", nonNegativeInt)
    .option("--no-trunc", "do not truncate IDs")
    .action(async (opts: PodsOptions, cmd: Command) =>
      withClient(cmd, async (client, g) => {
        const items = await listPods(client, opts);
        if (opts.quiet) {
          for (const p of items) process.stdout.write(`${p.id}\n`);
          return;
        }
        if (g.output !== "table")
          return printMessage(ListPodSandboxResponseSchema, create(ListPodSandboxResponseSchema, { items }), g.output);
        printTable(
          ["POD ID", "CREATED", "STATE", "NAME", "NAMESPACE", "ATTEMPT", "RUNTIME"],
          items.map((p) => [
            opts.trunc ? shortId(p.id) : p.id,
            ago(p.createdAt),
            podStateName(p.state),
            p.metadata?.name ?? "",
            p.metadata?.namespace ?? "",
            String(p.metadata?.attempt ?? 0),
            p.runtimeHandler || "(default)",
          ]),
        );
      }),
    );

  program
    .command("runp")
    .description("run a pod sandbox from a crictl-style JSON/YAML PodSandboxConfig file; prints its ID")
    .argument("<pod-config>", "PodSandboxConfig file (JSON or YAML)")
    .option("-r, --runtime <handler>", "runtime handler (RuntimeClass) to run the pod with", "")
    .action(async (path: string, opts: { runtime: string }, cmd: Command) =>
      withClient(cmd, async (client, g) => {
        const config = await readMessageFile(PodSandboxConfigSchema, path);
        const res = await client.runtime.runPodSandbox({ config, runtimeHandler: opts.runtime }, longCall(g));
        process.stdout.write(`${res.podSandboxId}\n`);
      }),
    );

  program
    .command("stopp")
    .description("stop pod sandboxes and their containers")
    .argument("<pod...>", "pod IDs or unique prefixes")
    .action(async (refs: string[], _opts, cmd: Command) =>
      withClient(cmd, async (client, g) =>
        forEachRef(refs, g, async (ref) => {
          const p = await resolvePod(client, ref);
          await client.runtime.stopPodSandbox({ podSandboxId: p.id }, longCall(g));
          process.stdout.write(`Stopped sandbox ${p.id}\n`);
        }),
      ),
    );

  program
    .command("rmp")
    .description("remove pod sandboxes and their containers (a ready pod only with -f)")
    .argument("[pod...]", "pod IDs or unique prefixes")
    .option("-f, --force", "stop ready pods first")
    .option("-a, --all", "remove every pod")
    .action(async (refs: string[], opts: { force?: boolean; all?: boolean }, cmd: Command) =>
      withClient(cmd, async (client, g) => {
        const targets = opts.all ? (await client.runtime.listPodSandbox({})).items.map((p) => p.id) : refs;
        if (targets.length === 0 && !opts.all) throw invalidArgumentStatus("rmp: give at least one pod ID, or -a");
        await forEachRef(targets, g, (ref) => removePod(client, g, ref, Boolean(opts.force)));
      }),
    );

  program
    .command("inspectp")
    .description("show pod sandboxes' status and the runtime's verbose info (JSON unless -o yaml or -o table)")
    .argument("<pod...>", "pod IDs or unique prefixes")
    .action(async (refs: string[], _opts, cmd: Command) =>
      withClient(cmd, async (client, g) => {
        const docs: unknown[] = [];
        await forEachRef(refs, g, async (ref) => {
          const p = await resolvePod(client, ref);
          const res = await client.runtime.podSandboxStatus({ podSandboxId: p.id, verbose: true });
          const st = res.status;
          if (isTable(g)) {
            if (docs.length > 0) process.stdout.write("\n");
            docs.push(p.id);
            const ips = [st?.network?.ip ?? "", ...(st?.network?.additionalIps ?? []).map((i) => i.ip)].filter(Boolean);
            printFields([
              ["ID", p.id],
              ["Name", st?.metadata?.name ?? ""],
              ["UID", st?.metadata?.uid ?? ""],
              ["Namespace", st?.metadata?.namespace ?? ""],
              ["Attempt", String(st?.metadata?.attempt ?? 0)],
              ["Status", podStateName(st?.state ?? PodSandboxState.SANDBOX_NOTREADY)],
              ["Created", formatTime(st?.createdAt ?? 0n)],
              ["IP Addresses", ips.join(", ")],
              ["Runtime", st?.runtimeHandler || "(default)"],
              ["Labels", formatMap(st?.labels ?? {})],
              ["Annotations", formatMap(st?.annotations ?? {})],
            ]);
            return;
          }
          docs.push({
            status: st ? messageJson(PodSandboxStatusSchema, st) : null,
            info: parseInfo(res.info),
            ...(res.containersStatuses.length > 0
              ? { containersStatuses: res.containersStatuses.map((c) => messageJson(ContainerStatusSchema, c)) }
              : {}),
          });
        });
        if (!isTable(g)) printDocuments(docs, g.output === "yaml" ? "yaml" : "json");
      }),
    );
}

async function removePod(client: CriClient, g: GlobalOptions, ref: string, force: boolean): Promise<void> {
  const p = await resolvePod(client, ref);
  if (p.state === PodSandboxState.SANDBOX_READY) {
    if (!force) throw invalidArgumentStatus(`pod sandbox ${p.id} is ready: stop it first (stopp), or use rmp -f`);
    await client.runtime.stopPodSandbox({ podSandboxId: p.id }, stopCall(g, 0));
  }
  await client.runtime.removePodSandbox({ podSandboxId: p.id }, longCall(g));
  process.stdout.write(`Removed sandbox ${p.id}\n`);
}

/** The pods `pods` shows: the runtime's filters first, then ours; newest first. */
async function listPods(client: CriClient, opts: PodsOptions): Promise<PodSandbox[]> {
  const state = opts.state !== undefined ? parsePodState(opts.state) : undefined;
  const { items } = await client.runtime.listPodSandbox({
    filter: {
      ...(opts.id ? { id: opts.id } : {}),
      ...(state !== undefined ? { state: { state } } : {}),
      labelSelector: parseLabels(opts.label ?? []),
    },
  });
  const name = opts.name !== undefined ? new RegExp(opts.name) : undefined;
  const namespace = opts.namespace !== undefined ? new RegExp(opts.namespace) : undefined;
  let out = items.filter(
    (p) =>
      (opts.id === undefined || p.id.startsWith(opts.id)) &&
      (state === undefined || p.state === state) &&
      (name === undefined || name.test(p.metadata?.name ?? "")) &&
      (namespace === undefined || namespace.test(p.metadata?.namespace ?? "")),
  );
  out.sort((a, b) => (a.createdAt === b.createdAt ? 0 : a.createdAt > b.createdAt ? -1 : 1));
  if (opts.latest) out = out.slice(0, 1);
  else if (opts.last !== undefined) out = out.slice(0, opts.last);
  return out;
}
