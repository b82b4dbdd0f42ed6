/**
 * `npm run bench -- --build`: `berth build` beside buildah (`bud --layers --isolation chroot --storage-driver
 * overlay`) on the same Dockerfiles from the same local registry: a small one, and a multi-stage one with a
 * large COPY (2,000 files, 64 MiB). Rows: a cold build (empty caches, base image pulled), a rebuild with
 * everything cached, and a rebuild after one source file changed. Each figure is one run (a build takes
 * seconds); the table goes to stdout. Everything is made under one temporary directory and removed; berthd,
 * the registry and buildah's mounts are stopped/removed by PID and path.
 */
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdir, mkdtemp, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { removeTestDir, startBerthd } from "../test/support/berthd.js";
import { ensureFixtureRegistry } from "../test/support/fixtures.js";

const CLI = join(fileURLToPath(new URL("..", import.meta.url)), "dist", "src", "bin", "berth.js");

function timed(file: string, args: string[], env: NodeJS.ProcessEnv = process.env): Promise<number> {
  const t = performance.now();
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { stdio: ["ignore", "ignore", "pipe"], env });
    let err = "";
    child.stderr.on("data", (b: Buffer) => {
      err = (err + b.toString()).slice(-4000);
    });
    child.on("error", reject);
    child.on("close", (code) =>
      code === 0
        ? resolve(performance.now() - t)
        : reject(new Error(`${file} ${args.join(" ")}: exit ${code}: ${err}`)),
    );
  });
}

async function contexts(dir: string, base: string): Promise<Record<string, string>> {
  const small = join(dir, "small");
  await mkdir(small, { recursive: true });
  await writeFile(
    join(small, "Dockerfile"),
    `FROM ${base}\nRUN mkdir -p /app && echo built > /app/built\nCOPY app.sh /app/\nRUN chmod +x /app/app.sh\nCMD ["/app/app.sh"]\n`,
  );
  await writeFile(join(small, "app.sh"), "#!/bin/sh\necho hi\n");
  const multi = join(dir, "multi");
  for (let d = 0; d < 20; d++) {
    await mkdir(join(multi, "data", `d${d}`), { recursive: true });
    for (let f = 0; f < 100; f++) await writeFile(join(multi, "data", `d${d}`, `f${f}`), randomBytes(32 * 1024));
  }
  await writeFile(join(multi, "main.sh"), "#!/bin/sh\necho main\n");
  await writeFile(
    join(multi, "Dockerfile"),
    `FROM ${base} AS build\nCOPY data /data\nRUN find /data -type f | wc -l > /count\nCOPY main.sh /main.sh\n` +
      `FROM ${base}\nCOPY --from=build /data /data\nCOPY --from=build /count /main.sh /\nCMD ["/main.sh"]\n`,
  );
  return { small, multi };
}

/** Runs the build bench and prints its table; resolves to the exit status. */
export async function runBuildBench(log: (line: string) => void): Promise<number> {
  const dir = await mkdtemp(join(tmpdir(), "berth-bench-build-"));
  const reg = await ensureFixtureRegistry();
  const d = await startBerthd({ config: `[cni]\nconf_dir = "${join(dir, "cni")}"\n` });
  const buildahRoot = join(dir, "buildah");
  try {
    const base = `${reg.plain.host}/${reg.image("berth-test/busybox").reference}`;
    const ctx = await contexts(dir, base);
    const rows: string[] = [];
    const buildahArgs = (context: string, tag: string) => [
      "--root",
      join(buildahRoot, "root"),
      "--runroot",
      join(buildahRoot, "run"),
      "--storage-driver",
      "overlay",
      "bud",
      "--layers",
      "--isolation",
      "chroot",
      "--tls-verify=false",
      "-q",
      "-t",
      tag,
      context,
    ];
    for (const [name, context] of Object.entries(ctx)) {
      const berth = (tag: string) =>
        timed(process.execPath, [CLI, "--socket", d.socket, "build", "--progress", "quiet", "-t", tag, context]);
      const buildah = (tag: string) => timed("buildah", buildahArgs(context, tag));
      const changed = join(context, name === "small" ? "app.sh" : "main.sh");
      const row = async (label: string, fn: (tag: string) => Promise<number>) => {
        const cold = await fn(`bench/${name}:1`);
        const cached = await fn(`bench/${name}:2`);
        await writeFile(changed, `#!/bin/sh\necho ${randomBytes(4).toString("hex")}\n`);
        const oneFile = await fn(`bench/${name}:3`);
        log(
          `build bench: ${label} ${name}: cold ${cold.toFixed(0)} ms, cached ${cached.toFixed(0)} ms, one file ${oneFile.toFixed(0)} ms`,
        );
        rows.push(
          `| ${name} | ${label} | ${(cold / 1000).toFixed(2)} | ${(cached / 1000).toFixed(2)} | ${(oneFile / 1000).toFixed(2)} |`,
        );
      };
      await row("berth", berth);
      await row("buildah", buildah);
    }
    process.stdout.write(
      [
        "| Dockerfile | builder | cold (s) | cached (s) | one file changed (s) |",
        "| --- | --- | --- | --- | --- |",
        ...rows,
        "",
      ].join("\n"),
    );
    return 0;
  } finally {
    await d.cleanup();
    // buildah's overlay layers may be mounted under its root: unmount them before removing the tree.
    await timed("buildah", [
      "--root",
      join(buildahRoot, "root"),
      "--runroot",
      join(buildahRoot, "run"),
      "--storage-driver",
      "overlay",
      "rm",
      "--all",
    ]).catch(() => 0);
    await timed("umount", ["-R", join(buildahRoot, "root", "overlay")]).catch(() => 0);
    await removeTestDir(dir);
    await reg.stop();
  }
}
