import { mkdir } from "node:fs/promises";
import { isAbsolute, join, normalize } from "node:path";
import {
  alreadyExists,
  failedPrecondition,
  invalidArgument,
  isKind,
  messageOf,
  notFound,
  wrap,
} from "../errdefs/index.js";
import type { Logger } from "../log/index.js";
import { linuxResources } from "../oci/index.js";
import type { ContainerExit, ExecSyncResult } from "../runtime/index.js";
import type { Collection } from "../store/index.js";
import { type CgroupStats, readCgroupStats } from "../sys/index.js";
import { AmbiguousPrefixError, KeyedMutex, newId, resolvePrefix } from "../util/index.js";
import { cgroupDir } from "./cgroup-paths.js";
import { containerSpec, type ImageRuntimeConfig, stopSignalOf } from "./container-spec.js";
import { matchLabels } from "./filters.js";
import { prepareImageVolumes, releaseImageVolumes } from "./image-volumes.js";
import { START_ERROR_EXIT_CODE, START_ERROR_REASON, transitionContainer } from "./lifecycle.js";
import type { Runtime } from "./runtime.js";
import type { ContainerConfig, ContainerFilter, ContainerRecord, SandboxRecord } from "./types.js";
import { nowNs } from "./types.js";
import { resolveUser } from "./users.js";

/** An image as containers need it (implemented over `src/images` by the daemon). */
export interface ContainerImage {
  /** `sha256:<config digest>`. */
  id: string;
  /** The name to show (first repo tag, else the ID). */
  name: string;
  config: ImageRuntimeConfig;
  /** Chain ID of the top layer: the committed snapshot the rootfs is prepared on. */
  topChainId: string;
}

/** Image lookup for CreateContainer. */
export interface ContainerImages {
  /** The image the CRI ImageSpec names (tag, digest, ID or ID prefix), or undefined. */
  resolve(ref: string): Promise<ContainerImage | undefined>;
}

/** Container root filesystems (implemented over the snapshotter by the daemon). */
export interface ContainerRootfs {
  /** Prepares a writable snapshot on top of `chainId` and mounts it; returns the mount point. */
  prepare(containerId: string, chainId: string): Promise<string>;
  /** Unmounts and removes the container's snapshot. Idempotent. */
  release(containerId: string): Promise<void>;
  /** Disk used by the container's writable layer, and the directory it lives in. */
  usage(containerId: string): Promise<{ bytes: number; inodes: number; mountpoint: string } | undefined>;
}

/** A container lifecycle event (CRI GetContainerEvents). */
export interface ContainerEvent {
  type: "created" | "started" | "stopped" | "deleted";
  containerId: string;
  sandboxId: string;
  /** Nanoseconds since the epoch. */
  at: string;
}

/** Resource usage of one container (ContainerStats). */
export interface ContainerStatsRecord {
  record: ContainerRecord;
  cgroup: CgroupStats | undefined;
  /** CPU use since the previous sample, in nanocores; undefined on the first sample. */
  nanoCores: bigint | undefined;
  writableLayer: { bytes: number; inodes: number; mountpoint: string } | undefined;
  timestamp: bigint;
}

/** What containers need from the sandbox manager (SandboxManager implements it). */
export interface ContainerSandboxes {
  /** The sandbox by ID or unique prefix; NotFound otherwise. */
  get(ref: string): SandboxRecord;
  /** Full ID from an ID or unique prefix; NotFound when none, InvalidArgument when ambiguous. */
  resolve(ref: string): string;
  /** IDs of the infra containers the runtime runs for sandboxes (not containers of ours). */
  infraIds(): string[];
}

export interface ContainerManagerOptions {
  records: Collection<ContainerRecord>;
  sandboxes: ContainerSandboxes;
  runtime: Runtime;
  images: ContainerImages;
  rootfs: ContainerRootfs;
  log: Logger;
  /** Floor for oom_score_adj (restrict_oom_score_adj), or undefined to pass values through. */
  oomScoreAdjFloor?: number;
}

