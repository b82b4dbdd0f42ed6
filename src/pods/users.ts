import { invalidArgument, wrap } from "../errdefs/index.js";
import { readFileInRoot } from "../sys/index.js";
import type { SupplementalGroupsPolicy } from "./types.js";

/** A resolved identity for the container's process. */
export interface ResolvedUser {
  uid: number;
  gid: number;
  additionalGids: number[];
  username: string;
}

interface PasswdEntry {
  name: string;
  uid: number;
  gid: number;
}

interface GroupEntry {
  name: string;
  gid: number;
  members: string[];
}

/**
 * Reads `/etc/passwd` or `/etc/group` of the container's rootfs. The image controls these files, so the read
 * happens in a worker (never the event loop or libuv's pool), resolved inside the rootfs, regular files of at
 * most 4 MiB only, under a deadline; a missing file reads as empty (an image without users runs as uid 0).
 */
async function readRootfsFile(rootfs: string, path: string, image: string, signal?: AbortSignal): Promise<string> {
  try {
    const bytes = await readFileInRoot(rootfs, path, signal ? { signal } : {});
    return bytes === undefined ? "" : bytes.toString("utf8");
  } catch (err) {
    throw wrap(err, `image ${image}`);
  }
}

function parsePasswd(text: string): PasswdEntry[] {
  return text
    .split("\n")
    .map((l) => l.split(":"))
    .filter((f) => f.length >= 4 && f[0] && !f[0].startsWith("#"))
    .map((f) => ({ name: f[0] as string, uid: Number(f[2]), gid: Number(f[3]) }))
    .filter((e) => Number.isInteger(e.uid) && Number.isInteger(e.gid));
}

function parseGroup(text: string): GroupEntry[] {
  return text
    .split("\n")
    .map((l) => l.split(":"))
    .filter((f) => f.length >= 3 && f[0] && !f[0].startsWith("#"))
    .map((f) => ({ name: f[0] as string, gid: Number(f[2]), members: (f[3] ?? "").split(",").filter(Boolean) }))
    .filter((e) => Number.isInteger(e.gid));
}

const isNumeric = (s: string) => /^\d+$/.test(s);

/**
 * Resolves who the container runs as, the way containerd does: CRI run_as_user or
 * run_as_username win over the image's USER ("name", "uid", "name:group", "uid:gid");
 * names are looked up in the image's /etc/passwd and /etc/group; the primary gid comes from
 * run_as_group, else the user's passwd entry, else 0; supplementary groups are the primary group, the
 * image's groups listing the user (policy "merge", the default; "strict" leaves them out), plus those the
 * pod asked for.
 */
export async function resolveUser(
  rootfs: string,
  request: {
    runAsUser?: number;
    runAsUsername: string;
    runAsGroup?: number;
    supplementalGroups: number[];
    /** SupplementalGroupsPolicy: "strict" takes no groups from the image's /etc/group (KEP 3619). */
    supplementalGroupsPolicy?: SupplementalGroupsPolicy;
    imageUser: string;
    /** The image's name, for errors about its files. */
    image: string;
    signal?: AbortSignal;
  },
): Promise<ResolvedUser> {
  const passwd = parsePasswd(await readRootfsFile(rootfs, "/etc/passwd", request.image, request.signal));
  const groups = parseGroup(await readRootfsFile(rootfs, "/etc/group", request.image, request.signal));
  let userPart: string;
  let groupPart = "";
  if (request.runAsUser !== undefined) userPart = String(request.runAsUser);
  else if (request.runAsUsername) userPart = request.runAsUsername;
  else {
    const [u = "", g = ""] = request.imageUser.split(":");
    userPart = u;
    groupPart = g;
  }
  let uid = 0;
  let gid = 0;
  let username = "";
  if (userPart === "") {
    const root = passwd.find((e) => e.uid === 0);
    username = root?.name ?? "root";
  } else if (isNumeric(userPart)) {
    uid = Number(userPart);
    const entry = passwd.find((e) => e.uid === uid);
    if (entry) {
      gid = entry.gid;
      username = entry.name;
    }
  } else {
    const entry = passwd.find((e) => e.name === userPart);
    if (!entry) throw invalidArgument(`user "${userPart}" not found in the image's /etc/passwd`);
    uid = entry.uid;
    gid = entry.gid;
    username = entry.name;
  }
  if (groupPart) {
    if (isNumeric(groupPart)) gid = Number(groupPart);
    else {
      const g = groups.find((e) => e.name === groupPart);
      if (!g) throw invalidArgument(`group "${groupPart}" not found in the image's /etc/group`);
      gid = g.gid;
    }
  }
  if (request.runAsGroup !== undefined) gid = request.runAsGroup;
  // The primary group is listed too, as containerd and Docker do: setgroups() replaces the process's whole
  // list, so without it `id` inside the container would not show the user's own group.
  const additional = new Set<number>([gid]);
  if (username && request.supplementalGroupsPolicy !== "strict") {
    for (const g of groups) if (g.members.includes(username)) additional.add(g.gid);
  }
  for (const g of request.supplementalGroups) additional.add(g);
  return { uid, gid, additionalGids: [...additional].sort((a, b) => a - b), username };
}
