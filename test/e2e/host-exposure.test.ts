/**
 * Host users are kept out of berth's trees (issue #12, the CVE-2021-41103 class): with a pod and a
 * running container, an unprivileged host user (uid/gid 65534, no groups, via `setpriv`) can neither
 * stat, read, write nor run anything under berth's root or state directory: container root
 * filesystems (also through the mount point /proc/self/mountinfo names, and a setuid-root copy the
 * container made), the pod's /dev/shm, the logs conmon writes, the content store, snapshots, the
 * database, netns pins, CNI results, attach sockets and exit files. Containers still work, also as
 * a non-root user. A tree an older berthd left with 0755/0644 modes is tightened at start-up.
 *
 * The test directory itself is made 0755 (mkdtemp makes it 0700, which alone would keep the
 * probe out and prove nothing): only berth's own modes stand between the probe and the files.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { chmod, lstat, mkdir, readdir, readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { isRoot } from "../support/berthd.js";
import { type Pod, type PodEnv, shell, startPodEnv } from "../support/pods.js";
import { skipUnlessCi } from "../support/skip.js";

const NOBODY = 65534;

/** What the probe may try on a path. */
type Op = "stat" | "read" | "write" | "create" | "exec" | "list";
interface Probe {
  path: string;
  ops: Op[];
}
/** Per path and op: "ok" or the errno code. */
type ProbeResult = Record<string, Partial<Record<Op, string>>>;

// Runs as the unprivileged user: reads the probes as JSON on stdin, tries each op, prints the outcomes.
// Writes never put data anywhere (append of nothing, O_NONBLOCK for FIFOs); a created file is reported.
const PROBE_SCRIPT = `
const fs = require("node:fs");
const { spawnSync } = require("node:child_process");
const probes = JSON.parse(fs.readFileSync(0, "utf8"));
const out = {};
const tryOp = (fn) => { try { fn(); return "ok"; } catch (e) { return e.code || String(e); } };
for (const { path, ops } of probes) {
  const r = (out[path] = {});
  for (const op of ops) {
    if (op === "stat") r.stat = tryOp(() => fs.lstatSync(path));
    if (op === "list") r.list = tryOp(() => fs.readdirSync(path));
    if (op === "read") r.read = tryOp(() => fs.closeSync(fs.openSync(path, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK)));
    if (op === "write") r.write = tryOp(() => fs.closeSync(fs.openSync(path, fs.constants.O_WRONLY | fs.constants.O_APPEND | fs.constants.O_NONBLOCK)));
    if (op === "create") r.create = tryOp(() => fs.closeSync(fs.openSync(path, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL, 0o777)));
    if (op === "exec") {
      const s = spawnSync(path, ["true"], { timeout: 2000, stdio: "ignore" });
      r.exec = s.error ? s.error.code || String(s.error) : "ok";
    }
  }
}
process.stdout.write(JSON.stringify(out));
`;

/** Runs the probes as uid/gid 65534 with no supplementary groups. */
async function probeAsNobody(probes: Probe[]): Promise<ProbeResult> {
  const child = spawn(
    "setpriv",
    [`--reuid=${NOBODY}`, `--regid=${NOBODY}`, "--clear-groups", process.execPath, "-e", PROBE_SCRIPT],
    { stdio: ["pipe", "pipe", "pipe"], cwd: "/", timeout: 60_000 },
  );
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (b: Buffer) => {
    stdout += b.toString();
  });
  child.stderr.on("data", (b: Buffer) => {
    stderr += b.toString();
  });
  child.stdin.end(JSON.stringify(probes));
  const code = await new Promise<number | null>((resolve) => child.once("close", resolve));
  assert.equal(code, 0, `probe failed: ${stderr}`);
  return JSON.parse(stdout) as ProbeResult;
}

/** Every path below `dir` (not following symlinks, not `dir` itself), with its depth; bounded. */
async function walk(dir: string, limit = 50_000): Promise<{ path: string; depth: number; dir: boolean }[]> {
  const out: { path: string; depth: number; dir: boolean }[] = [];
  const todo: { path: string; depth: number }[] = [{ path: dir, depth: 0 }];
  while (todo.length > 0) {
    const d = todo.pop() as { path: string; depth: number };
    const entries = await readdir(d.path, { withFileTypes: true }).catch(() => []);
    for (const e of entries) {
      const p = { path: join(d.path, e.name), depth: d.depth + 1, dir: e.isDirectory() };
      out.push(p);
      assert.ok(out.length < limit, `more than ${limit} entries under ${dir}`);
      if (p.dir) todo.push(p);
    }
  }
  return out;
}

/**
 * The probes for a whole tree and the check of their outcome. The tree's own directory is only
 * listed and read. Its direct children may be stat'ed when the directory is 0711 (`searchable`),
 * never opened; everything deeper may not even be stat'ed (EACCES: no path reaches it).
 */
