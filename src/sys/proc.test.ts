import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { readdir, readFile } from "node:fs/promises";
import { test } from "node:test";
import { killProcessTree } from "./proc.js";

const alive = async (pid: number) => {
  const stat = await readFile(`/proc/${pid}/stat`, "utf8").catch(() => "");
  return stat !== "" && !/\) Z /.test(stat);
};

/** The pids of `root`'s children, from /proc (this kernel may lack /proc/<pid>/task/<tid>/children). */
async function childrenOf(root: number): Promise<number[]> {
  const out: number[] = [];
  for (const e of await readdir("/proc")) {
    if (!/^\d+$/.test(e)) continue;
    const stat = await readFile(`/proc/${e}/stat`, "utf8").catch(() => "");
    const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
    if (ppid === root) out.push(Number(e));
  }
  return out;
}

test("killProcessTree kills a process and everything it forked, and nothing else", { timeout: 20_000 }, async () => {
  const bystander = spawn("sleep", ["60"], { stdio: "ignore" });
  const tree = spawn("sh", ["-c", "sleep 300 & sleep 301 & (sleep 302 & wait) & wait"], { stdio: "ignore" });
  try {
    const root = tree.pid as number;
    let kids: number[] = [];
    for (let i = 0; i < 100 && kids.length < 3; i++) {
      kids = await childrenOf(root);
      await new Promise((r) => setTimeout(r, 20));
    }
    assert.equal(kids.length, 3, "sh started its three children");
    const killed = await killProcessTree(root);
    assert.ok(killed.includes(root));
    assert.ok(killed.length >= 5, `killed ${killed.length}: the shell, the subshell and three sleeps`);
    await new Promise<void>((resolve) => tree.once("exit", () => resolve()));
    for (const pid of killed) {
      for (let i = 0; i < 100 && (await alive(pid)); i++) await new Promise((r) => setTimeout(r, 20));
      assert.equal(await alive(pid), false, `pid ${pid} is gone`);
    }
    assert.equal(await alive(bystander.pid as number), true, "an unrelated process is untouched");
  } finally {
    tree.kill("SIGKILL");
    bystander.kill("SIGKILL");
  }
});

test("killProcessTree of a pid that is gone kills nothing", async () => {
  const p = spawn("true", [], { stdio: "ignore" });
  await new Promise<void>((resolve) => p.once("exit", () => resolve()));
  assert.deepEqual(await killProcessTree(p.pid as number), []);
});

test("killProcessTree of a session leader also kills a member its parent left orphaned", {
  timeout: 20_000,
}, async () => {
  // setsid makes the shell a session leader; the subshell exits at once, re-parenting sleep 303.
  const tree = spawn("setsid", ["-w", "sh", "-c", "(sleep 303 &) ; sleep 304"], { stdio: "ignore" });
  let leader: number | undefined;
  let orphan: number | undefined;
  try {
    for (let i = 0; i < 100 && (leader === undefined || orphan === undefined); i++) {
      for (const e of await readdir("/proc")) {
        if (!/^\d+$/.test(e)) continue;
        const args = (await readFile(`/proc/${e}/cmdline`, "utf8").catch(() => "")).split("\0");
        const stat = await readFile(`/proc/${e}/stat`, "utf8").catch(() => "");
        const sid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[3]);
        if (args[0] === "sh" && args[2] === "(sleep 303 &) ; sleep 304" && sid === Number(e)) leader = Number(e);
        if (args[0] === "sleep" && args[1] === "303" && leader !== undefined && sid === leader) orphan = Number(e);
      }
      await new Promise((r) => setTimeout(r, 20));
    }
    assert.ok(leader !== undefined && orphan !== undefined, "found the session leader and its orphan");
    const killed = await killProcessTree(leader);
    assert.ok(killed.includes(orphan), `the orphan ${orphan} is among ${killed.join(",")}`);
    for (let i = 0; i < 100 && (await alive(orphan)); i++) await new Promise((r) => setTimeout(r, 20));
    assert.equal(await alive(orphan), false);
  } finally {
    tree.kill("SIGKILL");
    for (const pid of [orphan, leader]) if (pid !== undefined && (await alive(pid))) process.kill(pid, "SIGKILL");
  }
});