/**
 * Containers of pod sandboxes.
 *
 * ```
 * creating ──▶ created ──StartContainer──▶ running ──(exit seen by conmon)──▶ exited ──▶ (removed)
 *     │           ├──(runc start failed: reason StartError, exit code 128)──▶ exited
 *     │           └──StopContainer, or its process died before start──────▶ exited
 *     └──(failure: undone, record deleted)
 * ```
 * Every change of a record goes through `update()`, which checks the transition against the table
 * in lifecycle.ts and persists it in the same step. Operations on one container are serialised by
 * a per-ID lock, the recording of an exit included, so a quick exit is recorded after the start
 * that ran it: created -> running -> exited, in that order.
 *
 * A `creating` record found at start-up is a CreateContainer cut short; recover() undoes it.
 * Exits are learnt from the runtime's exit watcher (conmon's exit files), so a container that
 * exits while berthd is down is found with its real exit code and finish time on start.
 */
export class ContainerManager {
  private readonly locks = new KeyedMutex();
  /** "sandboxId/name/attempt" -> container ID. */
  private readonly names = new Map<string, string>();
  private readonly unsubscribe: () => void;
  private readonly listeners = new Set<(e: ContainerEvent) => void>();
  /** Previous CPU sample per container, for usage_nano_cores. */
  private readonly cpuSamples = new Map<string, { at: bigint; cpu: bigint }>();

  constructor(private readonly o: ContainerManagerOptions) {
    this.unsubscribe = o.runtime.onExit((exit) => {
      // A failed store write must not become an unhandled rejection: the exit file stays on disk
      // and the next status call or start-up recovery records it.
      this.recordExit(exit).catch((err: unknown) =>
        o.log.error({ err, containerId: exit.id }, "record container exit failed"),
      );
    });
  }

  /**
   * The one way a stored container record changes: `fn` edits a copy of it, a state change is checked
   * against CONTAINER_TRANSITIONS (FailedPrecondition, and nothing written, when it is not allowed),
   * then the record is persisted and the copy returned. Synchronous, so nothing interleaves between
   * the read and the write. NotFound when there is no record.
   */
  update(id: string, fn: (draft: ContainerRecord) => void): ContainerRecord {
    const current = this.o.records.get(id);
    if (!current) throw notFound(`container ${id}`);
    const draft = structuredClone(current);
    fn(draft);
    transitionContainer(id, current.state, draft.state);
    this.o.records.put(id, draft);
    return draft;
  }

  close(): void {
    this.unsubscribe();
    this.listeners.clear();
  }

  /** Calls `cb` for every container event from now on; returns the unsubscribe function. */
  onEvent(cb: (e: ContainerEvent) => void): () => void {
    this.listeners.add(cb);
    return () => this.listeners.delete(cb);
  }

  private emit(type: ContainerEvent["type"], rec: ContainerRecord): void {
    const e: ContainerEvent = { type, containerId: rec.id, sandboxId: rec.sandboxId, at: nowNs() };
    for (const cb of this.listeners) {
      try {
        cb(e);
      } catch (err) {
        this.o.log.error({ err }, "container event listener failed");
      }
    }
  }

  /** Reconciles records with what runc and conmon report after a daemon restart. */
  async recover(): Promise<void> {
    const records = this.o.records.list();
    const infra = new Set(this.o.sandboxes.infraIds());
    const result = await this.o.runtime.recover([...records.map((r) => r.id), ...infra]);
    for (const rec of records) {
      if (rec.state === "creating") {
        this.o.log.warn({ containerId: rec.id }, "undoing a container whose creation was interrupted");
        // Undo after a failed create: the create's own error is the one reported.
        await this.o.runtime.delete(rec.id).catch(() => {});
        await this.o.rootfs.release(rec.id).catch(() => {});
        this.o.records.delete(rec.id);
        continue;
      }
      this.names.set(nameKey(rec.sandboxId, rec.config), rec.id);
      const st = result.statuses.get(rec.id);
      if (!st || result.missing.includes(rec.id)) {
        if (rec.state === "running" || rec.state === "created") {
          // Its state directory is gone but runc may still run it (the directory was deleted, not the
          // container): it is reported exited, so nothing of it may run on unseen.
          await this.o.runtime
            .delete(rec.id)
            .catch((err: unknown) =>
              this.o.log.warn({ err, containerId: rec.id }, "kill container whose state is lost"),
            );
          this.finish(
            rec.id,
            { exitCode: 255, finishedAt: new Date(), oomKilled: false },
            "state lost (the host may have rebooted)",
          );
        }
        continue;
      }
      if (rec.state === "exited") {
        // Recorded as exited while its process lives on: berthd died between recording a failed start
        // and killing what `runc create` had made. Finish that, rather than bring an exited record back.
        if (st.state !== "stopped") await this.killAfterFailedStart(rec.id);
      } else if (st.state === "running" && rec.state === "created") {
        // `runc start` succeeded but berthd died before recording it.
        this.update(rec.id, (r) => {
          r.state = "running";
        });
      } else if (st.state === "stopped") {
        this.finish(
          rec.id,
          { exitCode: st.exitCode ?? 255, finishedAt: st.finishedAt ?? new Date(), oomKilled: st.oomKilled },
          st.message ?? "",
        );
      }
    }
    for (const id of result.unknown.filter((u) => !infra.has(u))) {
      this.o.log.warn({ containerId: id }, "removing runtime state no record knows of");
      // Undo after a failed start: the start's own error is the one reported.
      await this.o.runtime.delete(id).catch(() => {});
    }
  }

