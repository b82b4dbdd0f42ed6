/**
 * The host side of a pod's volumes: emptyDir directories under the pod's state directory
 * (a tmpfs for `medium: Memory`), hostPath checks and creation by `type`, subPath directories,
 * and removal of all of it with the pod. Containers get these paths as CRI bind mounts
 * (`convert.ts`), so berthd needs no notion of volumes.
 */
import { chmod, lstat, mkdir, rm, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { RuntimeError } from "../errdefs/index.js";
import { isMountPoint, mountsUnder, mountTmpfs, unmountIfMounted } from "../sys/index.js";
import type { Layout } from "./layout.js";
import type { ContainerSpec, Pod, Volume } from "./types.js";

/** Creates every emptyDir of the pod and checks or creates its hostPaths. Idempotent. */
export async function preparePodVolumes(pod: Pod, layout: Layout): Promise<void> {
  for (const v of pod.spec.volumes) await prepareVolume(pod, v, layout);
}

async function prepareVolume(pod: Pod, v: Volume, layout: Layout): Promise<void> {
  if (v.emptyDir) {
    const dir = layout.emptyDir(pod.metadata.uid, v.name);
    await mkdir(dir, { recursive: true });
    if (v.emptyDir.medium === "Memory" && !(await isMountPoint(dir))) {
      const size = v.emptyDir.sizeLimitBytes !== undefined ? `,size=${v.emptyDir.sizeLimitBytes}` : "";
      await mountTmpfs(dir, `nosuid,nodev,mode=0777${size}`);
    }
    // Any user of any container may write to an emptyDir, as in Kubernetes.
    await chmod(dir, 0o777);
    return;
  }
  if (v.hostPath) await prepareHostPath(v.name, v.hostPath.path, v.hostPath.type);
}

async function prepareHostPath(
  name: string,
  path: string,
  type: NonNullable<Volume["hostPath"]>["type"],
): Promise<void> {
  const fail = (what: string) => new RuntimeError("InvalidArgument", `volume ${name}: hostPath ${path}: ${what}`);
  const info = await stat(path).catch(() => undefined);
  switch (type) {
    case "":
      return; // no check, as in Kubernetes; a missing path fails at container creation
    case "DirectoryOrCreate":
      if (!info) await mkdir(path, { recursive: true, mode: 0o755 });
      else if (!info.isDirectory()) throw fail("exists and is not a directory");
      return;
    case "FileOrCreate":
      if (!info) {
        await mkdir(join(path, ".."), { recursive: true });
        await writeFile(path, "", { mode: 0o644, flag: "a" });
      } else if (!info.isFile()) throw fail("exists and is not a file");
      return;
    case "Directory":
      if (!info?.isDirectory()) throw fail("is not a directory");
      return;
    case "File":
      if (!info?.isFile()) throw fail("is not a file");
      return;
    case "Socket":
      if (!info?.isSocket()) throw fail("is not a socket");
      return;
    case "CharDevice":
      if (!info?.isCharacterDevice()) throw fail("is not a character device");
      return;
    case "BlockDevice":
      if (!info?.isBlockDevice()) throw fail("is not a block device");
      return;
  }
}

/** Creates the subPath directories a container's mounts need (inside their volumes). */
export async function prepareSubPaths(pod: Pod, ctr: ContainerSpec, layout: Layout): Promise<void> {
  for (const vm of ctr.volumeMounts) {
    if (!vm.subPath) continue;
    const volume = pod.spec.volumes.find((v) => v.name === vm.name);
    const base = volume?.hostPath ? volume.hostPath.path : layout.emptyDir(pod.metadata.uid, vm.name);
    const target = join(base, vm.subPath);
    if (!(await lstat(target).catch(() => undefined))) await mkdir(target, { recursive: true, mode: 0o777 });
  }
}

/** Creates the (empty, world-writable) file bind-mounted at a container's terminationMessagePath. */
export async function prepareTerminationMessageFile(file: string): Promise<void> {
  await mkdir(join(file, ".."), { recursive: true });
  await writeFile(file, "", { flag: "a" });
  await chmod(file, 0o666);
}

/** Unmounts the pod's tmpfs volumes and removes its state and log directories. Idempotent. */
export async function removePodDirs(
  pod: { uid: string; namespace: string; name: string },
  layout: Layout,
): Promise<void> {
  const dir = layout.podDir(pod.uid);
  // Best effort: whatever stays mounted makes the rm below fail, and that error is reported.
  for (const mp of await mountsUnder(dir).catch(() => [] as string[])) await unmountIfMounted(mp).catch(() => {});
  await rm(dir, { recursive: true, force: true });
  await rm(layout.podLogDir(pod.namespace, pod.name, pod.uid), { recursive: true, force: true });
}
