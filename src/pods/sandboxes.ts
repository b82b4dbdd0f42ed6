import { join } from "node:path";
import { alreadyExists, invalidArgument, isKind, notFound, wrap } from "../errdefs/index.js";
import type { Logger } from "../log/index.js";
import type { ResourceLimits } from "../oci/index.js";
import type { Collection } from "../store/index.js";
import { AmbiguousPrefixError, KeyedMutex, newId, resolvePrefix } from "../util/index.js";
import { validateCgroupParent } from "./cgroup-paths.js";
import { matchLabels } from "./filters.js";
import type { SandboxInfra } from "./infra.js";
import { transitionSandbox } from "./lifecycle.js";
import type { SandboxHost } from "./sandbox-host.js";
import type { CgroupDriver, SandboxConfig, SandboxFilter, SandboxRecord } from "./types.js";
import { nowNs } from "./types.js";

/**
 * What sandboxes need from pod networking (implemented over `src/network` by the daemon).
 * `setUp` runs CNI ADD in the netns and rolls back itself on failure; `tearDown` is idempotent
 * and works from the cached result after a daemon restart.
 */
export interface SandboxNetwork {
  /** Where `createNetns` pins the sandbox's netns (known before it exists, so it can be persisted first). */
  netnsPath(sandboxId: string): string;
  createNetns(sandboxId: string): Promise<string>;
  removeNetns(path: string): Promise<void>;
  setUp(sandbox: SandboxRecord, options: { signal?: AbortSignal }): Promise<{ ips: string[] }>;
  tearDown(sandbox: SandboxRecord): Promise<void>;
}

/** What sandboxes need from containers: stopping and removing the pod's containers. */
export interface SandboxContainers {
  stopAll(sandboxId: string): Promise<void>;
  removeAll(sandboxId: string): Promise<void>;
}

export interface SandboxManagerOptions {
  records: Collection<SandboxRecord>;
  /** Runs the infra process of pods with a shared PID namespace. */
  infra: SandboxInfra;
  /** Volatile directory for pinned namespaces and /dev/shm mounts (`<state>/sandboxes`). */
  stateDir: string;
  /** The sandbox directories, pinned IPC/UTS namespaces, /dev/shm and pod files below `stateDir`. */
  host: SandboxHost;
  network: SandboxNetwork;
  handlers: readonly string[];
  defaultHandler: string;
  /** How new pods' cgroups are named (an existing pod keeps the driver it was made with). */
  cgroupDriver?: CgroupDriver;
  log: Logger;
}

/**
 * Pod sandboxes. A sandbox is a set of namespaces pinned by bind mounts — network (with CNI),
 * IPC and UTS (with the hostname) — plus the pod's hostname/hosts/resolv.conf files and a
 * /dev/shm tmpfs. No process runs for it, so a pod costs no memory beyond its containers.
 *
 * ```
 * state:        creating ──(all set up)──▶ ready ──(StopPodSandbox)──▶ notready ──▶ (removed)
 *                   └──(failure: undone, record deleted)
 * ```
 * Every change of a record goes through `update()`, which checks the transition against the table
 * in lifecycle.ts and persists it. Each step of a creation is persisted before it is acted on; a
 * `creating` record found at start-up is a RunPodSandbox cut short by a crash, and recover() undoes it.
 *
 * Layout: `<stateDir>/<id>/{ns/ipc,ns/uts,shm/,hostname,hosts,resolv.conf}` (see SandboxHost).
 */
export class SandboxManager {
  private readonly records: Collection<SandboxRecord>;
  private readonly locks = new KeyedMutex();
  /** "namespace/name/uid/attempt" -> sandbox ID, the kubelet's uniqueness key. */
  private readonly names = new Map<string, string>();
  private containers: SandboxContainers | undefined;

  constructor(private readonly o: SandboxManagerOptions) {
    this.records = o.records;
  }

  /** Wires the container manager (the two refer to each other). */
  attachContainers(containers: SandboxContainers): void {
    this.containers = containers;
  }

