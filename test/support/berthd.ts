import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { mkdtemp, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { type CriClient, createCriClient } from "../../src/client/index.js";
import { mountsUnder, run } from "../../src/sys/index.js";

const REPO = join(dirname(fileURLToPath(import.meta.url)), "..", "..");

/** The daemon's entry: the built one when present (fast start), else the TypeScript source through tsx. */
export function berthdCommand(): string[] {
  const built = join(REPO, "dist", "src", "bin", "berthd.js");
  const flags = nodeFlags(join(REPO, "src", "bin", "berthd.ts"));
  if (existsSync(built) && process.env.BERTH_TEST_FROM_SOURCE !== "1") return [process.execPath, ...flags, built];
  return [process.execPath, ...flags, "--import", "tsx", join(REPO, "src", "bin", "berthd.ts")];
}

/** The node flags of a script's `#!/usr/bin/env -S node ...` line, so tests run berthd as installed. */
function nodeFlags(script: string): string[] {
  const first = readFileSync(script, "utf8").split("\n", 1)[0] ?? "";
  const m = /^#!.*\bnode\b(.*)$/.exec(first);
  return (m?.[1] ?? "").split(/\s+/).filter((f) => f.startsWith("--"));
}

/** A berthd started by a test on its own root, state and socket. */
export interface TestDaemon {
  readonly pid: number;
  readonly dir: string;
  readonly root: string;
  readonly state: string;
  readonly socket: string;
  readonly configPath: string;
  readonly client: CriClient;
  readonly child: ChildProcess;
  /** stderr so far (JSON log lines). */
  stderr(): string;
  /** Sends a signal and waits for exit; returns the exit code (or 128+signal). */
  stop(signal?: NodeJS.Signals): Promise<number>;
  /** Stops (SIGTERM) and removes the temp dir. Safe to call twice. */
  cleanup(): Promise<void>;
}

export interface StartOptions {
  /** Contents of config.toml (paths in it may use {dir}). */
  config?: string;
  /** Reuse an existing directory (restart tests). */
  dir?: string;
  extraArgs?: string[];
  /** How long to wait for the socket (ms). */
  timeoutMs?: number;
}

/** Starts berthd on a temporary root/state/socket and waits until its socket answers. */
export async function startBerthd(options: StartOptions = {}): Promise<TestDaemon> {
  const dir = options.dir ?? (await mkdtemp(join(tmpdir(), "berth-e2e-")));
  const root = join(dir, "root");
  const state = join(dir, "state");
  const socket = join(dir, "berth.sock");
  const configPath = join(dir, "config.toml");
  await writeFile(configPath, (options.config ?? "").replaceAll("{dir}", dir));
  const [cmd, ...args] = berthdCommand();
  const child = spawn(
    cmd as string,
    [
      ...args,
      "--config",
      configPath,
      "--root",
      root,
      "--state",
      state,
      "--socket",
      socket,
      "--log-level",
      "debug",
      ...(options.extraArgs ?? []),
    ],
    { stdio: ["ignore", "ignore", "pipe"] },
  );
  let err = "";
  child.stderr?.on("data", (b: Buffer) => {
    err += b.toString();
  });
  const exited = new Promise<number>((resolve) => {
    child.once("exit", (code, sig) => resolve(code ?? 128 + (sig === "SIGKILL" ? 9 : sig === "SIGTERM" ? 15 : 2)));
  });
  const client = createCriClient({ socket, timeoutMs: 60_000 });
  const deadline = Date.now() + (options.timeoutMs ?? 20_000);
  let exitCode: number | undefined;
  void exited.then((c) => {
    exitCode = c;
  });
  while (true) {
    if (exitCode !== undefined) {
      client.close();
      throw new Error(`berthd exited with ${exitCode} before serving: ${err}`);
    }
    if (await isSocket(socket)) {
      try {
        await client.runtime.version({});
        break;
      } catch {
        // not serving yet
      }
    }
    if (Date.now() > deadline) {
      child.kill("SIGKILL");
      client.close();
      throw new Error(`berthd did not serve within the deadline: ${err}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  let cleaned = false;
  const d: TestDaemon = {
    pid: child.pid as number,
    dir,
    root,
    state,
    socket,
    configPath,
    client,
    child,
    stderr: () => err,
    stop: async (signal = "SIGTERM") => {
      client.close();
      if (exitCode !== undefined) return exitCode;
      child.kill(signal);
      return exited;
    },
    cleanup: async () => {
      if (cleaned) return;
      cleaned = true;
      await d.stop("SIGTERM");
      if (!options.dir) await removeTestDir(dir);
    },
  };
  return d;
}

/**
 * Removes a daemon's test directory: first every mount berthd left below it (the private
 * bind mounts of its namespace directories, container root filesystems), deepest first.
 */
export async function removeTestDir(dir: string): Promise<void> {
  for (const mp of await mountsUnder(dir)) {
    await run("umount", ["--lazy", mp], { name: "umount" }).catch(() => {});
  }
  await rm(dir, { recursive: true, force: true });
}

async function isSocket(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isSocket();
  } catch {
    return false;
  }
}

/** Runs berthd to completion with the given args (for start-up failure tests). */
export function runBerthd(
  args: string[],
  timeoutMs = 20_000,
): Promise<{ code: number; stdout: string; stderr: string }> {
  const [cmd, ...pre] = berthdCommand();
  return new Promise((resolve, reject) => {
    const child = spawn(cmd as string, [...pre, ...args], { stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (b: Buffer) => {
      stdout += b.toString();
    });
    child.stderr.on("data", (b: Buffer) => {
      stderr += b.toString();
    });
    const t = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`berthd ${args.join(" ")} did not exit: ${stderr}`));
    }, timeoutMs);
    child.on("exit", (code) => {
      clearTimeout(t);
      resolve({ code: code ?? 1, stdout, stderr });
    });
  });
}

/** Stops and removes every pod sandbox the daemon lists, ignoring per-pod errors (test cleanup). */
export async function removeAllPods(client: CriClient): Promise<void> {
  const { items } = await client.runtime.listPodSandbox({});
  for (const sb of items) {
    await client.runtime.stopPodSandbox({ podSandboxId: sb.id }).catch(() => {});
    await client.runtime.removePodSandbox({ podSandboxId: sb.id }).catch(() => {});
  }
}

/** True when the tests can do what a container runtime needs (root). */
export function isRoot(): boolean {
  return process.getuid?.() === 0;
}
