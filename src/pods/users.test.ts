import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdir, mkdtemp, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { isKind } from "../errdefs/index.js";
import { resolveUser } from "./users.js";

let rootfs: string;
before(async () => {
  rootfs = await mkdtemp(join(tmpdir(), "berth-users-"));
  await mkdir(join(rootfs, "etc"));
  await writeFile(join(rootfs, "etc/passwd"), "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n");
  await writeFile(join(rootfs, "etc/group"), "root:x:0:\napp:x:1000:\nextra:x:2000:app\nother:x:3000:root\n");
});
after(() => rm(rootfs, { recursive: true, force: true }));

const base = { runAsUsername: "", supplementalGroups: [], imageUser: "", image: "test/img:1" };

test("no user anywhere runs as root with root's groups, the primary one included", async () => {
  assert.deepEqual(await resolveUser(rootfs, base), { uid: 0, gid: 0, additionalGids: [0, 3000], username: "root" });
});

test("the image's USER name resolves uid, gid and groups listing the user", async () => {
  assert.deepEqual(await resolveUser(rootfs, { ...base, imageUser: "app" }), {
    uid: 1000,
    gid: 1000,
    additionalGids: [1000, 2000],
    username: "app",
  });
});

test("run_as_user wins over the image and takes the passwd gid", async () => {
  const u = await resolveUser(rootfs, { ...base, runAsUser: 1000, imageUser: "root" });
  assert.equal(u.uid, 1000);
  assert.equal(u.gid, 1000);
});

test("run_as_group and supplemental groups are applied", async () => {
  const u = await resolveUser(rootfs, { ...base, runAsUsername: "app", runAsGroup: 5, supplementalGroups: [7, 2000] });
  assert.deepEqual(u, { uid: 1000, gid: 5, additionalGids: [5, 7, 2000], username: "app" });
});

test("policy strict takes no groups from the image's /etc/group; merge (the default) does", async () => {
  const asked = { ...base, imageUser: "app", supplementalGroups: [7] };
  const strict = await resolveUser(rootfs, { ...asked, supplementalGroupsPolicy: "strict" });
  assert.deepEqual(strict.additionalGids, [7, 1000]);
  const merge = await resolveUser(rootfs, { ...asked, supplementalGroupsPolicy: "merge" });
  assert.deepEqual(merge.additionalGids, [7, 1000, 2000]);
});

test("uid:gid from the image and unknown uids work without passwd entries", async () => {
  assert.deepEqual(await resolveUser(rootfs, { ...base, imageUser: "4242:77" }), {
    uid: 4242,
    gid: 77,
    additionalGids: [77],
    username: "",
  });
});

test("an unknown user name is a clear error", async () => {
  await assert.rejects(resolveUser(rootfs, { ...base, runAsUsername: "ghost" }), /user "ghost" not found/);
});

test("a hostile /etc/passwd or /etc/group is FailedPrecondition naming the image and the file", async () => {
  const hostile = await mkdtemp(join(tmpdir(), "berth-users-hostile-"));
  try {
    await mkdir(join(hostile, "etc"));
    execFileSync("mkfifo", [join(hostile, "etc/passwd")]);
    await assert.rejects(
      resolveUser(hostile, { ...base, runAsUsername: "app" }),
      (err) =>
        isKind(err, "FailedPrecondition") &&
        (err as Error).message === "image test/img:1: /etc/passwd is a FIFO, not a regular file",
    );
    await rm(join(hostile, "etc"), { recursive: true });
    await symlink("/etc", join(hostile, "etc"));
    await assert.rejects(
      resolveUser(hostile, base),
      (err) =>
        isKind(err, "FailedPrecondition") &&
        /^image test\/img:1: \/etc\/passwd: too many levels/.test((err as Error).message),
    );
  } finally {
    await rm(hostile, { recursive: true, force: true });
  }
});