  /**
   * The one way a stored sandbox record changes: `fn` edits a copy of it, a state change is checked
   * against SANDBOX_TRANSITIONS (FailedPrecondition, and nothing written, when it is not allowed),
   * then the record is persisted and the copy returned. Synchronous, so nothing interleaves between
   * the read and the write. NotFound when there is no record.
   */
  update(id: string, fn: (draft: SandboxRecord) => void): SandboxRecord {
    const current = this.records.get(id);
    if (!current) throw notFound(`pod sandbox ${id}`);
    const draft = structuredClone(current);
    fn(draft);
    transitionSandbox(id, current.state, draft.state);
    this.records.put(id, draft);
    return draft;
  }

  /** Rebuilds the name index and undoes sandboxes whose creation was cut short. */
  async recover(): Promise<void> {
    for (let rec of this.records.list()) {
      if (rec.state === "creating") {
        this.o.log.warn({ sandboxId: rec.id }, "undoing a sandbox whose creation was interrupted");
        await this.teardown(rec, { forgetting: true }).catch((err) =>
          this.o.log.error({ err, sandboxId: rec.id }, "undo failed"),
        );
        try {
          await this.o.host.removeDir(rec.dir);
          this.records.delete(rec.id);
          continue;
        } catch (err) {
          // One sandbox whose directory cannot go (a mount left in it) must not keep berthd from
          // starting: it stays listed, not ready, so RemovePodSandbox can retry the teardown.
          this.o.log.error({ err, sandboxId: rec.id }, "undo left its directory; the sandbox is kept, not ready");
          rec = this.update(rec.id, (r) => {
            r.state = "notready";
          });
        }
      }
      this.names.set(nameKey(rec.config), rec.id);
      // After a reboot the pinned namespaces (on tmpfs) are gone: the pod cannot be ready.
      if (rec.state === "ready" && !(await this.namespacesIntact(rec))) {
        this.o.log.warn({ sandboxId: rec.id }, "sandbox namespaces are gone; marking it not ready");
        this.update(rec.id, (r) => {
          r.state = "notready";
        });
      }
    }
  }

  private async namespacesIntact(rec: SandboxRecord): Promise<boolean> {
    for (const p of [rec.netnsPath, rec.ipcPath, rec.utsPath]) {
      if (p && !(await this.o.host.isPinned(p))) return false;
    }
    return true;
  }

