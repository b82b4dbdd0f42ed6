/**
 * `berth build` and `berth builder prune`: build an image from a Dockerfile inside berthd.
 *
 * The context directory is sent as a tar stream (after the header with tags, args and the Dockerfile
 * text), honouring `.dockerignore` with Docker's rules (`**`, `!` exceptions); symlinks are sent as
 * symlinks, never followed. berthd streams step events back; they are shown as a BuildKit-like
 * live view on a terminal (`--progress tty`), plain lines otherwise, or nothing (`quiet`).
 * Ctrl-C cancels the call, and berthd cancels the build and removes what it made.
 */
import { lstat, readdir, readFile, readlink } from "node:fs/promises";
import { join, relative, resolve } from "node:path";
import dockerignore from "@balena/dockerignore";
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { Command } from "commander";
import { Option } from "commander";
import tarStream from "tar-stream";
import type { BuildEvent, BuildRequestSchema } from "../api/gen/berth/v1/build_pb.js";
import { invalidArgumentStatus, longCall, withClient } from "./context.js";

interface BuildOptions {
  tag: string[];
  file?: string;
  buildArg: string[];
  target?: string;
  cache: boolean;
  progress: "auto" | "plain" | "tty" | "quiet";
  secret: string[];
  compression: string;
  format: string;
  quiet?: boolean;
}

const collect = (v: string, prev: string[]) => [...prev, v];

export function registerBuild(program: Command): void {
  program
    .command("build")
    .description("build an image from a Dockerfile inside berthd (the result is in `berth images` at once)")
    .argument("<context>", "the build context directory")
    .option("-t, --tag <name>", "name the image (repeatable)", collect, [])
    .option("-f, --file <path>", "the Dockerfile (default <context>/Dockerfile)")
    .option(
      "--build-arg <key=value>",
      "set a build-time variable (repeatable; KEY alone takes it from the environment)",
      collect,
      [],
    )
    .option("--target <stage>", "build this stage (and only the stages it needs)")
    .option("--no-cache", "do not use the build cache")
    .addOption(
      new Option("--progress <mode>", "progress output").choices(["auto", "plain", "tty", "quiet"]).default("auto"),
    )
    .option("--secret <id=x,src=file>", "a secret for RUN --mount=type=secret (repeatable)", collect, [])
    .addOption(new Option("--compression <alg>", "layer compression").choices(["gzip", "zstd"]).default("gzip"))
    .addOption(new Option("--format <format>", "manifest format").choices(["oci", "docker"]).default("oci"))
    .option("-q, --quiet", "print only the image ID")
    .action(async (contextArg: string, opts: BuildOptions, cmd: Command) =>
      withClient(cmd, async (client, g) => {
        const context = resolve(contextArg);
        const dockerfilePath = opts.file ? resolve(opts.file) : join(context, "Dockerfile");
        const dockerfile = await readFile(dockerfilePath, "utf8").catch((err: NodeJS.ErrnoException) => {
          throw invalidArgumentStatus(`build: cannot read ${dockerfilePath}: ${err.code ?? err.message}`);
        });
        const buildArgs: Record<string, string> = {};
        for (const a of opts.buildArg) {
          const i = a.indexOf("=");
          if (i === 0) throw invalidArgumentStatus(`build: --build-arg ${a}: expected KEY=VALUE`);
          if (i < 0) {
            const v = process.env[a];
            if (v !== undefined) buildArgs[a] = v;
          } else buildArgs[a.slice(0, i)] = a.slice(i + 1);
        }
        const secrets = await Promise.all(opts.secret.map(readSecret));
        const mode =
          opts.quiet || opts.progress === "quiet"
            ? "quiet"
            : opts.progress === "auto"
              ? process.stderr.isTTY
                ? "tty"
                : "plain"
              : opts.progress;
        const display = mode === "tty" ? new TtyDisplay() : mode === "plain" ? new PlainDisplay() : undefined;
        const name = opts.file ? relative(process.cwd(), dockerfilePath) || dockerfilePath : "Dockerfile";
        async function* requests(): AsyncGenerator<MessageInitShape<typeof BuildRequestSchema>> {
          yield {
            part: {
              case: "header",
              value: {
                tags: opts.tag,
                dockerfilePath: name,
                dockerfile,
                buildArgs,
                ...(opts.target ? { target: opts.target } : {}),
                noCache: !opts.cache,
                compression: opts.compression,
                format: opts.format,
                secrets,
              },
            },
          };
          for await (const chunk of contextTar(context)) yield { part: { case: "context", value: chunk } };
        }
        const abort = new AbortController();
        const onSignal = () => abort.abort();
        process.once("SIGINT", onSignal);
        process.once("SIGTERM", onSignal);
        try {
          for await (const ev of client.berth.builder.build(requests(), { ...longCall(g), signal: abort.signal })) {
            if (ev.event.case === "result") {
              display?.finish();
              const r = ev.event.value;
              if (mode === "quiet") process.stdout.write(`${r.imageId}\n`);
              else {
                process.stderr.write(`writing image ${r.imageId}\n`);
                for (const t of r.tags) process.stderr.write(`naming to ${t}\n`);
              }
            } else display?.event(ev);
            if (ev.event.case === "error" && mode === "quiet") {
              process.stderr.write(`${ev.event.value.outputTail}\n`);
            }
          }
        } catch (err) {
          display?.finish();
          if (abort.signal.aborted) throw invalidArgumentStatus("build: canceled");
          throw err;
        } finally {
          process.off("SIGINT", onSignal);
          process.off("SIGTERM", onSignal);
        }
      }),
    );

  program
    .command("builder")
    .description("manage the build cache")
    .command("prune")
    .description("drop the build cache (layers only it kept are removed)")
    .action(async (_opts: unknown, cmd: Command) =>
      withClient(cmd, async (client) => {
        const r = await client.berth.builder.prune({});
        process.stdout.write(`Deleted build cache entries: ${r.entries}\n`);
      }),
    );
}

