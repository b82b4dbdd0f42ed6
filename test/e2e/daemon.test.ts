import assert from "node:assert/strict";
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { Code, ConnectError } from "@connectrpc/connect";
import { ImageService, RuntimeService } from "../../src/api/gen/runtime/v1/api_pb.js";
import { isRoot, runBerthd, startBerthd, type TestDaemon } from "../support/berthd.js";
import { grpcFrame, RawGrpc } from "../support/fuzz.js";
import { skipUnlessCi } from "../support/skip.js";

// RPCs that must answer for real today; every other RPC must be UNIMPLEMENTED, never a fake success.
const IMPLEMENTED = new Set([
  "Version",
  "Status",
  "RuntimeConfig",
  "UpdateRuntimeConfig",
  "RunPodSandbox",
  "StopPodSandbox",
  "RemovePodSandbox",
  "PodSandboxStatus",
  "ListPodSandbox",
  "CreateContainer",
  "StartContainer",
  "StopContainer",
  "RemoveContainer",
  "ListContainers",
  "ContainerStatus",
  "UpdateContainerResources",
  "ReopenContainerLog",
  "ExecSync",
  "Exec",
  "Attach",
  "PortForward",
  "ContainerStats",
  "ListContainerStats",
  "PodSandboxStats",
  "ListPodSandboxStats",
  "GetContainerEvents",
  "ListImages",
  "ImageStatus",
  "PullImage",
  "RemoveImage",
  "ImageFsInfo",
  "StreamImages",
  "StreamPodSandboxes",
  "StreamContainers",
  "StreamContainerStats",
  "StreamPodSandboxStats",
  "StreamPodSandboxMetrics",
  "ListMetricDescriptors",
  "ListPodSandboxMetrics",
  "UpdatePodSandboxResources",
  "CheckpointContainer",
]);

const pkg = JSON.parse(await readFile(new URL("../../package.json", import.meta.url), "utf8")) as { version: string };

