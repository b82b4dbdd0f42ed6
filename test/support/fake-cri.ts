/**
 * An in-memory CRI runtime behind the CriClient interface, for unit tests of CRI clients (the
 * pod worker): sandboxes and containers with real state transitions, a log of every call, and
 * knobs for what a test wants to happen (a container exits, a pull fails, a sandbox dies).
 * It runs nothing: `exit()` is how a container stops by itself.
 */
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import {
  ContainerState,
  type ContainerStatus,
  ContainerStatusSchema,
  PodSandboxState,
  type PodSandboxStatus,
  PodSandboxStatusSchema,
} from "../../src/api/gen/runtime/v1/api_pb.js";
import type { CriClient } from "../../src/client/index.js";

interface FakeSandbox {
  status: PodSandboxStatus;
}

/** A fake runtime; `client` is what the code under test gets. */
export class FakeCri {
  /** Every RPC in order, as `Name arg` (the ID or image it is about). */
  readonly calls: string[] = [];
  readonly sandboxes = new Map<string, FakeSandbox>();
  readonly containers = new Map<string, ContainerStatus & { sandboxId: string }>();
  /** Images present. */
  readonly images = new Set<string>();
  /** Images whose pull fails (with this message). */
  readonly pullFailures = new Map<string, string>();
  /** The exit code of an ExecSync (probes, hooks); 0 unless a test says otherwise. */
  execExitCode: (containerId: string, cmd: string[]) => number = () => 0;
  private seq = 0;
  private readonly now: () => number;

  constructor(o: { now: () => number }) {
    this.now = o.now;
  }

  private ns(): bigint {
    return BigInt(this.now()) * 1_000_000n;
  }

  /** The container exits by itself with `exitCode`. */
  exit(id: string, exitCode: number): void {
    const c = this.containers.get(id);
    if (!c) throw new Error(`no container ${id}`);
    c.state = ContainerState.CONTAINER_EXITED;
    c.exitCode = exitCode;
    c.finishedAt = this.ns();
    c.reason = exitCode === 0 ? "Completed" : "Error";
  }

  /** The sandbox dies (its infra process is gone). */
  killSandbox(id: string): void {
    const sb = this.sandboxes.get(id);
    if (sb) sb.status.state = PodSandboxState.SANDBOX_NOTREADY;
  }

  /** Containers named `name`, oldest attempt first. */
  named(name: string): (ContainerStatus & { sandboxId: string })[] {
    return [...this.containers.values()]
      .filter((c) => c.metadata?.name === name)
      .sort((a, b) => (a.metadata?.attempt ?? 0) - (b.metadata?.attempt ?? 0));
  }

  private sandbox(id: string): FakeSandbox {
    const sb = this.sandboxes.get(id);
    if (!sb) throw new ConnectError(`pod sandbox "${id}" not found`, Code.NotFound);
    return sb;
  }

  private container(id: string): ContainerStatus & { sandboxId: string } {
    const c = this.containers.get(id);
    if (!c) throw new ConnectError(`container "${id}" not found`, Code.NotFound);
    return c;
  }