  /** CreateContainer: builds the bundle and has conmon run `runc create`. */
  async create(sandboxRef: string, config: ContainerConfig, options: { signal?: AbortSignal } = {}): Promise<string> {
    if (!config.name) throw invalidArgument("container metadata name is required");
    if (!config.image) throw invalidArgument("container image is required");
    const sandbox = this.o.sandboxes.get(sandboxRef);
    if (sandbox.state !== "ready") throw failedPrecondition(`pod sandbox ${sandbox.id} is not ready`);
    const key = nameKey(sandbox.id, config);
    const existing = this.names.get(key);
    if (existing)
      throw alreadyExists(`container name ${config.name} (attempt ${config.attempt}) is reserved for ${existing}`);
    const image = await this.o.images.resolve(config.image);
    if (!image) throw notFound(`image "${config.image}" is not present: pull it first`);
    const logPath = containerLogPath(sandbox.config.logDirectory, config.logPath);
    const id = newId();
    this.names.set(key, id);
    const rec: ContainerRecord = {
      id,
      sandboxId: sandbox.id,
      state: "creating",
      config,
      imageRef: config.image,
      imageId: image.id,
      createdAt: nowNs(),
      startedAt: "0",
      finishedAt: "0",
      exitCode: 0,
      reason: "",
      message: "",
      pid: 0,
      logPath,
      stopSignal: stopSignalOf(config, image.config),
      uid: 0,
      gid: 0,
      supplementalGids: [],
    };
    return this.locks.run(id, async () => {
      this.o.records.put(id, rec);
      try {
        const rootfs = await this.o.rootfs.prepare(id, image.topChainId);
        const user = await resolveUser(rootfs, {
          ...(config.runAsUser !== undefined ? { runAsUser: config.runAsUser } : {}),
          ...(config.runAsGroup !== undefined ? { runAsGroup: config.runAsGroup } : {}),
          runAsUsername: config.runAsUsername,
          supplementalGroups: config.supplementalGroups,
          supplementalGroupsPolicy: config.supplementalGroupsPolicy,
          imageUser: image.config.User ?? "",
          image: image.name,
          ...(options.signal ? { signal: options.signal } : {}),
        });
        const mounts = await prepareImageVolumes(id, config.mounts, this.o);
        const spec = await containerSpec({
          id,
          config: { ...config, mounts },
          sandbox,
          image: image.config,
          imageName: image.name,
          rootfs,
          user,
          ...(this.o.oomScoreAdjFloor !== undefined ? { oomScoreAdjFloor: this.o.oomScoreAdjFloor } : {}),
          ...(await this.pidNamespace(sandbox.id, config)),
        });
        // Root-only when we create it; an existing log directory (the kubelet's) keeps its mode.
        if (logPath) await mkdir(join(logPath, ".."), { recursive: true, mode: 0o700 });
        const created = await this.o.runtime.createContainer({
          id,
          spec,
          // Without a path from the kubelet the runtime logs into the container's state directory.
          ...(logPath ? { logPath } : {}),
          tty: config.tty,
          stdin: config.stdin,
          stdinOnce: config.stdinOnce,
          runtimeHandler: sandbox.runtimeHandler,
          ...(options.signal ? { signal: options.signal } : {}),
        });
        const done = this.update(id, (r) => {
          r.uid = user.uid;
          r.gid = user.gid;
          r.supplementalGids = user.additionalGids;
          r.pid = created.pid;
          r.state = "created";
        });
        this.emit("created", done);
        return id;
      } catch (err) {
        // The container is being removed anyway; a runtime that already lost it is fine.
        await this.o.runtime.delete(id).catch(() => {});
        await this.o.rootfs
          .release(id)
          .catch((e) => this.o.log.error({ err: e, containerId: id }, "rollback: release rootfs"));
        await releaseImageVolumes(id, config.mounts, this.o.rootfs).catch((e) =>
          this.o.log.error({ err: e, containerId: id }, "rollback: release image volumes"),
        );
        this.o.records.delete(id);
        this.names.delete(key);
        throw wrap(err, `create container ${config.name}`);
      }
    });
  }