  /** RunPodSandbox: returns the new sandbox's ID once it is ready. */
  async run(config: SandboxConfig, handler: string, options: { signal?: AbortSignal } = {}): Promise<string> {
    const m = config.metadata;
    if (!m.name || !m.namespace || !m.uid) throw invalidArgument("sandbox metadata needs name, namespace and uid");
    const runtimeHandler = handler || this.o.defaultHandler;
    if (!this.o.handlers.includes(runtimeHandler)) throw invalidArgument(`unknown runtime handler "${handler}"`);
    if (config.namespaces.pid === "target")
      throw invalidArgument("pid namespace mode TARGET is only valid for containers");
    const cgroupDriver = this.o.cgroupDriver ?? "cgroupfs";
    validateCgroupParent(config.cgroupParent, cgroupDriver);
    const key = nameKey(config);
    const existing = this.names.get(key);
    if (existing) throw alreadyExists(`sandbox name ${key} is reserved for ${existing}`);
    const id = newId();
    this.names.set(key, id);
    const dir = join(this.o.stateDir, id);
    let rec: SandboxRecord = {
      id,
      state: "creating",
      config,
      runtimeHandler,
      cgroupDriver,
      createdAt: nowNs(),
      ip: "",
      additionalIps: [],
      networkUp: false,
      dir,
      shmMounted: false,
    };
    const set = (fn: (r: SandboxRecord) => void) => {
      rec = this.update(id, fn);
    };
    return this.locks.run(id, async () => {
      this.records.put(id, rec);
      try {
        await this.o.host.createDir(dir);
        const ipc = config.namespaces.ipc !== "node" ? join(dir, "ns", "ipc") : undefined;
        const uts = config.namespaces.network !== "node" ? join(dir, "ns", "uts") : undefined;
        // Persisted before pinning: a crash mid-pin (unshare outlives berthd) still gets the pins undone,
        // else the mount points would make the undo's rm of the sandbox dir fail with EBUSY at start-up.
        set((r) => {
          if (ipc) r.ipcPath = ipc;
          if (uts) r.utsPath = uts;
        });
        await this.o.host.pinNamespaces({ ...(ipc ? { ipc } : {}), ...(uts ? { uts } : {}) }, config.hostname);
        if (config.namespaces.ipc !== "node") {
          await this.o.host.mountShm(join(dir, "shm"));
          set((r) => {
            r.shmMounted = true;
          });
        }
        if (config.namespaces.network !== "node") {
          // Persisted before the pin exists: a crash mid-create still gets the pin removed.
          set((r) => {
            r.netnsPath = this.o.network.netnsPath(id);
          });
          const netnsPath = await this.o.network.createNetns(id);
          set((r) => {
            r.netnsPath = netnsPath;
            r.networkUp = true; // persisted before ADD: a crash mid-ADD still gets its DEL
          });
          const { ips } = await this.o.network.setUp(rec, options);
          set((r) => {
            r.ip = ips[0] ?? "";
            r.additionalIps = ips.slice(1);
          });
        }
        await this.o.host.writeFiles(dir, { hostname: config.hostname, ip: rec.ip, dns: config.dns });
        let infraPid: number | undefined;
        if (config.namespaces.pid === "pod") {
          // Persisted before start: a crash mid-start still gets it removed.
          set((r) => {
            r.infraId = id;
          });
          infraPid = await this.o.infra.start(rec);
        }
        set((r) => {
          if (infraPid !== undefined) r.infraPid = infraPid;
          r.state = "ready";
        });
        this.o.log.info({ sandboxId: id, pod: `${m.namespace}/${m.name}`, ip: rec.ip }, "sandbox ready");
        return id;
      } catch (err) {
        await this.teardown(rec, { forgetting: true }).catch((e) =>
          this.o.log.error({ err: e, sandboxId: id }, "rollback failed"),
        );
        // Undo after a failed run: the run's own error is the one reported; recovery removes leftovers.
        await this.o.host.removeDir(dir).catch(() => {});
        this.records.delete(id);
        this.names.delete(key);
        throw wrap(err, `run pod sandbox ${m.namespace}/${m.name}`);
      }
    });
  }

  /** StopPodSandbox: stops every container and tears down networking. Idempotent. */
  async stop(ref: string): Promise<void> {
    const id = this.resolve(ref);
    await this.containers?.stopAll(id);
    await this.locks.run(id, async () => {
      const rec = this.records.get(id);
      if (!rec) return;
      await this.teardown(rec, { removing: false });
      this.update(id, (r) => {
        r.state = "notready";
      });
    });
  }

  /** RemovePodSandbox: removes its containers too. Absent sandboxes are fine (idempotent). */
  async remove(ref: string): Promise<void> {
    let id: string;
    try {
      id = this.resolve(ref);
    } catch (err) {
      if (isKind(err, "NotFound")) return;
      throw err;
    }
    await this.containers?.stopAll(id);
    await this.containers?.removeAll(id);
    await this.locks.run(id, async () => {
      const rec = this.records.get(id);
      if (!rec) return;
      await this.teardown(rec);
      await this.o.host.removeDir(rec.dir);
      this.records.delete(id);
      if (this.names.get(nameKey(rec.config)) === id) this.names.delete(nameKey(rec.config));
    });
  }