  readonly client: CriClient = (() => {
    const log = (s: string) => this.calls.push(s);
    const matches = (labels: Record<string, string>, selector: Record<string, string> | undefined) =>
      Object.entries(selector ?? {}).every(([k, v]) => labels[k] === v);
    const runtime = {
      listPodSandbox: async (req: { filter?: { labelSelector?: Record<string, string> } }) => {
        log("ListPodSandbox");
        const items = [...this.sandboxes.values()]
          .filter((s) => matches(s.status.labels, req.filter?.labelSelector))
          .map((s) => ({ ...s.status, state: s.status.state }));
        return { items };
      },
      podSandboxStatus: async (req: { podSandboxId: string }) => {
        log(`PodSandboxStatus ${req.podSandboxId}`);
        const sb = this.sandbox(req.podSandboxId);
        const containersStatuses = [...this.containers.values()].filter((c) => c.sandboxId === req.podSandboxId);
        return { status: sb.status, containersStatuses: containersStatuses.map((c) => ({ ...c })), info: {} };
      },
      runPodSandbox: async (req: {
        config?: { metadata?: { name: string; uid: string; namespace: string; attempt: number } } & {
          labels?: Record<string, string>;
          annotations?: Record<string, string>;
        };
      }) => {
        const id = `sb${++this.seq}`;
        log(`RunPodSandbox ${id} attempt ${req.config?.metadata?.attempt ?? 0}`);
        const status = create(PodSandboxStatusSchema, {
          id,
          metadata: req.config?.metadata ?? {},
          state: PodSandboxState.SANDBOX_READY,
          createdAt: this.ns(),
          network: { ip: `10.88.0.${this.seq}` },
          labels: req.config?.labels ?? {},
          annotations: req.config?.annotations ?? {},
        });
        this.sandboxes.set(id, { status });
        return { podSandboxId: id };
      },
      stopPodSandbox: async (req: { podSandboxId: string }) => {
        log(`StopPodSandbox ${req.podSandboxId}`);
        const sb = this.sandbox(req.podSandboxId);
        sb.status.state = PodSandboxState.SANDBOX_NOTREADY;
        for (const c of this.containers.values())
          if (c.sandboxId === req.podSandboxId && c.state === ContainerState.CONTAINER_RUNNING) this.exit(c.id, 137);
        return {};
      },
      removePodSandbox: async (req: { podSandboxId: string }) => {
        log(`RemovePodSandbox ${req.podSandboxId}`);
        this.sandboxes.delete(req.podSandboxId);
        for (const [id, c] of this.containers) if (c.sandboxId === req.podSandboxId) this.containers.delete(id);
        return {};
      },
      createContainer: async (req: {
        podSandboxId: string;
        config?: {
          metadata?: { name: string; attempt: number };
          image?: { image: string };
          labels?: Record<string, string>;
          logPath?: string;
        };
      }) => {
        this.sandbox(req.podSandboxId);
        const name = req.config?.metadata?.name ?? "";
        const attempt = req.config?.metadata?.attempt ?? 0;
        const id = `${name}-${attempt}-${++this.seq}`;
        log(`CreateContainer ${name}#${attempt}`);
        const status = create(ContainerStatusSchema, {
          id,
          metadata: { name, attempt },
          state: ContainerState.CONTAINER_CREATED,
          createdAt: this.ns(),
          image: { image: req.config?.image?.image ?? "" },
          labels: req.config?.labels ?? {},
          logPath: req.config?.logPath ?? "",
        });
        this.containers.set(id, Object.assign(status, { sandboxId: req.podSandboxId }));
        return { containerId: id };
      },
      startContainer: async (req: { containerId: string }) => {
        log(`StartContainer ${req.containerId}`);
        const c = this.container(req.containerId);
        c.state = ContainerState.CONTAINER_RUNNING;
        c.startedAt = this.ns();
        return {};
      },
      stopContainer: async (req: { containerId: string; timeout: bigint }) => {
        log(`StopContainer ${req.containerId} ${req.timeout}s`);
        const c = this.container(req.containerId);
        if (c.state === ContainerState.CONTAINER_RUNNING) this.exit(c.id, 137);
        return {};
      },
      removeContainer: async (req: { containerId: string }) => {
        log(`RemoveContainer ${req.containerId}`);
        this.containers.delete(req.containerId);
        return {};
      },
      listContainers: async (req: { filter?: { podSandboxId?: string; labelSelector?: Record<string, string> } }) => {
        log("ListContainers");
        const containers = [...this.containers.values()].filter(
          (c) =>
            (!req.filter?.podSandboxId || c.sandboxId === req.filter.podSandboxId) &&
            matches(c.labels, req.filter?.labelSelector),
        );
        return { containers: containers.map((c) => ({ ...c, podSandboxId: c.sandboxId })) };
      },
      containerStatus: async (req: { containerId: string }) => {
        log(`ContainerStatus ${req.containerId}`);
        return { status: { ...this.container(req.containerId) }, info: {} };
      },
      execSync: async (req: { containerId: string; cmd: string[] }) => {
        log(`ExecSync ${req.containerId} ${req.cmd.join(" ")}`);
        this.container(req.containerId);
        const exitCode = this.execExitCode(req.containerId, req.cmd);
        return {
          exitCode,
          stdout: new Uint8Array(),
          stderr: new TextEncoder().encode(exitCode ? "probe says no" : ""),
        };
      },
    };
    const image = {
      imageStatus: async (req: { image?: { image: string } }) => {
        const ref = req.image?.image ?? "";
        log(`ImageStatus ${ref}`);
        return this.images.has(ref) ? { image: { id: `sha256:${ref}`, repoTags: [ref] }, info: {} } : { info: {} };
      },
      pullImage: async (req: { image?: { image: string } }) => {
        const ref = req.image?.image ?? "";
        log(`PullImage ${ref}`);
        const failure = this.pullFailures.get(ref);
        if (failure !== undefined) throw new ConnectError(failure, Code.NotFound);
        this.images.add(ref);
        return { imageRef: `sha256:${ref}` };
      },
    };
    return {
      runtime: runtime as unknown as CriClient["runtime"],
      image: image as unknown as CriClient["image"],
      berth: { images: {} as CriClient["berth"]["images"], builder: {} as CriClient["berth"]["builder"] },
      socket: "fake",
      close: () => {},
    };
  })();
}
