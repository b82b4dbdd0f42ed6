/**
 * Images: `images`, `pull`, `rmi`, `inspecti`, `imagefsinfo`, `prune` (crictl's image.go).
 */
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import type { Command } from "commander";
import {
  type AuthConfigSchema,
  type Image,
  ImageFsInfoResponseSchema,
  ImageSchema,
  ListImagesResponseSchema,
  type PodSandboxConfig,
  PodSandboxConfigSchema,
  PullImageResponseSchema,
} from "../api/gen/runtime/v1/api_pb.js";
import type { CriClient } from "../client/index.js";
import { forEachRef } from "./args.js";
import { readMessageFile } from "./config-file.js";
import {
  describeError,
  type GlobalOptions,
  invalidArgumentStatus,
  isTable,
  longCall,
  UnsupportedError,
  withClient,
} from "./context.js";
import { humanSize, shortId, splitRepoTag } from "./format.js";
import { messageJson, parseInfo, printDocuments, printFields, printMessage, printTable } from "./output.js";
import { createPullDisplay, type PullTask } from "./pull-progress.js";
import { resolveImage } from "./resolve.js";

interface PullOptions {
  creds?: string;
  auth?: string;
  podConfig?: string;
}

/** Registers the image commands. */
export function registerImage(program: Command): void {
  program
    .command("images")
    .alias("image")
    .description("list images")
    .argument("[reference]", "only images matching this reference (repository[:tag])")
    .option("-q, --quiet", "print full image IDs only")
    .option("--digests", "show the repository digest")
    .option("--no-trunc", "do not truncate image IDs and digests")
    .action(
      async (ref: string | undefined, opts: { quiet?: boolean; digests?: boolean; trunc: boolean }, cmd: Command) =>
        withClient(cmd, async (client, g) => {
          const { images } = await client.image.listImages(ref ? { filter: { image: { image: ref } } } : {});
          images.sort((a, b) => (a.repoTags[0] ?? "￿").localeCompare(b.repoTags[0] ?? "￿") || a.id.localeCompare(b.id));
          if (opts.quiet) {
            for (const id of new Set(images.map((i) => i.id))) process.stdout.write(`${id}\n`);
            return;
          }
          if (g.output !== "table")
            return printMessage(ListImagesResponseSchema, create(ListImagesResponseSchema, { images }), g.output);
          const trunc = (s: string) => (opts.trunc ? shortId(s) : s);
          const rows: string[][] = [];
          for (const image of images) {
            const digestRepo = image.repoDigests[0]?.split("@")[0] ?? "<none>";
            const digest = image.repoDigests[0]?.split("@")[1];
            const pairs =
              image.repoTags.length > 0 ? image.repoTags.map(splitRepoTag) : [[digestRepo, "<none>"] as const];
            for (const [repo, tag] of pairs) {
              rows.push([
                repo,
                tag,
                ...(opts.digests ? [digest ? trunc(digest) : "<none>"] : []),
                trunc(image.id),
                humanSize(image.size),
              ]);
            }
          }
          printTable(["IMAGE", "TAG", ...(opts.digests ? ["DIGEST"] : []), "IMAGE ID", "SIZE"], rows);
        }),
    );

  program
    .command("pull")
    .description("pull images (per-layer progress bars on a terminal with berthd, plain lines otherwise)")
    .argument("<image...>", "image references, e.g. docker.io/library/busybox:latest")
    .option("--creds <user:password>", "registry credentials")
    .option("--auth <base64>", "registry credentials as base64(user:password)")
    .option("--pod-config <file>", "PodSandboxConfig of the pod the image is for (JSON or YAML)")
    .action(async (refs: string[], opts: PullOptions, cmd: Command) =>
      withClient(cmd, async (client, g) => {
        const auth = parseAuth(opts);
        const sandboxConfig = opts.podConfig
          ? await readMessageFile(PodSandboxConfigSchema, opts.podConfig)
          : undefined;
        const display = g.output === "table" ? createPullDisplay() : undefined;
        // One image at a time, so that each image's layer bars stay together under it.
        const results: PromiseSettledResult<string>[] = [];
        try {
          for (const image of refs) {
            const task = display?.start(image);
            try {
              const imageRef = await pullOne(client, g, { image, auth, sandboxConfig, task });
              task?.done(imageRef);
              results.push({ status: "fulfilled", value: imageRef });
            } catch (err) {
              task?.failed(describeError(err, g.socket));
              results.push({ status: "rejected", reason: err });
            }
          }
        } finally {
          display?.stop();
        }
        for (const r of results) {
          if (r.status === "rejected") continue;
          if (g.output === "table") process.stdout.write(`Image is up to date for ${r.value}\n`);
          else printMessage(PullImageResponseSchema, create(PullImageResponseSchema, { imageRef: r.value }), g.output);
        }
        const failures = results.filter((r) => r.status === "rejected");
        if (failures.length === 1 && refs.length === 1) throw failures[0]?.reason;
        if (failures.length > 0) {
          // Also after the bars: a terminal may have cut a long error short.
          for (const f of failures) process.stderr.write(`berth: ${describeError(f.reason, g.socket)}\n`);
          process.exitCode = 1;
        }
      }),
    );

  program
    .command("rmi")
    .description("remove images (by tag, digest, ID or unique ID prefix)")
    .argument("[image...]", "image references or IDs")
    .option("-a, --all", "remove every image")
    .option("--prune", "remove every image no container uses (same as `berth prune`)")
    .action(async (refs: string[], opts: { all?: boolean; prune?: boolean }, cmd: Command) =>
      withClient(cmd, async (client, g) => {
        if (opts.prune) return prune(client, g);
        const targets = opts.all ? (await client.image.listImages({})).images.map((i) => i.id) : refs;
        if (targets.length === 0 && !opts.all) throw invalidArgumentStatus("rmi: give at least one image, or -a");
        await forEachRef(targets, g, async (ref) => {
          const image = await resolveImage(client, ref);
          await removeImage(client, image);
        });
      }),
    );

  program
    .command("prune")
    .description("remove every image that no container (in any state) uses")
    .action(async (_opts, cmd: Command) => withClient(cmd, (client, g) => prune(client, g)));

  program
    .command("inspecti")
    .description("show images' status and the runtime's verbose info (JSON unless -o yaml or -o table)")
    .argument("<image...>", "image references or IDs")
    .action(async (refs: string[], _opts, cmd: Command) =>
      withClient(cmd, async (client, g) => {
        const docs: unknown[] = [];
        await forEachRef(refs, g, async (ref) => {
          const found = await resolveImage(client, ref);
          const res = await client.image.imageStatus({ image: { image: found.id }, verbose: true });
          const image = res.image ?? found;
          if (isTable(g)) {
            if (docs.length > 0) process.stdout.write("\n");
            docs.push(image.id);
            printFields([
              ["ID", image.id],
              ["Tags", image.repoTags.join(", ")],
              ["Digests", image.repoDigests.join(", ")],
              ["Size", humanSize(image.size)],
              ["User", image.username || (image.uid ? String(image.uid.value) : "")],
              ["Pinned", String(image.pinned)],
            ]);
            return;
          }
          docs.push({ status: messageJson(ImageSchema, image), info: parseInfo(res.info) });
        });
        if (!isTable(g)) printDocuments(docs, g.output === "yaml" ? "yaml" : "json");
      }),
    );

  program
    .command("imagefsinfo")
    .description("show the image filesystem's usage")
    .action(async (_opts, cmd: Command) =>
      withClient(cmd, async (client, g) => {
        const res = await client.image.imageFsInfo({});
        if (!isTable(g)) return printMessage(ImageFsInfoResponseSchema, res, g.output === "yaml" ? "yaml" : "json");
        printTable(
          ["FILESYSTEM", "MOUNTPOINT", "USED", "INODES"],
          [
            ...res.imageFilesystems.map((f) => [
              "image",
              f.fsId?.mountpoint ?? "",
              humanSize(f.usedBytes?.value ?? 0n),
              String(f.inodesUsed?.value ?? 0n),
            ]),
            ...res.containerFilesystems.map((f) => [
              "container",
              f.fsId?.mountpoint ?? "",
              humanSize(f.usedBytes?.value ?? 0n),
              String(f.inodesUsed?.value ?? 0n),
            ]),
          ],
        );
      }),
    );
}

