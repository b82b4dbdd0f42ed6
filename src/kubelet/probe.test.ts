import assert from "node:assert/strict";
import { once } from "node:events";
import { createServer, type Server } from "node:http";
import { type AddressInfo, createServer as createTcpServer } from "node:net";
import { after, before, describe, test } from "node:test";
import { ManualClock } from "./clock.js";
import { describeProbe, type ProbeOutcome, ProbeState, type ProbeTarget, ProbeWorker, runProbe } from "./probe.js";
import type { Probe } from "./types.js";

const probe = (over: Partial<Probe>): Probe => ({
  initialDelaySeconds: 0,
  periodSeconds: 10,
  timeoutSeconds: 1,
  successThreshold: 1,
  failureThreshold: 3,
  ...over,
});

const target = (over: Partial<ProbeTarget> = {}): ProbeTarget => ({
  containerId: "c1",
  host: "127.0.0.1",
  ports: [],
  exec: async () => ({ exitCode: 0, output: "" }),
  ...over,
});

describe("probe attempts against local servers", () => {
  let http: Server;
  let port = 0;
  let closedPort = 0;
  const seen: { path: string; headers: Record<string, unknown> }[] = [];
  before(async () => {
    http = createServer((req, res) => {
      seen.push({ path: req.url ?? "", headers: req.headers });
      if (req.url === "/ok") res.end("fine");
      else if (req.url === "/redirect") res.writeHead(302, { location: "/ok" }).end();
      else if (req.url === "/slow") setTimeout(() => res.end("late"), 2500);
      else res.writeHead(500).end("broken");
    });
    http.listen(0, "127.0.0.1");
    await once(http, "listening");
    port = (http.address() as AddressInfo).port;
    // A port nobody listens on: bind, note it, close.
    const tmp = createTcpServer().listen(0, "127.0.0.1");
    await once(tmp, "listening");
    closedPort = (tmp.address() as AddressInfo).port;
    await new Promise((r) => tmp.close(r));
  });
  after(async () => {
    http.closeAllConnections();
    await new Promise((r) => http.close(r));
  });

  const get = (path: string, p: number | string = port) => ({
    httpGet: { host: "", path, port: p, scheme: "HTTP" as const, httpHeaders: [{ name: "X-Probe", value: "yes" }] },
  });

  test("httpGet passes on 2xx and 3xx, sending the configured headers", async () => {
    assert.deepEqual(await runProbe(get("/ok"), target(), 1), { ok: true, message: "" });
    assert.deepEqual(await runProbe(get("/redirect"), target(), 1), { ok: true, message: "" });
    const last = seen.at(-1);
    assert.equal(last?.headers["x-probe"], "yes");
    assert.match(String(last?.headers["user-agent"]), /^kube-probe\//);
  });

  test("httpGet fails on 5xx, refused connections and timeouts", async () => {
    assert.deepEqual(await runProbe(get("/error"), target(), 1), {
      ok: false,
      message: "HTTP probe failed with statuscode: 500",
    });
    const refused = await runProbe(get("/", closedPort), target(), 1);
    assert.equal(refused.ok, false);
    assert.match(refused.message, /connect: connection refused/);
    const t0 = Date.now();
    const slow = await runProbe(get("/slow"), target(), 1);
    assert.equal(slow.ok, false);
    assert.match(slow.message, /timeout after 1s/);
    assert.ok(Date.now() - t0 < 2000, "the timeout is timeoutSeconds");
  });

  test("a named port resolves through the container's ports", async () => {
    assert.equal(
      (await runProbe(get("/ok", "http"), target({ ports: [{ name: "http", containerPort: port }] }), 1)).ok,
      true,
    );
    const missing = await runProbe(get("/ok", "web"), target(), 1);
    assert.deepEqual(missing, { ok: false, message: 'port name "web" not found in the container\'s ports' });
  });

  test("tcpSocket passes when a connection opens and fails when refused", async () => {
    assert.deepEqual(await runProbe({ tcpSocket: { host: "", port } }, target(), 1), { ok: true, message: "" });
    const r = await runProbe({ tcpSocket: { host: "", port: closedPort } }, target(), 1);
    assert.deepEqual(r, { ok: false, message: `dial tcp 127.0.0.1:${closedPort}: connect: connection refused` });
  });

  test("exec passes on exit 0 and reports the output otherwise; errors are failures", async () => {
    const calls: unknown[] = [];
    const exec: ProbeTarget["exec"] = async (id, cmd, timeout) => {
      calls.push([id, cmd, timeout]);
      return cmd[0] === "ok"
        ? { exitCode: 0, output: "" }
        : cmd[0] === "quiet"
          ? { exitCode: 2, output: "" }
          : { exitCode: 1, output: "not ready yet\n" };
    };
    assert.deepEqual(await runProbe({ exec: { command: ["ok"] } }, target({ exec }), 3), { ok: true, message: "" });
    assert.deepEqual(await runProbe({ exec: { command: ["fail"] } }, target({ exec }), 3), {
      ok: false,
      message: "not ready yet",
    });
    assert.deepEqual(await runProbe({ exec: { command: ["quiet"] } }, target({ exec }), 3), {
      ok: false,
      message: 'command ["quiet"] exited with 2',
    });
    assert.deepEqual(calls[0], ["c1", ["ok"], 3]);
    const broken = await runProbe(
      { exec: { command: ["x"] } },
      target({ exec: () => Promise.reject(new Error("container is not running")) }),
      1,
    );
    assert.deepEqual(broken, { ok: false, message: "container is not running" });
  });
});

describe("probe thresholds", () => {
  test("readiness starts failed, needs successThreshold successes, and failureThreshold failures to drop", () => {
    const s = new ProbeState("readiness", { successThreshold: 2, failureThreshold: 3 });
    assert.equal(s.result, "failure");
    assert.equal(s.record(true), false);
    assert.equal(s.record(true), true);
    assert.equal(s.result, "success");
    s.record(false);
    s.record(false);
    assert.equal(s.result, "success", "two failures are below the threshold");
    s.record(true);
    s.record(false);
    s.record(false);
    assert.equal(s.result, "success", "a success resets the failure count");
    assert.equal(s.record(false), true);
    assert.equal(s.result, "failure");
  });

  test("liveness starts successful; startup starts unknown", () => {
    assert.equal(new ProbeState("liveness", { successThreshold: 1, failureThreshold: 1 }).result, "success");
    const startup = new ProbeState("startup", { successThreshold: 1, failureThreshold: 2 });
    assert.equal(startup.result, "unknown");
    startup.record(false);
    assert.equal(startup.result, "unknown");
    startup.record(false);
    assert.equal(startup.result, "failure");
  });
});

describe("probe workers on a manual clock", () => {
  const flush = async () => {
    for (let i = 0; i < 10; i++) await new Promise((r) => setImmediate(r));
  };

  test("first attempt after initialDelaySeconds, then every periodSeconds; liveness stops after failing", async () => {
    const clock = new ManualClock();
    const startedAt = clock.now();
    const attempts: number[] = [];
    const results: string[] = [];
    const worker = new ProbeWorker({
      kind: "liveness",
      probe: probe({ initialDelaySeconds: 5, periodSeconds: 2, failureThreshold: 2 }),
      clock,
      startedAt,
      attempt: async (): Promise<ProbeOutcome> => {
        attempts.push(clock.now() - startedAt);
        return { ok: attempts.length < 3, message: "down" };
      },
      onResult: (r, _o, changed) => results.push(`${r}${changed ? "!" : ""}`),
    });
    await flush();
    await clock.advance(4999);
    assert.deepEqual(attempts, []);
    await clock.advance(1);
    await flush();
    await clock.advance(10_000);
    await flush();
    assert.deepEqual(attempts, [5000, 7000, 9000, 11000]);
    assert.deepEqual(results, ["success", "success", "success", "failure!"]);
    await worker.done;
    assert.equal(clock.pending, 0, "a failed liveness worker stops");
  });

  test("liveness and readiness wait for the startup gate", async () => {
    const clock = new ManualClock();
    let started = false;
    const attempts: number[] = [];
    const worker = new ProbeWorker({
      kind: "readiness",
      probe: probe({ periodSeconds: 1 }),
      clock,
      startedAt: clock.now(),
      gate: () => started,
      attempt: async () => {
        attempts.push(clock.now());
        return { ok: true, message: "" };
      },
      onResult: () => {},
    });
    await flush();
    await clock.advance(3000);
    assert.deepEqual(attempts, []);
    started = true;
    await clock.advance(1000);
    await flush();
    assert.equal(attempts.length, 1);
    assert.equal(worker.result, "success");
    worker.stop();
    await worker.done;
  });

  test("describeProbe prints kubectl's summary", () => {
    assert.equal(
      describeProbe(probe({ httpGet: { host: "", path: "/", port: 80, scheme: "HTTP", httpHeaders: [] } })),
      "http-get http://:80/ delay=0s timeout=1s period=10s #success=1 #failure=3",
    );
    assert.equal(
      describeProbe(probe({ exec: { command: ["cat", "/tmp/ok"] } })),
      "exec [cat /tmp/ok] delay=0s timeout=1s period=10s #success=1 #failure=3",
    );
  });
});