  /**
   * StartContainer: only a created container can start. When `runc start` fails the container is
   * recorded exited with reason StartError, exit code 128 and the error as message (what
   * ContainerStatus shows), what `runc create` made is killed, and the error is thrown.
   */
  async start(ref: string): Promise<void> {
    const id = this.resolve(ref);
    await this.locks.run(id, async () => {
      const rec = this.mustGet(id);
      if (rec.state !== "created") throw failedPrecondition(`container ${id} is ${rec.state}, not created`);
      // Taken before `runc start`: a quick process can exit, with conmon recording the time, before runc returns.
      const startedAt = nowNs();
      try {
        await this.o.runtime.start(id);
      } catch (err) {
        const failed = this.update(id, (r) => {
          r.state = "exited";
          r.pid = 0;
          r.finishedAt = nowNs();
          r.exitCode = START_ERROR_EXIT_CODE;
          r.reason = START_ERROR_REASON;
          r.message = boundMessage(messageOf(err));
        });
        this.o.log.warn({ err, containerId: id }, "container start failed");
        this.emit("stopped", failed);
        await this.killAfterFailedStart(id);
        throw err;
      }
      const started = this.update(id, (r) => {
        r.state = "running";
        r.startedAt = startedAt;
      });
      this.emit("started", started);
    });
  }

  /** After a failed start: its init (or what is left of it) must not run on unseen. Failures are logged. */
  private async killAfterFailedStart(id: string): Promise<void> {
    await this.o.runtime
      .stop(id, { timeoutSec: 0 })
      .catch((err: unknown) => this.o.log.warn({ err, containerId: id }, "kill container whose start failed"));
  }

  /** StopContainer: stop signal, then SIGKILL after `timeoutSec`. Idempotent. */
  async stop(ref: string, timeoutSec: number): Promise<void> {
    const id = this.resolve(ref);
    await this.locks.run(id, async () => {
      const rec = this.mustGet(id);
      if (rec.state === "exited") return;
      await this.o.runtime.stop(id, { timeoutSec: Math.max(0, timeoutSec), stopSignal: rec.stopSignal });
      await this.refreshExit(id);
    });
  }

  /** RemoveContainer: kills a running container first. Absent containers are fine (idempotent). */
  async remove(ref: string): Promise<void> {
    let id: string;
    try {
      id = this.resolve(ref);
    } catch (err) {
      if (isKind(err, "NotFound")) return;
      throw err;
    }
    await this.locks.run(id, async () => {
      const rec = this.o.records.get(id);
      if (!rec) return;
      await this.o.runtime.delete(id);
      await this.o.rootfs.release(id);
      await releaseImageVolumes(id, rec.config.mounts, this.o.rootfs);
      this.o.records.delete(id);
      this.cpuSamples.delete(id);
      this.emit("deleted", rec);
      if (this.names.get(nameKey(rec.sandboxId, rec.config)) === id)
        this.names.delete(nameKey(rec.sandboxId, rec.config));
    });
  }

  /** Stops every container of a sandbox (for StopPodSandbox). */
  async stopAll(sandboxId: string): Promise<void> {
    const ids = this.o.records
      .list()
      .filter((r) => r.sandboxId === sandboxId && r.state !== "exited")
      .map((r) => r.id);
    await Promise.all(ids.map((id) => this.stop(id, 0)));
  }

  /** Removes every container of a sandbox (for RemovePodSandbox). */
  async removeAll(sandboxId: string): Promise<void> {
    const ids = this.o.records
      .list()
      .filter((r) => r.sandboxId === sandboxId)
      .map((r) => r.id);
    await Promise.all(ids.map((id) => this.remove(id)));
  }

  /** The record of a container by ID or unique prefix; NotFound otherwise. */
  get(ref: string): ContainerRecord {
    return this.mustGet(this.resolve(ref));
  }

