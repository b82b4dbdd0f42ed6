/**
 * `berth describe pod NAME`: a pod's containers, probes, conditions, volumes and the events its
 * runner recorded, laid out like kubectl describe.
 */
import { readFile } from "node:fs/promises";
import { hostname } from "node:os";
import type { Command } from "commander";
import {
  type ContainerView,
  createLayout,
  describeProbe,
  formatBytes,
  formatCpu,
  humanDuration,
  listPodViews,
  type PodEvent,
  type PodView,
  pidAlive,
  readEvents,
  readHostInfo,
} from "../kubelet/index.js";
import { withClient } from "./context.js";
import { formatStructured } from "./output.js";
import { onePod, out, POD_ALIASES } from "./pod-runner.js";

export function registerDescribe(program: Command): void {
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
        const view = onePod(
          await listPodViews(client, { hostIP: host.hostIP, namespace: opts.namespace, name }),
          name,
          opts.namespace,
        );
        const { events, note } = await podEvents(view);
        if (g.output !== "table") return out(formatStructured({ ...view, events: events ?? [] }, g.output));
        out(describePod(view, { events, eventsNote: note, now: Date.now(), node: `${hostname()}/${host.hostIP}` }));
      });
    });
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

const date = (ms: number) => new Date(ms).toUTCString().replace("GMT", "+0000");

/** kubectl-describe-like text of one pod. `events` undefined means none were found (see `eventsNote`). */
export function describePod(
  v: PodView,
  o: { events: PodEvent[] | undefined; eventsNote: string; now: number; node: string },
): string {
  const lines: string[] = [];
  const kv = (indent: number, key: string, value: string, width = 18) =>
    lines.push(`${" ".repeat(indent)}${`${key}:`.padEnd(width - indent)}${value}`);
  kv(0, "Name", v.name);
  kv(0, "Namespace", v.namespace);
  kv(0, "Node", o.node);
  kv(0, "Start Time", date(v.createdAt));
  map(lines, "Labels", v.labels);
  map(lines, "Annotations", v.annotations);
  kv(0, "Status", v.status === "Terminating" ? "Terminating" : v.phase);
  kv(0, "IP", v.ip || "<none>");
  kv(0, "Sandbox", `${v.sandboxId.slice(0, 13)} (attempt ${v.attempt}${v.sandboxReady ? "" : ", not ready"})`);
  if (v.manifestPath) kv(0, "Manifest", v.manifestPath);
  if (v.owner) kv(0, "Kept by", v.owner === "run" ? "berth run" : `berth kubelet (${v.owner})`);
  if (v.initContainers.length > 0) {
    lines.push("Init Containers:");
    for (const c of v.initContainers) container(lines, c);
  }
  lines.push("Containers:");
  for (const c of v.containers) container(lines, c);
  lines.push("Conditions:");
  lines.push("  Type              Status");
  lines.push(`  Initialized       ${cap(v.conditions.initialized)}`);
  lines.push(`  Ready             ${cap(v.conditions.ready)}`);
  lines.push(`  ContainersReady   ${cap(v.conditions.containersReady)}`);
  lines.push("  PodScheduled      True");
  const volumes = v.pod?.spec.volumes ?? [];
  if (volumes.length > 0) {
    lines.push("Volumes:");
    for (const vol of volumes) {
      lines.push(`  ${vol.name}:`);
      if (vol.emptyDir) {
        kv(4, "Type", "EmptyDir (a temporary directory that shares a pod's lifetime)");
        kv(4, "Medium", vol.emptyDir.medium);
        kv(
          4,
          "SizeLimit",
          vol.emptyDir.sizeLimitBytes !== undefined ? formatBytes(vol.emptyDir.sizeLimitBytes) : "<unset>",
        );
      } else if (vol.hostPath) {
        kv(4, "Type", "HostPath (bare host directory volume)");
        kv(4, "Path", vol.hostPath.path);
        kv(4, "HostPathType", vol.hostPath.type);
      }
    }
  } else {
    lines.push("Volumes:          <none>");
  }
  if (!o.events || o.events.length === 0) {
    lines.push(`Events:           <none>${o.eventsNote ? ` (${o.eventsNote})` : ""}`);
  } else {
    lines.push("Events:");
    const rows = o.events.map((e) => [
      e.type,
      e.reason,
      e.count > 1
        ? `${humanDuration(o.now - e.lastTimestamp)} (x${e.count} over ${humanDuration(e.lastTimestamp - e.firstTimestamp)})`
        : humanDuration(o.now - e.lastTimestamp),
      "berth-kubelet",
      e.message,
    ]);
    const headers = ["Type", "Reason", "Age", "From", "Message"];
    const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
    const line = (cells: string[]) =>
      `  ${cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd((widths[i] ?? 0) + 2))).join("")}`.trimEnd();
    lines.push(line(headers));
    lines.push(line(headers.map((h) => "-".repeat(h.length))));
    for (const r of rows) lines.push(line(r));
    if (o.eventsNote) lines.push(`  (${o.eventsNote})`);
  }
  return `${lines.join("\n")}\n`;
}

