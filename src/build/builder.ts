import { type ChildProcess, spawn } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { createReadStream, createWriteStream } from "node:fs";
import { rm, utimes, writeFile } from "node:fs/promises";
import { join, posix } from "node:path";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import type { ContentStore } from "../content/index.js";
import { isKind, kindOf, messageOf, RuntimeError, wrap } from "../errdefs/index.js";
import {
  type ContainerConfig,
  chainIds as chainIdsOf,
  type ImageConfig,
  type ImageRecord,
  type ImageService,
  type Platform,
} from "../images/index.js";
import type { Logger } from "../log/index.js";
import {
  type BindMount,
  buildSpec,
  withArgs,
  withBindMounts,
  withCgroupsPath,
  withCwd,
  withEnv,
  withHostNamespace,
  withHostname,
  withRootPath,
  withUser,
} from "../oci/index.js";
import { layerDirsOf, mountAll, type Snapshotter, unmount } from "../snapshots/index.js";
import type { Collection, Store } from "../store/index.js";
import { isMountPoint, readFileInRoot, runUnchecked } from "../sys/index.js";
import { ensureDir } from "../util/index.js";
import {
  type Dockerfile,
  expandVars,
  expandWord,
  type Instruction,
  parseDockerfile,
  parseKeyValues,
  splitWords,
} from "./dockerfile.js";
import { resolveInRoot } from "./fs-ops.js";
import { copyJob, diffJob, extractJob, hashSourcesJob } from "./jobs.js";
import { type BuildPlan, parseArg, planBuild, resolveStageRef, type Stage } from "./stages.js";

/**
 * The builder: runs a Dockerfile inside berthd on the node's own content store, snapshots and runc, and
 * records the result in the image store the pods use (no push/pull round trip).
 *
 * How a build runs:
 * - the context tar (sent by `berth build`) is extracted by a worker into `<state>/build/tmp/<build>/context`;
 * - the needed stages start at once (a stage waits only for the stages it names), so independent stages
 *   build concurrently;
 * - RUN and COPY/ADD steps each prepare an active snapshot `build-<build>-<n>` on the previous step's
 *   layer, mount it under `<state>/build/mnt/`, do their work (RUN: `runc run` on a spec built from the
 *   stage's env/user/workdir/shell; COPY: a worker copies), and the upper dir is diffed by a worker into
 *   a compressed OCI layer. The blob goes to the content store and the snapshot is committed under the
 *   layer's chain ID, exactly as a pulled layer would be, so a pod runs the image at once;
 * - metadata instructions only change the config and the cache key.
 *
 * Cache: each layer step has a key (parent key + the expanded instruction + for RUN the env and build args
 * it sees, for COPY/ADD the content hash of its sources; never mtimes). Keys map to the step's layer in the
 * store's `build-cache` collection, so the cache survives restarts; the layers and blobs it names are GC
 * roots (see {@link Builder.references}) until `berth builder prune`.
 *
 * Clean-up: every snapshot, mount and runc container a build makes is undone in reverse on failure or
 * cancellation; whatever a killed berthd left (`build-*` snapshots, mounts, runc state, temp dirs) is
 * removed by {@link createBuilder} at start-up.
 *
 * RUN steps are run by `runc run` in the foreground with pipes, not under conmon: a step is owned by its
 * build (it must not outlive it, unlike a container), and its output is streamed to the client as it comes.
 * That child is spawned from the event loop (the spawn worker cannot stream); a build starts a few.
 */

/** What a build is asked to do. */
export interface BuildSpec {
  dockerfile: string;
  dockerfileName: string;
  tags: string[];
  buildArgs: Record<string, string>;
  target?: string;
  noCache: boolean;
  compression: "gzip" | "zstd";
  format: "oci" | "docker";
  secrets: Map<string, Uint8Array>;
}

/** Progress of a build, in order. */
export type BuildEvent =
  | { type: "start"; step: number; name: string }
  | { type: "cached"; step: number }
  | { type: "output"; step: number; stream: 1 | 2; data: Uint8Array }
  | { type: "done"; step: number; durationMs: number }
  | { type: "error"; step: number; message: string; outputTail: string; exitCode: number };

export interface BuildResult {
  imageId: string;
  manifestDigest: string;
  tags: string[];
}

export interface BuilderOptions {
  images: ImageService;
  content: ContentStore;
  snapshotter: Snapshotter;
  store: Store;
  /** `<state>/build`: mounts, runc state, temp files. */
  stateDir: string;
  /** `<root>/build`: RUN --mount=type=cache directories. */
  dataDir: string;
  runcPath: string;
  platform: Platform;
  log: Logger;
}

interface Layer {
  digest: string;
  size: number;
  mediaType: string;
  diffId: string;
}

interface CacheEntry {
  /** Absent: the step changed no file. */
  layer?: Layer;
  /** The chain ID of the stage's top after the step. */
  chainId?: string;
  createdBy: string;
  at: number;
}

interface History {
  created?: string;
  created_by?: string;
  empty_layer?: boolean;
  comment?: string;
}

/** What a stage has built so far. */
interface StageState {
  config: ContainerConfig & Record<string, unknown>;
  os: string;
  architecture: string;
  variant?: string;
  layers: Layer[];
  history: History[];
  key: string;
  args: Map<string, string | undefined>;
  /** CMD was set in this stage (an ENTRYPOINT then keeps it). */
  cmdSet: boolean;
}

const SNAPSHOT_PREFIX = "build-";
const CONTEXT_MAX_BYTES = 64 * 1024 * 1024 * 1024;
const OUTPUT_TAIL_LINES = 20;
const PROXY_ARGS = ["HTTP_PROXY", "HTTPS_PROXY", "FTP_PROXY", "NO_PROXY", "ALL_PROXY"].flatMap((a) => [
  a,
  a.toLowerCase(),
]);
const MEDIA = {
  ociManifest: "application/vnd.oci.image.manifest.v1+json",
  ociConfig: "application/vnd.oci.image.config.v1+json",
  ociGzip: "application/vnd.oci.image.layer.v1.tar+gzip",
  ociZstd: "application/vnd.oci.image.layer.v1.tar+zstd",
  dockerManifest: "application/vnd.docker.distribution.manifest.v2+json",
  dockerConfig: "application/vnd.docker.container.image.v1+json",
  dockerGzip: "application/vnd.docker.image.rootfs.diff.tar.gzip",
};