  list(filter: ContainerFilter = {}): ContainerRecord[] {
    let ids = this.o.records.ids();
    if (filter.id) {
      try {
        const one = resolvePrefix(filter.id, ids);
        ids = one ? [one] : [];
      } catch {
        ids = [];
      }
    }
    let sandboxId = filter.sandboxId;
    if (sandboxId) {
      try {
        sandboxId = this.o.sandboxes.resolve(sandboxId);
      } catch {
        return [];
      }
    }
    return ids
      .map((id) => this.o.records.get(id))
      .filter((r): r is ContainerRecord => r !== undefined && r.state !== "creating")
      .filter((r) => !filter.state || r.state === filter.state)
      .filter((r) => !sandboxId || r.sandboxId === sandboxId)
      .filter((r) => matchLabels(r.config.labels, filter.labels));
  }

  /**
   * ExecSync: runs a command to completion in a running container. An aborted `signal` (the client
   * went away) kills the command and what it started, as the timeout does.
   */
  async execSync(
    ref: string,
    cmd: string[],
    timeoutSec: number,
    options: { signal?: AbortSignal } = {},
  ): Promise<ExecSyncResult> {
    const rec = this.get(ref);
    if (cmd.length === 0) throw invalidArgument("exec command is required");
    if (rec.state !== "running") throw failedPrecondition(`container ${rec.id} is not running`);
    return this.o.runtime.execSync(rec.id, cmd, { timeoutSec: Math.max(0, timeoutSec), ...options });
  }

  /** ReopenContainerLog: conmon starts a new file at the log path. */
  async reopenLog(ref: string): Promise<void> {
    const rec = this.get(ref);
    if (rec.state !== "running") throw failedPrecondition(`container ${rec.id} is not running`);
    await this.o.runtime.reopenLog(rec.id);
  }

  /** UpdateContainerResources: new cgroup limits for a created or running container. */
  async updateResources(ref: string, resources: ContainerConfig["resources"]): Promise<void> {
    const rec = this.get(ref);
    if (rec.state !== "running" && rec.state !== "created")
      throw failedPrecondition(`container ${rec.id} is ${rec.state}`);
    await this.o.runtime.updateResources(rec.id, linuxResources(resources));
    // Zero and empty fields mean "unset" (linuxResources leaves them out, so the cgroup keeps its value):
    // keep the recorded value for those so ContainerStatus reports what the cgroup has.
    const given = Object.entries(resources).filter(
      ([, v]) => v !== undefined && v !== 0 && v !== "" && !isEmptyObject(v),
    );
    this.update(rec.id, (r) => {
      r.config.resources = { ...r.config.resources, ...Object.fromEntries(given) };
    });
  }

  /** ContainerStats: cgroup CPU/memory and writable-layer usage. */
  async stats(ref: string): Promise<ContainerStatsRecord> {
    const rec = this.get(ref);
    const sandbox = this.o.sandboxes.get(rec.sandboxId);
    const cgroup = rec.state === "running" ? await readCgroupStats(cgroupDir(sandbox, rec.id)) : undefined;
    let nanoCores: bigint | undefined;
    if (cgroup) {
      const prev = this.cpuSamples.get(rec.id);
      if (prev && cgroup.timestamp > prev.at && cgroup.cpuUsageNs >= prev.cpu) {
        nanoCores = ((cgroup.cpuUsageNs - prev.cpu) * 1_000_000_000n) / (cgroup.timestamp - prev.at);
      }
      this.cpuSamples.set(rec.id, { at: cgroup.timestamp, cpu: cgroup.cpuUsageNs });
    }
    const writableLayer = await this.o.rootfs.usage(rec.id).catch(() => undefined);
    return { record: rec, cgroup, nanoCores, writableLayer, timestamp: BigInt(Date.now()) * 1_000_000n };
  }

  resolve(ref: string): string {
    if (!ref) throw invalidArgument("container id is required");
    try {
      const id = resolvePrefix(ref, this.o.records.ids());
      if (!id) throw notFound(`container ${ref}`);
      return id;
    } catch (err) {
      if (err instanceof AmbiguousPrefixError) throw invalidArgument(err.message);
      throw err;
    }
  }

  private mustGet(id: string): ContainerRecord {
    const rec = this.o.records.get(id);
    if (!rec || rec.state === "creating") throw notFound(`container ${id}`);
    return rec;
  }

