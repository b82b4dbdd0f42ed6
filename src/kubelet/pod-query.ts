/**
 * Reading pods back from CRI, for `berth get`, `describe`, `down` and `run -d` in a process that
 * does not run the pods' workers: the latest sandbox attempt per pod uid, every container
 * attempt, the Pod stored in the sandbox's annotations, and the runner's status file (found
 * through the `berth.io/state-dir` annotation) for readiness and waiting reasons.
 */
import { readFile } from "node:fs/promises";
import type { ContainerStatus, PodSandbox } from "../api/gen/runtime/v1/api_pb.js";
import { PodSandboxState } from "../api/gen/runtime/v1/api_pb.js";
import type { CriClient } from "../client/index.js";
import { createLayout } from "./layout.js";
import { isNotFound, listStatuses } from "./lifecycle.js";
import { readLogLines } from "./logs.js";
import { computePodView, type PodView, type RunnerStatus } from "./pod-view.js";
import { ANNOTATIONS, LABELS } from "./types.js";

/** True when a process with this pid exists (EPERM counts: it exists but is not ours). */
export function pidAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** Options of {@link listPodViews}. */
export interface ListPodViewsOptions {
  /** IP to show for hostNetwork pods. */
  hostIP: string;
  /** Only sandboxes with these labels (CRI equality selector). */
  labels?: Record<string, string>;
  /** Only pods with this namespace / name. */
  namespace?: string;
  name?: string;
}

/** Every pod (latest sandbox attempt per uid) as `berth get pods` shows it, oldest first. */
export async function listPodViews(client: CriClient, o: ListPodViewsOptions): Promise<PodView[]> {
  const { items } = await client.runtime.listPodSandbox(o.labels ? { filter: { labelSelector: o.labels } } : {});
  const latest = new Map<string, PodSandbox>();
  for (const sb of items) {
    if (o.namespace !== undefined && sb.metadata?.namespace !== o.namespace) continue;
    if (o.name !== undefined && sb.metadata?.name !== o.name) continue;
    const uid = sb.metadata?.uid || sb.id;
    const cur = latest.get(uid);
    const rank = (s: PodSandbox) =>
      (s.state === PodSandboxState.SANDBOX_READY ? 1_000_000 : 0) + (s.metadata?.attempt ?? 0);
    if (!cur || rank(sb) > rank(cur)) latest.set(uid, sb);
  }
  const views: PodView[] = [];
  for (const sb of latest.values()) {
    const view = await podView(client, sb.id, o.hostIP);
    if (view) views.push(view);
  }
  return views.sort((a, b) => a.createdAt - b.createdAt || a.name.localeCompare(b.name));
}

/** One sandbox as a PodView; undefined when it disappeared meanwhile. */
export async function podView(client: CriClient, sandboxId: string, hostIP: string): Promise<PodView | undefined> {
  let containers: ContainerStatus[];
  let status: Awaited<ReturnType<CriClient["runtime"]["podSandboxStatus"]>>;
  try {
    status = await client.runtime.podSandboxStatus({ podSandboxId: sandboxId });
    containers =
      status.containersStatuses.length > 0 ? status.containersStatuses : await listStatuses(client, sandboxId);
  } catch (err) {
    if (isNotFound(err)) return undefined;
    throw err;
  }
  if (!status.status) return undefined;
  const sb = status.status;
  const uid = sb.metadata?.uid ?? "";
  const stateDir = sb.annotations[ANNOTATIONS.stateDir];
  let runner: RunnerStatus | undefined;
  if (stateDir && uid) runner = await readRunnerStatus(createLayout({ stateDir }).statusFile(uid));
  const view = computePodView({
    sandbox: sb,
    containers,
    ...(runner ? { runner } : {}),
    runnerAlive: runner !== undefined && pidAlive(runner.pid),
    hostIP,
  });
  if (stateDir) await addTerminationMessages(view, stateDir);
  return view;
}

async function readRunnerStatus(file: string): Promise<RunnerStatus | undefined> {
  try {
    const s = JSON.parse(await readFile(file, "utf8")) as RunnerStatus;
    return s.version === 1 ? s : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Fills terminated states' messages the kubelet's way: the file the container wrote at its
 * terminationMessagePath, or with FallbackToLogsOnError and a failure, the end of its log.
 */
async function addTerminationMessages(view: PodView, stateDir: string): Promise<void> {
  const layout = createLayout({ stateDir });
  for (const c of [...view.initContainers, ...view.containers]) {
    const s = c.state;
    if (s.kind !== "terminated" || s.message) continue;
    const text = await readFile(layout.terminationMessageFile(view.uid, c.name, c.restartCount), "utf8").catch(
      () => "",
    );
    if (text) s.message = text.slice(0, 4096);
    else if (c.spec?.terminationMessagePolicy === "FallbackToLogsOnError" && s.exitCode !== 0 && c.logPath) {
      const lines = await readLogLines(c.logPath).catch(() => []);
      s.message = lines
        .slice(-80)
        .map((l) => l.content)
        .join("\n")
        .slice(-2048);
    }
  }
}

/** The sandboxes (all attempts) of a manifest's pods, by the `berth.io/manifest` label. */
export async function sandboxesOfManifest(client: CriClient, manifestHash: string): Promise<PodSandbox[]> {
  const { items } = await client.runtime.listPodSandbox({
    filter: { labelSelector: { [LABELS.manifest]: manifestHash } },
  });
  return items;
}