async function readSecret(spec: string): Promise<{ id: string; data: Uint8Array }> {
  const kv = new Map(spec.split(",").map((p) => [p.split("=", 1)[0] ?? "", p.slice(p.indexOf("=") + 1)]));
  const id = kv.get("id");
  const src = kv.get("src") ?? kv.get("source");
  if (!id || !src) throw invalidArgumentStatus(`build: --secret ${spec}: expected id=<id>,src=<file>`);
  return { id, data: await readFile(src) };
}

/**
 * The context as a tar stream: files, directories and symlinks (never followed), paths relative to the
 * context root, `.dockerignore` applied (a directory excluded with no `!` rule below it is not walked).
 */
export async function* contextTar(root: string): AsyncGenerator<Uint8Array> {
  const patterns = await readFile(join(root, ".dockerignore"), "utf8").then(
    (t) =>
      t
        .split("\n")
        .map((l) => l.trim())
        .filter((l) => l && !l.startsWith("#")),
    () => [] as string[],
  );
  // The package is CommonJS whose typings declare an ES default export; Node hands over the factory itself.
  const factory = dockerignore as unknown as (typeof dockerignore)["default"];
  const ig = factory().add(patterns);
  const exceptions = patterns.some((p) => p.startsWith("!"));
  const pack = tarStream.pack();
  const walk = async (rel: string): Promise<void> => {
    for (const name of (await readdir(join(root, rel))).sort()) {
      const r = rel ? `${rel}/${name}` : name;
      const p = join(root, r);
      const st = await lstat(p);
      const ignored = ig.ignores(r);
      if (st.isDirectory()) {
        if (ignored && !exceptions) continue;
        if (!ignored) await entry({ name: `${r}/`, type: "directory", mode: st.mode & 0o7777, mtime: st.mtime });
        await walk(r);
      } else if (!ignored) {
        if (st.isSymbolicLink()) {
          await entry({
            name: r,
            type: "symlink",
            linkname: await readlink(p),
            mode: st.mode & 0o7777,
            mtime: st.mtime,
          });
        } else if (st.isFile()) {
          await entry({ name: r, type: "file", mode: st.mode & 0o7777, mtime: st.mtime }, await readFile(p));
        }
      }
    }
  };
  const entry = (h: Record<string, unknown>, body?: Buffer) =>
    new Promise<void>((res, rej) =>
      pack.entry(h as unknown as tarStream.Header, body ?? "", (err) => (err ? rej(err) : res())),
    );
  const walking = walk("").then(
    () => pack.finalize(),
    (err: unknown) => pack.destroy(err as Error),
  );
  for await (const chunk of pack) yield chunk as Uint8Array;
  await walking;
}

