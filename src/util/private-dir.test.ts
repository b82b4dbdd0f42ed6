import assert from "node:assert/strict";
import { chmod, mkdir, mkdtemp, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { ensureDir } from "./private-dir.js";

test("ensureDir creates missing directories with the mode and tightens an existing looser one", async () => {
  const base = await mkdtemp(join(tmpdir(), "berth-dir-"));
  try {
    const fresh = join(base, "a", "b");
    await ensureDir(fresh, 0o700);
    assert.equal((await stat(fresh)).mode & 0o7777, 0o700);
    assert.equal((await stat(join(base, "a"))).mode & 0o777, 0o700, "created parents get the mode too");
    const old = join(base, "old");
    await mkdir(old);
    await chmod(old, 0o755);
    await ensureDir(old, 0o711);
    assert.equal((await stat(old)).mode & 0o7777, 0o711);
  } finally {
    await rm(base, { recursive: true, force: true });
  }
});