/**
 * Pulls one image: through berthd's berth.v1.Images/Pull when the runtime has it (per-layer
 * progress for `task`), else the CRI PullImage. A --pod-config goes only through PullImage,
 * which carries the sandbox config (berth's Pull has no field for it).
 */
async function pullOne(
  client: CriClient,
  g: GlobalOptions,
  o: {
    image: string;
    auth: MessageInitShape<typeof AuthConfigSchema> | undefined;
    sandboxConfig: PodSandboxConfig | undefined;
    task: PullTask | undefined;
  },
): Promise<string> {
  const image = { image: o.image };
  if (o.sandboxConfig === undefined) {
    try {
      let imageRef = "";
      for await (const p of client.berth.images.pull({ image, ...(o.auth ? { auth: o.auth } : {}) }, longCall(g))) {
        o.task?.layers(
          p.layers.map((l) => ({ digest: l.digest, total: Number(l.total), done: Number(l.done), state: l.state })),
        );
        if (p.imageRef) imageRef = p.imageRef;
      }
      if (imageRef) return imageRef;
    } catch (err) {
      if (!(err instanceof UnsupportedError)) throw err;
    }
  }
  const res = await client.image.pullImage(
    { image, ...(o.auth ? { auth: o.auth } : {}), ...(o.sandboxConfig ? { sandboxConfig: o.sandboxConfig } : {}) },
    longCall(g),
  );
  return res.imageRef;
}

