/**
 * Image archives: `save` (docker-archive, or an OCI image layout with --format oci) and `load`,
 * through berthd's berth.v1.Images Save and Load. The archive goes over the socket as a stream;
 * berthd does the tar work and the hashing.
 */
import { createReadStream, createWriteStream } from "node:fs";
import { rename, rm } from "node:fs/promises";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import type { Command } from "commander";
import { invalidArgumentStatus, longCall, withClient } from "./context.js";

/** Registers `save` and `load`. */
export function registerArchive(program: Command): void {
  program
    .command("save")
    .description("write images to a tar archive (docker-archive, or an OCI image layout with --format oci)")
    .argument("<image...>", "image names or IDs")
    .option("-o, --output-file <file>", "archive to write (default: stdout, when it is not a terminal)")
    .option("--format <format>", "docker or oci", "docker")
    .action(async (images: string[], opts: { outputFile?: string; format: string }, cmd: Command) =>
      withClient(cmd, async (client, g) => {
        if (opts.format !== "docker" && opts.format !== "oci")
          throw invalidArgumentStatus(`save: --format must be docker or oci, not ${opts.format}`);
        if (opts.outputFile === undefined && process.stdout.isTTY)
          throw invalidArgumentStatus(
            "save: refusing to write an archive to a terminal: give -o FILE or redirect stdout",
          );
        const chunks = client.berth.images.save({ images, format: opts.format }, longCall(g));
        const bytes = Readable.from(
          (async function* () {
            for await (const c of chunks) yield c.data;
          })(),
        );
        if (opts.outputFile === undefined) return pipeline(bytes, process.stdout);
        // Written beside the target and renamed at the end: a failed save leaves no half archive.
        const tmp = `${opts.outputFile}.berth-${process.pid}.tmp`;
        try {
          await pipeline(bytes, createWriteStream(tmp, { mode: 0o644 }));
          await rename(tmp, opts.outputFile);
        } catch (err) {
          await rm(tmp, { force: true });
          throw err;
        }
      }),
    );

  program
    .command("load")
    .description("load images from a tar archive (docker-archive or OCI image layout)")
    .option("-i, --input <file>", "archive to read (default: stdin)")
    .action(async (opts: { input?: string }, cmd: Command) =>
      withClient(cmd, async (client, g) => {
        if (opts.input === undefined && process.stdin.isTTY)
          throw invalidArgumentStatus("load: give -i FILE or redirect stdin from an archive");
        const source = opts.input !== undefined ? createReadStream(opts.input) : process.stdin;
        const chunks = (async function* () {
          for await (const data of source) yield { data: data as Buffer };
        })();
        const res = await client.berth.images.load(chunks, longCall(g));
        for (const name of res.images) process.stdout.write(`Loaded image: ${name}\n`);
      }),
    );
}