/** Opens the builder, removing what a build interrupted by a crash left behind. */
export async function createBuilder(options: BuilderOptions): Promise<Builder> {
  const b = new Builder(options);
  await b.recover();
  return b;
}

export class Builder {
  private readonly cache: Collection<CacheEntry>;
  private readonly runcRoot: string;
  private readonly closing = new AbortController();

  constructor(private readonly o: BuilderOptions) {
    this.cache = o.store.collection<CacheEntry>("build-cache");
    this.runcRoot = join(o.stateDir, "runc");
  }

  /** Removes debris of builds a crash interrupted: runc containers, mounts, snapshots, temp files. */
  async recover(): Promise<void> {
    for (const d of [this.o.stateDir, this.runcRoot, join(this.o.stateDir, "mnt"), join(this.o.stateDir, "tmp")])
      await ensureDir(d, 0o700);
    await ensureDir(this.o.dataDir, 0o700);
    const listed = await runUnchecked(this.o.runcPath, ["--root", this.runcRoot, "list", "-q"], { timeoutMs: 30_000 });
    for (const id of listed.stdout.split("\n").filter(Boolean)) {
      await runUnchecked(this.o.runcPath, ["--root", this.runcRoot, "delete", "--force", id], { timeoutMs: 30_000 });
    }
    for (const s of await this.o.snapshotter.list()) {
      if (s.kind !== "active" || !s.key.startsWith(SNAPSHOT_PREFIX)) continue;
      const mp = join(this.o.stateDir, "mnt", s.key);
      while (await isMountPoint(mp)) await unmount(mp, { detach: true });
      await this.o.snapshotter
        .remove(s.key)
        .catch((err: unknown) => this.o.log.warn({ err, snapshot: s.key }, "remove stale build snapshot"));
    }
    await rm(join(this.o.stateDir, "mnt"), { recursive: true, force: true });
    await rm(join(this.o.stateDir, "tmp"), { recursive: true, force: true });
    await ensureDir(join(this.o.stateDir, "mnt"), 0o700);
    await ensureDir(join(this.o.stateDir, "tmp"), 0o700);
  }

  /** Blobs and chain IDs the build cache keeps (GC roots until pruned). */
  references(): { blobs: string[]; chainIds: string[] } {
    const blobs: string[] = [];
    const chains: string[] = [];
    for (const e of this.cache.list()) {
      if (e.layer) blobs.push(e.layer.digest);
      if (e.chainId) chains.push(e.chainId);
    }
    return { blobs, chainIds: chains };
  }

  /** Drops the whole build cache, then collects what only it kept. Resolves to the number of entries dropped. */
  async prune(): Promise<number> {
    const ids = this.cache.ids();
    this.o.store.transaction(() => {
      for (const id of ids) this.cache.delete(id);
    });
    await this.o.images.collectGarbage();
    return ids.length;
  }

  /**
   * Builds `spec` with the context tar streamed in `context`. Throws InvalidArgument (parse errors, missing
   * sources) or FailedPrecondition (a failing RUN) naming the Dockerfile line; Canceled when `signal` aborts.
   */
  async build(
    spec: BuildSpec,
    context: AsyncIterable<Uint8Array>,
    options: { signal: AbortSignal; emit: (e: BuildEvent) => void },
  ): Promise<BuildResult> {
    const id = randomBytes(6).toString("hex");
    const tmp = join(this.o.stateDir, "tmp", id);
    await ensureDir(tmp, 0o700);
    const run = new BuildRun(this.o, this.cache, this.runcRoot, spec, id, tmp, options.emit, [
      options.signal,
      this.closing.signal,
    ]);
    try {
      const df = parseDockerfile(spec.dockerfile, spec.dockerfileName);
      const plan = planBuild(df, {
        ...(spec.target ? { target: spec.target } : {}),
        buildArgs: spec.buildArgs,
        platform: this.o.platform,
      });
      const contextTar = join(tmp, "context.tar");
      await pipeline(Readable.from(context), createWriteStream(contextTar, { mode: 0o600 }), { signal: run.signal });
      const contextDir = join(tmp, "context");
      await ensureDir(contextDir, 0o700);
      await extractJob(contextTar, contextDir, CONTEXT_MAX_BYTES, run.signal);
      await rm(contextTar, { force: true });
      return await run.execute(df, plan, contextDir);
    } finally {
      await run.cleanUp();
      await rm(tmp, { recursive: true, force: true }).catch((err: unknown) =>
        this.o.log.warn({ err, dir: tmp }, "remove build temp dir"),
      );
    }
  }

  /** Cancels builds in flight (daemon shutdown). */
  close(): void {
    this.closing.abort(new RuntimeError("Canceled", "builder closing"));
  }
}

/** A failing RUN: carries its exit code and output tail to the RPC edge. */
class StepFailure extends RuntimeError {
  constructor(
    message: string,
    readonly exitCode: number,
    readonly outputTail: string,
  ) {
    super("FailedPrecondition", message);
  }
}

/** One build in progress. */
class BuildRun {
  readonly signal: AbortSignal;
  private readonly failed = new AbortController();
  private readonly undo: Array<() => Promise<void>> = [];
  private readonly stages = new Map<number, Promise<StageState>>();
  private steps = 0;
  private df!: Dockerfile;
  private plan!: BuildPlan;
  private context = "";

  constructor(
    private readonly o: BuilderOptions,
    private readonly cache: Collection<CacheEntry>,
    private readonly runcRoot: string,
    private readonly spec: BuildSpec,
    private readonly id: string,
    private readonly tmp: string,
    private readonly emit: (e: BuildEvent) => void,
    signals: AbortSignal[],
  ) {
    this.signal = AbortSignal.any([...signals, this.failed.signal]);
  }

  async execute(df: Dockerfile, plan: BuildPlan, context: string): Promise<BuildResult> {
    this.df = df;
    this.plan = plan;
    this.context = context;
    // Every needed stage starts now; one failing stops the others.
    const all = plan.needed.map((i) => this.stage(i));
    const settled = await Promise.allSettled(all);
    // The first real failure, not the cancellations it caused in the other stages.
    const reasons = settled.filter((s) => s.status === "rejected").map((s) => (s as PromiseRejectedResult).reason);
    const failure = reasons.find((r) => !isKind(r, "Canceled")) ?? reasons[0];
    if (failure !== undefined) throw failure;
    const st = await this.stage(plan.target);
    return this.commitImage(st);
  }