async function removeImage(client: CriClient, image: Image): Promise<void> {
  await client.image.removeImage({ image: { image: image.id } });
  const names = image.repoTags.length > 0 ? image.repoTags : [image.id];
  for (const name of names) process.stdout.write(`Deleted: ${name}\n`);
}

/** Removes every image no container refers to (by ID, by the image it was created from, or its ID). */
async function prune(client: CriClient, g: GlobalOptions): Promise<void> {
  const [{ images }, { containers }] = await Promise.all([
    client.image.listImages({}),
    client.runtime.listContainers({}),
  ]);
  const used = new Set<string>();
  const bare = (s: string) => s.replace(/^sha256:/, "");
  const specs = new Set<string>();
  for (const c of containers) {
    for (const s of [c.imageId, c.imageRef, c.image?.image ?? ""]) if (s) used.add(bare(s));
    if (c.image?.image) specs.add(c.image.image);
  }
  // The image a container names by tag resolves through ImageStatus (the tag may have moved since).
  for (const spec of specs) {
    const st = await client.image.imageStatus({ image: { image: spec } }).catch(() => undefined);
    if (st?.image) used.add(bare(st.image.id));
  }
  const unused = images.filter((i) => !i.pinned && !used.has(bare(i.id)));
  await forEachRef(
    unused.map((i) => i.id),
    g,
    async (id) => removeImage(client, unused.find((i) => i.id === id) as Image),
  );
}

function parseAuth(opts: PullOptions): MessageInitShape<typeof AuthConfigSchema> | undefined {
  if (opts.creds !== undefined && opts.auth !== undefined)
    throw invalidArgumentStatus("pull: --creds and --auth are exclusive");
  if (opts.auth !== undefined) return { auth: opts.auth };
  if (opts.creds === undefined) return undefined;
  const colon = opts.creds.indexOf(":");
  if (colon <= 0) throw invalidArgumentStatus("pull: --creds must be user:password");
  return { username: opts.creds.slice(0, colon), password: opts.creds.slice(colon + 1) };
}
