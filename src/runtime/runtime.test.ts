/**
 * End-to-end tests of the runtime against the real runc and conmon, as root. Each container gets a busybox
 * rootfs built in a temp dir and a cgroup under a test-specific parent; everything is torn down afterwards
 * with runc/kill/rmdir directly, not through the code under test.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import {
  access,
  chmod,
  copyFile,
  mkdir,
  mkdtemp,
  readdir,
  readFile,
  rename,
  rm,
  rmdir,
  stat,
  symlink,
} from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { skipUnlessCi } from "../../test/support/skip.js";
import { isKind } from "../errdefs/index.js";
import {
  buildSpec,
  currentCapabilities,
  type SpecOpt,
  withArgs,
  withCgroupsPath,
  withEnv,
  withPrivileged,
  withResources,
  withRootPath,
  withSeccomp,
} from "../oci/index.js";
import { type ContainerExit, type ContainerRuntime, createContainerRuntime, createRunc } from "./index.js";

const RUNC = "/usr/sbin/runc";
const CONMON = "/usr/bin/conmon";

function skipReason(): string | false {
  if (process.getuid?.() !== 0) return "needs root (runc and conmon create namespaces and cgroups)";
  for (const bin of [RUNC, CONMON, "/bin/busybox"]) {
    try {
      execFileSync(bin, ["--help"], { stdio: "ignore" });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return `${bin} is not installed`;
    }
  }
  return false;
}

const skip = skipUnlessCi(skipReason());
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function waitUntil(what: string, check: () => Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

describe("container runtime with runc and conmon", { skip, timeout: 180_000 }, () => {
  let tmp: string;
  let rootfs: string;
  let runcRoot: string;
  let stateDir: string;
  let rt: ContainerRuntime;
  const cgroupParent = `berth-test-${process.pid}-${Date.now().toString(36)}`;
  const ids: string[] = [];
  const exits: ContainerExit[] = [];

  const newRuntime = () =>
    createContainerRuntime({ stateDir, handlers: { runc: { path: RUNC, root: runcRoot } }, conmonPath: CONMON });

  /** Creates a busybox container running `script`; returns its id and log path. */
  async function create(
    name: string,
    script: string,
    opts: SpecOpt[] = [],
    tty = false,
  ): Promise<{ id: string; logPath: string }> {
    const id = `${name}-${Math.random().toString(16).slice(2, 10)}`;
    ids.push(id);
    const spec = await buildSpec(
      withRootPath(rootfs),
      withArgs(["/bin/sh", "-c", script]),
      withCgroupsPath(`/${cgroupParent}/${id}`),
      ...opts,
      withSeccomp("RuntimeDefault"),
    );
    const logPath = join(tmp, "logs", id, "0.log");
    await rt.createContainer({ id, spec, logPath, tty });
    return { id, logPath };
  }

  /** Creates and starts a busybox container running `script`. */
  async function run(
    name: string,
    script: string,
    ...opts: SpecOpt[]
  ): Promise<{ id: string; logPath: string; ms: number }> {
    const t0 = performance.now();
    const c = await create(name, script, opts);
    await rt.start(c.id);
    return { ...c, ms: performance.now() - t0 };
  }

  before(async () => {
    tmp = await mkdtemp("/tmp/berth-rt-");
    rootfs = join(tmp, "rootfs");
    runcRoot = join(tmp, "runc");
    stateDir = join(tmp, "state");
    for (const d of ["bin", "proc", "sys", "dev", "tmp", "etc"]) await mkdir(join(rootfs, d), { recursive: true });
    await copyFile("/bin/busybox", join(rootfs, "bin", "busybox"));
    await chmod(join(rootfs, "bin", "busybox"), 0o755);
    const applets = execFileSync("/bin/busybox", ["--list"], { encoding: "utf8" }).trim().split("\n");
    for (const a of applets) if (a && a !== "busybox") await symlink("busybox", join(rootfs, "bin", a));
    rt = await newRuntime();
    rt.onExit((e) => exits.push(e));
  });

  after(async () => {
    await rt?.close();
    for (const id of ids) {
      execFileSync(RUNC, ["--root", runcRoot, "delete", "--force", id], { stdio: "ignore" });
      const pid = Number.parseInt(
        await readFile(join(stateDir, "containers", id, "conmon.pid"), "utf8").catch(() => ""),
        10,
      );
      const cmd = pid > 0 ? await readFile(`/proc/${pid}/cmdline`, "utf8").catch(() => "") : "";
      if (cmd.includes("conmon") && cmd.includes(id)) process.kill(pid, "SIGKILL");
    }
    for (const ctrl of await readdir("/sys/fs/cgroup")) {
      const parent = join("/sys/fs/cgroup", ctrl, cgroupParent);
      for (const child of await readdir(parent, { withFileTypes: true }).catch(() => [])) {
        if (child.isDirectory()) await rmdir(join(parent, child.name)).catch(() => {});
      }
      await rmdir(parent).catch(() => {});
    }
    if (tmp) await rm(tmp, { recursive: true, force: true });
  });

  test("output reaches the CRI log, exit code and finish time reach status and onExit", async (t) => {
    const { id, logPath, ms } = await run("echo", "echo hello; echo err >&2; exit 3");
    t.diagnostic(`create+start: ${ms.toFixed(1)} ms`);
    await waitUntil("exit", async () => (await rt.status(id)).state === "stopped");
    const st = await rt.status(id);
    assert.equal(st.exitCode, 3);
    assert.equal(st.oomKilled, false);
    assert.ok(st.finishedAt && st.createdAt && st.finishedAt.getTime() >= st.createdAt.getTime() - 10);
    const lines = (await readFile(logPath, "utf8")).trimEnd().split("\n");
    const ts = String.raw`\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}[+-]\d\d:\d\d`;
    assert.deepEqual(lines.length, 2);
    assert.match(lines.find((l) => l.includes(" stdout ")) ?? "", new RegExp(`^${ts} stdout F hello$`));
    assert.match(lines.find((l) => l.includes(" stderr ")) ?? "", new RegExp(`^${ts} stderr F err$`));
    await waitUntil("onExit", async () => exits.some((e) => e.id === id));
    assert.equal(exits.find((e) => e.id === id)?.exitCode, 3);
    await rt.delete(id);
    await assert.rejects(rt.status(id), (err) => isKind(err, "NotFound"));
    await rt.delete(id); // idempotent
  });

  test("stop escalates to SIGKILL when the stop signal is ignored, and is idempotent", async () => {
    const { id, logPath } = await run("stop", `trap "echo got TERM" TERM; echo ready; while true; do sleep 1; done`);
    await waitUntil("ready", async () => (await readFile(logPath, "utf8").catch(() => "")).includes("ready"));
    const t0 = Date.now();
    await rt.stop(id, { timeoutSec: 2, stopSignal: "SIGTERM" });
    const elapsed = Date.now() - t0;
    assert.ok(elapsed >= 2000 && elapsed < 10_000, `stop took ${elapsed} ms`);
    const st = await rt.status(id);
    assert.equal(st.state, "stopped");
    assert.equal(st.exitCode, 137);
    await rt.stop(id, { timeoutSec: 2 });
    await rt.delete(id);
  });

  test("execSync separates stdout, stderr and exit code; a timeout is DeadlineExceeded", async () => {
    const { id } = await run("exec", "sleep 1000");
    await access(rt.attachSocketPath(id));
    await access(rt.ctlFifoPath(id));
    const r = await rt.execSync(id, ["/bin/sh", "-c", "echo out; echo err >&2; printf tail; exit 7"]);
    assert.deepEqual(r, { stdout: "out\ntail", stderr: "err\n", exitCode: 7 });
    assert.deepEqual(await rt.execSync(id, ["/bin/true"]), { stdout: "", stderr: "", exitCode: 0 });
    // The RuntimeDefault profile is loaded (mode 2 = filter) and applies to exec'd processes too.
    assert.match((await rt.execSync(id, ["/bin/grep", "Seccomp:", "/proc/self/status"])).stdout, /Seccomp:\s+2/);

    const t0 = Date.now();
    await assert.rejects(rt.execSync(id, ["/bin/sleep", "30"], { timeoutSec: 1 }), {
      kind: "DeadlineExceeded",
      message: /command timed out after 1s/,
    });
    assert.ok(Date.now() - t0 < 10_000);
    // The timed-out command was killed, and the container still runs.
    const ps = await rt.execSync(id, ["/bin/ps", "-o", "args"]);
    assert.doesNotMatch(ps.stdout, /sleep 30/);
    assert.equal((await rt.status(id)).state, "running");

    await assert.rejects(rt.execSync(id, ["/no/such/binary"]), /no such file|not found/i);
    await rt.delete(id);
  });

  test("an OOM kill is reported", async () => {
    const { id } = await run(
      "oom",
      "head -c 200m /dev/zero | tail",
      withResources({ memoryLimitBytes: 16 * 1024 * 1024 }, { swap: true, hugetlb: false }),
    );
    await waitUntil("exit", async () => (await rt.status(id)).state === "stopped", 30_000);
    const st = await rt.status(id);
    assert.equal(st.oomKilled, true);
    assert.equal(st.exitCode, 137);
    await rt.delete(id);
  });

  test("a new runtime over the same state dir sees a running container and can stop it", async () => {
    const { id } = await run("restart", "sleep 1000");
    await rt.close();
    rt = await newRuntime();
    rt.onExit((e) => exits.push(e));
    const { statuses, missing, unknown } = await rt.recover([id, "gone-container"]);
    assert.equal(statuses.get(id)?.state, "running");
    assert.deepEqual(missing, ["gone-container"]);
    assert.deepEqual(unknown, []);
    await rt.stop(id, { timeoutSec: 1 });
    const st = await rt.status(id);
    assert.equal(st.state, "stopped");
    assert.ok((st.exitCode ?? 0) >= 128, `exit code ${st.exitCode}`);
    await waitUntil("onExit after restart", async () => exits.some((e) => e.id === id));
    await rt.delete(id);
  });

  test("reopenLog after a rename makes conmon log to a new file at the same path", async () => {
    const { id, logPath } = await run("logs", "i=0; while true; do echo line$i; i=$((i+1)); sleep 0.05; done");
    await waitUntil("first lines", async () => (await readFile(logPath, "utf8").catch(() => "")).includes("line3"));
    await rename(logPath, `${logPath}.1`);
    await rt.reopenLog(id);
    await waitUntil("lines in the new file", async () =>
      /stdout F line\d+/.test(await readFile(logPath, "utf8").catch(() => "")),
    );
    const rotated = await readFile(`${logPath}.1`, "utf8");
    assert.match(rotated, /stdout F line0\n/);
    const firstNew = /line(\d+)/.exec(await readFile(logPath, "utf8"))?.[1];
    assert.ok(Number(firstNew) > 3);
    await rt.stop(id);
    await assert.rejects(rt.reopenLog(id), (err) => isKind(err, "FailedPrecondition"));
    await rt.delete(id);
  });

  test("without a log path output goes to the state dir; reopenLog never replaces a device node", async () => {
    const id = `nolog-${Math.random().toString(16).slice(2, 10)}`;
    ids.push(id);
    const spec = await buildSpec(withRootPath(rootfs), withArgs(["/bin/sh", "-c", "echo quiet; sleep 1000"]));
    await rt.createContainer({ id, spec });
    await rt.start(id);
    const log = join(stateDir, "containers", id, "container.log");
    assert.equal(rt.defaultLogPath(id), log);
    await waitUntil("default log", async () => (await readFile(log, "utf8").catch(() => "")).includes("quiet"));
    await rt.delete(id);

    const id2 = `devnull-${Math.random().toString(16).slice(2, 10)}`;
    ids.push(id2);
    await rt.createContainer({ id: id2, spec, logPath: "/dev/null" });
    await rt.start(id2);
    await assert.rejects(
      rt.reopenLog(id2),
      (err) => isKind(err, "FailedPrecondition") && /not a regular file/.test(String(err)),
    );
    assert.ok((await stat("/dev/null")).isCharacterDevice());
    await rt.delete(id2);
  });

  test("updateResources changes the cgroup limit and the recorded spec", async () => {
    const { id } = await run(
      "update",
      "sleep 1000",
      withResources({ memoryLimitBytes: 64 * 1024 * 1024 }, { swap: true }),
    );
    const file = join("/sys/fs/cgroup/memory", cgroupParent, id, "memory.limit_in_bytes");
    assert.equal((await readFile(file, "utf8")).trim(), String(64 * 1024 * 1024));
    await rt.updateResources(id, { memory: { limit: 32 * 1024 * 1024, swap: 32 * 1024 * 1024 } });
    assert.equal((await readFile(file, "utf8")).trim(), String(32 * 1024 * 1024));
    const spec = JSON.parse(await readFile(join(stateDir, "containers", id, "config.json"), "utf8"));
    assert.equal(spec.linux.resources.memory.limit, 32 * 1024 * 1024);
    assert.ok(spec.linux.resources.devices.length > 1, "device rules kept");
    await rt.delete(id);
  });

  test("a privileged container gets the daemon's capabilities and host devices", async () => {
    const { id, logPath } = await run(
      "priv",
      "grep CapEff /proc/self/status; ls /dev/null /dev/kmsg",
      withPrivileged(),
    );
    await waitUntil("exit", async () => (await rt.status(id)).state === "stopped");
    const out = await readFile(logPath, "utf8");
    const mask = /CapEff:\s+([0-9a-f]+)/.exec(out)?.[1];
    const ours = (await readFile("/proc/self/status", "utf8")).match(/CapEff:\s+([0-9a-f]+)/)?.[1];
    assert.equal(mask, ours, out);
    assert.ok((await currentCapabilities()).length > 14);
    assert.match(out, /stdout F \/dev\/kmsg/);
    assert.equal((await rt.status(id)).exitCode, 0);
    await rt.delete(id);
  });

  test("prepareExec adds TERM=xterm for a terminal unless the container's env has a TERM", async () => {
    const termOf = async (id: string, tty: boolean) => {
      const cmd = await rt.prepareExec(id, ["true"], { tty });
      try {
        const processPath = cmd.args[cmd.args.indexOf("--process") + 1] ?? "";
        const proc = JSON.parse(await readFile(processPath, "utf8")) as { env?: string[] };
        return (proc.env ?? []).filter((e) => e.startsWith("TERM="));
      } finally {
        await cmd.cleanup();
      }
    };
    const plain = await create("exec-term", "sleep 1000");
    assert.deepEqual(await termOf(plain.id, true), ["TERM=xterm"]);
    assert.deepEqual(await termOf(plain.id, false), []);
    const own = await create("exec-own-term", "sleep 1000", [withEnv(["TERM=vt100"])]);
    assert.deepEqual(await termOf(own.id, true), ["TERM=vt100"]);
    await rt.delete(plain.id);
    await rt.delete(own.id);
  });

  test("a created container that never started can be stopped and deleted", async () => {
    const { id } = await create("never", "echo never-runs");
    const st = await rt.status(id);
    assert.equal(st.state, "created");
    assert.ok((st.pid ?? 0) > 0);
    await rt.stop(id, { timeoutSec: 1 });
    assert.equal((await rt.status(id)).state, "stopped");
    await rt.delete(id);
  });

  test("a tty container logs its terminal output", async () => {
    const { id, logPath } = await create("tty", "test -t 1 && echo on-a-tty", [], true);
    await rt.start(id);
    await waitUntil("exit", async () => (await rt.status(id)).state === "stopped");
    assert.match(await readFile(logPath, "utf8"), /stdout F on-a-tty\r?\n/);
    assert.equal((await rt.status(id)).exitCode, 0);
    await rt.delete(id);
  });

  test("runc errors carry kinds: an unknown container is NotFound", async () => {
    const runc = createRunc({ path: RUNC, root: join(tmp, "runc-empty") });
    await assert.rejects(
      runc.state("nope"),
      (err) => isKind(err, "NotFound") && /container does not exist/.test(String(err)),
    );
    await assert.rejects(runc.kill("nope", "SIGTERM"), (err) => isKind(err, "NotFound"));
    assert.deepEqual(await runc.list(), []);
    assert.deepEqual(runc.execArgv("c", { processPath: "/p.json", detach: true }), [
      RUNC,
      `--root=${join(tmp, "runc-empty")}`,
      "exec",
      "--process",
      "/p.json",
      "--detach",
      "c",
    ]);
  });

  test("create with a duplicate id is AlreadyExists and a failing create leaves nothing behind", async () => {
    const { id } = await run("dup", "sleep 1000");
    const spec = await buildSpec(withRootPath(rootfs), withArgs(["/bin/true"]));
    await assert.rejects(rt.createContainer({ id, spec, logPath: join(tmp, "x.log") }), (err) =>
      isKind(err, "AlreadyExists"),
    );
    await rt.delete(id);

    const bad = `bad-${Date.now()}`;
    ids.push(bad);
    const badSpec = await buildSpec(withRootPath(join(tmp, "no-such-rootfs")), withArgs(["/bin/true"]));
    await assert.rejects(
      rt.createContainer({ id: bad, spec: badSpec, logPath: join(tmp, "bad.log") }),
      /create container bad-\d+: runc create: /,
    );
    await assert.rejects(access(join(stateDir, "containers", bad)));
    await assert.rejects(rt.status(bad), (err) => isKind(err, "NotFound"));
  });
});
