import assert from "node:assert/strict";
import { mkdtemp, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { rootSkipReason } from "../../test/support/network-env.js";
import { runUnchecked } from "../sys/index.js";
import { createNetns, isNetns, removeNetns, runInNetns } from "./index.js";

const skip = await rootSkipReason();

describe("named network namespaces", { skip }, () => {
  let base = "";
  let dir = "";

  before(async () => {
    base = await mkdtemp(join(tmpdir(), "berth-netns-"));
    dir = join(base, "netns");
  });

  after(async () => {
    await runUnchecked("umount", ["--lazy", dir]);
    await rm(base, { recursive: true, force: true });
  });

  test("createNetns pins a new namespace with lo up, distinct from the host's", async () => {
    const path = await createNetns("ns-a", { dir });
    assert.equal(path, join(dir, "ns-a"));
    assert.equal(await isNetns(path), true);
    const { stdout } = await runInNetns(path, ["ip", "-o", "link", "show"]);
    assert.match(stdout, /^1: lo: <LOOPBACK,UP,LOWER_UP>/);
    assert.equal(stdout.trim().split("\n").length, 1, "a fresh namespace has only lo");
    const inside = (await runInNetns(path, ["readlink", "/proc/self/ns/net"])).stdout.trim();
    const host = (await runUnchecked("readlink", ["/proc/self/ns/net"])).stdout.trim();
    assert.notEqual(inside, host);
    await removeNetns(path);
  });

  test("the namespace dir is a private mount, so namespace mounts do not propagate", async () => {
    await createNetns("ns-prop", { dir });
    const { stdout } = await runUnchecked("findmnt", ["-n", "-o", "PROPAGATION", dir]);
    assert.equal(stdout.trim(), "private");
    await removeNetns(join(dir, "ns-prop"));
  });

  test("createNetns of an existing name returns the same namespace", async () => {
    const path = await createNetns("ns-b", { dir });
    const first = (await runInNetns(path, ["readlink", "/proc/self/ns/net"])).stdout;
    assert.equal(await createNetns("ns-b", { dir }), path);
    assert.equal((await runInNetns(path, ["readlink", "/proc/self/ns/net"])).stdout, first);
    await removeNetns(path);
  });

  test("createNetns reuses a leftover plain file from a crash", async () => {
    const path = join(dir, "ns-c");
    await createNetns("ns-warm", { dir }); // makes the dir
    await writeFile(path, "");
    assert.equal(await createNetns("ns-c", { dir }), path);
    assert.equal(await isNetns(path), true);
    await removeNetns(path);
    await removeNetns(join(dir, "ns-warm"));
  });

  test("removeNetns unmounts and unlinks, and succeeds again when already gone", async () => {
    const path = await createNetns("ns-d", { dir });
    await removeNetns(path);
    await assert.rejects(stat(path), { code: "ENOENT" });
    await removeNetns(path);
  });

  test("names that could escape the directory are rejected", async () => {
    await assert.rejects(createNetns("../x", { dir }), { kind: "InvalidArgument" });
    await assert.rejects(createNetns("", { dir }), { kind: "InvalidArgument" });
  });

  test("runInNetns reports a failing command with its stderr", async () => {
    const path = await createNetns("ns-e", { dir });
    await assert.rejects(runInNetns(path, ["ip", "link", "show", "eth0"]), /nsenter ip: exit status 1: .*eth0/);
    await removeNetns(path);
  });
});
