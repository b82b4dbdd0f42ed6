/**
 * Containers: `ps`, `create`, `start`, `stop`, `rm`, `inspect` (crictl's container.go).
 */
import { create } from "@bufbuild/protobuf";
import type { Command } from "commander";
import {
  type Container,
  ContainerConfigSchema,
  ContainerState,
  ContainerStatusSchema,
  ListContainersResponseSchema,
  PodSandboxConfigSchema,
} from "../api/gen/runtime/v1/api_pb.js";
import type { CriClient } from "../client/index.js";
import { collect, forEachRef, nonNegativeInt, stopCall } from "./args.js";
import { readMessageFile } from "./config-file.js";
import { type GlobalOptions, invalidArgumentStatus, isTable, longCall, withClient } from "./context.js";
import { ago, containerStateName, parseContainerState, parseLabels, shortId } from "./format.js";
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
import { resolveContainer, resolvePod } from "./resolve.js";

interface PsOptions {
  all?: boolean;
  id?: string;
  pod?: string;
  name?: string;
  state?: string;
  label?: string[];
  image?: string;
  quiet?: boolean;
  latest?: boolean;
  last?: number;
  trunc: boolean;
}

/** Registers the container commands. */
export function registerContainer(program: Command): void {
  program
    .command("ps")
    .description("list containers (only running ones unless -a or --state)")
    .option("-a, --all", "show containers in every state")
    .option("--id <id>", "only containers whose ID starts with this")
    .option("-p, --pod <pod>", "only containers of this pod (ID or unique prefix)")
    .option("--name <regexp>", "only containers whose name matches")
    .option("--state <state>", "only containers in this state: created, running, exited, unknown")
    .option("--label <key=value>", "only containers with this label (repeatable)", collect)
    .option("--image <image>", "only containers of this image (as shown in the IMAGE column, or its ID)")
    .option("-q, --quiet", "print full container IDs only")
    .option("-l, --latest", "only the most recently created container")
    .option("--last <n>", "only the n most recently created containers", nonNegativeInt)
    .option("--no-trunc", "do not truncate IDs")
    .action(async (opts: PsOptions, cmd: Command) =>
      withClient(cmd, async (client, g) => {
        const containers = await listContainers(client, opts);
        if (opts.quiet) {
          for (const c of containers) process.stdout.write(`${c.id}\n`);
          return;
        }
        if (g.output !== "table") {
          return printMessage(
            ListContainersResponseSchema,
            create(ListContainersResponseSchema, { containers }),
            g.output,
          );
        }
        const podNames = await client.runtime
          .listPodSandbox({})
          .then((r) => new Map(r.items.map((p) => [p.id, p.metadata?.name ?? ""])))
          .catch(() => new Map<string, string>());
        const id = (s: string) => (opts.trunc ? shortId(s) : s);
        printTable(
          ["CONTAINER", "IMAGE", "CREATED", "STATE", "NAME", "ATTEMPT", "POD ID", "POD"],
          containers.map((c) => [
            id(c.id),
            imageColumn(c, opts.trunc),
            ago(c.createdAt),
            containerStateName(c.state),
            c.metadata?.name ?? "",
            String(c.metadata?.attempt ?? 0),
            id(c.podSandboxId),
            podNames.get(c.podSandboxId) ?? "unknown",
          ]),
        );
      }),
    );

  program
    .command("create")
    .description("create a container in a pod from crictl-style JSON/YAML config files; prints its ID")
    .argument("<pod>", "pod sandbox ID or unique prefix")
    .argument("<container-config>", "ContainerConfig file (JSON or YAML)")
    .argument("<pod-config>", "the PodSandboxConfig file the pod was created with")
    .option("--no-pull", "do not pull the image when it is missing")
    .option("--with-pull", "pull the image even when it is present")
    .action(
      async (
        podRef: string,
        containerPath: string,
        podPath: string,
        opts: { pull: boolean; withPull?: boolean },
        cmd: Command,
      ) =>
        withClient(cmd, async (client, g) => {
          const config = await readMessageFile(ContainerConfigSchema, containerPath);
          const sandboxConfig = await readMessageFile(PodSandboxConfigSchema, podPath);
          const pod = await resolvePod(client, podRef);
          const image = config.image?.image ?? "";
          if (image === "") throw invalidArgumentStatus(`${containerPath}: image.image is required`);
          const present = opts.withPull ? false : Boolean((await client.image.imageStatus({ image: { image } })).image);
          if (!present && (opts.pull || opts.withPull)) {
            await client.image.pullImage({ image: { image }, sandboxConfig }, longCall(g));
          }
          const res = await client.runtime.createContainer(
            { podSandboxId: pod.id, config, sandboxConfig },
            longCall(g),
          );
          process.stdout.write(`${res.containerId}\n`);
        }),
    );

  program
    .command("start")
    .description("start created containers")
    .argument("<container...>", "container IDs or unique prefixes")
    .action(async (refs: string[], _opts, cmd: Command) =>
      withClient(cmd, async (client, g) =>
        forEachRef(refs, g, async (ref) => {
          const c = await resolveContainer(client, ref);
          await client.runtime.startContainer({ containerId: c.id }, longCall(g));
          process.stdout.write(`${c.id}\n`);
        }),
      ),
    );

  program
    .command("stop")
    .description("stop running containers (SIGTERM or the image's stop signal, SIGKILL after the timeout)")
    .argument("<container...>", "container IDs or unique prefixes")
    .option("-t, --timeout <seconds>", "seconds to wait before killing the container", nonNegativeInt, 10)
    .action(async (refs: string[], opts: { timeout: number }, cmd: Command) =>
      withClient(cmd, async (client, g) =>
        forEachRef(refs, g, async (ref) => {
          const c = await resolveContainer(client, ref);
          await client.runtime.stopContainer(
            { containerId: c.id, timeout: BigInt(opts.timeout) },
            stopCall(g, opts.timeout),
          );
          process.stdout.write(`${c.id}\n`);
        }),
      ),
    );

  program
    .command("rm")
    .description("remove containers (a running one only with -f)")
    .argument("[container...]", "container IDs or unique prefixes")
    .option("-f, --force", "stop running containers first")
    .option("-a, --all", "remove every container")
    .action(async (refs: string[], opts: { force?: boolean; all?: boolean }, cmd: Command) =>
      withClient(cmd, async (client, g) => {
        const targets = opts.all ? (await client.runtime.listContainers({})).containers.map((c) => c.id) : refs;
        if (targets.length === 0 && !opts.all) throw invalidArgumentStatus("rm: give at least one container ID, or -a");
        await forEachRef(targets, g, (ref) => removeContainer(client, g, ref, Boolean(opts.force)));
      }),
    );

  program
    .command("inspect")
    .description("show containers' status and the runtime's verbose info (JSON unless -o yaml or -o table)")
    .argument("<container...>", "container IDs or unique prefixes")
    .action(async (refs: string[], _opts, cmd: Command) =>
      withClient(cmd, async (client, g) => {
        const docs: unknown[] = [];
        await forEachRef(refs, g, async (ref) => {
          const c = await resolveContainer(client, ref);
          const res = await client.runtime.containerStatus({ containerId: c.id, verbose: true });
          const st = res.status;
          if (isTable(g)) {
            if (docs.length > 0) process.stdout.write("\n");
            docs.push(c.id);
            printFields([
              ["ID", c.id],
              ["Name", st?.metadata?.name ?? ""],
              ["Attempt", String(st?.metadata?.attempt ?? 0)],
              ["State", containerStateName(st?.state ?? ContainerState.CONTAINER_UNKNOWN)],
              ["Image", st?.image?.image ?? ""],
              ["Image ID", st?.imageRef ?? ""],
              ["Created", formatTime(st?.createdAt ?? 0n)],
              ["Started", formatTime(st?.startedAt ?? 0n)],
              ["Finished", formatTime(st?.finishedAt ?? 0n)],
              ["Exit Code", String(st?.exitCode ?? 0)],
              ["Reason", st?.reason ?? ""],
              ["Log Path", st?.logPath ?? ""],
              ["Labels", formatMap(st?.labels ?? {})],
              ["Annotations", formatMap(st?.annotations ?? {})],
            ]);
            return;
          }
          docs.push({ status: st ? messageJson(ContainerStatusSchema, st) : null, info: parseInfo(res.info) });
        });
        if (!isTable(g)) printDocuments(docs, g.output === "yaml" ? "yaml" : "json");
      }),
    );
}

