import assert from "node:assert/strict";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, test } from "node:test";
import { readStored } from "../../test/support/store.js";
import { isKind, notFound, RuntimeError } from "../errdefs/index.js";
import { silentLogger } from "../log/index.js";
import type { ContainerExit, ContainerStatus, CreateContainerOptions, RecoverResult } from "../runtime/index.js";
import { type Collection, openStore, type Store } from "../store/index.js";
import { type ContainerEvent, ContainerManager, type ContainerRootfs, type ContainerSandboxes } from "./containers.js";
import { START_ERROR_EXIT_CODE, START_ERROR_REASON } from "./lifecycle.js";
import type { Runtime } from "./runtime.js";
import type { ContainerConfig, ContainerRecord, NamespaceOptions, SandboxRecord } from "./types.js";

// Unit tests of ContainerManager, one behaviour per RPC, against a fake runtime, sandboxes, images and
// root filesystems, and the real SQLite store (so that what a restarted berthd reads back is checked).

type FakeState = "created" | "running" | "stopped";

/** An in-memory OCI runtime: containers are entries, exits are reported like conmon's watcher does. */
class FakeRuntime implements Runtime {
  readonly containers = new Map<string, { state: FakeState; pid: number; exitCode?: number }>();
  readonly calls: string[] = [];
  /** Makes the next `start` fail with this error. */
  failStart: Error | undefined;
  /** Makes the next `createContainer` fail with this error. */
  failCreate: Error | undefined;
  /** With a value, the started process exits at once with it, reported before `start` returns. */
  quickExit: number | undefined;
  private readonly listeners = new Set<(e: ContainerExit) => void>();
  private nextPid = 1000;

  async createContainer(o: CreateContainerOptions) {
    this.calls.push(`create ${o.id}`);
    if (this.failCreate) throw this.failCreate;
    const pid = this.nextPid++;
    this.containers.set(o.id, { state: "created", pid });
    return { pid, conmonPid: pid + 1 };
  }

  async start(id: string) {
    this.calls.push(`start ${id}`);
    const c = this.containers.get(id);
    if (!c) throw notFound(`container ${id}`);
    if (this.failStart) throw new RuntimeError("Internal", `start container ${id}: ${this.failStart.message}`);
    c.state = "running";
    if (this.quickExit !== undefined) this.exit(id, this.quickExit);
  }

  async stop(id: string, o: { timeoutSec?: number; stopSignal?: string | number } = {}) {
    this.calls.push(`stop ${id} ${o.timeoutSec ?? 0} ${o.stopSignal ?? ""}`.trim());
    const c = this.containers.get(id);
    if (!c || c.state === "stopped") return;
    this.exit(id, 137);
  }

  async delete(id: string) {
    this.calls.push(`delete ${id}`);
    this.containers.delete(id);
  }

  async status(id: string): Promise<ContainerStatus> {
    const c = this.containers.get(id);
    if (!c) throw notFound(`container ${id}`);
    if (c.state !== "stopped") return { id, state: c.state, pid: c.pid, oomKilled: false };
    return { id, state: "stopped", exitCode: c.exitCode ?? 255, finishedAt: new Date(), oomKilled: false };
  }

  async execSync() {
    return { stdout: "", stderr: "", exitCode: 0 };
  }

  async reopenLog() {}

  async updateResources(id: string) {
    this.calls.push(`update ${id}`);
  }

  async recover(knownIds: Iterable<string>): Promise<RecoverResult> {
    const known = new Set(knownIds);
    const statuses = new Map<string, ContainerStatus>();
    for (const id of known) if (this.containers.has(id)) statuses.set(id, await this.status(id));
    return {
      statuses,
      missing: [...known].filter((id) => !this.containers.has(id)),
      unknown: [...this.containers.keys()].filter((id) => !known.has(id)),
    };
  }

  onExit(cb: (e: ContainerExit) => void) {
    this.listeners.add(cb);
    return () => this.listeners.delete(cb);
  }

