/**
 * Probes: one attempt of an exec, httpGet or tcpSocket check (`runProbe`), the kubelet's
 * threshold rules over consecutive attempts (`ProbeState`), and the per-container, per-kind
 * loop that runs them on the probe's schedule (`ProbeWorker`).
 *
 * Results follow the kubelet: a readiness probe starts as failure (not ready) until it succeeds
 * `successThreshold` times in a row; liveness starts as success; startup starts unknown and the
 * other two do not run until it has succeeded. `failureThreshold` failures in a row flip the
 * result to failure; a liveness or startup failure is the runner's cue to restart the container.
 */
import * as http from "node:http";
import * as https from "node:https";
import { connect } from "node:net";
import type { Clock } from "./clock.js";
import type { Handler, HttpGetAction, Probe, ProbeKind } from "./types.js";

/** The outcome of one probe attempt; `message` explains a failure (and goes into events). */
export interface ProbeOutcome {
  ok: boolean;
  message: string;
}

/** What a probe needs to reach its container. */
export interface ProbeTarget {
  containerId: string;
  /** Pod IP, or 127.0.0.1 for hostNetwork pods (used when the handler names no host). */
  host: string;
  /** Named ports of the container, for `port: http`. */
  ports: { name?: string; containerPort: number }[];
  /** Runs a command in the container (CRI ExecSync). */
  exec(containerId: string, cmd: string[], timeoutSeconds: number): Promise<{ exitCode: number; output: string }>;
}

/** Runs one attempt of `handler` with `timeoutSeconds`; never throws. */
export async function runProbe(handler: Handler, target: ProbeTarget, timeoutSeconds: number): Promise<ProbeOutcome> {
  try {
    if (handler.exec) return await execProbe(handler.exec.command, target, timeoutSeconds);
    if (handler.httpGet) return await httpProbe(handler.httpGet, target, timeoutSeconds);
    if (handler.tcpSocket) {
      const port = resolvePort(handler.tcpSocket.port, target);
      return await tcpProbe(handler.tcpSocket.host || target.host, port, timeoutSeconds);
    }
    return { ok: false, message: "no probe handler" };
  } catch (err) {
    return { ok: false, message: (err as Error).message };
  }
}

async function execProbe(command: string[], target: ProbeTarget, timeoutSeconds: number): Promise<ProbeOutcome> {
  const r = await target.exec(target.containerId, command, timeoutSeconds);
  if (r.exitCode === 0) return { ok: true, message: "" };
  const output = r.output.trim();
  return { ok: false, message: output ? output : `command ${JSON.stringify(command)} exited with ${r.exitCode}` };
}

/** A port number, or the containerPort of the named port. */
export function resolvePort(port: number | string, target: Pick<ProbeTarget, "ports">): number {
  if (typeof port === "number") return port;
  const found = target.ports.find((p) => p.name === port);
  if (!found) throw new Error(`port name "${port}" not found in the container's ports`);
  return found.containerPort;
}

/** The URL an httpGet action requests (for messages and describe). */
export function httpUrl(action: HttpGetAction, host: string, port: number): string {
  const h = host.includes(":") ? `[${host}]` : host;
  return `${action.scheme.toLowerCase()}://${h}:${port}${action.path}`;
}

function httpProbe(action: HttpGetAction, target: ProbeTarget, timeoutSeconds: number): Promise<ProbeOutcome> {
  const port = resolvePort(action.port, target);
  const host = action.host || target.host;
  const url = httpUrl(action, host, port);
  const headers: Record<string, string> = { "User-Agent": "kube-probe/berth", Accept: "*/*" };
  for (const h of action.httpHeaders) headers[h.name] = h.value;
  const lib = action.scheme === "HTTPS" ? https : http;
  return new Promise((resolve) => {
    const req = lib.request(
      url,
      {
        method: "GET",
        headers,
        agent: false,
        timeout: timeoutSeconds * 1000,
        // The kubelet does not verify probe certificates either.
        ...(action.scheme === "HTTPS" ? { rejectUnauthorized: false } : {}),
      },
      (res) => {
        const status = res.statusCode ?? 0;
        let body = "";
        res.setEncoding("utf8");
        res.on("data", (chunk: string) => {
          if (body.length < 10_240) body += chunk;
        });
        res.on("end", () => {
          if (status >= 200 && status < 400) resolve({ ok: true, message: "" });
          else resolve({ ok: false, message: `HTTP probe failed with statuscode: ${status}` });
        });
        res.on("error", (err) => resolve({ ok: false, message: `Get "${url}": ${err.message}` }));
      },
    );
    req.on("timeout", () => {
      req.destroy(new Error(`timeout after ${timeoutSeconds}s awaiting headers`));
    });
    req.on("error", (err: NodeJS.ErrnoException) =>
      resolve({ ok: false, message: `Get "${url}": ${describeNetError(err, host, port)}` }),
    );
    req.end();
  });
}