  async cleanUp(): Promise<void> {
    for (const u of this.undo.reverse()) {
      try {
        await u();
      } catch (err) {
        this.o.log.warn({ err, build: this.id }, "build clean-up step failed");
      }
    }
  }

  private stage(i: number): Promise<StageState> {
    let p = this.stages.get(i);
    if (!p) {
      p = this.runStage(i);
      p.catch((err: unknown) => {
        if (!this.failed.signal.aborted) this.failed.abort(err);
      });
      this.stages.set(i, p);
    }
    return p;
  }

  private label(s: Stage, n: number): string {
    return `[${s.name ?? `stage-${s.index}`} ${n}/${s.instructions.length + 1}]`;
  }

  private locate(inst: Instruction, err: unknown): RuntimeError {
    if (err instanceof StepFailure) return err;
    if (isKind(err, "Canceled")) return wrap(err, "build");
    const msg = messageOf(err);
    if (msg.startsWith(`${this.df.file}:`)) return err instanceof RuntimeError ? err : wrap(err, "build");
    return new RuntimeError(kindOf(err), `${this.df.file}:${inst.line}: ${short(inst.text)}: ${msg}`);
  }

  private async runStage(i: number): Promise<StageState> {
    const s = this.plan.stages[i] as Stage;
    let st: StageState;
    const step = ++this.steps;
    const started = Date.now();
    const shown = `FROM ${s.base}${s.name ? ` AS ${s.name}` : ""}`;
    this.emit({ type: "start", step, name: `${this.label(s, 1)} ${shown}` });
    try {
      if (s.baseStage !== undefined) st = cloneState(await this.stage(s.baseStage));
      else if (s.base.toLowerCase() === "scratch") st = this.scratch();
      else st = await this.fromImage(s);
    } catch (err) {
      throw this.locate(s.from, err);
    }
    st.args = new Map();
    st.cmdSet = false;
    this.emit({ type: "done", step, durationMs: Date.now() - started });
    const triggers = Array.isArray(st.config.OnBuild) ? (st.config.OnBuild as string[]) : [];
    if (s.baseStage === undefined && triggers.length > 0) {
      st.config.OnBuild = null;
      for (const t of triggers) {
        for (const inst of parseDockerfile(t, `${this.df.file} (ONBUILD)`).instructions) {
          await this.instruction(st, { ...inst, line: s.from.line }, s, 1);
        }
      }
    }
    let n = 1;
    for (const inst of s.instructions) await this.instruction(st, inst, s, ++n);
    return st;
  }

  private scratch(): StageState {
    const p = this.o.platform;
    return {
      config: { Env: [`PATH=${DEFAULT_PATH}`] },
      os: p.os,
      architecture: p.architecture,
      ...(p.variant ? { variant: p.variant } : {}),
      layers: [],
      history: [],
      key: "scratch",
      args: new Map(),
      cmdSet: false,
    };
  }

  private async resolveImage(ref: string, platform?: string): Promise<ImageRecord> {
    if (platform !== undefined) {
      const want = platform.split("/");
      const p = this.o.platform;
      if (want[0] !== p.os || (want[1] !== undefined && want[1] !== p.architecture))
        throw new RuntimeError("InvalidArgument", `platform ${platform}: cross-platform builds are not supported`);
    }
    const local = this.o.images.status(ref);
    if (local) return local;
    return this.o.images.pull(ref, { signal: this.signal });
  }

  private async fromImage(s: Stage): Promise<StageState> {
    const rec = await this.resolveImage(s.base, s.platform);
    const manifest = JSON.parse((await this.o.content.readBlob(rec.manifestDigest)).toString("utf8")) as {
      layers?: Array<{ mediaType: string; digest: string; size: number }>;
    };
    const diffIds = rec.config.rootfs.diff_ids;
    const layers = (manifest.layers ?? []).map((l, i) => ({
      mediaType: l.mediaType,
      digest: l.digest,
      size: l.size,
      diffId: diffIds[i] ?? "",
    }));
    const c = rec.config;
    return {
      config: structuredClone((c.config ?? {}) as ContainerConfig & Record<string, unknown>),
      os: c.os,
      architecture: c.architecture,
      ...(c.variant ? { variant: c.variant } : {}),
      layers,
      history: structuredClone(c.history ?? []),
      key: rec.id,
      args: new Map(),
      cmdSet: false,
    };
  }

  /** The variables a step sees: ENV wins over ARG (Docker's rule). */
  private vars(st: StageState): (n: string) => string | undefined {
    const env = envMap(st.config.Env ?? []);
    return (n) => (env.has(n) ? env.get(n) : st.args.get(n));
  }

  private async instruction(st: StageState, inst: Instruction, s: Stage, n: number): Promise<void> {
    try {
      await this.apply(st, inst, s, n);
    } catch (err) {
      throw this.locate(inst, err);
    }
  }

  private meta(st: StageState, inst: Instruction, what: unknown): void {
    st.key = hashKey(st.key, [inst.keyword, what]);
    st.history.push({
      ...this.created(),
      created_by: `${inst.keyword} ${inst.args}`.trim(),
      comment: "berth build",
      empty_layer: true,
    });
  }

  private created(): { created: string } {
    const epoch = this.epoch();
    return { created: new Date(epoch !== undefined ? epoch * 1000 : Date.now()).toISOString() };
  }

  private epoch(): number | undefined {
    const v = this.spec.buildArgs.SOURCE_DATE_EPOCH;
    return v !== undefined && /^\d+$/.test(v) ? Number(v) : undefined;
  }

