import assert from "node:assert/strict";
import { mkdir, mkdtemp, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { isKind } from "../errdefs/index.js";
import { prepareImageVolumes, releaseImageVolumes, volumeKey } from "./image-volumes.js";
import type { Mount } from "./types.js";

describe("image volumes", () => {
  let root: string;
  const prepared: string[] = [];
  const released: string[] = [];
  const deps = {
    images: {
      resolve: async (ref: string) => (ref === "web:1" ? { topChainId: "sha256:top" } : undefined),
    },
    rootfs: {
      prepare: async (key: string, chainId: string) => {
        prepared.push(`${key}@${chainId}`);
        return root;
      },
      release: async (key: string) => {
        released.push(key);
      },
    },
  };
  const mount = (extra: Partial<Mount>): Mount => ({
    containerPath: "/vol",
    hostPath: "",
    readonly: false,
    recursiveReadOnly: false,
    propagation: "private",
    selinuxRelabel: false,
    ...extra,
  });

  before(async () => {
    root = await mkdtemp(join(tmpdir(), "berth-image-volume-"));
    await mkdir(join(root, "www"));
    await writeFile(join(root, "www/index.html"), "hi\n");
    await symlink("/etc", join(root, "etc"));
  });
  after(() => rm(root, { recursive: true, force: true }));

  test("an image volume becomes a read-only bind of a snapshot on the image's top layer; others stay", async () => {
    const host = mount({ containerPath: "/host", hostPath: "/srv" });
    const out = await prepareImageVolumes("c1", [host, mount({ image: "web:1" })], deps);
    assert.deepEqual(out[0], host);
    assert.equal(out[1]?.hostPath, root);
    assert.equal(out[1]?.readonly, true, "read-only whatever the request said");
    assert.deepEqual(prepared, [`${volumeKey("c1", 1)}@sha256:top`]);
  });

  test("a sub path mounts that directory; missing, '..' and symlinked sub paths are refused", async () => {
    const [sub] = await prepareImageVolumes("c2", [mount({ image: "web:1", imageSubPath: "www" })], deps);
    assert.equal(sub?.hostPath, join(root, "www"));
    const fails = async (imageSubPath: string, kind: string, re: RegExp) =>
      assert.rejects(prepareImageVolumes("c3", [mount({ image: "web:1", imageSubPath })], deps), (e: unknown) => {
        assert.ok(isKind(e, kind as "NotFound"), String(e));
        assert.match(String(e), re);
        return true;
      });
    await fails("nope", "NotFound", /image_sub_path nope does not exist in image web:1/);
    await fails("../..", "InvalidArgument", /climbs out/);
    // The image's `etc -> /etc` must never bind the host's /etc into the pod.
    await fails("etc", "FailedPrecondition", /is a symlink/);
  });

  test("an image that is not present is NotFound naming it; release frees each volume's snapshot", async () => {
    await assert.rejects(
      prepareImageVolumes("c4", [mount({ image: "absent:1" })], deps),
      (e: unknown) => isKind(e, "NotFound") && /image volume absent:1 is not present/.test(String(e)),
    );
    await releaseImageVolumes("c5", [mount({ hostPath: "/srv" }), mount({ image: "web:1" })], deps.rootfs);
    assert.deepEqual(released, [volumeKey("c5", 1)]);
  });
});