async function treeProbes(dir: string, searchable: boolean): Promise<{ probes: Probe[]; check(r: ProbeResult): void }> {
  const entries = await walk(dir);
  const probes: Probe[] = [{ path: dir, ops: ["list", "read"] }];
  for (const e of entries) {
    if (e.depth === 1 && searchable) {
      // stat is allowed here; opening (listing) and creating inside are not.
      probes.push({ path: e.path, ops: e.dir ? ["read", "list"] : ["read", "write"] });
      if (e.dir) probes.push({ path: join(e.path, "planted"), ops: ["create"] });
    } else {
      probes.push({ path: e.path, ops: ["stat", "read", "write"] });
    }
  }
  return {
    probes,
    check(r) {
      const leaks: string[] = [];
      for (const p of probes) {
        for (const op of p.ops) {
          const got = r[p.path]?.[op];
          if (got !== "EACCES") leaks.push(`${op} ${p.path}: ${got}`);
        }
      }
      assert.deepEqual(leaks, [], `uid ${NOBODY} reached berth's files`);
      assert.ok(entries.length > 20, `walked only ${entries.length} entries of ${dir}`);
    },
  };
}

const modeOf = async (p: string) => (await stat(p)).mode & 0o7777;

describe("host exposure", {
  skip: skipUnlessCi(isRoot() ? false : "needs root (runc, conmon, CNI, setpriv)"),
  timeout: 240_000,
}, () => {
  let env: PodEnv;
  let pod: Pod;
  let containerId: string;
  let nonRootId: string;

  before(async () => {
    env = await startPodEnv({ bridge: "bte2e-hexp", subnet: "10.231.93.0/24", images: ["berth-test/busybox"] });
    await chmod(env.dir, 0o755);
    pod = await env.runPod("exposed");
    // As the kubelet makes it: the pod's log directory is world-readable; the log file must not be.
    await mkdir(pod.logDir, { recursive: true, mode: 0o755 });
    await chmod(join(env.dir, "logs"), 0o755);
    await chmod(pod.logDir, 0o755);
    // A root container leaves a setuid-root copy of its shell in its rootfs and something in /dev/shm.
    containerId = await env.startContainer(
      pod,
      shell(
        env,
        "root",
        "cp /bin/busybox /suid-sh && chmod 4755 /suid-sh && echo secret > /dev/shm/secret && echo ready && exec sleep 3600",
      ),
    );
    nonRootId = await env.startContainer(
      pod,
      shell(env, "nobody", "exec sleep 3600", { linux: { securityContext: { runAsUser: { value: 1000n } } } }),
    );
    const rootfs = join(env.d.state, "rootfs", containerId);
    for (let i = 0; i < 100 && !(await lstat(join(rootfs, "suid-sh")).catch(() => undefined)); i++) {
      await new Promise((r) => setTimeout(r, 50));
    }
  });
  after(async () => {
    await env?.close();
  });

  test("berth's root is 0700, its state dir 0711 and every directory berth made in it 0700", async () => {
    assert.equal(await modeOf(env.d.root), 0o700);
    assert.equal(await modeOf(env.d.state), 0o711);
    for (const sub of ["rootfs", "sandboxes", "netns", "runtime"]) {
      assert.equal(await modeOf(join(env.d.state, sub)), 0o700, sub);
    }
    for (const sub of ["content", "snapshots", "cni"]) assert.equal(await modeOf(join(env.d.root, sub)), 0o700, sub);
    assert.equal(await modeOf(join(env.d.root, "meta.db")), 0o600);
  });

  test(`as uid ${NOBODY}, nothing under the state dir is reachable: rootfs, shm, netns, runtime files`, async () => {
    const t = await treeProbes(env.d.state, true);
    t.check(await probeAsNobody(t.probes));
  });

  test(`as uid ${NOBODY}, nothing under the root dir is reachable: content, snapshots, database, CNI results`, async () => {
    const t = await treeProbes(env.d.root, false);
    const names = t.probes.map((p) => p.path);
    for (const part of ["content/blobs/sha256/", "snapshots/overlay/snapshots/", "meta.db", "cni/results/"]) {
      assert.ok(
        names.some((n) => n.includes(`${env.d.root}/${part}`)),
        `the walk covers ${part}`,
      );
    }
    t.check(await probeAsNobody(t.probes));
  });

  test(`as uid ${NOBODY}, the container's rootfs (also by its mountinfo path), setuid copy, shm and log are out of reach`, async () => {
    const mountinfo = await readFile("/proc/self/mountinfo", "utf8");
    const mountPoints = mountinfo
      .split("\n")
      .map((l) => l.split(" ")[4] ?? "")
      .filter((mp) => mp.includes(containerId) || mp.includes(pod.id));
    assert.ok(mountPoints.length > 0, "the container's rootfs is in mountinfo");
    const rootfs = join(env.d.state, "rootfs", containerId);
    const suid = join(rootfs, "suid-sh");
    assert.equal(((await stat(suid)).mode & 0o4000) !== 0, true, "the container made a setuid file");
    const shm = join(env.d.state, "sandboxes", pod.id, "shm");
    assert.equal(await readFile(join(shm, "secret"), "utf8"), "secret\n");
    const log = join(pod.logDir, "root.log");
    await stat(log);
    const probes: Probe[] = [
      ...mountPoints.map((mp): Probe => ({ path: mp, ops: ["stat", "list"] })),
      ...mountPoints.map((mp): Probe => ({ path: join(mp, "bin", "busybox"), ops: ["stat", "read", "exec"] })),
      { path: suid, ops: ["stat", "read", "exec"] },
      { path: join(rootfs, "bin", "sh"), ops: ["stat", "exec"] },
      { path: join(shm, "secret"), ops: ["stat", "read", "write"] },
      { path: join(shm, "planted"), ops: ["create"] },
      { path: join(rootfs, "tmp", "planted"), ops: ["create"] },
      { path: log, ops: ["read", "write"] },
    ];
    const r = await probeAsNobody(probes);
    const leaks = probes.flatMap((p) =>
      p.ops.filter((op) => r[p.path]?.[op] !== "EACCES").map((op) => `${op} ${p.path}: ${r[p.path]?.[op]}`),
    );
    assert.deepEqual(leaks, []);
  });

  test("the pod's /dev/shm stays nosuid,nodev,noexec and containers, also non-root ones, work as before", async () => {
    const shm = join(env.d.state, "sandboxes", pod.id, "shm");
    const line = (await readFile("/proc/self/mountinfo", "utf8")).split("\n").find((l) => l.split(" ")[4] === shm);
    assert.ok(line, "shm is mounted");
    for (const opt of ["nosuid", "nodev", "noexec"]) assert.match(line, new RegExp(`\\b${opt}\\b`));
    const exec = async (id: string, cmd: string[]) => {
      const r = await env.d.client.runtime.execSync({ containerId: id, cmd, timeout: 0n });
      return { out: new TextDecoder().decode(r.stdout), code: r.exitCode };
    };
    // The non-root container reads the pod's files and shares its /dev/shm with the root one.
    assert.deepEqual(await exec(nonRootId, ["id", "-u"]), { out: "1000\n", code: 0 });
    assert.deepEqual(await exec(nonRootId, ["cat", "/dev/shm/secret"]), { out: "secret\n", code: 0 });
    assert.equal((await exec(nonRootId, ["sh", "-c", "echo x > /dev/shm/mine && cat /dev/shm/mine"])).out, "x\n");
    assert.equal((await exec(nonRootId, ["cat", "/etc/hostname"])).out, "exposed\n");
    assert.equal((await exec(nonRootId, ["sh", "-c", "grep -c exposed /etc/hosts"])).code, 0);
    // Inside, the setuid copy is still setuid: the container's view of its rootfs is unchanged.
    assert.equal((await exec(containerId, ["stat", "-c", "%a", "/suid-sh"])).out, "4755\n");
    assert.equal((await exec(nonRootId, ["ls", "/"])).code, 0);
  });

  test("start-up tightens a tree an older berthd left at 0755/0644, and running containers survive it", async () => {
    await env.d.stop("SIGTERM");
    const loosened: string[] = [env.d.root, env.d.state];
    for (const sub of ["rootfs", "sandboxes", "netns", "runtime", "runtime/containers", "runtime/exits"]) {
      loosened.push(join(env.d.state, sub));
    }
    for (const sub of ["content", "snapshots", "snapshots/overlay", "snapshots/overlay/snapshots", "cni/results"]) {
      loosened.push(join(env.d.root, sub));
    }
    for (const p of loosened) await chmod(p, 0o755);
    await chmod(join(env.d.root, "meta.db"), 0o644);
    // Before the restart the probe does get in: the test can tell a loose tree from a tight one.
    const before = await probeAsNobody([
      { path: join(env.d.state, "rootfs", containerId, "bin", "busybox"), ops: ["stat"] },
    ]);
    assert.equal(Object.values(before)[0]?.stat, "ok");

    await env.restart();
    assert.equal(await modeOf(env.d.root), 0o700);
    assert.equal(await modeOf(env.d.state), 0o711);
    for (const p of loosened.slice(2)) assert.equal(await modeOf(p), 0o700, p);
    assert.equal(await modeOf(join(env.d.root, "meta.db")), 0o600);
    for (const [dir, searchable] of [
      [env.d.state, true],
      [env.d.root, false],
    ] as const) {
      const t = await treeProbes(dir, searchable);
      t.check(await probeAsNobody(t.probes));
    }
    const r = await env.d.client.runtime.execSync({ containerId, cmd: ["cat", "/dev/shm/secret"], timeout: 0n });
    assert.equal(new TextDecoder().decode(r.stdout), "secret\n");
  });
});