async function removeContainer(client: CriClient, g: GlobalOptions, ref: string, force: boolean): Promise<void> {
  const c = await resolveContainer(client, ref);
  if (c.state === ContainerState.CONTAINER_RUNNING || c.state === ContainerState.CONTAINER_UNKNOWN) {
    if (!force && c.state === ContainerState.CONTAINER_RUNNING) {
      throw invalidArgumentStatus(`container ${c.id} is running: stop it first, or use rm -f`);
    }
    if (force) await client.runtime.stopContainer({ containerId: c.id, timeout: 0n }, stopCall(g, 0));
  }
  await client.runtime.removeContainer({ containerId: c.id }, longCall(g));
  process.stdout.write(`${c.id}\n`);
}

/** The containers `ps` shows: the runtime's filters first, then ours; newest first. */
async function listContainers(client: CriClient, opts: PsOptions): Promise<Container[]> {
  const state =
    opts.state !== undefined
      ? parseContainerState(opts.state)
      : opts.all
        ? undefined
        : ContainerState.CONTAINER_RUNNING;
  const podSandboxId = opts.pod !== undefined ? (await resolvePod(client, opts.pod)).id : undefined;
  const { containers } = await client.runtime.listContainers({
    filter: {
      ...(opts.id ? { id: opts.id } : {}),
      ...(state !== undefined ? { state: { state } } : {}),
      ...(podSandboxId ? { podSandboxId } : {}),
      labelSelector: parseLabels(opts.label ?? []),
    },
  });
  const name = opts.name !== undefined ? new RegExp(opts.name) : undefined;
  let out = containers.filter(
    (c) =>
      (opts.id === undefined || c.id.startsWith(opts.id)) &&
      (state === undefined || c.state === state) &&
      (podSandboxId === undefined || c.podSandboxId === podSandboxId) &&
      (name === undefined || name.test(c.metadata?.name ?? "")) &&
      (opts.image === undefined || matchesImage(c, opts.image)),
  );
  out.sort((a, b) => (a.createdAt === b.createdAt ? 0 : a.createdAt > b.createdAt ? -1 : 1));
  if (opts.latest) out = out.slice(0, 1);
  else if (opts.last !== undefined) out = out.slice(0, opts.last);
  return out;
}

function matchesImage(c: Container, image: string): boolean {
  const ids = [c.image?.image ?? "", c.imageRef, c.imageId].map((s) => s.replace(/^sha256:/, ""));
  const want = image.replace(/^sha256:/, "");
  return ids.some((s) => s === want || (/^[0-9a-f]+$/.test(want) && s.startsWith(want)));
}

/** The IMAGE column: the image as the container was created from, an image ID shortened. */
function imageColumn(c: Container, trunc: boolean): string {
  const image = c.image?.image || c.imageRef;
  return trunc && /^sha256:[0-9a-f]{64}$/.test(image) ? shortId(image) : image;
}
