/**
 * The pod runner against a real berthd (runc, conmon, CNI bridge, local registry): pods from
 * manifests through the runner's API (fast sync and back-off timing) and through the berth CLI
 * (`run`, `run -d`, `get`, `describe`, `down`, `kubelet`).
 */
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir, readFile, rm, unlink, writeFile } from "node:fs/promises";
import { get as httpGet } from "node:http";
import { hostname } from "node:os";
import { dirname, join } from "node:path";
import { after, afterEach, before, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { stringify } from "yaml";
import { ContainerState, PodSandboxState } from "../../src/api/gen/runtime/v1/api_pb.js";
import {
  agentOwner,
  Backoff,
  createLayout,
  type HostInfo,
  LABELS,
  type Layout,
  loadManifest,
  PodSet,
  type PodView,
  type PodWorker,
  readEvents,
  readHostInfo,
  realClock,
} from "../../src/kubelet/index.js";
import { isRoot } from "../support/berthd.js";
import { eventually, type PodEnv, sleep, startPodEnv } from "../support/pods.js";
import { skipUnlessCi } from "../support/skip.js";

const REPO = join(dirname(fileURLToPath(import.meta.url)), "..", "..");

describe("pod runner", { skip: skipUnlessCi(isRoot() ? false : "needs root (runc, conmon, CNI, mounts)") }, () => {
  let env: PodEnv;
  let layout: Layout;
  let host: HostInfo;
  let manifests: string;
  const sets: PodSet[] = [];
  const started = new Map<string, number[]>(); // "pod/container" -> start times of each attempt

  before(async () => {
    env = await startPodEnv({
      bridge: "bte2e-kubelet",
      subnet: "10.231.47.0/24",
      images: ["berth-test/busybox", "berth-test/web"],
    });
    layout = createLayout({ stateDir: join(env.dir, "kubelet"), logRoot: join(env.dir, "pod-logs") });
    host = await readHostInfo();
    manifests = join(env.dir, "manifests");
    await mkdir(manifests, { recursive: true });
  });
  afterEach(async () => {
    await Promise.all(sets.splice(0).map((s) => s.terminate({ gracePeriodSeconds: 0 }).catch(() => {})));
  });
  after(async () => {
    await env?.close();
    await env?.reg.stop();
  });

  const busybox = () => env.image("berth-test/busybox");
  const web = () => env.image("berth-test/web");
  const sh = (name: string, script: string, extra: Record<string, unknown> = {}) => ({
    name,
    image: busybox(),
    imagePullPolicy: "IfNotPresent",
    command: ["sh", "-c", script],
    ...extra,
  });
  const manifest = (name: string, spec: Record<string, unknown>, metadata: Record<string, unknown> = {}) =>
    stringify({
      apiVersion: "v1",
      kind: "Pod",
      metadata: { name, ...metadata },
      spec: { terminationGracePeriodSeconds: 2, ...spec },
    });

  /** Runs a pod through the runner's API with fast timing; removed after the test. */
  async function run(
    name: string,
    spec: Record<string, unknown>,
    o: { backoff?: { initialMs: number; maxMs: number } } = {},
  ): Promise<PodWorker> {
    const file = join(manifests, `${name}.yaml`);
    await writeFile(file, manifest(name, spec));
    const m = await loadManifest(file);
    assert.deepEqual(m.warnings, []);
    const set = new PodSet(m, {
      client: env.d.client,
      layout,
      host,
      owner: "run",
      backoff: new Backoff(realClock, o.backoff ?? { initialMs: 500, maxMs: 2000 }),
      syncPeriodMs: 200,
      hooks: {
        onContainerStarted: (pod, c) => {
          const key = `${pod.metadata.name}/${c.name}`;
          started.set(key, [...(started.get(key) ?? []), Date.now()]);
        },
      },
    });
    await set.reconcile();
    set.start();
    sets.push(set);
    return set.workers[0] as PodWorker;
  }

  /** Waits for a view satisfying `predicate`, naming the last status on timeout. */
  async function until(
    w: PodWorker,
    what: string,
    predicate: (v: PodView) => boolean,
    timeoutMs = 30_000,
  ): Promise<PodView> {
    try {
      return await w.waitFor(predicate, AbortSignal.timeout(timeoutMs));
    } catch {
      const v = w.view;
      const cs = [...(v?.initContainers ?? []), ...(v?.containers ?? [])].map(
        (c) => `${c.name}=${JSON.stringify(c.state)}/${c.restartCount}/${c.ready}`,
      );
      throw new Error(`timed out waiting for ${what}: status ${v?.status}, ${cs.join(", ")}`);
    }
  }

  const container = (v: PodView, name: string) => {
    const c = [...v.initContainers, ...v.containers].find((x) => x.name === name);
    assert.ok(c, `no container ${name}`);
    return c;
  };

  async function logOf(v: PodView, name: string, attempt = 0): Promise<string> {
    const text = await readFile(
      join(layout.podLogDir(v.namespace, v.name, v.uid), name, `${attempt}.log`),
      "utf8",
    ).catch(() => "");
    return text
      .split("\n")
      .filter(Boolean)
      .map((l) => l.split(" ").slice(3).join(" "))
      .join("\n");
  }

  test("init containers run in order, each to completion, before the containers start", {
    timeout: 60_000,
  }, async () => {
    const w = await run("init-order", {
      volumes: [{ name: "shared", emptyDir: {} }],
      initContainers: [
        sh("first", "sleep 0.5; echo first >> /shared/order", {
          volumeMounts: [{ name: "shared", mountPath: "/shared" }],
        }),
        sh("second", "test -f /shared/order && echo second >> /shared/order", {
          volumeMounts: [{ name: "shared", mountPath: "/shared" }],
        }),
      ],
      containers: [
        sh("app", "cat /shared/order; exec sleep 3600", { volumeMounts: [{ name: "shared", mountPath: "/shared" }] }),
      ],
    });
    const v = await until(
      w,
      "the app running",
      (x) => x.containers[0]?.state.kind === "running" && x.status === "Running",
    );
    const first = container(v, "first").state;
    const second = container(v, "second").state;
    const app = container(v, "app").state;
    assert.ok(
      first.kind === "terminated" && second.kind === "terminated" && app.kind === "running",
      "init containers terminated, app running",
    );
    assert.equal(first.exitCode, 0);
    assert.equal(second.exitCode, 0);
    assert.ok(first.finishedAt <= second.startedAt, "second starts after first finished");
    assert.ok(second.finishedAt <= app.startedAt, "the app starts after the last init container finished");
    assert.equal(v.conditions.initialized, true);
    await eventually("the app's log", async () => (await logOf(v, "app")) === "first\nsecond" || undefined);
  });

  test("a failing init container is retried (OnFailure) until it succeeds, and fails the pod under Never", {
    timeout: 60_000,
  }, async () => {
    const retry = await run("init-retry", {
      restartPolicy: "OnFailure",
      volumes: [{ name: "state", emptyDir: {} }],
      initContainers: [
        sh("flaky", "if [ -f /state/tried ]; then exit 0; fi; touch /state/tried; exit 1", {
          volumeMounts: [{ name: "state", mountPath: "/state" }],
        }),
      ],
      containers: [sh("app", "exec sleep 3600")],
    });
    const v = await until(retry, "the app after the init retry", (x) => x.containers[0]?.state.kind === "running");
    assert.equal(container(v, "flaky").restartCount, 1);
    const never = await run("init-never", {
      restartPolicy: "Never",
      initContainers: [sh("broken", "exit 4")],
      containers: [sh("app", "exec sleep 3600")],
    });
    const f = await until(never, "the pod failing", (x) => x.phase === "Failed");
    assert.equal(f.status, "Init:Error");
    await sleep(600);
    assert.equal(never.view?.containers[0]?.id, "", "the app never starts");
    assert.equal(container(never.view as PodView, "broken").restartCount, 0);
  });

  test("restartPolicy Always restarts a crashing container with doubling back-off and CrashLoopBackOff", {
    timeout: 60_000,
  }, async () => {
    const w = await run(
      "crash",
      { containers: [sh("app", "echo attempt; exit 1")] },
      { backoff: { initialMs: 600, maxMs: 2400 } },
    );
    let sawBackOff = false;
    const v = await until(w, "four restarts", (x) => {
      if (x.status === "CrashLoopBackOff") sawBackOff = true;
      return x.restarts >= 4;
    });
    assert.ok(sawBackOff, "the pod showed CrashLoopBackOff while waiting");
    const starts = started.get("crash/app") ?? [];
    assert.ok(starts.length >= 5, String(starts.length));
    const gaps = starts.slice(1).map((t, i) => t - (starts[i] as number));
    // Attempt 1 restarts at once; then each restart waits the back-off: 600, 1200, 2400 (cap).
    assert.ok((gaps[0] as number) < 600, `first restart is immediate: ${gaps}`);
    assert.ok((gaps[1] as number) >= 600, `second waits 600 ms: ${gaps}`);
    assert.ok((gaps[2] as number) >= 1200, `third waits 1200 ms: ${gaps}`);
    assert.ok((gaps[3] as number) >= 2400, `fourth waits the 2400 ms cap: ${gaps}`);
    assert.equal(v.phase, "Running");
    const events = w.events.list();
    assert.ok(
      events.some((e) => e.reason === "BackOff" && /Back-off restarting failed container app/.test(e.message)),
      "a BackOff event",
    );
    assert.equal(await logOf(v, "app", v.containers[0]?.restartCount ?? 0), "attempt");
  });

  test("OnFailure restarts only failed containers; Never restarts nothing", { timeout: 60_000 }, async () => {
    const onFailure = await run("onfailure", {
      restartPolicy: "OnFailure",
      volumes: [{ name: "state", emptyDir: {} }],
      containers: [
        sh("ok", "echo done"),
        sh("flaky", "if [ -f /state/tried ]; then exit 0; fi; touch /state/tried; exit 1", {
          volumeMounts: [{ name: "state", mountPath: "/state" }],
        }),
      ],
    });
    const v = await until(onFailure, "Succeeded", (x) => x.phase === "Succeeded");
    assert.equal(container(v, "ok").restartCount, 0);
    assert.equal(container(v, "flaky").restartCount, 1);
    assert.equal(v.status, "Completed");
    const never = await run("never", { restartPolicy: "Never", containers: [sh("app", "exit 3")] });
    const f = await until(never, "Failed", (x) => x.phase === "Failed");
    await sleep(800);
    const after = never.view as PodView;
    assert.equal(container(after, "app").restartCount, 0);
    assert.equal(f.status, "Error");
    const s = container(after, "app").state;
    assert.ok(s.kind === "terminated" && s.exitCode === 3, "terminated with exit code 3");
  });

  test("readiness probes of each kind pass and fail: httpGet, tcpSocket, exec", { timeout: 60_000 }, async () => {
    const httpd = (name: string, port: number, probe: Record<string, unknown>) => ({
      name,
      image: web(),
      imagePullPolicy: "IfNotPresent",
      command: ["/bin/httpd", "-f", "-p", String(port), "-h", "/www"],
      readinessProbe: { periodSeconds: 1, ...probe },
    });
    const w = await run("probes", {
      containers: [
        httpd("http-ok", 80, { httpGet: { path: "/index.html", port: 80 } }),
        httpd("http-bad", 8080, { httpGet: { path: "/missing", port: 8080 } }),
        httpd("tcp-ok", 9090, { tcpSocket: { port: 9090 } }),
        sh("tcp-bad", "exec sleep 3600", { readinessProbe: { tcpSocket: { port: 9999 }, periodSeconds: 1 } }),
        sh("exec-late", "sleep 2; touch /tmp/ready; exec sleep 3600", {
          readinessProbe: { exec: { command: ["cat", "/tmp/ready"] }, periodSeconds: 1 },
        }),
        sh("exec-bad", "exec sleep 3600", {
          readinessProbe: { exec: { command: ["sh", "-c", "echo not today; exit 1"] }, periodSeconds: 1 },
        }),
      ],
    });
    const ready = (v: PodView) => v.containers.filter((c) => c.ready).map((c) => c.name);
    const v = await until(w, "three ready containers", (x) => ready(x).length === 3);
    assert.deepEqual(ready(v), ["http-ok", "tcp-ok", "exec-late"]);
    assert.equal(v.readyCount, 3);
    assert.equal(v.conditions.ready, false);
    const messages = w.events.list().filter((e) => e.reason === "Unhealthy");
    const has = (re: RegExp) =>
      assert.ok(
        messages.some((e) => re.test(e.message)),
        `no event matching ${re}: ${messages.map((e) => e.message).join(" | ")}`,
      );
    has(/^Readiness probe failed: HTTP probe failed with statuscode: 404$/);
    has(
      new RegExp(`^Readiness probe failed: dial tcp ${v.ip.replaceAll(".", "\\.")}:9999: connect: connection refused$`),
    );
    has(/^Readiness probe failed: not today$/);
    has(/^Readiness probe failed: cat: can't open '\/tmp\/ready'/);
    assert.equal(v.restarts, 0, "readiness failures never restart");
  });

  test("a failing liveness probe restarts the container; a passing one does not", { timeout: 60_000 }, async () => {
    const w = await run("liveness", {
      containers: [
        sh("doomed", "sleep 1; touch /tmp/broken; exec sleep 3600", {
          livenessProbe: {
            exec: { command: ["sh", "-c", "test ! -f /tmp/broken"] },
            periodSeconds: 1,
            failureThreshold: 2,
          },
        }),
        {
          name: "healthy",
          image: web(),
          imagePullPolicy: "IfNotPresent",
          livenessProbe: { httpGet: { path: "/", port: 80 }, periodSeconds: 1, failureThreshold: 1 },
          startupProbe: { tcpSocket: { port: 80 }, periodSeconds: 1 },
        },
      ],
    });
    const v = await until(
      w,
      "a liveness restart",
      (x) => (x.containers[0]?.restartCount ?? 0) >= 1 && x.containers[0]?.state.kind === "running",
    );
    assert.equal(container(v, "healthy").restartCount, 0);
    assert.equal(container(v, "healthy").started, true);
    const events = w.events.list();
    assert.ok(
      events.some(
        (e) => e.reason === "Killing" && e.message === "Container doomed failed liveness probe, will be restarted",
      ),
      "a Killing event for the liveness failure",
    );
    assert.ok(
      events.some((e) => e.reason === "Unhealthy" && e.message.startsWith("Liveness probe failed")),
      "an Unhealthy liveness event",
    );
    const last = container(v, "doomed").lastState;
    assert.ok(last && last.exitCode !== 0, "the killed attempt is the last state");
  });

  test("an emptyDir is shared between two containers (disk and Memory medium)", { timeout: 60_000 }, async () => {
    const mounts = [
      { name: "data", mountPath: "/data" },
      { name: "mem", mountPath: "/mem" },
    ];
    const w = await run("shared", {
      volumes: [
        { name: "data", emptyDir: {} },
        { name: "mem", emptyDir: { medium: "Memory", sizeLimit: "8Mi" } },
      ],
      containers: [
        sh("writer", "echo hello from writer > /data/msg; echo in memory > /mem/msg; exec sleep 3600", {
          volumeMounts: mounts,
        }),
        sh(
          "reader",
          "until [ -f /data/msg ] && [ -f /mem/msg ]; do sleep 0.1; done; cat /data/msg /mem/msg; grep ' /mem ' /proc/mounts | cut -d' ' -f3; exec sleep 3600",
          {
            volumeMounts: mounts,
            securityContext: { runAsUser: 1000 },
          },
        ),
      ],
    });
    const v = await until(w, "both running", (x) => x.containers.every((c) => c.state.kind === "running"));
    await eventually(
      "the reader's log",
      async () => (await logOf(v, "reader")) === "hello from writer\nin memory\ntmpfs" || undefined,
      15_000,
    );
    const onHost = await readFile(join(layout.emptyDir(v.uid, "data"), "msg"), "utf8");
    assert.equal(onHost, "hello from writer\n");
  });

  test("a hostPath volume is mounted (read-only and read-write), created by DirectoryOrCreate", {
    timeout: 60_000,
  }, async () => {
    const src = join(env.dir, "host-src");
    const out = join(env.dir, "host-out", "new");
    await mkdir(src, { recursive: true });
    await writeFile(join(src, "in.txt"), "from the host\n");
    const w = await run("hostpath", {
      volumes: [
        { name: "src", hostPath: { path: src, type: "Directory" } },
        { name: "out", hostPath: { path: out, type: "DirectoryOrCreate" } },
      ],
      containers: [
        sh(
          "app",
          "cat /src/in.txt; echo from the pod > /out/out.txt; touch /src/nope 2>/dev/null || echo read-only; exec sleep 3600",
          {
            volumeMounts: [
              { name: "src", mountPath: "/src", readOnly: true },
              { name: "out", mountPath: "/out" },
            ],
          },
        ),
      ],
    });
    const v = await until(w, "running", (x) => x.containers[0]?.state.kind === "running");
    await eventually("the pod's file on the host", async () => existsSync(join(out, "out.txt")) || undefined);
    assert.equal(await readFile(join(out, "out.txt"), "utf8"), "from the pod\n");
    await eventually("the log", async () => (await logOf(v, "app")) === "from the host\nread-only" || undefined);
  });

  test("env takes fieldRefs (pod name, namespace, IP, node), resources and $(VAR) references", {
    timeout: 60_000,
  }, async () => {
    const w = await run("envs", {
      containers: [
        sh("app", "echo $POD_NAME $POD_NAMESPACE $POD_IP $NODE_NAME $POD_UID $MEM_MI $GREETING; exec sleep 3600", {
          env: [
            { name: "POD_NAME", valueFrom: { fieldRef: { fieldPath: "metadata.name" } } },
            { name: "POD_NAMESPACE", valueFrom: { fieldRef: { fieldPath: "metadata.namespace" } } },
            { name: "POD_IP", valueFrom: { fieldRef: { fieldPath: "status.podIP" } } },
            { name: "NODE_NAME", valueFrom: { fieldRef: { fieldPath: "spec.nodeName" } } },
            { name: "POD_UID", valueFrom: { fieldRef: { fieldPath: "metadata.uid" } } },
            { name: "MEM_MI", valueFrom: { resourceFieldRef: { resource: "limits.memory", divisor: "1Mi" } } },
            { name: "GREETING", value: "hi-$(POD_NAME)" },
          ],
          resources: { limits: { memory: "48Mi", cpu: "200m" } },
        }),
      ],
    });
    const v = await until(w, "running", (x) => x.containers[0]?.state.kind === "running");
    assert.match(v.ip, /^10\.231\.47\.\d+$/);
    const expected = `envs default ${v.ip} ${hostname().toLowerCase()} ${v.uid} 48 hi-envs`;
    await eventually("the env line", async () => (await logOf(v, "app")) === expected || undefined);
    // The limits reached the container's cgroup through CRI.
    const status = await env.d.client.runtime.containerStatus({ containerId: v.containers[0]?.id ?? "" });
    assert.equal(status.status?.resources?.linux?.memoryLimitInBytes, 48n * 1024n * 1024n);
    assert.equal(status.status?.resources?.linux?.cpuQuota, 20_000n);
    assert.equal(status.status?.resources?.linux?.cpuShares, 204n);
  });

  test("a hostNetwork pod uses the host's IP and is probed on 127.0.0.1", { timeout: 60_000 }, async () => {
    const port = 20_000 + Math.floor(Math.random() * 10_000);
    const w = await run("hostnet", {
      hostNetwork: true,
      containers: [
        {
          name: "web",
          image: web(),
          imagePullPolicy: "IfNotPresent",
          command: ["sh", "-c", `echo $POD_IP; exec /bin/httpd -f -p 127.0.0.1:${port} -h /www`],
          env: [{ name: "POD_IP", valueFrom: { fieldRef: { fieldPath: "status.podIP" } } }],
          ports: [{ containerPort: port }],
          readinessProbe: { httpGet: { path: "/", port }, periodSeconds: 1 },
        },
      ],
    });
    const v = await until(w, "ready", (x) => x.conditions.ready);
    assert.equal(v.ip, host.hostIP);
    assert.equal(await fetchText(`http://127.0.0.1:${port}/`), "hello from berth\n");
    await eventually("the env line", async () => (await logOf(v, "web")) === host.hostIP || undefined);
  });

  test("a sandbox that dies is re-created with the next attempt, init containers rerun, restart counts continue", {
    timeout: 60_000,
  }, async () => {
    const w = await run("phoenix", {
      initContainers: [sh("init", "true")],
      containers: [sh("app", "exec sleep 3600")],
    });
    const v = await until(w, "running", (x) => x.containers[0]?.state.kind === "running");
    await env.d.client.runtime.stopPodSandbox({ podSandboxId: v.sandboxId });
    const again = await until(
      w,
      "a new sandbox",
      (x) => x.sandboxId !== v.sandboxId && x.containers[0]?.state.kind === "running",
    );
    assert.equal(again.attempt, 1);
    assert.equal(container(again, "init").restartCount, 1, "the init container ran again");
    assert.equal(container(again, "app").restartCount, 1);
    assert.deepEqual(
      (await sandboxesOf({ [LABELS.podUid]: v.uid })).map((s) => s.id),
      [again.sandboxId],
      "the dead sandbox is removed",
    );
    assert.ok(
      w.events.list().some((e) => e.reason === "SandboxChanged"),
      "a SandboxChanged event",
    );
  });

  test("an image that cannot be pulled shows ErrImagePull, then ImagePullBackOff", { timeout: 60_000 }, async () => {
    const missing = `${env.reg.plain.host}/berth-test/no-such-image:latest`;
    const w = await run(
      "nopull",
      { containers: [{ name: "app", image: missing }] },
      { backoff: { initialMs: 1500, maxMs: 3000 } },
    );
    await until(w, "ErrImagePull", (x) => x.status === "ErrImagePull");
    const v = await until(w, "ImagePullBackOff", (x) => x.status === "ImagePullBackOff");
    assert.equal(v.phase, "Pending");
    const events = w.events.list();
    assert.ok(
      events.some(
        (e) =>
          e.type === "Warning" && e.reason === "Failed" && e.message.startsWith(`Failed to pull image "${missing}"`),
      ),
      "a Failed pull event",
    );
    assert.ok(
      events.some((e) => e.reason === "BackOff" && e.message === `Back-off pulling image "${missing}"`),
      "a pull BackOff event",
    );
  });

  // ---- through the CLI ----

  const BERTH = existsSync(join(REPO, "dist", "src", "bin", "berth.js"))
    ? [join(REPO, "dist", "src", "bin", "berth.js")]
    : ["--import", "tsx", join(REPO, "src", "bin", "berth.ts")];

  function berth(args: string[]): ChildProcess {
    return spawn(process.execPath, [...BERTH, "--socket", env.d.socket, ...args], {
      env: { ...process.env, BERTH_KUBELET_DIR: layout.stateDir, BERTH_POD_LOG_DIR: layout.logRoot, NO_COLOR: "1" },
    });
  }

  function output(p: ChildProcess): Promise<{ code: number; stdout: string; stderr: string }> {
    return new Promise((resolve) => {
      let stdout = "";
      let stderr = "";
      p.stdout?.on("data", (b: Buffer) => {
        stdout += b.toString();
      });
      p.stderr?.on("data", (b: Buffer) => {
        stderr += b.toString();
      });
      p.on("exit", (code, signal) => resolve({ code: code ?? (signal ? 128 : 1), stdout, stderr }));
    });
  }

  const cli = (args: string[]) => output(berth(args));

  async function sandboxesOf(labels: Record<string, string>) {
    return (await env.d.client.runtime.listPodSandbox({ filter: { labelSelector: labels } })).items;
  }

  function fetchText(url: string): Promise<string> {
    return new Promise((resolve, reject) => {
      httpGet(url, (res) => {
        let body = "";
        res.on("data", (c: Buffer) => {
          body += c.toString();
        });
        res.on("end", () => resolve(body));
      }).on("error", reject);
    });
  }

  test("berth run on an invalid manifest names every bad field and creates nothing", { timeout: 30_000 }, async () => {
    const file = join(manifests, "bad.yaml");
    await writeFile(
      file,
      manifest("bad", {
        nodeSelector: { disk: "ssd" },
        containers: [
          sh("a", "true"),
          {
            name: "b",
            image: busybox(),
            ports: [{ containerPort: 70000 }],
            envFrom: [{ configMapRef: { name: "x" } }],
          },
        ],
      }),
    );
    const before = (await env.d.client.runtime.listPodSandbox({})).items.length;
    const r = await cli(["run", file]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^warning: .*bad\.yaml: spec\.nodeSelector: ignored: the pod runs on this machine$/m);
    assert.match(r.stderr, /bad\.yaml: spec\.containers\[1\]\.ports\[0\]\.containerPort: must be 1-65535$/m);
    assert.match(r.stderr, /bad\.yaml: spec\.containers\[1\]\.envFrom: not supported by berth: /m);
    assert.equal((await env.d.client.runtime.listPodSandbox({})).items.length, before);
  });

  test("examples/web.yaml: run -d returns when ready, get/describe show it, it serves, down removes it", {
    timeout: 90_000,
  }, async () => {
    const file = join(manifests, "web.yaml");
    const example = await readFile(join(REPO, "examples", "web.yaml"), "utf8");
    await writeFile(file, example.replaceAll("127.0.0.1:5000", env.reg.plain.host));
    const r = await cli(["run", "-d", file]);
    assert.equal(r.code, 0, r.stderr);
    const m = /^pod\/web running \(ready 1\/1, IP (10\.231\.47\.\d+)\)$/m.exec(r.stdout);
    assert.ok(m, r.stdout);
    const ip = m[1] as string;
    assert.equal(await fetchText(`http://${ip}/`), "hello from berth\n");

    const get = await cli(["get", "pods"]);
    assert.equal(get.code, 0, get.stderr);
    const [header, row] = get.stdout.trim().split("\n");
    assert.match(header ?? "", /^NAME\s+READY\s+STATUS\s+RESTARTS\s+AGE\s+IP$/);
    assert.match(row ?? "", new RegExp(`^web\\s+1/1\\s+Running\\s+0\\s+\\d+s\\s+${ip.replaceAll(".", "\\.")}$`));

    const json = await cli(["-o", "json", "get", "pods", "web"]);
    const view = JSON.parse(json.stdout) as PodView;
    assert.equal(view.conditions.ready, true);

    const d = await cli(["describe", "pod", "web"]);
    assert.equal(d.code, 0, d.stderr);
    for (const re of [
      /^Name:\s+web$/m,
      /^Status:\s+Running$/m,
      new RegExp(`^IP:\\s+${ip}$`, "m"),
      /^ {4}Ready:\s+True$/m,
      /Readiness:\s+http-get http:\/\/:http\/index\.html/,
      /Normal\s+Started\s+\S+\s+berth-kubelet\s+Started container httpd/,
    ]) {
      assert.match(d.stdout, re);
    }
    assert.ok(existsSync(layout.runnerFile(view.pod?.source.manifestHash ?? "")), "the detached runner is recorded");

    const again = await cli(["run", "-d", file]);
    assert.equal(again.code, 1);
    assert.match(again.stderr, /already kept by berth run/);

    const down = await cli(["down", file]);
    assert.equal(down.code, 0, down.stderr);
    assert.equal(down.stdout, 'pod "web" deleted\n');
    assert.deepEqual(await sandboxesOf({ [LABELS.podName]: "web" }), []);
    assert.ok(!existsSync(layout.podDir(view.uid)), "the pod's state directory is gone");
    assert.ok(!existsSync(layout.podLogDir("default", "web", view.uid)), "the pod's logs are gone");
    const none = await cli(["get", "pods"]);
    assert.equal(none.stdout, "");
    assert.match(none.stderr, /No resources found in default namespace/);
  });

  test("foreground berth run streams prefixed logs and Ctrl-C runs preStop hooks and removes the pod", {
    timeout: 60_000,
  }, async () => {
    const marker = join(env.dir, "prestop");
    await mkdir(marker, { recursive: true });
    const file = join(manifests, "fg.yaml");
    await writeFile(
      file,
      manifest("fg", {
        volumes: [{ name: "marker", hostPath: { path: marker } }],
        containers: [
          sh("app", "echo hello; echo oops >&2; exec sleep 3600", {
            volumeMounts: [{ name: "marker", mountPath: "/marker" }],
            lifecycle: { preStop: { exec: { command: ["sh", "-c", "echo stopped-gracefully > /marker/prestop"] } } },
          }),
        ],
      }),
    );
    const p = berth(["run", file]);
    const done = output(p);
    let seen = "";
    p.stdout?.on("data", (b: Buffer) => {
      seen += b.toString();
    });
    await eventually("prefixed log lines", async () => seen.includes("[fg/app] hello") || undefined, 20_000);
    const sb = await sandboxesOf({ [LABELS.podName]: "fg" });
    assert.equal(sb.length, 1);
    await eventually(
      "both lines in the log file",
      async () => (await cli(["pod-logs", "fg"])).stdout === "hello\noops\n" || undefined,
    );
    const tail = await cli(["pod-logs", "fg", "-c", "app", "--tail", "1", "--timestamps"]);
    assert.match(tail.stdout, /^\d{4}-\d\d-\d\dT\S+ oops\n$/);
    const wrong = await cli(["pod-logs", "fg", "-c", "nope"]);
    assert.equal(wrong.code, 1);
    assert.match(wrong.stderr, /container nope is not valid for pod fg/);
    p.kill("SIGINT");
    const r = await done;
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /\[fg\/app\] oops/);
    assert.match(r.stderr, /\[pod\/fg\] Killing: Stopping container app/);
    assert.match(r.stderr, /pod\/fg: removed/);
    assert.equal(await readFile(join(marker, "prestop"), "utf8"), "stopped-gracefully\n");
    assert.deepEqual(await sandboxesOf({ [LABELS.podName]: "fg" }), []);
  });

  test("foreground berth run of pods that finish removes them and exits with their outcome", {
    timeout: 60_000,
  }, async () => {
    const ok = join(manifests, "job-ok.yaml");
    await writeFile(ok, manifest("job-ok", { restartPolicy: "Never", containers: [sh("app", "echo done")] }));
    const r = await cli(["run", ok]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^\[job-ok\/app\] done$/m);
    assert.match(r.stderr, /^pod\/job-ok: Succeeded$/m);
    const bad = join(manifests, "job-bad.yaml");
    await writeFile(bad, manifest("job-bad", { restartPolicy: "Never", containers: [sh("app", "exit 7")] }));
    const f = await cli(["run", "--no-events", bad]);
    assert.equal(f.code, 1);
    assert.match(f.stderr, /^pod\/job-bad: Failed \(container app exited with 7\)$/m);
    assert.doesNotMatch(f.stderr, /Started container/, "--no-events");
    assert.deepEqual(await sandboxesOf({ [LABELS.manifest]: (await loadManifest(bad)).manifestHash }), []);
  });

  test("berth kubelet keeps a directory's static pods: add, change, restart without duplicates, delete", {
    timeout: 120_000,
  }, async () => {
    const dir = join(env.dir, "static");
    await mkdir(dir, { recursive: true });
    const owner = agentOwner(dir);
    const agent = () => berth(["kubelet", "--manifests", dir, "--rescan-ms", "500", "--sync-period-ms", "200"]);
    const running = async (name: string) => {
      const items = (await sandboxesOf({ [LABELS.owner]: owner, [LABELS.podName]: name })).filter(
        (s) => s.state === PodSandboxState.SANDBOX_READY,
      );
      if (items.length !== 1) return undefined;
      const { containers } = await env.d.client.runtime.listContainers({
        filter: { podSandboxId: items[0]?.id ?? "" },
      });
      return containers.some((c) => c.state === ContainerState.CONTAINER_RUNNING) ? items[0] : undefined;
    };
    const staticPod = (greeting: string) =>
      manifest("static-web", { containers: [sh("app", `echo ${greeting}; exec sleep 3600`)] });
    let p = agent();
    let out = output(p);
    let agentText = ""; // output of the second (restarted) agent
    try {
      await writeFile(join(dir, "web.yaml"), staticPod("v1"));
      const first = await eventually("the static pod", () => running("static-web"), 30_000);
      const uid1 = first.metadata?.uid ?? "";

      await writeFile(join(dir, "web.yaml"), staticPod("v2"));
      const second = await eventually(
        "the changed pod",
        async () => {
          const sb = await running("static-web");
          return sb && sb.metadata?.uid !== uid1 ? sb : undefined;
        },
        30_000,
      );
      assert.equal((await sandboxesOf({ [LABELS.podUid]: uid1 })).length, 0, "the old version is removed");
      await eventually(
        "a Started event in the agent's events file",
        async () =>
          (await readEvents(layout.eventsFile(second.metadata?.uid ?? "")))?.some((e) => e.reason === "Started") ||
          undefined,
      );

      // A restarted agent adopts the pod instead of creating another.
      p.kill("SIGTERM");
      assert.equal((await out).code, 0);
      assert.ok(await running("static-web"), "stopping the agent leaves the pod running");
      p = agent();
      out = output(p);
      p.stdout?.on("data", (b: Buffer) => {
        agentText += b.toString();
      });
      // Wait for the restarted agent to have taken the pod over (a loaded machine can take seconds to start it).
      await eventually(
        "the restarted agent's report of web.yaml",
        async () => /web\.yaml: added: running pod default\/static-web/.test(agentText) || undefined,
        30_000,
      );
      const all = await sandboxesOf({ [LABELS.owner]: owner });
      assert.deepEqual(
        all.map((s) => s.id),
        [second.id],
        "no duplicate after the restart",
      );

      // An invalid file is reported and runs nothing; a deleted file removes its pod.
      await writeFile(
        join(dir, "broken.yaml"),
        "apiVersion: v1\nkind: Pod\nmetadata: { name: broken }\nspec: { containers: [] }\n",
      );
      await unlink(join(dir, "web.yaml"));
      await eventually(
        "the pod's removal",
        async () => (await sandboxesOf({ [LABELS.owner]: owner })).length === 0 || undefined,
        30_000,
      );
      await eventually(
        "the agent's report of the invalid file",
        async () => /invalid manifest: broken\.yaml/.test(agentText) || undefined,
      );
      assert.match(agentText, /web\.yaml: added: running pod default\/static-web/);
      assert.match(
        agentText,
        /invalid manifest: broken\.yaml: spec\.containers: required value: at least one container/,
      );
      assert.match(agentText, /web\.yaml: deleted: removing pod default\/static-web/);
    } finally {
      p.kill("SIGTERM");
      await out;
      await rm(dir, { recursive: true, force: true });
    }
  });
});