describe("berthd serves CRI v1", { skip: skipUnlessCi(isRoot() ? false : "needs root") }, () => {
  let d: TestDaemon;
  let cniDir: string;
  before(async () => {
    cniDir = await mkdtemp(join(tmpdir(), "berth-cni-conf-"));
    d = await startBerthd({ config: `[cni]\nconf_dir = "${cniDir}"\n` });
  });
  after(async () => {
    await d?.cleanup();
    await rm(cniDir, { recursive: true, force: true });
  });

  test("Version names berth, its package version and CRI v1", async () => {
    const v = await d.client.runtime.version({ version: "v1" });
    assert.equal(v.runtimeName, "berth");
    assert.equal(v.runtimeVersion, pkg.version);
    assert.equal(v.runtimeApiVersion, "v1");
  });

  test("the socket is mode 0660", async () => {
    assert.equal((await stat(d.socket)).mode & 0o777, 0o660);
  });

  test("Status reports RuntimeReady, and NetworkReady follows the CNI config dir without a restart", async () => {
    const s = await d.client.runtime.status({});
    const cond = (t: string) => s.status?.conditions.find((c) => c.type === t);
    assert.equal(cond("RuntimeReady")?.status, true);
    assert.equal(cond("NetworkReady")?.status, false);
    assert.equal(cond("NetworkReady")?.reason, "NetworkPluginNotReady");
    assert.match(cond("NetworkReady")?.message ?? "", /no network config found/);
    assert.deepEqual(
      s.runtimeHandlers.map((h) => h.name),
      ["runc"],
    );
    await writeFile(
      join(cniDir, "10-test.conflist"),
      JSON.stringify({ cniVersion: "1.0.0", name: "t", plugins: [{ type: "loopback" }] }),
    );
    let ready = false;
    for (let i = 0; i < 50 && !ready; i++) {
      const s2 = await d.client.runtime.status({});
      ready = s2.status?.conditions.find((c) => c.type === "NetworkReady")?.status === true;
      if (!ready) await new Promise((r) => setTimeout(r, 100));
    }
    assert.equal(ready, true, "NetworkReady turns true once a config appears");
  });

  test("Status verbose carries JSON info", async () => {
    const s = await d.client.runtime.status({ verbose: true });
    const info = JSON.parse(s.info.config ?? "{}") as { config?: { root?: string } };
    assert.equal(info.config?.root, d.root);
  });

  test("RuntimeConfig reports the cgroupfs driver", async () => {
    const r = await d.client.runtime.runtimeConfig({});
    assert.equal(r.linux?.cgroupDriver, 1 /* CGROUPFS */);
  });

  test("UpdateRuntimeConfig records the pod CIDR and rejects a malformed one", async () => {
    await d.client.runtime.updateRuntimeConfig({ runtimeConfig: { networkConfig: { podCidr: "10.244.1.0/24" } } });
    const s = await d.client.runtime.status({ verbose: true });
    assert.equal((JSON.parse(s.info.config ?? "{}") as { podCidr?: string }).podCidr, "10.244.1.0/24");
    await assert.rejects(
      d.client.runtime.updateRuntimeConfig({ runtimeConfig: { networkConfig: { podCidr: "10.244.1.0/99" } } }),
      (e: unknown) => e instanceof ConnectError && e.code === Code.InvalidArgument,
    );
  });

  test("every CRI v1 RPC is served: none answers UNIMPLEMENTED", async () => {
    const methods = [...RuntimeService.methods, ...ImageService.methods];
    assert.deepEqual(
      methods.map((m) => m.name).filter((n) => !IMPLEMENTED.has(n)),
      [],
      "IMPLEMENTED lists them all",
    );
    for (const m of methods) {
      const svc = (ImageService.methods as readonly { name: string }[]).includes(m) ? d.client.image : d.client.runtime;
      const call = (svc as unknown as Record<string, (req: object, o: object) => unknown>)[m.localName];
      assert.ok(call, m.name);
      // An empty request: most RPCs refuse it (InvalidArgument, NotFound); what matters is that none is missing.
      // GetContainerEvents never ends by itself, so every call gets a short deadline.
      const signal = AbortSignal.timeout(2_000);
      try {
        const res = call.call(svc, {}, { signal });
        if (m.methodKind === "server_streaming") for await (const _ of res as AsyncIterable<unknown>) break;
        else await res;
      } catch (e) {
        assert.ok(e instanceof ConnectError, `${m.name}: ${String(e)}`);
        assert.notEqual(e.code, Code.Unimplemented, `${m.name}: ${e.message}`);
      }
    }
  });

  test("a method or service berthd does not know answers gRPC UNIMPLEMENTED, not a bare HTTP 404", async () => {
    const raw = new RawGrpc(d.socket);
    try {
      for (const path of ["/runtime.v1.RuntimeService/NoSuchMethod", "/no.such.Service/Call"]) {
        const o = await raw.call(path, grpcFrame(new Uint8Array()), { timeoutMs: 5_000 });
        assert.equal(o.httpStatus, 200, path);
        assert.equal(o.grpcStatus, Code.Unimplemented, path);
        assert.match(decodeURIComponent(o.grpcMessage ?? ""), new RegExp(`unknown method ${path}`));
      }
      const json = await raw.call("/no.such.Service/Call", new Uint8Array(), {
        timeoutMs: 5_000,
        headers: { "content-type": "application/json" },
      });
      assert.equal(json.httpStatus, 415, "not gRPC: no gRPC answer");
    } finally {
      raw.close();
    }
  });
});