function cap(b: boolean): string {
  return b ? "True" : "False";
}

function map(lines: string[], key: string, m: Record<string, string>): void {
  const entries = Object.entries(m);
  if (entries.length === 0) {
    lines.push(`${`${key}:`.padEnd(18)}<none>`);
    return;
  }
  entries.forEach(([k, val], i) => {
    lines.push(`${i === 0 ? `${key}:`.padEnd(18) : " ".repeat(18)}${k}=${val}`);
  });
}

function container(lines: string[], c: ContainerView): void {
  const kv = (key: string, value: string, indent = 4) =>
    lines.push(`${" ".repeat(indent)}${`${key}:`.padEnd(22 - indent)}${value}`);
  lines.push(`  ${c.name}:`);
  kv("Container ID", c.id ? `berth://${c.id}` : "");
  kv("Image", c.image);
  kv("Image ID", c.imageId);
  const spec = c.spec;
  if (spec) {
    const ports = spec.ports.map((p) => `${p.containerPort}/${p.protocol}`).join(", ");
    kv("Port", ports || "<none>");
    kv("Host Port", spec.ports.map((p) => `${p.hostPort}/${p.protocol}`).join(", ") || "<none>");
    if (spec.command.length > 0) {
      lines.push("    Command:");
      for (const a of spec.command) lines.push(`      ${a}`);
    }
    if (spec.args.length > 0) {
      lines.push("    Args:");
      for (const a of spec.args) lines.push(`      ${a}`);
    }
  }
  state(lines, "State", c.state);
  if (c.lastState) state(lines, "Last State", c.lastState);
  kv("Ready", cap(c.ready));
  kv("Restart Count", String(c.restartCount));
  if (spec) {
    const { limits, requests } = spec.resources;
    const res = (l: typeof limits) =>
      [
        l.cpuMillis !== undefined ? `cpu: ${formatCpu(l.cpuMillis)}` : "",
        l.memoryBytes !== undefined ? `memory: ${formatBytes(l.memoryBytes)}` : "",
      ].filter(Boolean);
    if (res(limits).length > 0) {
      lines.push("    Limits:");
      for (const r of res(limits)) lines.push(`      ${r}`);
    }
    if (res(requests).length > 0) {
      lines.push("    Requests:");
      for (const r of res(requests)) lines.push(`      ${r}`);
    }
    if (spec.livenessProbe) kv("Liveness", describeProbe(spec.livenessProbe));
    if (spec.readinessProbe) kv("Readiness", describeProbe(spec.readinessProbe));
    if (spec.startupProbe) kv("Startup", describeProbe(spec.startupProbe));
    if (spec.env.length === 0) kv("Environment", "<none>");
    else {
      lines.push("    Environment:");
      for (const e of spec.env) {
        const value = e.fieldRef
          ? `(v1:${e.fieldRef})`
          : e.resourceFieldRef
            ? `${e.resourceFieldRef.resource} (divisor ${e.resourceFieldRef.divisor})`
            : (e.value ?? "");
        lines.push(`      ${e.name}:  ${value}`);
      }
    }
    if (spec.volumeMounts.length === 0) kv("Mounts", "<none>");
    else {
      lines.push("    Mounts:");
      for (const m of spec.volumeMounts)
        lines.push(
          `      ${m.mountPath} from ${m.name}${m.subPath ? ` (${m.readOnly ? "ro" : "rw"},path="${m.subPath}")` : ` (${m.readOnly ? "ro" : "rw"})`}`,
        );
    }
  }
}

function state(lines: string[], key: string, s: ContainerView["state"]): void {
  const kv = (k: string, value: string, indent: number) =>
    lines.push(`${" ".repeat(indent)}${`${k}:`.padEnd(22 - indent)}${value}`);
  if (s.kind === "running") {
    kv(key, "Running", 4);
    kv("Started", date(s.startedAt), 6);
  } else if (s.kind === "waiting") {
    kv(key, "Waiting", 4);
    kv("Reason", s.reason, 6);
    if (s.message) kv("Message", s.message, 6);
  } else {
    kv(key, "Terminated", 4);
    kv("Reason", s.reason, 6);
    if (s.message) kv("Message", s.message.trimEnd(), 6);
    kv("Exit Code", String(s.exitCode), 6);
    kv("Started", date(s.startedAt), 6);
    kv("Finished", date(s.finishedAt), 6);
  }
}
