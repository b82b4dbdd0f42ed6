/** `stats`: containers' resource usage (ListContainerStats), once or every second with -w. */

import { setTimeout as sleep } from "node:timers/promises";
import { create } from "@bufbuild/protobuf";
import type { Command } from "commander";
import { ContainerState, type ContainerStats, ListContainerStatsResponseSchema } from "../api/gen/runtime/v1/api_pb.js";
import { collect } from "./args.js";
import { withClient } from "./context.js";
import { humanSize, parseLabels, shortId } from "./format.js";
import { formatTable, printMessage } from "./output.js";
import { resolveContainer, resolvePod } from "./resolve.js";

interface StatsOptions {
  all?: boolean;
  pod?: string;
  label?: string[];
  watch?: boolean;
  trunc: boolean;
}

/** Registers `stats`. */
export function registerStats(program: Command): void {
  program
    .command("stats")
    .description("show containers' resource usage (running ones unless -a)")
    .argument("[container]", "only this container (ID or unique prefix)")
    .option("-a, --all", "include containers that are not running")
    .option("-p, --pod <pod>", "only containers of this pod (ID or unique prefix)")
    .option("--label <key=value>", "only containers with this label (repeatable)", collect)
    .option("-w, --watch", "refresh every second until interrupted")
    .option("--no-trunc", "do not truncate IDs")
    .action(async (ref: string | undefined, opts: StatsOptions, cmd: Command) =>
      withClient(cmd, async (client, g) => {
        const filter = {
          ...(ref ? { id: (await resolveContainer(client, ref)).id } : {}),
          ...(opts.pod ? { podSandboxId: (await resolvePod(client, opts.pod)).id } : {}),
          labelSelector: parseLabels(opts.label ?? []),
        };
        const sample = async () => {
          const { stats } = await client.runtime.listContainerStats({ filter });
          if (opts.all) return stats;
          const running = new Set(
            (
              await client.runtime.listContainers({ filter: { state: { state: ContainerState.CONTAINER_RUNNING } } })
            ).containers.map((c) => c.id),
          );
          return stats.filter((s) => running.has(s.attributes?.id ?? ""));
        };
        let previous = new Map<string, ContainerStats>();
        for (;;) {
          const stats = await sample();
          if (g.output !== "table") {
            printMessage(
              ListContainerStatsResponseSchema,
              create(ListContainerStatsResponseSchema, { stats }),
              g.output,
            );
          } else {
            // Without usage_nano_cores, CPU % needs two samples: take a second one a second later.
            if (previous.size === 0 && stats.some((s) => !s.cpu?.usageNanoCores?.value)) {
              previous = new Map(stats.map((s) => [s.attributes?.id ?? "", s]));
              await sleep(1000);
              continue;
            }
            const text = statsTable(stats, previous, opts.trunc);
            process.stdout.write(opts.watch ? `\x1b[2J\x1b[H${text}` : text);
            previous = new Map(stats.map((s) => [s.attributes?.id ?? "", s]));
          }
          if (!opts.watch) return;
          await sleep(1000);
        }
      }),
    );
}

/** The stats table crictl prints: CONTAINER NAME CPU % MEM DISK INODES. */
export function statsTable(
  stats: readonly ContainerStats[],
  previous: ReadonlyMap<string, ContainerStats>,
  trunc = true,
): string {
  return formatTable(
    ["CONTAINER", "NAME", "CPU %", "MEM", "DISK", "INODES"],
    stats.map((s) => {
      const id = s.attributes?.id ?? "";
      return [
        trunc ? shortId(id) : id,
        s.attributes?.metadata?.name ?? "",
        cpuPercent(s, previous.get(id)).toFixed(2),
        humanSize(s.memory?.workingSetBytes?.value ?? 0n),
        humanSize(s.writableLayer?.usedBytes?.value ?? 0n),
        String(s.writableLayer?.inodesUsed?.value ?? 0n),
      ];
    }),
  );
}

/** CPU use in percent of one core: usage_nano_cores when the runtime sets it, else the delta of two samples. */
export function cpuPercent(now: ContainerStats, before: ContainerStats | undefined): number {
  const nanoCores = now.cpu?.usageNanoCores?.value ?? 0n;
  if (nanoCores > 0n) return Number(nanoCores) / 1e7;
  const a = before?.cpu;
  const b = now.cpu;
  if (!a?.usageCoreNanoSeconds || !b?.usageCoreNanoSeconds || b.timestamp <= a.timestamp) return 0;
  return (
    (Number(b.usageCoreNanoSeconds.value - a.usageCoreNanoSeconds.value) / Number(b.timestamp - a.timestamp)) * 100
  );
}