  private async apply(st: StageState, inst: Instruction, s: Stage, n: number): Promise<void> {
    const esc = this.df.escape;
    const vars = this.vars(st);
    const c = st.config;
    switch (inst.keyword) {
      case "ENV": {
        const env = envMap(c.Env ?? []);
        const pairs = parseKeyValues(inst.args, vars, esc, true);
        for (const [k, v] of pairs) env.set(k, v);
        c.Env = [...env].map(([k, v]) => `${k}=${v}`);
        return this.meta(st, inst, pairs);
      }
      case "ARG": {
        const a = parseArg(inst, this.df.file);
        const value =
          this.spec.buildArgs[a.name] ??
          (a.quotedValue !== undefined ? expandWord(a.quotedValue, vars, esc) : this.plan.globalArgs.get(a.name));
        st.args.set(a.name, value);
        // The value enters the keys of the RUN steps that see it, not this one (Docker's rule).
        st.key = hashKey(st.key, ["ARG", a.name]);
        return;
      }
      case "LABEL": {
        const labels = { ...(c.Labels ?? {}) };
        for (const [k, v] of parseKeyValues(inst.args, vars, esc, true)) labels[k] = v;
        c.Labels = labels;
        return this.meta(st, inst, labels);
      }
      case "MAINTAINER":
        return this.meta(st, inst, inst.args);
      case "EXPOSE": {
        const ports = { ...(c.ExposedPorts ?? {}) };
        for (const w of splitWords(inst.args, vars, esc)) {
          const m = /^(\d+)(?:-(\d+))?(?:\/(tcp|udp|sctp))?$/i.exec(w);
          if (!m) throw new RuntimeError("InvalidArgument", `invalid port ${JSON.stringify(w)}`);
          const proto = (m[3] ?? "tcp").toLowerCase();
          for (let p = Number(m[1]); p <= Number(m[2] ?? m[1]); p++) ports[`${p}/${proto}`] = {};
        }
        c.ExposedPorts = ports;
        return this.meta(st, inst, ports);
      }
      case "WORKDIR": {
        const dir = expandWord(inst.args, vars, esc);
        c.WorkingDir = posix.resolve(c.WorkingDir || "/", dir);
        return this.meta(st, inst, c.WorkingDir);
      }
      case "USER":
        c.User = expandWord(inst.args, vars, esc);
        return this.meta(st, inst, c.User);
      case "VOLUME": {
        const vols = { ...(c.Volumes ?? {}) };
        for (const v of inst.json ?? splitWords(inst.args, vars, esc)) vols[v] = {};
        c.Volumes = vols;
        return this.meta(st, inst, vols);
      }
      case "STOPSIGNAL":
        c.StopSignal = expandWord(inst.args, vars, esc);
        return this.meta(st, inst, c.StopSignal);
      case "SHELL":
        if (!inst.json || inst.json.length === 0)
          throw new RuntimeError("InvalidArgument", 'SHELL requires a JSON array, e.g. ["/bin/sh", "-c"]');
        c.Shell = inst.json;
        return this.meta(st, inst, inst.json);
      case "CMD":
        c.Cmd = this.command(st, inst);
        st.cmdSet = true;
        return this.meta(st, inst, c.Cmd);
      case "ENTRYPOINT":
        c.Entrypoint = this.command(st, inst);
        if (!st.cmdSet) c.Cmd = null;
        return this.meta(st, inst, c.Entrypoint);
      case "HEALTHCHECK":
        c.Healthcheck = healthcheck(inst, this.shell(st));
        return this.meta(st, inst, c.Healthcheck);
      case "ONBUILD": {
        const trigger = inst.args.trim();
        const kw = /^(\S+)/.exec(trigger)?.[1]?.toUpperCase();
        if (!kw || kw === "ONBUILD" || kw === "FROM" || kw === "MAINTAINER")
          throw new RuntimeError("InvalidArgument", `${kw ?? "an empty"} instruction cannot be an ONBUILD trigger`);
        c.OnBuild = [...((c.OnBuild as string[] | null | undefined) ?? []), trigger];
        return this.meta(st, inst, c.OnBuild);
      }
      case "RUN":
        return this.run(st, inst, s, n);
      case "COPY":
      case "ADD":
        return this.copy(st, inst, s, n);
      default:
        throw new RuntimeError("InvalidArgument", `${inst.keyword} is not allowed inside a stage`);
    }
  }

  private shell(st: StageState): string[] {
    return Array.isArray(st.config.Shell) ? (st.config.Shell as string[]) : ["/bin/sh", "-c"];
  }

  private command(st: StageState, inst: Instruction): string[] {
    return inst.json ?? [...this.shell(st), inst.args];
  }

  // ---- layer steps ---------------------------------------------------------------------------------

  /** Looks `key` up; a hit whose layer is still stored is applied to `st`. */
  private cached(st: StageState, key: string): boolean {
    if (this.spec.noCache) return false;
    const e = this.cache.get(key);
    if (!e) return false;
    if (e.layer) {
      st.layers.push(e.layer);
      st.history.push({ ...this.created(), created_by: e.createdBy, comment: "berth build" });
    } else st.history.push({ ...this.created(), created_by: e.createdBy, comment: "berth build", empty_layer: true });
    st.key = key;
    return true;
  }

  private async cacheValid(key: string): Promise<boolean> {
    const e = this.cache.get(key);
    if (!e?.layer) return e !== undefined;
    const [blob, snap] = await Promise.all([
      this.o.content.info(e.layer.digest),
      e.chainId ? this.o.snapshotter.stat(e.chainId) : undefined,
    ]);
    return blob !== undefined && snap?.kind === "committed";
  }

  private topChain(st: StageState): string | undefined {
    return chainIdsOf(st.layers.map((l) => l.diffId)).at(-1);
  }

  /** Prepares and mounts an active snapshot on `chain` (undone at the end of the build). */
  private async mountSnapshot(
    chain: string | undefined,
    name: string,
  ): Promise<{ key: string; mp: string; upper: string }> {
    const key = `${SNAPSHOT_PREFIX}${this.id}-${name}`;
    const mounts = await this.o.snapshotter.prepare(key, chain);
    this.undo.push(async () => {
      if (await this.o.snapshotter.stat(key)) await this.o.snapshotter.remove(key);
    });
    const mp = join(this.o.stateDir, "mnt", key);
    await ensureDir(mp, 0o700);
    await mountAll(mounts, mp, { signal: this.signal });
    const unmounted = { done: false };
    this.undo.push(async () => {
      if (!unmounted.done && (await isMountPoint(mp))) await unmount(mp, { detach: true });
      await rm(mp, { recursive: true, force: true });
    });
    return { key, mp, upper: layerDirsOf(mounts).upper };
  }

