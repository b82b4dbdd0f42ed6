/**
 * `berth build` end to end: the CLI sends a context to a real berthd, which builds with real runc on overlay
 * snapshots from the busybox fixture in the local registry; the image is then run as a pod through CRI.
 * One berthd (and registry) for the whole file.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdir, mkdtemp, readdir, readFile, rm, symlink, writeFile } from "node:fs/promises";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { after, before, describe, test } from "node:test";
import { run } from "../../src/sys/index.js";
import { isRoot } from "../support/berthd.js";
import { BERTH_CLI } from "../support/cli.js";
import { closePodEnv, type PodEnv, startPodEnv } from "../support/pods.js";
import { skipUnlessCi } from "../support/skip.js";

const skip = skipUnlessCi(isRoot() ? false : "needs root (overlay mounts, runc)");

interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

describe("berth build", { skip, timeout: 300_000 }, () => {
  let env: PodEnv;
  let work: string;

  before(async () => {
    env = await startPodEnv({ bridge: "bte2e-bld", subnet: "10.231.94.0/24", images: [] });
    work = await mkdtemp(join(tmpdir(), "berth-build-"));
  });
  after(async () => {
    await closePodEnv(env);
    if (work) await rm(work, { recursive: true, force: true });
  });

  /** Runs the berth CLI (the built one) against the file's berthd. */
  function berth(args: string[], options: { signalAfterMs?: number; until?: RegExp } = {}): Promise<CliResult> {
    const child = spawn(process.execPath, [BERTH_CLI, "--socket", env.d.socket, ...args], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (b: Buffer) => {
      stdout += b.toString();
    });
    child.stderr.on("data", (b: Buffer) => {
      stderr += b.toString();
      if (options.until?.test(stderr) && child.exitCode === null) child.kill("SIGINT");
    });
    return new Promise((resolve, reject) => {
      child.on("error", reject);
      child.on("close", (code) => resolve({ code: code ?? 1, stdout, stderr }));
    });
  }

  async function context(name: string, files: Record<string, string>): Promise<string> {
    const dir = join(work, name);
    for (const [p, content] of Object.entries(files)) {
      await mkdir(dirname(join(dir, p)), { recursive: true });
      await writeFile(join(dir, p), content);
    }
    return dir;
  }

  const steps = (stderr: string) => ({
    cached: stderr.split("\n").filter((l) => / CACHED$/.test(l)).length,
    ran: stderr.split("\n").filter((l) => /^#\d+ DONE /.test(l)).length,
  });

  test("a multi-stage build runs as a pod with its files, user, workdir, env, entrypoint, cmd, ports and labels", async () => {
    const base = env.image("berth-test/busybox");
    const dir = await context("multi", {
      Dockerfile: `# syntax=docker/dockerfile:1
# escape=\\
ARG BASE=${base}
ARG USERS=${env.image("berth-test/users")}
FROM \${BASE} AS builder
ARG GREETING=hello
WORKDIR /src
COPY src/ ./
RUN echo "$GREETING from the builder" > /src/built.txt \\
  && cat /src/a.txt >> /src/built.txt
RUN <<EOF
echo heredoc-ran > /src/heredoc.txt
EOF

FROM scratch AS unused
COPY --from=builder /src/built.txt /never

FROM \${USERS}
USER root
ENV APP_HOME=/app MODE=\${MODE:-prod}
LABEL org.example.name="demo app" org.example.v=2
EXPOSE 8080 9090/udp
WORKDIR $APP_HOME
COPY --from=builder --chown=app:app /src/built.txt /src/heredoc.txt ./
COPY --chmod=0755 run.sh /usr/local/bin/
RUN rm /bin/true && mkdir -p data && echo ok > data/ok
USER app
ENTRYPOINT ["/usr/local/bin/run.sh"]
CMD ["arg1"]
STOPSIGNAL SIGINT
`,
      "src/a.txt": "file-a\n",
      "run.sh":
        '#!/bin/sh\necho "run $* as $(id -u):$(id -g) in $(pwd) mode=$MODE"\ncat built.txt heredoc.txt data/ok\n',
    });
    const r = await berth(["build", "--progress", "plain", "-t", "demo/app:1", dir]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /naming to docker.io\/demo\/app:1/);
    assert.doesNotMatch(r.stderr, /\[unused /, "a stage the target does not need is skipped");
    const st = await env.d.client.image.imageStatus({ image: { image: "demo/app:1" }, verbose: true });
    assert.ok(st.image, "the built image is in the image store");
    const info = JSON.parse(st.info.info ?? "{}") as { imageSpec?: { config?: Record<string, unknown> } };
    void info;
    assert.equal(st.image.username, "app");
    const pod = await env.runPod("built");
    try {
      const { status, log } = await env.runToExit(pod, {
        metadata: { name: "app" },
        image: { image: "demo/app:1" },
        logPath: "app.log",
      });
      assert.equal(status.exitCode, 0, log);
      assert.match(log, /run arg1 as 1000:1000 in \/app mode=prod/);
      assert.match(log, /hello from the builder/);
      assert.match(log, /file-a/);
      assert.match(log, /heredoc-ran/);
      assert.match(log, / ok\n/);
      const check = await env.runToExit(pod, {
        metadata: { name: "check" },
        image: { image: "demo/app:1" },
        command: [
          "sh",
          "-c",
          "stat -c '%u:%g %a' /app/built.txt /usr/local/bin/run.sh; test -e /bin/true || echo gone",
        ],
        logPath: "check.log",
      });
      assert.match(check.log, /1000:1000 644/);
      assert.match(check.log, /0:0 755/);
      assert.match(check.log, /gone/, "a file deleted by RUN is a whiteout in the layer");
    } finally {
      await env.removePod(pod);
    }
  });

  test("labels, ports, stop signal and history are in the image config", async () => {
    const images = await env.d.client.image.listImages({});
    const img = images.images.find((i) => i.repoTags.includes("docker.io/demo/app:1"));
    assert.ok(img);
    const st = await env.d.client.image.imageStatus({ image: { image: img.id }, verbose: true });
    const cfg = JSON.parse(st.info.info ?? "{}") as Record<string, unknown>;
    const text = JSON.stringify(cfg);
    assert.match(text, /org\.example\.name.*demo app/);
    assert.match(text, /8080\/tcp/);
    assert.match(text, /9090\/udp/);
    assert.match(text, /SIGINT/);
  });

  test("a second build is fully cached; one changed file re-runs only from its COPY", async () => {
    const dir = join(work, "multi");
    const again = await berth(["build", "--progress", "plain", "-t", "demo/app:1", dir]);
    assert.equal(again.code, 0, again.stderr);
    const s1 = steps(again.stderr);
    assert.equal(s1.cached, 6, again.stderr);
    await writeFile(join(dir, "run.sh"), "#!/bin/sh\necho changed\n");
    const changed = await berth(["build", "--progress", "plain", "-t", "demo/app:2", dir]);
    assert.equal(changed.code, 0, changed.stderr);
    // Builder: COPY, RUN, RUN cached; final: COPY --from cached; COPY run.sh and the RUN after it re-run.
    assert.match(changed.stderr, /COPY --chmod=0755 run.sh[^\n]*\n#\d+ DONE/);
    assert.equal(steps(changed.stderr).cached, 4, changed.stderr);
  });

  test("a changed --build-arg re-runs only the steps that use it", async () => {
    const dir = await context("args", {
      Dockerfile: `FROM ${env.image("berth-test/busybox")}
RUN echo before > /before
ARG V=1
COPY f /f
RUN echo "v=$V" > /v
`,
      f: "x",
    });
    const a = await berth(["build", "--progress", "plain", "-t", "demo/args", "--build-arg", "V=1", dir]);
    assert.equal(a.code, 0, a.stderr);
    const b = await berth(["build", "--progress", "plain", "-t", "demo/args", "--build-arg", "V=2", dir]);
    assert.equal(b.code, 0, b.stderr);
    assert.match(b.stderr, /RUN echo before[^\n]*\n#\d+ CACHED/);
    assert.match(b.stderr, /COPY f \/f[^\n]*\n#\d+ CACHED/);
    assert.match(b.stderr, /RUN echo "v=\$V"[^\n]*\n#\d+ DONE/);
    // The cache is in the store: it survives a berthd restart.
    await env.restart();
    const c = await berth(["build", "--progress", "plain", "-t", "demo/args", "--build-arg", "V=2", dir]);
    assert.equal(c.code, 0, c.stderr);
    assert.equal(steps(c.stderr).cached, 3, c.stderr);
    // `berth builder prune` drops it.
    const p = await berth(["builder", "prune"]);
    assert.equal(p.code, 0, p.stderr);
    assert.match(p.stdout, /Deleted build cache entries: [1-9]\d*/);
    const d = await berth(["build", "--progress", "plain", "-t", "demo/args", "--build-arg", "V=2", dir]);
    assert.equal(d.code, 0, d.stderr);
    assert.equal(steps(d.stderr).cached, 0, d.stderr);
  });

  test("RUN --mount secret and cache, ADD of a local tar and a URL, zstd layers in a Docker manifest", async () => {
    const files = join(work, "served");
    await mkdir(files, { recursive: true });
    await writeFile(join(files, "remote.txt"), "from-http\n");
    const server = createServer((req, res) => {
      if (req.url !== "/remote.txt") {
        res.writeHead(404).end();
        return;
      }
      res.writeHead(200, { "last-modified": "Tue, 01 Jan 2030 00:00:00 GMT" });
      res.end("from-http\n");
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    const port = (server.address() as AddressInfo).port;
    try {
      const dir = await context("mounts", {
        Dockerfile: `FROM ${env.image("berth-test/busybox")}
RUN --mount=type=secret,id=tok cat /run/secrets/tok > /seen-secret-length && wc -c < /run/secrets/tok > /seen-secret-length
RUN --mount=type=cache,target=/cache echo run >> /cache/runs && cat /cache/runs | wc -l > /cache-runs
ADD bundle.tar /unpacked/
ADD http://127.0.0.1:${port}/remote.txt /remote/
`,
      });
      const tarDir = join(work, "tar-src");
      await mkdir(join(tarDir, "inner"), { recursive: true });
      await writeFile(join(tarDir, "inner", "x.txt"), "in-tar\n");
      await run("tar", ["-czf", join(dir, "bundle.tar"), "-C", tarDir, "inner"]);
      await writeFile(join(work, "token"), "s3cr3t-value");
      const args = ["build", "--progress", "plain", "--secret", `id=tok,src=${join(work, "token")}`];
      const r = await berth([...args, "--compression", "zstd", "-t", "demo/mounts", dir]);
      assert.equal(r.code, 0, r.stderr);
      // Cache mounts persist between builds: a --no-cache rebuild sees the first run's file.
      const again = await berth([...args, "--no-cache", "-t", "demo/mounts2", dir]);
      assert.equal(again.code, 0, again.stderr);
      const pod = await env.runPod("mounts");
      try {
        const { log } = await env.runToExit(pod, {
          metadata: { name: "m" },
          image: { image: "demo/mounts2" },
          command: [
            "sh",
            "-c",
            "cat /seen-secret-length /cache-runs /unpacked/inner/x.txt /remote/remote.txt; ls /run/secrets 2>&1; ls /cache 2>&1; stat -c %Y /remote/remote.txt",
          ],
          logPath: "m.log",
        });
        assert.match(log, /\b12\n/, "the secret was readable during RUN");
        assert.match(log, /\b2\n/, "the cache mount kept the first build's file");
        assert.match(log, /in-tar/, "a local tar is extracted by ADD");
        assert.match(log, /from-http/, "ADD fetches a URL");
        assert.doesNotMatch(log, /\btok\b/, "no secret mount point is left in the image");
        assert.match(log, /1893456000/, "the URL's Last-Modified is the file's mtime");
      } finally {
        await env.removePod(pod);
      }
      // The secret's value is in no layer: scan every blob of the content store.
      const blobs = join(env.d.root, "content", "blobs", "sha256");
      for (const b of await readdir(blobs).catch(() => [] as string[])) {
        const data = await readFile(join(blobs, b));
        assert.ok(!data.includes("s3cr3t-value"), `blob ${b} holds the secret`);
      }
      const st = await env.d.client.image.imageStatus({ image: { image: "demo/mounts" }, verbose: true });
      assert.ok(st.image);
      const zstdManifest = await findManifest(st.image.id);
      assert.match(zstdManifest, /tar\+zstd/);
      const docker = await berth([
        "build",
        "--progress",
        "quiet",
        "--format",
        "docker",
        "-t",
        "demo/docker",
        dir,
        ...["--secret", `id=tok,src=${join(work, "token")}`],
      ]);
      assert.equal(docker.code, 0, docker.stderr);
      const dockerManifest = await findManifest(docker.stdout.trim());
      assert.match(dockerManifest, /application\/vnd\.docker\.distribution\.manifest\.v2\+json/);
      assert.match(dockerManifest, /rootfs\.diff\.tar\.gzip/);
    } finally {
      server.close();
    }
  });

  /** The manifest blob that names config `imageId`, read from the content store. */
  async function findManifest(imageId: string): Promise<string> {
    const blobs = join(env.d.root, "content", "blobs", "sha256");
    for (const b of await readdir(blobs)) {
      const text = (await readFile(join(blobs, b))).subarray(0, 1 << 16).toString("utf8");
      if (text.includes('"schemaVersion"') && text.includes(imageId)) return text;
    }
    assert.fail(`no manifest names ${imageId}`);
  }

  test(".dockerignore excludes files and a symlink pointing outside is not followed", async () => {
    const dir = await context("ignore", {
      Dockerfile: `FROM ${env.image("berth-test/busybox")}
COPY . /ctx/
RUN ls -a /ctx | sort > /ctx.list; cat /ctx/escape/hostname 2>&1 || echo no-escape
`,
      ".dockerignore": "secret.txt\nlogs/**\n!logs/keep.log\n",
      "secret.txt": "s",
      "logs/a.log": "a",
      "logs/keep.log": "k",
      "ok.txt": "o",
    });
    await symlink("/etc", join(dir, "escape"));
    const r = await berth(["build", "--progress", "plain", "--no-cache", "-t", "demo/ignore", dir]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /no-escape|No such file/);
    const pod = await env.runPod("ignore");
    try {
      const { log } = await env.runToExit(pod, {
        metadata: { name: "ls" },
        image: { image: "demo/ignore" },
        command: ["sh", "-c", "cat /ctx.list; ls /ctx/logs; readlink /ctx/escape"],
        logPath: "ls.log",
      });
      assert.match(log, /ok\.txt/);
      assert.doesNotMatch(log, /secret\.txt/);
      assert.doesNotMatch(log, /a\.log/);
      assert.match(log, /keep\.log/);
      assert.match(log, /\/etc\n/, "the symlink is copied as a symlink");
    } finally {
      await env.removePod(pod);
    }
  });

  test("broken Dockerfiles fail with the file, the line and the instruction", async () => {
    const base = env.image("berth-test/busybox");
    const parse = await context("bad-parse", { Dockerfile: `FROM ${base}\nRUN true\nFROBNICATE x\n` });
    const p = await berth(["build", "--progress", "plain", parse]);
    assert.equal(p.code, 1);
    assert.match(p.stderr, /Dockerfile:3: FROBNICATE: unknown instruction/);

    const failing = await context("bad-run", {
      Dockerfile: `FROM ${base}\nRUN echo first line; echo to stderr >&2; exit 7\n`,
    });
    const f = await berth(["build", "--progress", "plain", failing]);
    assert.equal(f.code, 1);
    assert.match(f.stderr, /Dockerfile:2: RUN echo first line.*exit code 7/);
    assert.match(f.stderr, /to stderr/);

    const missing = await context("bad-copy", { Dockerfile: `FROM ${base}\n\nCOPY nothere.txt /x\n` });
    const m = await berth(["build", "--progress", "plain", missing]);
    assert.equal(m.code, 1);
    assert.match(m.stderr, /Dockerfile:3: COPY nothere.txt \/x: nothere.txt: no such file/);
    await assertNothingLeft();
  });

  test("Ctrl-C cancels the build and leaves no process, mount or snapshot", async () => {
    const dir = await context("cancel", {
      Dockerfile: `FROM ${env.image("berth-test/busybox")}\nRUN echo started; sleep 600\n`,
    });
    const started = Date.now();
    const r = await berth(["build", "--progress", "plain", "--no-cache", dir], { until: /#\d+ started/ });
    assert.notEqual(r.code, 0);
    assert.ok(Date.now() - started < 60_000);
    // berthd's clean-up runs after the call ends: give it a moment.
    for (let i = 0; i < 50; i++) {
      if ((await leftovers()).length === 0) break;
      await new Promise((res) => setTimeout(res, 100));
    }
    await assertNothingLeft();
  });

  test("berthd killed mid-build leaves nothing a restart does not clean", async () => {
    const dir = await context("killed", {
      Dockerfile: `FROM ${env.image("berth-test/busybox")}\nRUN echo started; sleep 600\n`,
    });
    const building = berth(["build", "--progress", "plain", "--no-cache", dir]);
    // Wait until the step's runc container exists, then SIGKILL berthd under it.
    for (let i = 0; i < 600 && (await readdir(join(env.d.state, "build", "runc")).catch(() => [])).length === 0; i++)
      await new Promise((res) => setTimeout(res, 100));
    assert.notEqual((await leftovers()).length, 0, "the build was under way");
    await env.restart({ kill: true });
    assert.notEqual((await building).code, 0);
    await assertNothingLeft();
  });

  async function leftovers(): Promise<string[]> {
    const found: string[] = [];
    const mnt = join(env.d.state, "build", "mnt");
    for (const e of await readdir(mnt).catch(() => [])) found.push(`mount dir ${e}`);
    const tmp = join(env.d.state, "build", "tmp");
    for (const e of await readdir(tmp).catch(() => [])) found.push(`temp ${e}`);
    const runc = join(env.d.state, "build", "runc");
    for (const e of await readdir(runc).catch(() => [])) found.push(`runc state ${e}`);
    const mounts = (await import("node:fs/promises")).readFile("/proc/self/mountinfo", "utf8");
    for (const l of (await mounts).split("\n")) if (l.includes(join(env.d.state, "build"))) found.push(`mount ${l}`);
    const meta = await readFile(join(env.d.root, "snapshots", "overlay", "metadata.json"), "utf8").catch(() => "{}");
    const records = (JSON.parse(meta) as { snapshots?: Record<string, unknown> }).snapshots ?? {};
    for (const key of Object.keys(records)) if (key.startsWith("build-")) found.push(`snapshot ${key}`);
    return found;
  }

  async function assertNothingLeft(): Promise<void> {
    assert.deepEqual(await leftovers(), []);
  }
});