function tcpProbe(host: string, port: number, timeoutSeconds: number): Promise<ProbeOutcome> {
  return new Promise((resolve) => {
    const socket = connect({ host, port });
    const done = (outcome: ProbeOutcome) => {
      socket.destroy();
      resolve(outcome);
    };
    socket.setTimeout(timeoutSeconds * 1000, () =>
      done({ ok: false, message: `dial tcp ${host}:${port}: i/o timeout` }),
    );
    socket.once("connect", () => done({ ok: true, message: "" }));
    socket.once("error", (err: NodeJS.ErrnoException) =>
      done({ ok: false, message: describeNetError(err, host, port) }),
    );
  });
}

function describeNetError(err: NodeJS.ErrnoException, host: string, port: number): string {
  if (err.code === "ECONNREFUSED") return `dial tcp ${host}:${port}: connect: connection refused`;
  if (err.code === "EHOSTUNREACH") return `dial tcp ${host}:${port}: connect: no route to host`;
  return err.message;
}

/** The result a probe kind reports before its first attempt. */
export function initialResult(kind: ProbeKind): ProbeResult {
  return kind === "readiness" ? "failure" : kind === "liveness" ? "success" : "unknown";
}

export type ProbeResult = "success" | "failure" | "unknown";

/** Consecutive-attempt thresholds of one probe. */
export class ProbeState {
  private successes = 0;
  private failures = 0;
  result: ProbeResult;

  constructor(
    readonly kind: ProbeKind,
    private readonly probe: Pick<Probe, "successThreshold" | "failureThreshold">,
  ) {
    this.result = initialResult(kind);
  }

  /** Records one attempt; returns whether the result changed. */
  record(ok: boolean): boolean {
    const before = this.result;
    if (ok) {
      this.failures = 0;
      this.successes++;
      if (this.successes >= this.probe.successThreshold) this.result = "success";
    } else {
      this.successes = 0;
      this.failures++;
      if (this.failures >= this.probe.failureThreshold) this.result = "failure";
    }
    return before !== this.result;
  }
}

/** Options of {@link ProbeWorker}. */
export interface ProbeWorkerOptions {
  kind: ProbeKind;
  probe: Probe;
  clock: Clock;
  /** When the container started (ms): initialDelaySeconds counts from here. */
  startedAt: number;
  /** One attempt (normally `runProbe` bound to the container). */
  attempt(): Promise<ProbeOutcome>;
  /** For liveness and readiness: false while a startup probe has not succeeded (the attempt is skipped). */
  gate?(): boolean;
  /** Called after every attempt with the current result. */
  onResult(result: ProbeResult, outcome: ProbeOutcome, changed: boolean): void;
}

/**
 * Runs one probe of one container on its schedule until `stop()`. A startup probe stops by
 * itself after succeeding; liveness and startup workers stop after reporting failure (the
 * container is restarted and gets new workers).
 */
export class ProbeWorker {
  private readonly abort = new AbortController();
  readonly state: ProbeState;
  readonly done: Promise<void>;

  constructor(private readonly o: ProbeWorkerOptions) {
    this.state = new ProbeState(o.kind, o.probe);
    // The loop reports each probe's failure itself; this only keeps a handle for stop().
    this.done = this.loop().catch(() => {});
  }

  get result(): ProbeResult {
    return this.state.result;
  }

  stop(): void {
    this.abort.abort();
  }

  private async loop(): Promise<void> {
    const { clock, probe } = this.o;
    const signal = this.abort.signal;
    const firstAt = this.o.startedAt + probe.initialDelaySeconds * 1000;
    if (firstAt > clock.now()) await clock.sleep(firstAt - clock.now(), signal);
    while (!signal.aborted) {
      if (!this.o.gate || this.o.gate()) {
        const outcome = await this.o.attempt();
        if (signal.aborted) return;
        const changed = this.state.record(outcome.ok);
        this.o.onResult(this.state.result, outcome, changed);
        if (this.o.kind === "startup" && this.state.result === "success") return;
        if (this.o.kind !== "readiness" && this.state.result === "failure") return;
      }
      await clock.sleep(probe.periodSeconds * 1000, signal);
    }
  }
}

/** One line describing a probe, like kubectl describe: `http-get http://:80/ delay=0s timeout=1s period=10s #success=1 #failure=3`. */
export function describeProbe(p: Probe): string {
  let what = "";
  if (p.exec) what = `exec [${p.exec.command.join(" ")}]`;
  else if (p.httpGet)
    what = `http-get ${p.httpGet.scheme.toLowerCase()}://${p.httpGet.host}:${p.httpGet.port}${p.httpGet.path}`;
  else if (p.tcpSocket) what = `tcp-socket ${p.tcpSocket.host}:${p.tcpSocket.port}`;
  return `${what} delay=${p.initialDelaySeconds}s timeout=${p.timeoutSeconds}s period=${p.periodSeconds}s #success=${p.successThreshold} #failure=${p.failureThreshold}`;
}