describe("berthd start-up and shutdown", { skip: skipUnlessCi(isRoot() ? false : "needs root") }, () => {
  test("a config file with an unknown key fails start-up naming the key and line", async () => {
    const dir = await mkdtemp(join(tmpdir(), "berth-badconf-"));
    try {
      await writeFile(join(dir, "config.toml"), `root = "${dir}/root"\n[cni]\nconf_dirs = "/x"\n`);
      const r = await runBerthd([
        "--config",
        join(dir, "config.toml"),
        "--socket",
        join(dir, "s.sock"),
        "--state",
        join(dir, "state"),
      ]);
      assert.notEqual(r.code, 0);
      assert.match(r.stderr, /config\.toml:3: cni\.conf_dirs: unknown key/);
      await assert.rejects(stat(join(dir, "s.sock")));
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  test("a config file with a TOML syntax error fails start-up naming the line", async () => {
    const dir = await mkdtemp(join(tmpdir(), "berth-badconf-"));
    try {
      await writeFile(join(dir, "config.toml"), `[log]\nlevel = \n`);
      const r = await runBerthd(["--config", join(dir, "config.toml"), "--root", join(dir, "root")]);
      assert.notEqual(r.code, 0);
      assert.match(r.stderr, /config\.toml:2/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  test("berthd config default prints a config that berthd accepts", async () => {
    const r = await runBerthd(["config", "default"]);
    assert.equal(r.code, 0);
    assert.match(r.stdout, /^root = "\/var\/lib\/berth"$/m);
    assert.match(r.stdout, /\[runtime\.handlers\.runc\]/);
    const dir = await mkdtemp(join(tmpdir(), "berth-defconf-"));
    let d: TestDaemon | undefined;
    try {
      await mkdir(join(dir, "x"), { recursive: true });
      d = await startBerthd({ dir: join(dir, "x"), config: r.stdout.replace(/^(root|state|socket) = .*$/gm, "") });
      assert.equal((await d.client.runtime.version({})).runtimeName, "berth");
    } finally {
      await d?.cleanup();
      await rm(dir, { recursive: true, force: true });
    }
  });

  test("a second berthd on the same root is refused with a clear message", async () => {
    const d = await startBerthd();
    try {
      const r = await runBerthd([
        "--config",
        d.configPath,
        "--root",
        d.root,
        "--state",
        join(d.dir, "state2"),
        "--socket",
        join(d.dir, "other.sock"),
      ]);
      assert.notEqual(r.code, 0);
      assert.match(r.stderr, new RegExp(`another berthd \\(pid ${d.pid}\\) is using this root`));
      // The first one is unharmed.
      assert.equal((await d.client.runtime.version({})).runtimeName, "berth");
    } finally {
      await d.cleanup();
    }
  });

  test("SIGTERM stops berthd cleanly, exit 0, removing nothing from the root", async () => {
    const d = await startBerthd();
    try {
      await d.client.runtime.updateRuntimeConfig({ runtimeConfig: { networkConfig: { podCidr: "10.1.0.0/16" } } });
      const code = await d.stop("SIGTERM");
      assert.equal(code, 0, d.stderr());
      await stat(join(d.root, "meta.db"));
      await assert.rejects(stat(join(d.root, "berthd.lock")), "the lock is released");
      assert.match(d.stderr(), /"msg":"berthd stopped"/);
      // State written before the stop is there after a restart on the same root.
      const again = await startBerthd({ dir: d.dir });
      try {
        const s = await again.client.runtime.status({ verbose: true });
        assert.equal((JSON.parse(s.info.config ?? "{}") as { podCidr?: string }).podCidr, "10.1.0.0/16");
      } finally {
        await again.stop();
      }
    } finally {
      await d.cleanup();
    }
  });

  test("after SIGKILL the stale socket and lock are replaced on restart", async () => {
    const d = await startBerthd();
    try {
      assert.equal(await d.stop("SIGKILL"), 137);
      assert.ok((await stat(d.socket)).isSocket(), "a killed daemon leaves its socket behind");
      const again = await startBerthd({ dir: d.dir });
      try {
        assert.equal((await again.client.runtime.version({})).runtimeName, "berth");
      } finally {
        await again.stop();
      }
    } finally {
      await d.cleanup();
    }
  });

  test("each RPC is logged once at the edge with its duration and outcome", async () => {
    const d = await startBerthd();
    try {
      await d.client.runtime.updateRuntimeConfig({ runtimeConfig: { networkConfig: { podCidr: "10.2.0.0/16" } } });
      await assert.rejects(d.client.runtime.containerStatus({ containerId: "nope" }));
      const lines = d
        .stderr()
        .split("\n")
        .filter((l) => l.startsWith("{"))
        .map((l) => JSON.parse(l) as { rpc?: string; ms?: number; code?: string });
      const upd = lines.filter((l) => l.rpc === "UpdateRuntimeConfig" && l.code === "OK");
      assert.ok(upd.length >= 1 && typeof upd[0]?.ms === "number");
      assert.ok(lines.some((l) => l.rpc === "ContainerStatus" && l.code !== "OK"));
    } finally {
      await d.cleanup();
    }
  });
});
