import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, test } from "node:test";
import { readStored } from "../../test/support/store.js";
import { isKind, RuntimeError } from "../errdefs/index.js";
import { silentLogger } from "../log/index.js";
import { openStore, type Store } from "../store/index.js";
import type { SandboxInfra } from "./infra.js";
import type { SandboxHost } from "./sandbox-host.js";
import { type SandboxContainers, SandboxManager, type SandboxNetwork } from "./sandboxes.js";
import type { NamespaceMode, SandboxConfig, SandboxRecord } from "./types.js";

// Unit tests of SandboxManager, one behaviour per RPC, against a fake host, network, infra and containers,
// and the real SQLite store (so that what a restarted berthd reads back is checked).

/**
 * Host resources as sets of paths; `failRemoveDir` keeps a directory (a mount left in it). `netns` are the
 * network namespaces the network pinned, which `isPinned` sees as the real nsfs check does.
 */
class FakeHost implements SandboxHost {
  constructor(private readonly netns: ReadonlySet<string>) {}

  readonly dirs = new Set<string>();
  readonly pinned = new Set<string>();
  readonly shm = new Set<string>();
  readonly files = new Map<string, { hostname: string; ip: string }>();
  failRemoveDir = false;

  async createDir(dir: string) {
    if (this.dirs.has(dir)) throw new RuntimeError("AlreadyExists", `mkdir ${dir}: EEXIST`);
    this.dirs.add(dir);
  }
  async removeDir(dir: string) {
    if (this.failRemoveDir) throw new RuntimeError("Internal", `rm ${dir}: EBUSY`);
    this.dirs.delete(dir);
    this.files.delete(dir);
  }
  async pinNamespaces(paths: { ipc?: string; uts?: string }) {
    for (const p of Object.values(paths)) if (p) this.pinned.add(p);
  }
  async unpinNamespace(path: string) {
    this.pinned.delete(path);
  }
  async isPinned(path: string) {
    return this.pinned.has(path) || this.netns.has(path);
  }
  async mountShm(path: string) {
    this.shm.add(path);
  }
  async unmountShm(path: string) {
    this.shm.delete(path);
  }
  async writeFiles(dir: string, files: { hostname: string; ip: string }) {
    this.files.set(dir, { hostname: files.hostname, ip: files.ip });
  }
}

/** CNI as a set of namespaces and attached sandboxes; failures are injected per call. */
class FakeNetwork implements SandboxNetwork {
  readonly netns = new Set<string>();
  readonly attached = new Set<string>();
  failSetUp = false;
  failTearDown = false;
  private nextIp = 2;

  netnsPath(id: string) {
    return `/run/netns/${id}`;
  }
  async createNetns(id: string) {
    this.netns.add(this.netnsPath(id));
    return this.netnsPath(id);
  }
  async removeNetns(path: string) {
    this.netns.delete(path);
  }
  async setUp(sb: SandboxRecord) {
    if (this.failSetUp) throw new RuntimeError("Internal", "cni add: bridge: no IP addresses available");
    this.attached.add(sb.id);
    return { ips: [`10.0.0.${this.nextIp++}`, "fd00::2"] };
  }
  async tearDown(sb: SandboxRecord) {
    if (this.failTearDown) throw new RuntimeError("Internal", "cni del: plugin timed out");
    this.attached.delete(sb.id);
  }
}

function sandboxConfig(name: string, pid: NamespaceMode = "container"): SandboxConfig {
  return {
    metadata: { name, uid: `uid-${name}`, namespace: "unit", attempt: 0 },
    hostname: name,
    logDirectory: "",
    portMappings: [],
    labels: { app: name },
    annotations: {},
    cgroupParent: "",
    sysctls: {},
    namespaces: { network: "pod", pid, ipc: "pod", targetId: "" },
    privileged: false,
    supplementalGroups: [],
    readonlyRootfs: false,
  };
}