  /**
   * Runs a layer step: `work` changes the mounted root; the upper dir becomes the step's layer (or none
   * when it changed nothing), committed under its chain ID and recorded in the cache under `key`.
   */
  private async layerStep(
    st: StageState,
    key: string,
    createdBy: string,
    step: number,
    work: (root: string) => Promise<void>,
  ): Promise<void> {
    const snap = await this.mountSnapshot(this.topChain(st), String(step));
    await work(snap.mp);
    if (this.signal.aborted) throw new RuntimeError("Canceled", "build canceled");
    await unmount(snap.mp);
    const opaque = await opaqueDirs(snap.upper);
    const out = join(this.tmp, `layer-${step}`);
    const r = await diffJob(
      {
        upper: snap.upper,
        opaque,
        out,
        compression: this.spec.compression,
        ...(this.epoch() !== undefined ? { epoch: this.epoch() as number } : {}),
      },
      this.signal,
    );
    const entry: CacheEntry = { createdBy, at: Date.now() };
    if (r.empty) {
      await this.o.snapshotter.remove(snap.key);
      st.history.push({ ...this.created(), created_by: createdBy, comment: "berth build", empty_layer: true });
    } else {
      await this.o.content.ingest({ digest: r.digest, size: r.size }, createReadStream(out), { signal: this.signal });
      await rm(out, { force: true });
      const layer: Layer = {
        digest: r.digest,
        size: r.size,
        diffId: r.diffId,
        mediaType: this.spec.compression === "zstd" ? MEDIA.ociZstd : MEDIA.ociGzip,
      };
      const chain = chainIdsOf([...st.layers.map((l) => l.diffId), r.diffId]).at(-1) as string;
      try {
        await this.o.snapshotter.commit(chain, snap.key);
      } catch (err) {
        // Another build (or a pull) committed the same layer on the same parent first: use that one.
        if (!isKind(err, "AlreadyExists")) throw err;
        await this.o.snapshotter.remove(snap.key);
      }
      entry.layer = layer;
      entry.chainId = chain;
      st.layers.push(layer);
      st.history.push({ ...this.created(), created_by: createdBy, comment: "berth build" });
    }
    this.cache.put(key, entry);
    st.key = key;
  }

  private async run(st: StageState, inst: Instruction, s: Stage, n: number): Promise<void> {
    const vars = this.vars(st);
    let argv: string[];
    if (inst.json) argv = inst.json;
    else {
      let script = inst.args;
      for (const h of inst.heredocs) {
        const body = h.quoted ? h.body : expandVars(h.body, vars, this.df.escape);
        // `RUN <<EOF` alone runs the body as the script; otherwise the shell reads the heredoc itself.
        script =
          inst.args.trim() === `<<${h.name}` || inst.args.trim() === `<<-${h.name}`
            ? body
            : `${script}\n${body}${h.name}`;
      }
      argv = [...this.shell(st), script];
    }
    let network = "default";
    const mounts: RunMount[] = [];
    for (const f of inst.flags) {
      if (f.name === "network") {
        if (!["default", "none", "host"].includes(f.value))
          throw new RuntimeError("InvalidArgument", `--network=${f.value}: expected default, none or host`);
        network = f.value;
      } else if (f.name === "mount") mounts.push(parseMount(f.value));
      else throw new RuntimeError("InvalidArgument", `unknown flag --${f.name}`);
    }
    const env = envMap(st.config.Env ?? []);
    for (const [k, v] of st.args) if (v !== undefined && !env.has(k)) env.set(k, v);
    for (const p of PROXY_ARGS) {
      const v = this.spec.buildArgs[p];
      if (v !== undefined && !env.has(p)) env.set(p, v);
    }
    const envList = [...env].map(([k, v]) => `${k}=${v}`);
    const user = st.config.User || "root";
    const cwd = st.config.WorkingDir || "/";
    const key = hashKey(st.key, [
      "RUN",
      this.spec.compression,
      argv,
      envList,
      user,
      cwd,
      network,
      mounts.map((m) => ({ ...m, secretData: undefined })),
    ]);
    const step = ++this.steps;
    const createdBy = `RUN ${inst.json ? JSON.stringify(inst.json) : `/bin/sh -c ${inst.args}`}`;
    const name = `${this.label(s, n)} ${short(inst.text, 200)}`;
    const started = Date.now();
    this.emit({ type: "start", step, name });
    if ((await this.cacheValid(key)) && this.cached(st, key)) {
      this.emit({ type: "cached", step });
      this.emit({ type: "done", step, durationMs: Date.now() - started });
      return;
    }
    await this.layerStep(st, key, createdBy, step, async (root) => {
      const binds = await this.runMounts(mounts, root, step);
      const spec = await buildSpec(
        withRootPath(root),
        withArgs(argv),
        withEnv(envList),
        withCwd(cwd),
        withUser(await resolveUser(root, user, this.signal)),
        withHostname("buildkitsandbox"),
        withCgroupsPath(`/berth-build/${this.id}-${step}`),
        ...(network === "none" ? [] : [withHostNamespace("network")]),
        withBindMounts(binds.binds),
      );
      try {
        await this.runContainer(`${this.id}-${step}`, spec, step, inst);
      } finally {
        await binds.cleanUp();
      }
    });
    this.emit({ type: "done", step, durationMs: Date.now() - started });
  }

  /** Bind mounts of `RUN --mount`; mount points RUN created are removed again before the diff. */
  private async runMounts(
    mounts: RunMount[],
    root: string,
    step: number,
  ): Promise<{ binds: BindMount[]; cleanUp: () => Promise<void> }> {
    const binds: BindMount[] = [];
    const created: string[] = [];
    const noteMissing = async (target: string) => {
      const parts = target.split("/").filter(Boolean);
      for (let i = 1; i <= parts.length; i++) {
        const p = `/${parts.slice(0, i).join("/")}`;
        // Undefined means absent; a directory or a non-empty file fails the read, which means present.
        const exists = await readFileInRoot(root, p, { maxBytes: 0, signal: this.signal }).then(
          (b) => b !== undefined,
          (err: unknown) => !isKind(err, "NotFound"),
        );
        if (!exists) {
          created.push(p);
          break;
        }
      }
    };
    for (const m of mounts) {
      const target = m.target.startsWith("/") ? m.target : posix.join("/", m.target);
      await noteMissing(target);
      if (m.type === "cache") {
        const dir = join(
          this.o.dataDir,
          "cache",
          createHash("sha256")
            .update(m.id || target)
            .digest("hex"),
        );
        await ensureDir(dir, 0o755);
        binds.push({ hostPath: dir, containerPath: target });
      } else if (m.type === "secret") {
        const data = this.spec.secrets.get(m.id);
        if (data === undefined) {
          if (m.required)
            throw new RuntimeError("InvalidArgument", `secret ${m.id} was not given (--secret id=${m.id},src=...)`);
          continue;
        }
        const file = join(this.tmp, `secret-${step}-${binds.length}`);
        await writeFile(file, data, { mode: 0o400 });
        binds.push({ hostPath: file, containerPath: target, readonly: true });
      } else {
        let srcRoot = this.context;
        if (m.from) srcRoot = await this.sourceRoot(m.from, step);
        binds.push({ hostPath: resolveInRoot(srcRoot, m.source || "/"), containerPath: target, readonly: !m.rw });
      }
    }
    return {
      binds,
      cleanUp: async () => {
        // Mount points runc made for the binds are not part of the step's result.
        for (const p of created.reverse()) await rm(join(root, p), { recursive: true, force: true });
      },
    };
  }

