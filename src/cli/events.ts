/** `events`: the runtime's container lifecycle events (GetContainerEvents), until interrupted. */
import type { Command } from "commander";
import { ContainerEventResponseSchema, ContainerEventType } from "../api/gen/runtime/v1/api_pb.js";
import { withClient } from "./context.js";
import { shortId } from "./format.js";
import { formatStructured, formatTime, messageJson } from "./output.js";

const EVENT_NAMES: Record<ContainerEventType, string> = {
  [ContainerEventType.CONTAINER_CREATED_EVENT]: "Created",
  [ContainerEventType.CONTAINER_STARTED_EVENT]: "Started",
  [ContainerEventType.CONTAINER_STOPPED_EVENT]: "Stopped",
  [ContainerEventType.CONTAINER_DELETED_EVENT]: "Deleted",
};

/** Registers `events`. */
export function registerEvents(program: Command): void {
  program
    .command("events")
    .description("stream container events (created, started, stopped, deleted) until interrupted")
    .action(async (_opts, cmd: Command) =>
      withClient(cmd, async (client, g) => {
        const stop = new AbortController();
        const onSignal = () => stop.abort();
        process.once("SIGINT", onSignal);
        try {
          // The header waits for the first event: a runtime without events fails before it.
          let header = g.output === "table";
          for await (const ev of client.runtime.getContainerEvents({}, { timeoutMs: 0, signal: stop.signal })) {
            if (g.output === "json") {
              process.stdout.write(`${JSON.stringify(messageJson(ContainerEventResponseSchema, ev))}\n`);
            } else if (g.output === "yaml") {
              process.stdout.write(`---\n${formatStructured(messageJson(ContainerEventResponseSchema, ev), "yaml")}`);
            } else {
              if (header) process.stdout.write(eventRow(["TIME", "EVENT", "CONTAINER", "POD ID", "POD"]));
              header = false;
              const pod = ev.podSandboxStatus;
              process.stdout.write(
                eventRow([
                  formatTime(ev.createdAt),
                  EVENT_NAMES[ev.containerEventType] ?? String(ev.containerEventType),
                  shortId(ev.containerId),
                  shortId(pod?.id ?? ""),
                  pod?.metadata?.name ?? "",
                ]),
              );
            }
          }
        } catch (err) {
          if (!stop.signal.aborted) throw err;
        } finally {
          process.off("SIGINT", onSignal);
        }
      }),
    );
}

// Rows arrive one at a time, so the columns have fixed widths (an RFC 3339 time with ms is 24 wide).
const EVENT_WIDTHS = [27, 10, 16, 16];

/** One line of the events table. */
export function eventRow(cells: readonly string[]): string {
  return `${cells
    .map((c, i) => (i < EVENT_WIDTHS.length ? c.padEnd(EVENT_WIDTHS[i] ?? 0) : c))
    .join("")
    .trimEnd()}\n`;
}
