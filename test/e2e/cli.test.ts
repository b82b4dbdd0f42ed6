import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { existsSync, statSync } from "node:fs";
import { mkdir, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { after, before, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { isRoot } from "../support/berthd.js";
import { BERTH_CLI, type CliRun, runCli } from "../support/cli.js";
import { eventually, type PodEnv, sleep, startPodEnv } from "../support/pods.js";
import { skipUnlessCi } from "../support/skip.js";

// The berth CLI end to end: the built CLI as a child process against a real berthd (with runc,
// conmon, CNI and the fixture registry), checking what a user sees: tables, JSON, errors, exit codes.

const REPO = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const CLI = BERTH_CLI;

/** Builds dist/ when the CLI there is missing or older than its sources. */
function ensureBuilt(): void {
  if (process.env.BERTH_TEST_CLI) return;
  const newest = Math.max(...[join(REPO, "src", "cli"), join(REPO, "src", "bin")].flatMap((d) => readdirMtimes(d)));
  if (existsSync(CLI) && statSync(CLI).mtimeMs >= newest) return;
  const r = spawnSync("npx", ["tsc", "-p", "tsconfig.json"], { cwd: REPO, encoding: "utf8" });
  // tsc emits even when another module has type errors; what matters is that the CLI is there.
  if (!existsSync(CLI)) throw new Error(`building the CLI failed: ${r.stdout}${r.stderr}`);
}

function readdirMtimes(dir: string): number[] {
  return spawnSync("find", [dir, "-name", "*.ts", "-newermt", "@0", "-printf", "%T@\\n"], { encoding: "utf8" })
    .stdout.split("\n")
    .filter(Boolean)
    .map((s) => Number(s) * 1000);
}

type Run = CliRun;

const HEX64 = /^[0-9a-f]{64}$/;

describe("the berth CLI", { skip: skipUnlessCi(isRoot() ? false : "needs root (runc, conmon, CNI, mounts)") }, () => {
  let env: PodEnv;
  let berth: (args: string[], options?: { input?: string; timeoutMs?: number }) => Promise<Run>;
  let busybox: string;
  let busyboxId: string;
  let configDir: string;

  /** Runs the CLI and expects exit code 0; returns stdout. */
  const ok = async (args: string[], options?: { input?: string; timeoutMs?: number }) => {
    const r = await berth(args, options);
    assert.equal(r.code, 0, `berth ${args.join(" ")} exited ${r.code}: ${r.stderr}`);
    return r.stdout;
  };

  /** Writes a crictl-style pod config (snake_case JSON) and returns its path. */
  const podConfig = async (name: string, extra: Record<string, unknown> = {}) => {
    const path = join(configDir, `${name}-pod.json`);
    const logDir = join(env.dir, "logs", name);
    await mkdir(logDir, { recursive: true });
    const config = {
      metadata: { name, namespace: "cli", uid: `uid-${name}`, attempt: 0 },
      hostname: name,
      log_directory: logDir,
      labels: { suite: "cli", pod: name },
      linux: {},
      ...extra,
    };
    await writeFile(path, JSON.stringify(config, null, 2));
    return path;
  };

  /** Writes a container config (lowerCamelCase YAML) running `script` in busybox. */
  const containerConfig = async (name: string, script: string) => {
    const path = join(configDir, `${name}-container.yaml`);
    const yaml = [
      "metadata:",
      `  name: ${name}`,
      "image:",
      `  image: ${busybox}`,
      "command: [sh, -c]",
      `args: [${JSON.stringify(script)}]`,
      `logPath: ${name}.log`,
      "labels:",
      `  role: ${name}`,
    ].join("\n");
    await writeFile(path, `${yaml}\n`);
    return path;
  };

  before(async () => {
    ensureBuilt();
    env = await startPodEnv({ bridge: "bte2e-cli", subnet: "10.231.17.0/24", images: [] });
    berth = (args, options) => runCli(["--socket", env.d.socket, ...args], options);
    busybox = env.image("berth-test/busybox");
    busyboxId = env.reg.image("berth-test/busybox").imageId;
    configDir = join(env.dir, "cli-configs");
    await mkdir(configDir, { recursive: true });
  });
  after(async () => {
    await env?.close();
  });

  test("a daemon that is not running is one clear line and exit code 1", async () => {
    const r = await runCli(["--socket", join(env.dir, "nobody-here.sock"), "ps"]);
    assert.equal(r.code, 1);
    assert.equal(r.stdout, "");
    assert.match(r.stderr, /^berth: cannot reach a CRI runtime at .*nobody-here\.sock: is berthd running\? .*\n$/);
    assert.equal(r.stderr.split("\n").length, 2, "exactly one line");
    const viaEnv = await runCli(["version"], { env: { BERTH_SOCKET: join(env.dir, "nobody-here.sock") } });
    assert.equal(viaEnv.code, 1);
    assert.match(viaEnv.stderr, /nobody-here\.sock: is berthd running/);
  });

  test("version and info, as a table and as JSON/YAML", async () => {
    assert.match(
      await ok(["version"]),
      /^Version:\s+\S+\nRuntimeName:\s+berth\nRuntimeVersion:\s+\S+\nRuntimeApiVersion:\s+v1\n$/,
    );
    const v = JSON.parse(await ok(["-o", "json", "version"]));
    assert.equal(v.runtimeName, "berth");
    assert.match(await ok(["version", "-o", "yaml"]), /^runtimeName: berth$/m);
    const info = JSON.parse(await ok(["info"]));
    assert.ok(info.status.conditions.some((c: { type: string }) => c.type === "RuntimeReady"));
  });

  test("info -v shows the daemon's config and its event-loop delay figures", async () => {
    const info = JSON.parse(await ok(["info", "-v"]));
    assert.equal(info.info.config.config.socket, env.d.socket);
    const loop = info.info.eventLoop;
    for (const key of ["p50Ms", "p99Ms", "maxMs", "meanMs", "stalls", "worstStallMs"]) {
      assert.equal(typeof loop[key], "number", `${key} in ${JSON.stringify(loop)}`);
      assert.ok(loop[key] >= 0, `${key} in ${JSON.stringify(loop)}`);
    }
    assert.ok(loop.p99Ms <= loop.maxMs, JSON.stringify(loop));
    assert.equal(loop.stallThresholdMs, 100);
    assert.ok(Date.parse(loop.since) <= Date.now(), loop.since);
    assert.deepEqual(JSON.parse(await ok(["info"])).info, {}, "figures only with -v");
  });

  test("pull shows plain progress lines off a terminal and the image ID; images lists it", async () => {
    const r = await berth(["pull", busybox]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, `Image is up to date for ${busyboxId}\n`);
    // berthd reports every layer (berth.v1.Images/Pull): plain lines per state change off a terminal
    // (which states show depends on timing; every layer ends "done").
    const lines = r.stderr.split("\n");
    assert.equal(lines[0], `Pulling ${busybox} ...`);
    assert.match(lines.at(-2) ?? "", new RegExp(`^Pulled ${busybox} \\(${busyboxId}\\) in [\\d.]+s$`));
    for (const layer of env.reg.image("berth-test/busybox").layers) {
      assert.ok(
        lines.some((l) => l.startsWith(`  ${layer.slice(7, 19)}: done `)),
        r.stderr,
      );
    }

    const table = (await ok(["images"])).split("\n");
    assert.match(table[0] ?? "", /^IMAGE\s{3,}TAG\s{3,}IMAGE ID\s{3,}SIZE$/);
    const row = table.find((l) => l.startsWith(`${busybox.replace(/:latest$/, "")} `));
    assert.ok(row, table.join("\n"));
    assert.match(row, new RegExp(`^\\S+\\s+latest\\s+${busyboxId.slice(7, 20)}\\s+[\\d.]+k?MB$`));
    assert.deepEqual((await ok(["images", "-q"])).trim().split("\n"), [busyboxId]);
    assert.match((await ok(["images", "--digests"])).split("\n")[0] ?? "", /^IMAGE\s+TAG\s+DIGEST\s+IMAGE ID\s+SIZE$/);
    const json = JSON.parse(await ok(["-o", "json", "images"]));
    assert.equal(json.images[0].id, busyboxId);
    assert.ok(json.images[0].repoTags.includes(busybox));
    // inspecti by tag and by a unique prefix of the ID.
    for (const ref of [busybox, busyboxId.slice(7, 19)]) {
      const doc = JSON.parse(await ok(["inspecti", ref]));
      assert.equal(doc.status.id, busyboxId);
    }
    const fields = await ok(["inspecti", "-o", "table", busybox]);
    assert.match(fields, new RegExp(`^ID:\\s+${busyboxId}$`, "m"));
  });

  test("unknown IDs are NotFound in one line with exit code 1", async () => {
    const cases: [string[], RegExp][] = [
      [["inspect", "0000deadbeef"], /^berth: NotFound: container "0000deadbeef" not found\n$/],
      [["stop", "0000deadbeef"], /^berth: NotFound: container "0000deadbeef" not found\n$/],
      [["logs", "0000deadbeef"], /^berth: NotFound: no container or pod "0000deadbeef"\n$/],
      [["exec", "0000deadbeef", "true"], /^berth: NotFound: container "0000deadbeef" not found\n$/],
      [["inspectp", "0000deadbeef"], /^berth: NotFound: pod sandbox "0000deadbeef" not found\n$/],
      [["stopp", "0000deadbeef"], /^berth: NotFound: pod sandbox "0000deadbeef" not found\n$/],
      [["rmi", "0000deadbeef"], /^berth: NotFound: image "0000deadbeef" not found\n$/],
      [
        ["inspecti", "example.invalid/nothing:here"],
        /^berth: NotFound: image "example.invalid\/nothing:here" not found\n$/,
      ],
    ];
    for (const [args, stderr] of cases) {
      const r = await berth(args);
      assert.equal(r.code, 1, args.join(" "));
      assert.match(r.stderr, stderr, args.join(" "));
      assert.equal(r.stdout, "", args.join(" "));
    }
  });

  test("a config file with an unknown field is rejected naming the field", async () => {
    const path = join(configDir, "bad-pod.json");
    await writeFile(path, JSON.stringify({ metadata: { name: "bad", namespace: "cli", uid: "u" }, hostnme: "typo" }));
    const r = await berth(["runp", path]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^berth: .*bad-pod\.json: .*hostnme/);
  });

  test("runp, create, start, ps, exec, logs, stop, rm, stopp, rmp: a full round trip with ID prefixes", async () => {
    const podPath = await podConfig("roundtrip");
    const podId = (await ok(["runp", podPath])).trim();
    assert.match(podId, HEX64);
    const podPrefix = podId.slice(0, 7);

    // pods: table, filters, quiet, JSON.
    const pods = (await ok(["pods"])).split("\n");
    assert.match(pods[0] ?? "", /^POD ID\s{3,}CREATED\s{3,}STATE\s{3,}NAME\s{3,}NAMESPACE\s{3,}ATTEMPT\s{3,}RUNTIME$/);
    assert.match(
      pods.find((l) => l.startsWith(podId.slice(0, 13))) ?? "",
      new RegExp(
        `^${podId.slice(0, 13)}\\s+(Less than a second|1 second|\\d+ seconds) ago\\s+Ready\\s+roundtrip\\s+cli\\s+0\\s+(runc|\\(default\\))$`,
      ),
    );
    assert.deepEqual((await ok(["pods", "-q", "--name", "^roundtrip$"])).trim().split("\n"), [podId]);
    assert.equal(await ok(["pods", "-q", "--name", "^roundtrip$", "--state", "notready"]), "");
    assert.deepEqual((await ok(["pods", "-q", "--label", "pod=roundtrip", "--namespace", "cli"])).trim().split("\n"), [
      podId,
    ]);
    assert.equal((await ok(["pods", "-q", "--id", podPrefix])).trim(), podId);
    const podsJson = JSON.parse(await ok(["pods", "-o", "json", "--name", "^roundtrip$"]));
    assert.equal(podsJson.items[0].id, podId);
    assert.equal(podsJson.items[0].state, "SANDBOX_READY");
    const inspectp = JSON.parse(await ok(["inspectp", podPrefix]));
    assert.equal(inspectp.status.id, podId);
    assert.match(inspectp.status.network.ip, /^10\.231\.17\.\d+$/);
    assert.match(await ok(["inspectp", "-o", "table", podPrefix]), /^Status:\s+Ready$/m);

    // A long-running container: create (the image is pulled already), start, ps, exec.
    const sleeperPath = await containerConfig(
      "sleeper",
      "trap 'exit 0' TERM; echo started; while true; do sleep 0.1; done",
    );
    const sleeper = (await ok(["create", podPrefix, sleeperPath, podPath])).trim();
    assert.match(sleeper, HEX64);
    const created = await ok(["ps", "-a", "--pod", podPrefix]);
    assert.match(
      created,
      new RegExp(
        `^${sleeper.slice(0, 13)}\\s+\\S+\\s+.+ ago\\s+Created\\s+sleeper\\s+0\\s+${podId.slice(0, 13)}\\s+roundtrip$`,
        "m",
      ),
    );
    assert.equal(await ok(["start", sleeper.slice(0, 8)]), `${sleeper}\n`);
    const ps = (await ok(["ps"])).split("\n");
    assert.match(
      ps[0] ?? "",
      /^CONTAINER\s{3,}IMAGE\s{3,}CREATED\s{3,}STATE\s{3,}NAME\s{3,}ATTEMPT\s{3,}POD ID\s{3,}POD$/,
    );
    assert.match(ps.find((l) => l.startsWith(sleeper.slice(0, 13))) ?? "", /\sRunning\s+sleeper\s+0\s/);
    assert.deepEqual((await ok(["ps", "-q", "--name", "^sleep", "--label", "role=sleeper"])).trim().split("\n"), [
      sleeper,
    ]);
    assert.equal(await ok(["ps", "-q", "--state", "exited", "--pod", podId]), "");
    const psJson = JSON.parse(await ok(["-o", "json", "ps", "--pod", podPrefix]));
    assert.equal(psJson.containers[0].id, sleeper);
    assert.equal(psJson.containers[0].state, "CONTAINER_RUNNING");

    // exec (ExecSync): output on both streams, the command's exit code, its options left alone.
    const ex = await berth(["exec", sleeper.slice(0, 10), "sh", "-c", "echo out; echo err >&2; exit 7"]);
    assert.deepEqual(ex, { code: 7, stdout: "out\n", stderr: "err\n" });
    assert.match(await ok(["exec", sleeper.slice(0, 10), "ls", "-la", "/"]), /^d.* etc$/m);

    // inspect: JSON status with verbose info, and the field list.
    const inspect = JSON.parse(await ok(["inspect", sleeper.slice(0, 6)]));
    assert.equal(inspect.status.id, sleeper);
    assert.equal(inspect.status.state, "CONTAINER_RUNNING");
    assert.match(inspect.status.logPath, /sleeper\.log$/);
    assert.match(await ok(["inspect", "-o", "table", sleeper.slice(0, 6)]), /^State:\s+Running$/m);

    // A container that writes and exits: logs with --tail, --since, --timestamps, and by pod name.
    const talkerPath = await containerConfig(
      "talker",
      "for i in 1 2 3 4 5; do echo line $i; done; echo problem >&2; printf 'no newline'",
    );
    const talker = (await ok(["create", podId, talkerPath, podPath])).trim();
    await ok(["start", talker]);
    await env.waitExited(talker);
    const logs = await berth(["logs", talker.slice(0, 9)]);
    assert.deepEqual(logs, {
      code: 0,
      stdout: "line 1\nline 2\nline 3\nline 4\nline 5\nno newline",
      stderr: "problem\n",
    });
    // --tail counts lines of both streams.
    assert.deepEqual(await berth(["logs", "--tail", "3", talker]), {
      code: 0,
      stdout: "line 5\nno newline",
      stderr: "problem\n",
    });
    assert.equal(await ok(["logs", "--since", "1h", talker]), "line 1\nline 2\nline 3\nline 4\nline 5\nno newline");
    assert.equal(await ok(["logs", "--since", "2999-01-01T00:00:00Z", talker]), "");
    assert.match(
      await ok(["logs", "-t", "--tail", "1", talker]),
      /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+(Z|[+-]\d\d:\d\d) no newline$/,
    );
    assert.equal(await ok(["logs", "roundtrip", "-c", "talker", "--tail", "1"]), "no newline");
    const several = await berth(["logs", "roundtrip"]);
    assert.equal(several.code, 1);
    assert.match(
      several.stderr,
      /^berth: InvalidArgument: pod roundtrip has several containers \(sleeper, talker\): choose one with -c\n$/,
    );
    assert.equal((await ok(["ps", "-a", "-q", "--state", "exited"])).trim(), talker);

    // logs -f follows a running container and returns once it has exited.
    const tickerPath = await containerConfig("ticker", "for i in 1 2 3 4 5 6; do echo tick $i; sleep 0.3; done");
    const ticker = (await ok(["create", podId, tickerPath, podPath])).trim();
    await ok(["start", ticker]);
    const followed = await berth(["logs", "-f", ticker], { timeoutMs: 30_000 });
    assert.equal(followed.code, 0, followed.stderr);
    assert.equal(followed.stdout, "tick 1\ntick 2\ntick 3\ntick 4\ntick 5\ntick 6\n");

    // rm refuses a running container; stop, then rm; rmp refuses a ready pod; stopp, rmp.
    const refused = await berth(["rm", sleeper]);
    assert.equal(refused.code, 1);
    assert.match(
      refused.stderr,
      /^berth: InvalidArgument: container [0-9a-f]{64} is running: stop it first, or use rm -f\n$/,
    );
    assert.equal(await ok(["stop", "-t", "5", sleeper.slice(0, 8)]), `${sleeper}\n`);
    assert.equal(JSON.parse(await ok(["inspect", sleeper])).status.state, "CONTAINER_EXITED");
    assert.equal(await ok(["rm", sleeper.slice(0, 8), talker.slice(0, 8)]), `${sleeper}\n${talker}\n`);
    const rmpRefused = await berth(["rmp", podPrefix]);
    assert.equal(rmpRefused.code, 1);
    assert.match(rmpRefused.stderr, /is ready: stop it first \(stopp\), or use rmp -f\n$/);
    assert.equal(await ok(["stopp", podPrefix]), `Stopped sandbox ${podId}\n`);
    assert.equal(await ok(["rmp", podPrefix]), `Removed sandbox ${podId}\n`);
    assert.equal(await ok(["pods", "-q", "--id", podId]), "");
    // The pod's remaining container (ticker) went with it.
    const gone = await berth(["inspect", ticker]);
    assert.match(gone.stderr, /NotFound/);
  });

  test("rm -f and rmp -f stop what is running first", async () => {
    const podPath = await podConfig("forced");
    const podId = (await ok(["runp", podPath])).trim();
    const c = (
      await ok(["create", podId, await containerConfig("spinner", "while true; do sleep 0.1; done"), podPath])
    ).trim();
    await ok(["start", c]);
    assert.equal(await ok(["rm", "-f", c]), `${c}\n`);
    const c2 = (
      await ok(["create", podId, await containerConfig("spinner2", "while true; do sleep 0.1; done"), podPath])
    ).trim();
    await ok(["start", c2]);
    assert.equal(await ok(["rmp", "-f", podId]), `Removed sandbox ${podId}\n`);
    assert.equal(await ok(["ps", "-a", "-q", "--id", c2]), "");
  });

  test("create pulls a missing image unless --no-pull; prune removes only unused images; rmi removes by ID prefix", async () => {
    const users = env.image("berth-test/users");
    const usersId = env.reg.image("berth-test/users").imageId;
    const podPath = await podConfig("pruning");
    const podId = (await ok(["runp", podPath])).trim();
    try {
      const path = join(configDir, "users-container.yaml");
      await writeFile(
        path,
        `metadata: {name: users}\nimage: {image: "${users}"}\ncommand: [id]\nlog_path: users.log\n`,
      );
      const noPull = await berth(["create", "--no-pull", podId, path, podPath]);
      assert.equal(noPull.code, 1, "the image is not there and may not be pulled");
      const c = (await ok(["create", podId, path, podPath])).trim();
      assert.match(c, HEX64);
      assert.ok((await ok(["images", "-q"])).includes(usersId), "create pulled the image");
      // users is used by a container now: prune keeps it (busybox, used by no container, may go).
      assert.doesNotMatch(await ok(["prune"]), /users/);
      assert.ok((await ok(["images", "-q"])).includes(usersId));
      await ok(["rm", c]);
      // Now nothing uses users.
      const pruned = await ok(["prune"]);
      assert.match(pruned, new RegExp(`^Deleted: ${users.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}$`, "m"));
      assert.ok(!(await ok(["images", "-q"])).includes(usersId));
    } finally {
      await berth(["rmp", "-f", podId]);
    }
    // rmi by a unique prefix of the ID (pull busybox again if prune took it).
    await ok(["pull", busybox]);
    const deleted = await ok(["rmi", busyboxId.slice(7, 17)]);
    assert.match(deleted, new RegExp(`^Deleted: ${busybox.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}$`, "m"));
    assert.equal(await ok(["images", "-q"]), "");
  });

  test("exec, stats, port-forward and events work for real", async () => {
    await ok(["pull", busybox]);
    const podPath = await podConfig("optional");
    const podId = (await ok(["runp", podPath])).trim();
    try {
      const c = (
        await ok([
          "create",
          podId,
          await containerConfig("cat", "trap 'exit 0' TERM; while true; do sleep 0.1; done"),
          podPath,
        ])
      ).trim();
      await ok(["start", c]);
      // berthd implements every one of these RPCs: "not supported by this runtime" is a failure here.
      const exec = await berth(["exec", "-i", c, "cat"], { input: "through stdin\n" });
      assert.deepEqual(exec, { code: 0, stdout: "through stdin\n", stderr: "" });

      const stats = await berth(["stats", "-a"]);
      assert.equal(stats.code, 0, stats.stderr);
      assert.match(stats.stdout.split("\n")[0] ?? "", /^CONTAINER\s+NAME\s+CPU %\s+MEM\s+DISK\s+INODES$/);
      assert.match(stats.stdout, new RegExp(`^${c.slice(0, 13)}\\s+cat\\s+[\\d.]+\\s`, "m"));

      // port-forward to a web server in the pod, through a free local port, until SIGINT.
      const web = (
        await ok([
          "create",
          podId,
          await containerConfig(
            "web",
            "mkdir -p /www && echo hello-from-the-pod > /www/index.html && exec httpd -f -p 8080 -h /www",
          ),
          podPath,
        ])
      ).trim();
      await ok(["start", web]);
      const pf = spawn(process.execPath, [CLI, "--socket", env.d.socket, "port-forward", podId.slice(0, 9), ":8080"], {
        stdio: ["ignore", "pipe", "pipe"],
      });
      let pfOut = "";
      let pfErr = "";
      pf.stdout.on("data", (b: Buffer) => {
        pfOut += b.toString();
      });
      pf.stderr.on("data", (b: Buffer) => {
        pfErr += b.toString();
      });
      const pfExit = new Promise<number>((resolve) => pf.on("exit", (code) => resolve(code ?? 128)));
      const port = await Promise.race([
        eventually(
          "port-forward to listen",
          async () => /^Forwarding from 127\.0\.0\.1:(\d+) -> 8080$/m.exec(pfOut)?.[1],
        ),
        pfExit.then(() => undefined),
      ]);
      assert.ok(port !== undefined, `port-forward exited before listening: ${pfErr}`);
      const body = await eventually("the web server", () =>
        fetch(`http://127.0.0.1:${port}/`).then(
          (r) => r.text(),
          () => undefined,
        ),
      );
      assert.equal(body, "hello-from-the-pod\n");
      pf.kill("SIGINT");
      assert.equal(await pfExit, 0, pfErr);

      // events streams until interrupted: start a container while it listens, then Ctrl-C it.
      for (const format of ["table", "json"]) {
        const events = spawn(process.execPath, [CLI, "--socket", env.d.socket, "-o", format, "events"], {
          stdio: ["ignore", "pipe", "pipe"],
        });
        let evOut = "";
        let evErr = "";
        events.stdout.on("data", (b: Buffer) => {
          evOut += b.toString();
        });
        events.stderr.on("data", (b: Buffer) => {
          evErr += b.toString();
        });
        const evExit = new Promise<number>((resolve) => events.on("exit", (code) => resolve(code ?? 130)));
        const early = await Promise.race([evExit, sleep(1000).then(() => undefined)]);
        assert.equal(early, undefined, `berth events exited early (${early}): ${evErr}`);
        const name = `evented-${format}`;
        const id = (await ok(["create", podId, await containerConfig(name, "sleep 60"), podPath])).trim();
        await ok(["start", id]);
        if (format === "table") {
          await eventually("the events table", async () =>
            new RegExp(`^\\S+Z\\s+Started\\s+${id.slice(0, 13)}\\s+${podId.slice(0, 13)}\\s+optional$`, "m").test(
              evOut,
            ),
          );
          assert.match(evOut, /^TIME\s+EVENT\s+CONTAINER\s+POD ID\s+POD$/m);
          assert.match(evOut, new RegExp(`\\sCreated\\s+${id.slice(0, 13)}\\s`));
        } else {
          await eventually("a JSON started event", async () =>
            evOut
              .split("\n")
              .filter(Boolean)
              .map((l) => JSON.parse(l) as { containerId: string; containerEventType: string })
              .some((e) => e.containerId === id && e.containerEventType === "CONTAINER_STARTED_EVENT"),
          );
        }
        events.kill("SIGINT");
        assert.equal(await evExit, 0, evErr);
        await ok(["rm", "-f", id]);
      }
    } finally {
      await berth(["rmp", "-f", podId]);
    }
  });

  test("every command has --help, and completion prints a valid bash script", async () => {
    const help = await ok(["--help"]);
    const commands = [...help.matchAll(/^ {2}([a-z][a-z-]*)(?:\|[a-z-]+)? /gm)]
      .map((m) => m[1] as string)
      .filter((c) => c !== "help");
    assert.ok(commands.length >= 25, commands.join(" "));
    for (const c of commands) assert.match(await ok([c, "--help"]), new RegExp(`^Usage: berth ${c}(\\|\\S+)? `), c);
    const script = await ok(["completion", "bash"]);
    assert.match(script, /^complete -F _berth berth$/m);
    const check = spawnSync("bash", ["-n"], { input: script, encoding: "utf8" });
    assert.equal(check.status, 0, check.stderr);
    // The script completes subcommands and container IDs through the CLI itself.
    const words = spawnSync(
      "bash",
      ["-c", `${script}\nCOMP_WORDS=(berth ps --la); COMP_CWORD=2; _berth; echo "\${COMPREPLY[@]}"`],
      { encoding: "utf8" },
    );
    assert.match(words.stdout, /--last/);
  });

  test("the CLI left nothing behind", async () => {
    await eventually("no pods", async () => (await ok(["pods", "-q"])) === "");
    assert.equal(await ok(["ps", "-a", "-q"]), "");
  });
});
