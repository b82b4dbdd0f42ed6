import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { openStore } from "./store.js";

test("records survive reopening and deletes are reported", () => {
  const dir = mkdtempSync(join(tmpdir(), "berth-store-"));
  try {
    const s = openStore(join(dir, "meta.db"));
    const c = s.collection<{ n: number }>("things");
    c.put("a", { n: 1 });
    c.put("b", { n: 2 });
    c.put("a", { n: 3 });
    assert.equal(c.delete("b"), true);
    assert.equal(c.delete("b"), false);
    s.close();
    const s2 = openStore(join(dir, "meta.db"));
    assert.deepEqual(s2.collection("things").list(), [{ n: 3 }]);
    assert.deepEqual(s2.collection("other").list(), []);
    s2.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("a transaction that throws writes nothing", () => {
  const dir = mkdtempSync(join(tmpdir(), "berth-store-"));
  try {
    const s = openStore(join(dir, "meta.db"));
    const c = s.collection<number>("n");
    assert.throws(() =>
      s.transaction(() => {
        c.put("x", 1);
        throw new Error("boom");
      }),
    );
    assert.equal(c.get("x"), undefined);
    s.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("a write acknowledged before SIGKILL is there after", () => {
  const dir = mkdtempSync(join(tmpdir(), "berth-store-"));
  try {
    const db = join(dir, "meta.db");
    // A child process writes and is then killed without closing the database.
    const script = `import { openStore } from ${JSON.stringify(new URL("./store.ts", import.meta.url).pathname)};
      const s = openStore(${JSON.stringify(db)}); s.collection("k").put("id", { ok: true }); process.kill(process.pid, "SIGKILL");`;
    const r = spawnSync(process.execPath, ["--import", "tsx", "--input-type=module", "-e", script], {
      encoding: "utf8",
    });
    assert.equal(r.signal, "SIGKILL", r.stderr);
    const s = openStore(db);
    assert.deepEqual(s.collection("k").get("id"), { ok: true });
    s.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