  /** The process of `id` exits: recorded, then reported to the watchers. */
  exit(id: string, exitCode: number): void {
    const c = this.containers.get(id);
    if (!c) return;
    c.state = "stopped";
    c.exitCode = exitCode;
    for (const cb of this.listeners) cb({ id, exitCode, finishedAt: new Date(), oomKilled: false });
  }
}

const hostNamespaces: NamespaceOptions = { network: "node", pid: "container", ipc: "node", targetId: "" };

const sandbox: SandboxRecord = {
  id: "sb0000000000000000000000000000000000000000000000000000000000000a",
  state: "ready",
  config: {
    metadata: { name: "pod", uid: "uid-pod", namespace: "unit", attempt: 0 },
    hostname: "pod",
    logDirectory: "",
    portMappings: [],
    labels: {},
    annotations: {},
    cgroupParent: "",
    sysctls: {},
    namespaces: hostNamespaces,
    privileged: false,
    supplementalGroups: [],
    readonlyRootfs: false,
  },
  runtimeHandler: "runc",
  createdAt: "1",
  ip: "",
  additionalIps: [],
  networkUp: false,
  dir: "/nonexistent/sandbox",
  shmMounted: false,
};

function containerConfig(name: string): ContainerConfig {
  return {
    name,
    attempt: 0,
    image: "busybox",
    command: ["sh", "-c", "true"],
    args: [],
    workingDir: "",
    envs: [],
    mounts: [],
    devices: [],
    labels: { app: name },
    annotations: {},
    logPath: "",
    stdin: false,
    stdinOnce: false,
    tty: false,
    resources: {},
    privileged: false,
    capabilities: { add: [], drop: [] },
    namespaces: hostNamespaces,
    runAsUsername: "",
    supplementalGroups: [],
    supplementalGroupsPolicy: "merge",
    readonlyRootfs: false,
    noNewPrivs: false,
    maskedPaths: [],
    readonlyPaths: [],
    selinuxRequested: false,
    stopSignal: "",
  };
}

const sandboxes: ContainerSandboxes = {
  get: (ref) => {
    if (!sandbox.id.startsWith(ref)) throw notFound(`pod sandbox ${ref}`);
    return sandbox;
  },
  resolve: (ref) => sandboxes.get(ref).id,
  infraIds: () => [],
};

const isFailedPrecondition = (e: unknown) => isKind(e, "FailedPrecondition");