describe("SandboxManager", () => {
  let dir: string;
  let store: Store;
  let host: FakeHost;
  let network: FakeNetwork;
  let infra: { calls: string[] } & SandboxInfra;
  let containerCalls: string[];
  let manager: SandboxManager;

  const newManager = () => {
    const m = new SandboxManager({
      records: store.collection("sandboxes"),
      infra,
      stateDir: "/state/sandboxes",
      host,
      network,
      handlers: ["runc"],
      defaultHandler: "runc",
      log: silentLogger(),
    });
    const containers: SandboxContainers = {
      stopAll: async (id) => {
        containerCalls.push(`stopAll ${id}`);
      },
      removeAll: async (id) => {
        containerCalls.push(`removeAll ${id}`);
      },
    };
    m.attachContainers(containers);
    return m;
  };
  /** The record as a restarted berthd would read it. */
  const stored = (id: string) => readStored<SandboxRecord>(join(dir, "berth.db"), "sandboxes", id);

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), "berth-sandboxes-"));
    store = openStore(join(dir, "berth.db"));
    network = new FakeNetwork();
    host = new FakeHost(network.netns);
    const calls: string[] = [];
    infra = {
      calls,
      start: async (sb) => {
        calls.push(`start ${sb.id}`);
        return 4242;
      },
      stop: async (id) => {
        calls.push(`stop ${id}`);
      },
      remove: async (id) => {
        calls.push(`remove ${id}`);
      },
    };
    containerCalls = [];
    manager = newManager();
  });
  afterEach(async () => {
    store.close();
    await rm(dir, { recursive: true, force: true });
  });

  test("run makes a ready sandbox with its namespaces, /dev/shm, network and files, all persisted", async () => {
    const id = await manager.run(sandboxConfig("web"), "");
    const rec = manager.get(id.slice(0, 5));
    assert.equal(rec.state, "ready");
    assert.equal(rec.runtimeHandler, "runc");
    assert.equal(rec.dir, `/state/sandboxes/${id}`);
    assert.equal(rec.ip, "10.0.0.2");
    assert.deepEqual(rec.additionalIps, ["fd00::2"]);
    assert.equal(rec.networkUp, true);
    assert.equal(rec.netnsPath, `/run/netns/${id}`);
    assert.equal(rec.shmMounted, true);
    assert.deepEqual([...host.pinned].sort(), [`${rec.dir}/ns/ipc`, `${rec.dir}/ns/uts`]);
    assert.ok(host.shm.has(`${rec.dir}/shm`));
    assert.deepEqual(host.files.get(rec.dir), { hostname: "web", ip: "10.0.0.2" });
    assert.equal(rec.infraId, undefined, "no infra process without a shared PID namespace");
    assert.deepEqual(stored(id), rec);
    assert.deepEqual(
      manager.list({ state: "ready", labels: { app: "web" } }).map((r) => r.id),
      [id],
    );
  });

  test("a pod sharing its PID namespace gets an infra process, stopped and removed with the pod", async () => {
    const id = await manager.run(sandboxConfig("shared", "pod"), "runc");
    const rec = manager.get(id);
    assert.equal(rec.infraId, id);
    assert.equal(rec.infraPid, 4242);
    assert.deepEqual(manager.infraIds(), [id]);
    await manager.stop(id);
    await manager.remove(id);
    assert.deepEqual(infra.calls, [`start ${id}`, `stop ${id}`, `stop ${id}`, `remove ${id}`]);
  });

  test("bad requests are InvalidArgument, a reused name AlreadyExists", async () => {
    await assert.rejects(manager.run(sandboxConfig("web"), "kata"), (e) => isKind(e, "InvalidArgument"));
    await assert.rejects(manager.run(sandboxConfig("web", "target"), ""), (e) => isKind(e, "InvalidArgument"));
    const noUid = sandboxConfig("web");
    noUid.metadata.uid = "";
    await assert.rejects(manager.run(noUid, ""), (e) => isKind(e, "InvalidArgument"));
    await manager.run(sandboxConfig("web"), "");
    await assert.rejects(manager.run(sandboxConfig("web"), ""), (e) => isKind(e, "AlreadyExists"));
  });

  test("stop stops the containers, tears the network down and is not ready; stopping again is fine", async () => {
    const id = await manager.run(sandboxConfig("web"), "");
    await manager.stop(id);
    const rec = manager.get(id);
    assert.equal(rec.state, "notready");
    assert.equal(rec.networkUp, false);
    assert.deepEqual(containerCalls, [`stopAll ${id}`]);
    assert.equal(network.attached.size, 0);
    assert.equal(network.netns.size, 0);
    assert.equal(host.pinned.size, 0);
    assert.equal(host.shm.size, 0);
    assert.deepEqual(stored(id), rec);
    await manager.stop(id);
    assert.equal(manager.get(id).state, "notready");
    assert.deepEqual(
      manager.list({ state: "notready" }).map((r) => r.id),
      [id],
    );
  });

  test("a stop whose network teardown fails keeps the sandbox ready with its netns, and a retry finishes", async () => {
    const id = await manager.run(sandboxConfig("web"), "");
    network.failTearDown = true;
    await assert.rejects(manager.stop(id), /tear down sandbox .*cni del/);
    assert.equal(manager.get(id).state, "ready");
    assert.equal(stored(id)?.networkUp, true);
    assert.ok(network.netns.has(`/run/netns/${id}`), "kept so that the retried DEL can run in it");
    network.failTearDown = false;
    await manager.stop(id);
    assert.equal(manager.get(id).state, "notready");
    assert.equal(network.netns.size, 0);
  });

  test("remove removes containers, network and directory and frees the name; it is idempotent", async () => {
    const id = await manager.run(sandboxConfig("web"), "");
    await manager.remove(id);
    assert.deepEqual(containerCalls, [`stopAll ${id}`, `removeAll ${id}`]);
    assert.equal(stored(id), undefined);
    assert.equal(host.dirs.size, 0);
    assert.equal(network.netns.size, 0);
    await assert.rejects(
      async () => manager.get(id),
      (e) => isKind(e, "NotFound"),
    );
    await manager.remove(id);
    await manager.run(sandboxConfig("web"), "");
  });

  test("a failed run is undone: no record, nothing pinned, mounted or attached, the name free", async () => {
    network.failSetUp = true;
    await assert.rejects(manager.run(sandboxConfig("web"), ""), /run pod sandbox unit\/web: cni add/);
    assert.deepEqual(manager.list(), []);
    assert.equal(store.collection("sandboxes").list().length, 0);
    assert.equal(host.dirs.size, 0);
    assert.equal(host.pinned.size, 0);
    assert.equal(host.shm.size, 0);
    assert.equal(network.netns.size, 0);
    network.failSetUp = false;
    await manager.run(sandboxConfig("web"), "");
  });

  test("update refuses an illegal transition with FailedPrecondition and writes nothing", async () => {
    const id = await manager.run(sandboxConfig("web"), "");
    await manager.stop(id);
    const before = stored(id);
    assert.throws(
      () =>
        manager.update(id, (r) => {
          r.state = "ready";
          r.ip = "10.9.9.9";
        }),
      (e) => isKind(e, "FailedPrecondition") && /pod sandbox .* is notready: it cannot become ready/.test(String(e)),
    );
    assert.deepEqual(stored(id), before);
    assert.throws(
      () => manager.update("nope", () => {}),
      (e) => isKind(e, "NotFound"),
    );
  });

  describe("recover", () => {
    test("undoes an interrupted run; one whose directory cannot go is kept, not ready", async () => {
      const records = store.collection<SandboxRecord>("sandboxes");
      const a = await manager.run(sandboxConfig("a"), "");
      const b = await manager.run(sandboxConfig("b"), "");
      // As a crash mid-RunPodSandbox leaves them: still creating, network up.
      for (const id of [a, b]) records.put(id, { ...(records.get(id) as SandboxRecord), state: "creating" });
      manager = newManager();
      host.failRemoveDir = true;
      await manager.recover();
      assert.deepEqual(
        manager.list().map((r) => r.state),
        ["notready", "notready"],
      );
      assert.equal(network.attached.size, 0, "the interrupted ADDs got their DEL");
      host.failRemoveDir = false;
      await manager.remove(a);
      assert.equal(stored(a), undefined);
      records.put(b, { ...(records.get(b) as SandboxRecord), state: "creating" });
      manager = newManager();
      await manager.recover();
      assert.equal(stored(b), undefined);
    });

    test("a ready sandbox whose pinned namespaces are gone (a reboot) is not ready", async () => {
      const kept = await manager.run(sandboxConfig("kept"), "");
      const lost = await manager.run(sandboxConfig("lost"), "");
      host.pinned.delete(`/state/sandboxes/${lost}/ns/uts`);
      network.netns.delete(`/run/netns/${lost}`);
      manager = newManager();
      await manager.recover();
      assert.equal(manager.get(kept).state, "ready");
      assert.equal(manager.get(lost).state, "notready");
      assert.equal(stored(lost)?.state, "notready");
      await assert.rejects(manager.run(sandboxConfig("lost"), ""), (e) => isKind(e, "AlreadyExists"));
    });
  });
});
