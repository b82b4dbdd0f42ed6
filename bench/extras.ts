/**
 * The measurements outside the pod rounds, each run once per benchmark and selected with `--only`: the daemons'
 * idle RSS, CLI start-up (cli-startup.ts) and responsiveness under spawning load (exec-load.ts). Each gives
 * table rows (berth, containerd, floor) and its raw figures for the JSON.
 */
import { type CliStartupResult, measureCliStartup } from "./cli-startup.js";
import { type ExecLoadResult, measureExecLoad } from "./exec-load.js";
import type { Row } from "./report.js";
import type { RuntimeName, RuntimeUnderTest } from "./runtime.js";

/** Rows for the daemons' RSS after the warm-up (one image pulled, one pod run and removed). */
export function idleRssRows(idleRssKiB: Partial<Record<RuntimeName, number>>): Row[] {
  return [
    {
      metric: "daemon RSS idle (after warm-up), MiB",
      berth: (idleRssKiB.berth ?? Number.NaN) / 1024,
      containerd: (idleRssKiB.containerd ?? Number.NaN) / 1024,
      digits: 1,
    },
  ];
}

/** CLI start-up: berth against berthd, crictl (when installed) against containerd; floor `node -e 0`. */
export async function cliStartupRows(
  runtimes: Partial<Record<RuntimeName, RuntimeUnderTest>>,
  log: (line: string) => void,
): Promise<{ rows: Row[]; raw: CliStartupResult | undefined }> {
  if (!runtimes.berth) return { rows: [], raw: undefined };
  const raw = await measureCliStartup({
    berth: runtimes.berth.client.socket,
    ...(runtimes.containerd ? { containerd: runtimes.containerd.client.socket } : {}),
  });
  if (!raw.crictl) log("bench: crictl is not on PATH: the CLI rows show berth alone (containerd column empty)");
  const row = (
    metric: string,
    digits: number,
    pick: (c: NonNullable<CliStartupResult["crictl"]>) => number,
    floor?: number,
  ): Row => ({
    metric,
    berth: pick(raw.berth),
    containerd: raw.crictl ? pick(raw.crictl) : Number.NaN,
    digits,
    ...(floor !== undefined ? { floor } : {}),
  });
  return {
    raw,
    rows: [
      row("CLI `version` (berth / crictl): wall ms", 0, (c) => c.version.wallMs, raw.node.wallMs),
      row("CLI `version`: peak RSS, MiB", 1, (c) => c.version.maxRssMiB, raw.node.maxRssMiB),
      row("CLI `ps -a` (berth / crictl): wall ms", 0, (c) => c.ps.wallMs, raw.node.wallMs),
      row("CLI `ps -a`: peak RSS, MiB", 1, (c) => c.ps.maxRssMiB, raw.node.maxRssMiB),
    ],
  };
}

/** 10 pods started at once, then 100 ExecSync at once, while another client calls Version every 20 ms. */
export async function execLoadRows(
  runtimes: Partial<Record<RuntimeName, RuntimeUnderTest>>,
  o: { logRoot: (name: RuntimeName) => string; signal: AbortSignal; log: (line: string) => void },
): Promise<{ rows: Row[]; raw: Partial<Record<RuntimeName, ExecLoadResult>> }> {
  const raw: Partial<Record<RuntimeName, ExecLoadResult>> = {};
  for (const rt of Object.values(runtimes)) {
    const r = await measureExecLoad(rt, { tag: "load", logRoot: o.logRoot(rt.name), signal: o.signal });
    raw[rt.name] = r;
    o.log(
      `exec load ${rt.name}: Version idle p99 ${r.idle.p99.toFixed(1)} ms; 10 pod starts ${(r.podStarts.wallMs / 1000).toFixed(2)} s, ` +
        `Version p99 ${r.podStarts.probe.p99.toFixed(0)} / max ${r.podStarts.probe.max.toFixed(0)} ms; ` +
        `100 ExecSync ${(r.execs.wallMs / 1000).toFixed(2)} s (${r.execs.failures} failed), Version p99 ${r.execs.probe.p99.toFixed(0)} / max ${r.execs.probe.max.toFixed(0)} ms` +
        (r.execs.daemon
          ? `; berthd event loop: ${(r.podStarts.daemon?.stalls ?? 0) + r.execs.daemon.stalls} stalls > 100 ms, max delay ${r.execs.daemon.maxDelayMs} ms`
          : ""),
    );
  }
  const row = (metric: string, digits: number, pick: (r: ExecLoadResult) => number): Row => ({
    metric,
    berth: raw.berth ? pick(raw.berth) : Number.NaN,
    containerd: raw.containerd ? pick(raw.containerd) : Number.NaN,
    digits,
  });
  return {
    raw,
    rows: [
      row("Version latency idle (every 20 ms): p99 ms", 1, (r) => r.idle.p99),
      row("10 pods started at once: wall s", 2, (r) => r.podStarts.wallMs / 1000),
      row("  Version latency meanwhile: p99 ms", 0, (r) => r.podStarts.probe.p99),
      row("  Version latency meanwhile: max ms", 0, (r) => r.podStarts.probe.max),
      row("100 ExecSync at once (10 pods): wall s", 2, (r) => r.execs.wallMs / 1000),
      row("  Version latency meanwhile: p99 ms", 0, (r) => r.execs.probe.p99),
      row("  Version latency meanwhile: max ms", 0, (r) => r.execs.probe.max),
      row("  failed ExecSync calls", 0, (r) => r.execs.failures),
    ],
  };
}
