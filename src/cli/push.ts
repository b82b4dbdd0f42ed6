/**
 * Registry commands: `push`, `tag`, `login`, `logout` (docker's), through berthd's own
 * berth.v1.Images API. Credentials come from the docker config file (./docker-config.ts), where
 * `login` writes them after berthd has checked them against the registry.
 */
import type { Command } from "commander";
import { describeError, invalidArgumentStatus, longCall, withClient } from "./context.js";
import { credentialsFor, dockerConfigPath, removeCredentials, storeCredentials } from "./docker-config.js";
import { createPullDisplay } from "./pull-progress.js";

const PUSH_WORDS = { starting: "Pushing", running: "pushing", finished: "Pushed", verb: "push" };

/** Registers the registry commands. */
export function registerPush(program: Command): void {
  program
    .command("push")
    .description("push a local image to its registry (per-blob progress bars on a terminal)")
    .argument("<image>", "local image name, e.g. 127.0.0.1:5000/demo/web:1")
    .option("--creds <user:password>", "registry credentials (default: the docker config file's)")
    .action(async (image: string, opts: { creds?: string }, cmd: Command) =>
      withClient(cmd, async (client, g) => {
        const registry = registryOf(image);
        const creds = opts.creds !== undefined ? splitCreds(opts.creds) : await credentialsFor(registry);
        const auth = creds
          ? { username: creds.username, password: creds.password, serverAddress: registry }
          : undefined;
        const display = g.output === "table" ? createPullDisplay(process.stderr, PUSH_WORDS) : undefined;
        const task = display?.start(image);
        let digest = "";
        try {
          for await (const p of client.berth.images.push({ image, ...(auth ? { auth } : {}) }, longCall(g))) {
            task?.layers(
              p.layers.map((l) => ({ digest: l.digest, total: Number(l.total), done: Number(l.done), state: l.state })),
            );
            if (p.digest) digest = p.digest;
          }
          task?.done(digest);
        } catch (err) {
          task?.failed(describeError(err, g.socket));
          throw err;
        } finally {
          display?.stop();
        }
        if (g.output === "table") process.stdout.write(`${image}: digest: ${digest}\n`);
        else process.stdout.write(`${JSON.stringify({ image, digest })}\n`);
      }),
    );

  program
    .command("tag")
    .description("give a local image another name")
    .argument("<source>", "image name, ID or unique ID prefix")
    .argument("<target>", "new name, e.g. 127.0.0.1:5000/demo/web:latest")
    .action(async (source: string, target: string, _opts, cmd: Command) =>
      withClient(cmd, async (client) => {
        await client.berth.images.tag({ source, target });
      }),
    );

  program
    .command("login")
    .description("check credentials against a registry and store them in the docker config file")
    .argument("<registry>", "registry host[:port]")
    .option("-u, --username <user>", "user name")
    .option("-p, --password <password>", "password (prefer --password-stdin)")
    .option("--password-stdin", "read the password from stdin")
    .action(
      async (registry: string, opts: { username?: string; password?: string; passwordStdin?: boolean }, cmd: Command) =>
        withClient(cmd, async (client) => {
          if (opts.password !== undefined && opts.passwordStdin)
            throw invalidArgumentStatus("login: --password and --password-stdin are exclusive");
          let username = opts.username;
          let password = opts.password;
          if (opts.passwordStdin) {
            if (username === undefined) throw invalidArgumentStatus("login: --password-stdin needs --username");
            password = (await readAll(process.stdin)).replace(/\r?\n$/, "");
          }
          if (username === undefined || password === undefined) {
            if (!process.stdin.isTTY)
              throw invalidArgumentStatus("login: give --username and --password-stdin (stdin is not a terminal)");
            username ??= await prompt("Username: ", false);
            password ??= await prompt("Password: ", true);
          }
          if (!username) throw invalidArgumentStatus("login: the user name is empty");
          await client.berth.images.login({ registry, auth: { username, password, serverAddress: registry } });
          const path = dockerConfigPath();
          await storeCredentials(registry, { username, password }, path);
          process.stdout.write(`Login Succeeded (credentials stored in ${path})\n`);
        }),
    );

  program
    .command("logout")
    .description("remove a registry's credentials from the docker config file")
    .argument("<registry>", "registry host[:port]")
    .action(async (registry: string) => {
      const removed = await removeCredentials(registry);
      process.stdout.write(removed ? `Removing login credentials for ${registry}\n` : `Not logged in to ${registry}\n`);
    });
}

/**
 * The registry of an image name, by the reference grammar's rule: a first component with a `.`
 * or `:`, or `localhost`, is a registry; anything else is on docker.io. (berthd validates the
 * whole name; this only picks the credentials.)
 */
function registryOf(image: string): string {
  const slash = image.indexOf("/");
  const first = slash < 0 ? "" : image.slice(0, slash);
  if (first !== "" && (first.includes(".") || first.includes(":") || first === "localhost"))
    return first === "index.docker.io" ? "docker.io" : first;
  return "docker.io";
}

function splitCreds(creds: string): { username: string; password: string } {
  const colon = creds.indexOf(":");
  if (colon <= 0) throw invalidArgumentStatus("--creds must be user:password");
  return { username: creds.slice(0, colon), password: creds.slice(colon + 1) };
}

async function readAll(stream: NodeJS.ReadableStream): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const c of stream) {
    size += (c as Buffer).length;
    if (size > 64 * 1024) throw invalidArgumentStatus("login: the password on stdin is longer than 64 KiB");
    chunks.push(c as Buffer);
  }
  return Buffer.concat(chunks).toString("utf8");
}

/** Reads one line from the terminal; `hidden` turns echo off (raw mode) for passwords. */
async function prompt(question: string, hidden: boolean): Promise<string> {
  const input = process.stdin;
  process.stderr.write(question);
  input.setRawMode(hidden);
  input.resume();
  input.setEncoding("utf8");
  try {
    return await new Promise<string>((resolve, reject) => {
      let line = "";
      const onData = (s: string) => {
        for (const ch of s) {
          if (ch === "\r" || ch === "\n") {
            input.off("data", onData);
            process.stderr.write("\n");
            return resolve(line);
          }
          if (ch === "\u0003") {
            input.off("data", onData);
            return reject(invalidArgumentStatus("login: interrupted"));
          }
          if (ch === "\u007f") line = line.slice(0, -1);
          else line += ch;
        }
      };
      input.on("data", onData);
    });
  } finally {
    input.setRawMode(false);
    input.pause();
  }
}