/** `#3 [build 2/4] RUN make` lines, output lines prefixed with the step number, `#3 CACHED`, `#3 DONE 1.2s`. */
class PlainDisplay {
  private readonly partial = new Map<number, string>();
  event(ev: BuildEvent): void {
    const e = ev.event;
    const out = (s: string) => process.stderr.write(`${s}\n`);
    switch (e.case) {
      case "start":
        out(`#${e.value.step} ${e.value.name}`);
        break;
      case "cached":
        out(`#${e.value.step} CACHED`);
        break;
      case "output": {
        const text = (this.partial.get(e.value.step) ?? "") + Buffer.from(e.value.data).toString("utf8");
        const lines = text.split("\n");
        this.partial.set(e.value.step, lines.pop() ?? "");
        for (const l of lines) out(`#${e.value.step} ${l}`);
        break;
      }
      case "done": {
        const rest = this.partial.get(e.value.step);
        if (rest) out(`#${e.value.step} ${rest}`);
        this.partial.delete(e.value.step);
        out(`#${e.value.step} DONE ${(Number(e.value.durationMs) / 1000).toFixed(1)}s`);
        break;
      }
      case "error":
        out(`#${e.value.step} ERROR: ${e.value.message}`);
        break;
      default:
        break;
    }
  }
  finish(): void {}
}

/** A BuildKit-like live view: one line per step with its state and time, the last output lines of running steps. */
class TtyDisplay {
  private readonly steps = new Map<
    number,
    { name: string; start: number; state: "running" | "cached" | "done" | "error"; ms?: number; lines: string[] }
  >();
  private drawn = 0;
  private readonly timer = setInterval(() => this.draw(), 100);
  private readonly started = Date.now();

  event(ev: BuildEvent): void {
    const e = ev.event;
    if (e.case === "start")
      this.steps.set(e.value.step, { name: e.value.name, start: Date.now(), state: "running", lines: [] });
    const s = e.case && e.case !== "result" ? this.steps.get(e.value.step) : undefined;
    if (!s) return;
    if (e.case === "cached") s.state = "cached";
    else if (e.case === "done") {
      if (s.state === "running") s.state = "done";
      s.ms = Number(e.value.durationMs);
    } else if (e.case === "output") {
      s.lines.push(...Buffer.from(e.value.data).toString("utf8").split("\n").filter(Boolean));
      if (s.lines.length > 6) s.lines.splice(0, s.lines.length - 6);
    } else if (e.case === "error") {
      s.state = "error";
      s.lines = e.value.outputTail.split("\n");
    }
  }

  private draw(): void {
    const width = process.stderr.columns || 100;
    const cut = (t: string) => (t.length > width - 1 ? `${t.slice(0, width - 2)}…` : t);
    const lines = [`[+] Building ${((Date.now() - this.started) / 1000).toFixed(1)}s`];
    for (const [, s] of this.steps) {
      const t = ((s.ms ?? Date.now() - s.start) / 1000).toFixed(1);
      const mark = s.state === "cached" ? " CACHED" : s.state === "error" ? " ERROR" : "";
      lines.push(cut(` => ${s.name}${mark}  ${t}s`));
      if (s.state === "running" || s.state === "error") for (const l of s.lines) lines.push(cut(` => => ${l}`));
    }
    let out = this.drawn > 0 ? `\x1b[${this.drawn}F` : "";
    for (const l of lines) out += `\x1b[2K${l}\n`;
    process.stderr.write(out);
    this.drawn = lines.length;
  }

  finish(): void {
    clearInterval(this.timer);
    this.draw();
  }
}