  /**
   * UpdatePodSandboxResources: `apply` writes the pod's cgroup (see pod-resources.ts) and returns
   * the limits now in force, which are then recorded (PodSandboxStatus's verbose info shows them).
   */
  async resize(ref: string, apply: (rec: SandboxRecord) => Promise<ResourceLimits>): Promise<void> {
    const id = this.resolve(ref);
    await this.locks.run(id, async () => {
      const rec = this.get(id);
      rec.config.overheadAndResources = await apply(rec);
      this.records.put(id, rec);
    });
  }

  /** IDs of infra containers, which the container runtime must keep across restarts. */
  infraIds(): string[] {
    return this.records
      .list()
      .map((r) => r.infraId)
      .filter((id): id is string => id !== undefined);
  }

  /** The record of a sandbox by ID or unique prefix; NotFound otherwise. */
  get(ref: string): SandboxRecord {
    const rec = this.records.get(this.resolve(ref));
    if (!rec) throw notFound(`pod sandbox ${ref}`);
    return rec;
  }

  list(filter: SandboxFilter = {}): SandboxRecord[] {
    let ids = this.records.ids();
    if (filter.id) {
      try {
        const one = resolvePrefix(filter.id, ids);
        ids = one ? [one] : [];
      } catch {
        ids = [];
      }
    }
    return ids
      .map((id) => this.records.get(id))
      .filter((r): r is SandboxRecord => r !== undefined && r.state !== "creating")
      .filter((r) => !filter.state || r.state === filter.state)
      .filter((r) => matchLabels(r.config.labels, filter.labels));
  }

  /** Full ID from an ID or unique prefix; NotFound when none, InvalidArgument when ambiguous. */
  resolve(ref: string): string {
    if (!ref) throw invalidArgument("pod sandbox id is required");
    try {
      const id = resolvePrefix(ref, this.records.ids());
      if (!id) throw notFound(`pod sandbox ${ref}`);
      return id;
    } catch (err) {
      if (err instanceof AmbiguousPrefixError) throw invalidArgument(err.message);
      throw err;
    }
  }

  /**
   * Undoes whatever of a sandbox exists: infra process, network, netns, pinned namespaces, shm.
   * Every step is idempotent; `removing` also deletes the infra container's runtime state.
   * The netns stays while the network teardown fails, so a retried Stop/Remove can still DEL
   * inside it; with `forgetting` (the record is deleted whatever happens: a failed RunPodSandbox,
   * an interrupted one undone at start-up) nothing would retry, so it goes regardless.
   */
  private async teardown(
    rec: SandboxRecord,
    { removing = true, forgetting = false }: { removing?: boolean; forgetting?: boolean } = {},
  ): Promise<void> {
    const errors: unknown[] = [];
    const step = async (fn: () => Promise<void>) => {
      try {
        await fn();
      } catch (err) {
        errors.push(err);
      }
    };
    if (rec.infraId) {
      const infraId = rec.infraId;
      await step(() => this.o.infra.stop(infraId));
      if (removing) await step(() => this.o.infra.remove(infraId));
    }
    let networkUp = rec.networkUp;
    if (networkUp) {
      await step(async () => {
        await this.o.network.tearDown(rec);
        this.update(rec.id, (r) => {
          r.networkUp = false;
        });
        networkUp = false;
      });
    }
    if (rec.netnsPath && (!networkUp || forgetting)) {
      const path = rec.netnsPath;
      await step(() => this.o.network.removeNetns(path));
    }
    await step(() => this.o.host.unmountShm(join(rec.dir, "shm")));
    if (rec.ipcPath) {
      const p = rec.ipcPath;
      await step(() => this.o.host.unpinNamespace(p));
    }
    if (rec.utsPath) {
      const p = rec.utsPath;
      await step(() => this.o.host.unpinNamespace(p));
    }
    if (errors.length > 0) throw wrap(errors[0], `tear down sandbox ${rec.id}`);
  }
}

function nameKey(config: SandboxConfig): string {
  const m = config.metadata;
  return `${m.namespace}/${m.name}/${m.uid}/${m.attempt}`;
}