describe("ContainerManager", () => {
  let dir: string;
  let store: Store;
  let records: Collection<ContainerRecord>;
  let runtime: FakeRuntime;
  let released: string[];
  let manager: ContainerManager;
  let events: ContainerEvent[];

  const newManager = () => {
    const m = new ContainerManager({
      records,
      sandboxes,
      runtime,
      images: {
        resolve: async (ref) =>
          ref === "busybox"
            ? { id: "sha256:image", name: "busybox", config: { StopSignal: "SIGQUIT" }, topChainId: "sha256:top" }
            : undefined,
      },
      rootfs,
      log: silentLogger(),
    });
    m.onEvent((e) => events.push(e));
    return m;
  };
  const rootfs: ContainerRootfs = {
    prepare: async (id) => {
      const path = join(dir, "rootfs", id);
      await mkdir(join(path, "etc"), { recursive: true });
      await writeFile(join(path, "etc", "passwd"), "root:x:0:0:root:/root:/bin/sh\n");
      return path;
    },
    release: async (id) => {
      released.push(id);
      await rm(join(dir, "rootfs", id), { recursive: true, force: true });
    },
    usage: async () => undefined,
  };
  /** The record as a restarted berthd would read it. */
  const stored = (id: string) => readStored<ContainerRecord>(join(dir, "berth.db"), "containers", id);
  const create = (name: string) => manager.create(sandbox.id, containerConfig(name));
  /** Resolves once `type` was emitted for `id` (exits are recorded asynchronously, after the watcher fires). */
  const eventFor = (id: string, type: ContainerEvent["type"]) =>
    new Promise<void>((resolve) => {
      if (events.some((e) => e.containerId === id && e.type === type)) return resolve();
      const off = manager.onEvent((e) => {
        if (e.containerId === id && e.type === type) {
          off();
          resolve();
        }
      });
    });

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), "berth-containers-"));
    store = openStore(join(dir, "berth.db"));
    records = store.collection("containers");
    runtime = new FakeRuntime();
    released = [];
    events = [];
    manager = newManager();
  });
  afterEach(async () => {
    manager.close();
    store.close();
    await rm(dir, { recursive: true, force: true });
  });

  test("create makes a created container, persisted with its pid, user and the image's stop signal", async () => {
    const id = await create("web");
    const rec = manager.get(id);
    assert.equal(rec.state, "created");
    assert.equal(rec.pid, 1000);
    assert.equal(rec.stopSignal, "SIGQUIT");
    assert.equal(rec.uid, 0);
    assert.deepEqual(stored(id), rec);
    assert.deepEqual(
      events.map((e) => e.type),
      ["created"],
    );
    assert.deepEqual(
      manager.list({ state: "created" }).map((r) => r.id),
      [id],
    );
  });

  test("a name is reserved per sandbox and attempt: a second create with it is AlreadyExists", async () => {
    await create("web");
    await assert.rejects(create("web"), (e) => isKind(e, "AlreadyExists"));
  });

  test("a failed create is undone: no record, rootfs released, runtime state deleted, name free again", async () => {
    runtime.failCreate = new RuntimeError("Internal", "runc create: exit status 1: exec: no such file");
    await assert.rejects(create("web"), /create container web: runc create/);
    assert.deepEqual(manager.list(), []);
    assert.equal(records.list().length, 0);
    assert.equal(released.length, 1);
    assert.ok(runtime.calls.some((c) => c.startsWith("delete ")));
    runtime.failCreate = undefined;
    await create("web");
  });

  test("start makes it running with its start time; starting it again is FailedPrecondition", async () => {
    const id = await create("web");
    await manager.start(id.slice(0, 6));
    const rec = manager.get(id);
    assert.equal(rec.state, "running");
    assert.ok(BigInt(rec.startedAt) >= BigInt(rec.createdAt));
    assert.equal(stored(id)?.state, "running");
    await assert.rejects(manager.start(id), isFailedPrecondition);
    assert.deepEqual(
      events.map((e) => e.type),
      ["created", "started"],
    );
  });

  test("stop sends the stop signal with the timeout and records the exit; stopping again does nothing", async () => {
    const id = await create("web");
    await manager.start(id);
    await manager.stop(id, 5);
    assert.ok(runtime.calls.includes(`stop ${id} 5 SIGQUIT`));
    await eventFor(id, "stopped");
    const rec = manager.get(id);
    assert.equal(rec.state, "exited");
    assert.equal(rec.exitCode, 137);
    assert.equal(rec.reason, "Error");
    assert.ok(BigInt(rec.finishedAt) >= BigInt(rec.startedAt));
    assert.equal(stored(id)?.state, "exited");
    const stops = runtime.calls.filter((c) => c.startsWith("stop ")).length;
    await manager.stop(id, 5);
    assert.equal(runtime.calls.filter((c) => c.startsWith("stop ")).length, stops);
    assert.equal(events.filter((e) => e.type === "stopped").length, 1);
  });

  test("a created container that is stopped becomes exited without running", async () => {
    const id = await create("web");
    await manager.stop(id, 0);
    await eventFor(id, "stopped");
    assert.equal(manager.get(id).state, "exited");
    await assert.rejects(manager.start(id), isFailedPrecondition);
  });

  test("remove deletes the runtime state, releases the rootfs and frees the name; it is idempotent", async () => {
    const id = await create("web");
    await manager.start(id);
    await manager.remove(id);
    assert.ok(runtime.calls.includes(`delete ${id}`));
    assert.deepEqual(released, [id]);
    assert.equal(stored(id), undefined);
    await assert.rejects(
      async () => manager.get(id),
      (e) => isKind(e, "NotFound"),
    );
    await manager.remove(id);
    await create("web");
    assert.deepEqual(
      events.filter((e) => e.containerId === id).map((e) => e.type),
      ["created", "started", "deleted"],
    );
  });

  test("a failed start is EXITED with reason StartError, exit code 128 and the error, persisted, its process killed", async () => {
    const id = await create("web");
    runtime.failStart = new Error("runc start: exit status 1: cannot start an already running container");
    await assert.rejects(manager.start(id), /start container .*cannot start/);
    const rec = manager.get(id);
    assert.equal(rec.state, "exited");
    assert.equal(rec.reason, START_ERROR_REASON);
    assert.equal(rec.exitCode, START_ERROR_EXIT_CODE);
    assert.match(rec.message, /cannot start an already running container/);
    assert.ok(BigInt(rec.finishedAt) > 0n);
    assert.equal(rec.startedAt, "0", "it never started");
    assert.deepEqual(stored(id), rec);
    assert.ok(runtime.calls.includes(`stop ${id} 0`), "what runc create made is killed");
    // The kill's own exit report must not overwrite why the container ended.
    await new Promise((r) => setImmediate(r));
    assert.equal(manager.get(id).reason, START_ERROR_REASON);
    assert.deepEqual(
      events.map((e) => e.type),
      ["created", "stopped"],
    );
    runtime.failStart = undefined;
    await assert.rejects(manager.start(id), isFailedPrecondition);
    await manager.remove(id);
    assert.equal(stored(id), undefined);
  });

  test("a process that exits before runc start returns is recorded as started, then exited", async () => {
    const id = await create("quick");
    runtime.quickExit = 0;
    const stopped = eventFor(id, "stopped");
    await manager.start(id);
    await stopped;
    const rec = manager.get(id);
    assert.equal(rec.state, "exited");
    assert.equal(rec.reason, "Completed");
    assert.equal(rec.exitCode, 0);
    // The exit time has millisecond precision (conmon's exit file), the start time more.
    assert.ok(BigInt(rec.startedAt) > 0n && BigInt(rec.finishedAt) + 1_000_000n >= BigInt(rec.startedAt));
    assert.deepEqual(
      events.map((e) => e.type),
      ["created", "started", "stopped"],
    );
    assert.equal(stored(id)?.state, "exited");
  });

  test("update refuses an illegal transition with FailedPrecondition and writes nothing", async () => {
    const id = await create("web");
    await manager.start(id);
    await manager.stop(id, 0);
    await eventFor(id, "stopped");
    const before = stored(id);
    assert.throws(
      () =>
        manager.update(id, (r) => {
          r.state = "running";
          r.exitCode = 0;
        }),
      (e) => isFailedPrecondition(e) && /container .* is exited: it cannot become running/.test(String(e)),
    );
    assert.throws(
      () =>
        manager.update(id, (r) => {
          r.state = "creating";
        }),
      isFailedPrecondition,
    );
    assert.deepEqual(stored(id), before);
    assert.throws(
      () => manager.update("nope", () => {}),
      (e) => isKind(e, "NotFound"),
    );
  });

  test("a change the store cannot write is not applied", async () => {
    const id = await create("web");
    const failing: Collection<ContainerRecord> = {
      ...records,
      put: () => {
        throw new Error("disk I/O error");
      },
    };
    const m = new ContainerManager({
      records: failing,
      sandboxes,
      runtime: new FakeRuntime(),
      images: { resolve: async () => undefined },
      rootfs,
      log: silentLogger(),
    });
    assert.throws(
      () =>
        m.update(id, (r) => {
          r.state = "running";
        }),
      /disk I\/O error/,
    );
    m.close();
    assert.equal(stored(id)?.state, "created");
  });

  test("a container whose runtime state vanished is stopped as exited (255) and removed", async () => {
    const id = await create("web");
    await manager.start(id);
    runtime.containers.delete(id);
    await rm(join(dir, "rootfs", id), { recursive: true, force: true });
    await manager.stop(id, 10);
    const rec = manager.get(id);
    assert.equal(rec.state, "exited");
    assert.equal(rec.exitCode, 255);
    assert.equal(rec.message, "runtime state lost");
    await manager.remove(id);
    assert.equal(stored(id), undefined);
  });

  test("stopAll and removeAll act on every container of the sandbox", async () => {
    const a = await create("a");
    const b = await create("b");
    await manager.start(a);
    await manager.stopAll(sandbox.id);
    await Promise.all([eventFor(a, "stopped"), eventFor(b, "stopped")]);
    assert.deepEqual(
      manager.list({ sandboxId: sandbox.id.slice(0, 8) }).map((r) => r.state),
      ["exited", "exited"],
    );
    await manager.removeAll(sandbox.id);
    assert.deepEqual(manager.list(), []);
  });

  test("execSync, reopenLog and updateResources need a running (or created) container", async () => {
    const id = await create("web");
    await assert.rejects(manager.execSync(id, ["true"], 0), isFailedPrecondition);
    await manager.updateResources(id, { memoryLimitBytes: 64 * 1024 * 1024 });
    assert.equal(manager.get(id).config.resources.memoryLimitBytes, 64 * 1024 * 1024);
    assert.equal(stored(id)?.config.resources.memoryLimitBytes, 64 * 1024 * 1024);
    await manager.start(id);
    assert.deepEqual(await manager.execSync(id, ["true"], 0), { stdout: "", stderr: "", exitCode: 0 });
    await manager.stop(id, 0);
    await eventFor(id, "stopped");
    await assert.rejects(manager.reopenLog(id), isFailedPrecondition);
    await assert.rejects(manager.updateResources(id, { cpuShares: 2 }), isFailedPrecondition);
  });

  describe("recover", () => {
    test("undoes an interrupted create, picks up exits and starts berthd missed, and keeps a StartError", async () => {
      const interrupted = "c0".repeat(32);
      records.put(interrupted, { ...manager.get(await create("tmp")), id: interrupted, state: "creating" });
      const exitedWhileDown = await create("down");
      await manager.start(exitedWhileDown);
      const startedWhileDown = await create("started");
      const failed = await create("failed");
      runtime.failStart = new Error("runc start: boom");
      await manager.start(failed).catch(() => {});
      runtime.failStart = undefined;
      manager.close();

      // While berthd is down: one container exits, one was started, the failed one's kill never happened.
      const fake = runtime.containers;
      fake.set(exitedWhileDown, { state: "stopped", pid: 1, exitCode: 3 });
      fake.set(startedWhileDown, { state: "running", pid: 2 });
      fake.set(failed, { state: "created", pid: 3 });
      runtime.calls.length = 0;
      manager = newManager();
      await manager.recover();

      assert.equal(records.get(interrupted), undefined);
      assert.ok(runtime.calls.includes(`delete ${interrupted}`));
      assert.equal(manager.get(exitedWhileDown).state, "exited");
      assert.equal(manager.get(exitedWhileDown).exitCode, 3);
      assert.equal(manager.get(startedWhileDown).state, "running");
      const f = manager.get(failed);
      assert.equal(f.state, "exited");
      assert.equal(f.reason, START_ERROR_REASON);
      assert.ok(runtime.calls.includes(`stop ${failed} 0`), "the failed start's process is killed");
      assert.equal(stored(exitedWhileDown)?.state, "exited");
      assert.equal(stored(startedWhileDown)?.state, "running");
    });

    test("a running container whose runtime state is gone is deleted and recorded exited (255)", async () => {
      const id = await create("lost");
      await manager.start(id);
      manager.close();
      runtime.containers.delete(id);
      manager = newManager();
      await manager.recover();
      const rec = manager.get(id);
      assert.equal(rec.state, "exited");
      assert.equal(rec.exitCode, 255);
      assert.match(rec.message, /state lost/);
      assert.ok(runtime.calls.includes(`delete ${id}`));
    });
  });
});