  private async pidNamespace(sandboxId: string, config: ContainerConfig): Promise<{ pidNamespacePath?: string }> {
    if (config.namespaces.pid === "target") {
      const target = this.get(config.namespaces.targetId);
      if (target.sandboxId !== sandboxId) throw invalidArgument(`target container ${target.id} is in another pod`);
      if (target.state !== "running") throw failedPrecondition(`target container ${target.id} is not running`);
      return { pidNamespacePath: `/proc/${target.pid}/ns/pid` };
    }
    if (config.namespaces.pid === "pod") {
      // Only a pod with a shared PID namespace has an infra process holding one; the spec resolves the rest.
      const sb = this.o.sandboxes.get(sandboxId);
      if (sb.config.namespaces.pid !== "pod") return {};
      if (!sb.infraPid) throw failedPrecondition(`pod ${sandboxId} has no shared PID namespace`);
      return { pidNamespacePath: `/proc/${sb.infraPid}/ns/pid` };
    }
    return {};
  }

  private async refreshExit(id: string): Promise<void> {
    const rec = this.o.records.get(id);
    if (!rec || rec.state === "exited") return;
    let st: Awaited<ReturnType<Runtime["status"]>>;
    try {
      st = await this.o.runtime.status(id);
    } catch (err) {
      // Its runtime state was removed under us (and stop found nothing of it running): it can only
      // be reported as exited, so that StopContainer, StopPodSandbox and removal still finish.
      if (!isKind(err, "NotFound")) throw err;
      this.finish(id, { exitCode: 255, finishedAt: new Date(), oomKilled: false }, "runtime state lost");
      return;
    }
    if (st.state === "stopped")
      this.finish(
        id,
        { exitCode: st.exitCode ?? 255, finishedAt: st.finishedAt ?? new Date(), oomKilled: st.oomKilled },
        st.message ?? "",
      );
  }

  /**
   * An exit from the runtime's watcher. Taken under the container's lock, so it lands after a start or
   * create in progress (a quick exit follows its start) and never on a record that is being removed.
   */
  private async recordExit(exit: ContainerExit): Promise<void> {
    await this.locks.run(exit.id, async () => this.finish(exit.id, exit, ""));
  }

  /** Records an exit; a container already exited (or gone) keeps what was recorded first. */
  private finish(id: string, exit: Omit<ContainerExit, "id">, message: string): void {
    const rec = this.o.records.get(id);
    if (!rec || rec.state === "exited") return;
    const done = this.update(id, (r) => {
      r.state = "exited";
      r.exitCode = exit.exitCode;
      // The exit file's time has millisecond resolution; startedAt has nanoseconds, so an exit in the same
      // millisecond as the start could read as before it.
      const finished = BigInt(exit.finishedAt.getTime()) * 1_000_000n;
      r.finishedAt = (
        r.startedAt !== "0" && finished < BigInt(r.startedAt) ? BigInt(r.startedAt) : finished
      ).toString();
      if (r.startedAt === "0") r.startedAt = r.finishedAt;
      r.reason = exit.oomKilled ? "OOMKilled" : exit.exitCode === 0 ? "Completed" : "Error";
      r.message = message;
    });
    this.emit("stopped", done);
    this.o.log.info({ containerId: id, exitCode: exit.exitCode, reason: done.reason }, "container exited");
  }
}

/** Status messages stay small: a runtime error can quote a whole stderr. */
const MAX_MESSAGE = 4096;

function boundMessage(message: string): string {
  return message.length > MAX_MESSAGE ? `${message.slice(0, MAX_MESSAGE)}…` : message;
}

function isEmptyObject(v: unknown): boolean {
  return typeof v === "object" && v !== null && Object.keys(v).length === 0;
}

function nameKey(sandboxId: string, config: ContainerConfig): string {
  return `${sandboxId}/${config.name}/${config.attempt}`;
}

/** The log file: the sandbox's log directory joined with the container's relative log path. */
function containerLogPath(logDirectory: string, logPath: string): string {
  if (!logPath) return "";
  if (isAbsolute(logPath) && !logDirectory) return normalize(logPath);
  if (!logDirectory) throw invalidArgument(`log path ${logPath} is relative but the sandbox has no log directory`);
  const full = normalize(join(logDirectory, logPath));
  if (!full.startsWith(`${normalize(logDirectory)}/`))
    throw invalidArgument(`log path ${logPath} escapes the sandbox's log directory`);
  return full;
}