  /** `runc run` in the foreground: output streamed as events; a failure carries its exit code and tail. */
  private async runContainer(cid: string, spec: unknown, step: number, inst: Instruction): Promise<void> {
    const bundle = join(this.tmp, `bundle-${step}`);
    await ensureDir(bundle, 0o700);
    await writeFile(join(bundle, "config.json"), JSON.stringify(spec));
    const tail = new TailBuffer(OUTPUT_TAIL_LINES);
    const child: ChildProcess = spawn(this.o.runcPath, ["--root", this.runcRoot, "run", "--bundle", bundle, cid], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    this.undo.push(async () => {
      await runUnchecked(this.o.runcPath, ["--root", this.runcRoot, "delete", "--force", cid], { timeoutMs: 30_000 });
    });
    const onAbort = () => {
      void runUnchecked(this.o.runcPath, ["--root", this.runcRoot, "kill", "--all", cid, "KILL"], {
        timeoutMs: 30_000,
      });
    };
    this.signal.addEventListener("abort", onAbort, { once: true });
    const forward = (stream: 1 | 2) => (data: Buffer) => {
      tail.push(data);
      this.emit({ type: "output", step, stream, data });
    };
    child.stdout?.on("data", forward(1));
    child.stderr?.on("data", forward(2));
    const code = await new Promise<number>((resolve, reject) => {
      child.on("error", (err) => reject(new RuntimeError("Internal", `runc run: ${err.message}`)));
      child.on("close", (c, sig) => resolve(c ?? (sig ? 128 + 9 : 1)));
    }).finally(() => this.signal.removeEventListener("abort", onAbort));
    await runUnchecked(this.o.runcPath, ["--root", this.runcRoot, "delete", "--force", cid], { timeoutMs: 30_000 });
    if (this.signal.aborted) throw new RuntimeError("Canceled", "build canceled");
    if (code !== 0) {
      const message = `${this.df.file}:${inst.line}: ${short(inst.text)}: did not complete successfully: exit code ${code}`;
      const outputTail = tail.text();
      this.emit({ type: "error", step, message, outputTail, exitCode: code });
      throw new StepFailure(message, code, outputTail);
    }
  }

  /** The root another stage or an image presents to `COPY --from` / `RUN --mount from=` (mounted for the build). */
  private async sourceRoot(from: string, step: number): Promise<string> {
    const expanded = expandWord(from, (n) => this.plan.globalArgs.get(n), this.df.escape);
    const current = this.plan.stages.length;
    const idx = resolveStageRef(this.plan.stages, expanded, current);
    let chain: string | undefined;
    if (idx !== undefined) chain = this.topChain(await this.stage(idx));
    else {
      const rec = await this.resolveImage(expanded);
      chain = rec.chainIds.at(-1);
    }
    const snap = await this.mountSnapshot(chain, `${step}-from-${randomBytes(3).toString("hex")}`);
    return snap.mp;
  }

  private async copy(st: StageState, inst: Instruction, s: Stage, n: number): Promise<void> {
    const vars = this.vars(st);
    const esc = this.df.escape;
    let from: string | undefined;
    let chown: string | undefined;
    let chmod: number | undefined;
    for (const f of inst.flags) {
      if (f.name === "from") from = f.value;
      else if (f.name === "chown") chown = expandWord(f.value, vars, esc);
      else if (f.name === "chmod") {
        if (!/^[0-7]{3,4}$/.test(f.value)) throw new RuntimeError("InvalidArgument", `--chmod=${f.value}: octal only`);
        chmod = Number.parseInt(f.value, 8);
      } else if (f.name === "link" || (f.name === "checksum" && inst.keyword === "ADD") || f.name === "keep-git-dir") {
        // --link only changes how BuildKit stores the layer; the result here is the same layer.
      } else throw new RuntimeError("InvalidArgument", `unknown flag --${f.name}`);
    }
    const words = inst.json ?? splitWords(inst.args, vars, esc);
    if (words.length < 2 && inst.heredocs.length === 0)
      throw new RuntimeError("InvalidArgument", `${inst.keyword} requires at least a source and a destination`);
    const destWord = words.at(-1) as string;
    let sources = words.slice(0, -1);
    const step = ++this.steps;
    const started = Date.now();
    this.emit({ type: "start", step, name: `${this.label(s, n)} ${short(inst.text, 200)}` });
    let srcRoot = this.context;
    let extract = inst.keyword === "ADD";
    // Heredoc sources and URLs are written to a directory of their own.
    const here = inst.heredocs.filter((h) => sources.includes(`<<${h.name}`) || sources.includes(`<<-${h.name}`));
    const urls = inst.keyword === "ADD" ? sources.filter((x) => /^https?:\/\//.test(x)) : [];
    if (here.length > 0 || urls.length > 0) {
      if (from !== undefined) throw new RuntimeError("InvalidArgument", "--from cannot be used with heredocs or URLs");
      if (here.length + urls.length !== sources.length)
        throw new RuntimeError("InvalidArgument", "heredoc or URL sources cannot be mixed with context files");
      srcRoot = join(this.tmp, `sources-${step}`);
      await ensureDir(srcRoot, 0o700);
      const names: string[] = [];
      for (const h of here) {
        await writeFile(join(srcRoot, h.name), h.quoted ? h.body : expandVars(h.body, vars, esc), { mode: 0o644 });
        names.push(h.name);
      }
      for (const u of urls) names.push(await download(u, srcRoot, this.signal));
      sources = names;
      // Downloaded files are never extracted.
      extract = false;
    } else if (from !== undefined) srcRoot = await this.sourceRoot(from, step);
    const hash = await hashSourcesJob(srcRoot, sources, this.signal);
    const dest = posix.resolve(st.config.WorkingDir || "/", destWord);
    const destIsDir = destWord.endsWith("/") || sources.length > 1;
    const key = hashKey(st.key, [
      inst.keyword,
      this.spec.compression,
      sources,
      dest,
      destIsDir,
      chown,
      chmod,
      extract,
      hash,
    ]);
    const createdBy = `${inst.keyword} ${inst.args}`;
    if ((await this.cacheValid(key)) && this.cached(st, key)) {
      this.emit({ type: "cached", step });
      this.emit({ type: "done", step, durationMs: Date.now() - started });
      return;
    }
    await this.layerStep(st, key, createdBy, step, async (root) => {
      const owner = chown !== undefined ? await resolveOwner(root, chown, this.signal) : undefined;
      await copyJob(
        {
          srcRoot,
          sources,
          destRoot: root,
          dest,
          destIsDir,
          ...(owner ? { uid: owner.uid, gid: owner.gid } : {}),
          ...(chmod !== undefined ? { chmod } : {}),
          extract,
        },
        this.signal,
      );
    });
    this.emit({ type: "done", step, durationMs: Date.now() - started });
  }

  // ---- the image -----------------------------------------------------------------------------------

  private async commitImage(st: StageState): Promise<BuildResult> {
    const docker = this.spec.format === "docker";
    if (docker && st.layers.some((l) => l.mediaType.endsWith("zstd")))
      throw new RuntimeError("InvalidArgument", "--format docker cannot carry zstd layers: use --compression gzip");
    const layerType = (t: string) => (docker ? (t.includes("gzip") ? MEDIA.dockerGzip : t) : ociLayerType(t));
    const config: ImageConfig = {
      ...this.created(),
      architecture: st.architecture,
      os: st.os,
      ...(st.variant ? { variant: st.variant } : {}),
      config: st.config,
      rootfs: { type: "layers", diff_ids: st.layers.map((l) => l.diffId) },
      history: st.history,
    };
    const configBytes = Buffer.from(JSON.stringify(config));
    const configBlob = await this.o.content.writeBlob(configBytes);
    const manifest = {
      schemaVersion: 2,
      mediaType: docker ? MEDIA.dockerManifest : MEDIA.ociManifest,
      config: {
        mediaType: docker ? MEDIA.dockerConfig : MEDIA.ociConfig,
        digest: configBlob.digest,
        size: configBlob.size,
      },
      layers: st.layers.map((l) => ({ mediaType: layerType(l.mediaType), digest: l.digest, size: l.size })),
    };
    const manifestBlob = await this.o.content.writeBlob(Buffer.from(JSON.stringify(manifest)));
    const record = await this.o.images.addLocal({
      id: configBlob.digest,
      config,
      chainIds: chainIdsOf(st.layers.map((l) => l.diffId)),
      manifestDigest: manifestBlob.digest,
      blobs: [manifestBlob.digest, configBlob.digest, ...st.layers.map((l) => l.digest)],
      size: configBlob.size + st.layers.reduce((a, l) => a + l.size, 0),
      tags: this.spec.tags,
    });
    return { imageId: record.id, manifestDigest: manifestBlob.digest, tags: record.repoTags };
  }
}

const DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

function ociLayerType(t: string): string {
  if (t === MEDIA.dockerGzip) return MEDIA.ociGzip;
  if (t === "application/vnd.docker.image.rootfs.diff.tar") return "application/vnd.oci.image.layer.v1.tar";
  return t;
}

function cloneState(s: StageState): StageState {
  return { ...structuredClone({ ...s, args: undefined }), args: new Map(s.args) } as StageState;
}

function envMap(env: readonly string[]): Map<string, string> {
  const m = new Map<string, string>();
  for (const e of env) {
    const i = e.indexOf("=");
    if (i > 0) m.set(e.slice(0, i), e.slice(i + 1));
  }
  return m;
}

function hashKey(parent: string, what: unknown): string {
  return `sha256:${createHash("sha256").update(parent).update("\n").update(JSON.stringify(what)).digest("hex")}`;
}

function short(text: string, max = 80): string {
  const one = text.replace(/\s+/g, " ");
  return one.length > max ? `${one.slice(0, max - 1)}…` : one;
}

/** The last `lines` lines of a step's output. */
class TailBuffer {
  private buf = "";
  constructor(private readonly lines: number) {}
  push(data: Buffer): void {
    this.buf += data.toString("utf8");
    if (this.buf.length > 64 * 1024) this.buf = this.buf.slice(-32 * 1024);
  }
  text(): string {
    return this.buf.replace(/\n$/, "").split("\n").slice(-this.lines).join("\n");
  }
}

interface RunMount {
  type: "cache" | "bind" | "secret";
  target: string;
  id: string;
  source: string;
  from?: string;
  rw: boolean;
  required: boolean;
}

/** `--mount=type=cache,target=/x[,id=..]`, `type=bind,source=..,target=..[,from=..][,rw]`, `type=secret,id=..[,target=..]`. */
export function parseMount(spec: string): RunMount {
  const kv = new Map<string, string>();
  for (const part of spec.split(",")) {
    const i = part.indexOf("=");
    kv.set(i < 0 ? part : part.slice(0, i), i < 0 ? "true" : part.slice(i + 1));
  }
  const type = kv.get("type") ?? "bind";
  if (type !== "cache" && type !== "bind" && type !== "secret")
    throw new RuntimeError("InvalidArgument", `--mount type=${type}: expected cache, bind or secret`);
  const id = kv.get("id") ?? "";
  const target =
    kv.get("target") ?? kv.get("dst") ?? kv.get("destination") ?? (type === "secret" ? `/run/secrets/${id}` : "");
  if (!target) throw new RuntimeError("InvalidArgument", `--mount ${spec}: a target is required`);
  if (type === "secret" && !id) throw new RuntimeError("InvalidArgument", `--mount ${spec}: a secret needs an id`);
  const from = kv.get("from");
  return {
    type,
    target,
    id,
    source: kv.get("source") ?? kv.get("src") ?? "",
    ...(from !== undefined ? { from } : {}),
    rw: kv.get("rw") === "true" || kv.get("readwrite") === "true",
    required: kv.get("required") === "true",
  };
}

function healthcheck(inst: Instruction, shell: string[]): Record<string, unknown> {
  const rest = inst.args.trim();
  if (/^none$/i.test(rest)) return { Test: ["NONE"] };
  const m = /^CMD\s+(.*)$/is.exec(rest);
  if (!m) throw new RuntimeError("InvalidArgument", "HEALTHCHECK expects NONE or CMD <command>");
  const body = (m[1] ?? "").trim();
  let test: string[];
  try {
    const v: unknown = JSON.parse(body);
    test = Array.isArray(v) ? ["CMD", ...(v as string[])] : ["CMD-SHELL", body];
  } catch {
    test = ["CMD-SHELL", body];
  }
  void shell;
  const out: Record<string, unknown> = { Test: test };
  const names: Record<string, string> = {
    interval: "Interval",
    timeout: "Timeout",
    "start-period": "StartPeriod",
    "start-interval": "StartInterval",
  };
  for (const f of inst.flags) {
    if (f.name === "retries") out.Retries = Number(f.value);
    else if (names[f.name]) out[names[f.name] as string] = durationNs(f.value);
    else throw new RuntimeError("InvalidArgument", `unknown flag --${f.name}`);
  }
  return out;
}

function durationNs(v: string): number {
  const re = /(\d+(?:\.\d+)?)(ms|s|m|h)/g;
  let total = 0;
  let consumed = 0;
  for (let m = re.exec(v); m; m = re.exec(v)) {
    const unit = { ms: 1e6, s: 1e9, m: 60e9, h: 3600e9 }[m[2] as "ms" | "s" | "m" | "h"];
    total += Number(m[1]) * unit;
    consumed += m[0].length;
  }
  if (consumed !== v.length || v.length === 0) throw new RuntimeError("InvalidArgument", `invalid duration ${v}`);
  return total;
}

/** uid/gid of `user` (`name|uid[:group|gid]`) from the step root's /etc/passwd and /etc/group. */
async function resolveUser(root: string, user: string, signal: AbortSignal): Promise<{ uid: number; gid: number }> {
  const [u = "root", g] = user.split(":");
  let uid: number;
  let gid: number | undefined;
  if (/^\d+$/.test(u)) {
    uid = Number(u);
    gid = (await lookup(root, "/etc/passwd", (f) => Number(f[2]) === uid, signal))?.[3] as number | undefined;
  } else {
    const entry = await lookup(root, "/etc/passwd", (f) => f[0] === u, signal);
    // A root without /etc/passwd (FROM scratch) still runs as root.
    if (!entry && u === "root") return { uid: 0, gid: g !== undefined && /^\d+$/.test(g) ? Number(g) : 0 };
    if (!entry)
      throw new RuntimeError("InvalidArgument", `unable to find user ${u}: no matching entries in passwd file`);
    uid = entry[2] as number;
    gid = entry[3] as number;
  }
  if (g !== undefined) {
    if (/^\d+$/.test(g)) gid = Number(g);
    else {
      const entry = await lookup(root, "/etc/group", (f) => f[0] === g, signal);
      if (!entry)
        throw new RuntimeError("InvalidArgument", `unable to find group ${g}: no matching entries in group file`);
      gid = entry[2] as number;
    }
  }
  return { uid, gid: gid ?? 0 };
}

async function resolveOwner(root: string, chown: string, signal: AbortSignal): Promise<{ uid: number; gid: number }> {
  const [u = "", g] = chown.split(":");
  const r = await resolveUser(root, g === undefined ? u : `${u}:${g}`, signal);
  // `--chown=user` alone gives the user's uid and the same number as gid when numeric (Docker's rule).
  if (g === undefined && /^\d+$/.test(u)) return { uid: r.uid, gid: r.uid };
  return r;
}

async function lookup(
  root: string,
  file: string,
  match: (fields: Array<string | number>) => boolean,
  signal: AbortSignal,
): Promise<Array<string | number> | undefined> {
  let text = "";
  try {
    text = (await readFileInRoot(root, file, { signal }))?.toString("utf8") ?? "";
  } catch (err) {
    if (!isKind(err, "NotFound")) throw err;
  }
  for (const line of text.split("\n")) {
    const f: Array<string | number> = line.split(":");
    if (f.length < 4) continue;
    f[2] = Number(f[2]);
    f[3] = Number(f[3]);
    if (match(f)) return f;
  }
  return undefined;
}

/** Directories of `upper` marked opaque by overlayfs (one getfattr walk, in a child process). */
async function opaqueDirs(upper: string): Promise<string[]> {
  const r = await runUnchecked(
    "getfattr",
    ["-R", "-P", "--absolute-names", "-m", "^(trusted|user)\\.overlay\\.opaque$", "-d", upper],
    { timeoutMs: 10 * 60_000 },
  );
  const out: string[] = [];
  let file: string | undefined;
  for (const line of r.stdout.split("\n")) {
    if (line.startsWith("# file: "))
      file = line.slice(8).replace(/\\([0-7]{3})/g, (_m, o: string) => String.fromCharCode(Number.parseInt(o, 8)));
    else if (file && /overlay\.opaque="y"/.test(line) && file.startsWith(`${upper}/`))
      out.push(file.slice(upper.length + 1));
  }
  return out;
}

/** ADD <url>: downloads into `dir` (mtime from Last-Modified); resolves to the file name. */
async function download(url: string, dir: string, signal: AbortSignal): Promise<string> {
  const res = await fetch(url, { signal: AbortSignal.any([signal, AbortSignal.timeout(10 * 60_000)]) });
  if (!res.ok || !res.body) throw new RuntimeError("InvalidArgument", `ADD ${url}: HTTP ${res.status}`);
  const name = posix.basename(new URL(url).pathname) || "index.html";
  const file = join(dir, name);
  await pipeline(
    Readable.fromWeb(res.body as import("node:stream/web").ReadableStream),
    createWriteStream(file, { mode: 0o600 }),
  );
  const lm = res.headers.get("last-modified");
  if (lm && !Number.isNaN(Date.parse(lm))) await utimes(file, new Date(lm), new Date(lm));
  return name;
}

/** Re-export for the RPC edge: a StepFailure's details. */
export function stepFailureOf(err: unknown): { exitCode: number; outputTail: string } | undefined {
  return err instanceof StepFailure ? { exitCode: err.exitCode, outputTail: err.outputTail } : undefined;
}
