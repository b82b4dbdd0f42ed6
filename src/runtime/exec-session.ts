/**
 * Interactive exec (kubectl/crictl exec): `runc exec` in the foreground, with the container's process
 * settings (env, user, capabilities, cgroup; see ContainerRuntime.prepareExec). With a TTY it runs inside a
 * pseudo-terminal (node-pty), so runc proxies the container's console and resizes reach it as SIGWINCH;
 * without, plain pipes. The exec'd process is killed (by the PID runc records) when `io.signal` aborts.
 */
import { spawn } from "node:child_process";
import { readFile } from "node:fs/promises";
import type { Readable, Writable } from "node:stream";
import { pipeline } from "node:stream/promises";
import * as pty from "node-pty";
import { failedPrecondition, RuntimeError } from "../errdefs/index.js";
import { setRawInput } from "../sys/index.js";
import type { ContainerRuntime } from "./runtime.js";

/** A terminal size, in character cells. */
export interface TerminalSize {
  width: number;
  height: number;
}

/**
 * A client's stdio for one exec or attach session. A stream is present exactly when the client asked for
 * it; the caller ends stdout/stderr after the session returns.
 */
export interface SessionIO {
  /** Bytes from the client; ends when the client closes stdin. */
  stdin?: Readable;
  stdout?: Writable;
  stderr?: Writable;
  /** Terminal size changes (tty sessions only; empty otherwise). Ends with the session. */
  resize: AsyncIterable<TerminalSize>;
  /** Aborted when the client goes away: the process is killed. */
  signal: AbortSignal;
}

/** Options of {@link execSession}. */
export interface ExecSessionOptions {
  tty: boolean;
  io: SessionIO;
}

/**
 * Runs `cmd` in running container `id` with the client's stdio until it exits, and returns its exit code
 * (128+n for a signal). Settles only after all of its output has been written to `io`.
 */
export async function execSession(
  runtime: Pick<ContainerRuntime, "prepareExec">,
  id: string,
  cmd: readonly string[],
  { tty, io }: ExecSessionOptions,
): Promise<{ exitCode: number }> {
  // kubectl and crictl send the terminal's size right after connecting; start at that size.
  const resizes = io.resize[Symbol.asyncIterator]();
  const first = tty ? await firstResize(resizes, 500) : undefined;
  // A client gone while we waited has no session left to run a process for.
  if (io.signal.aborted) throw failedPrecondition("exec: client went away before the command started");
  const prepared = await runtime.prepareExec(id, cmd, { tty, ...(first ? { consoleSize: first } : {}) });
  const killExec = async () => {
    const pid = Number.parseInt(await readFile(prepared.pidFile, "utf8").catch(() => ""), 10);
    if (pid > 0) {
      try {
        process.kill(pid, "SIGKILL");
      } catch {
        // already gone
      }
    }
  };
  try {
    if (tty) return await execTty(prepared, io, resizes, first, killExec);
    return await execPipes(prepared, io, killExec);
  } finally {
    await prepared.cleanup();
  }
}

/** A prepared `runc exec`: argv, environment, the PID file runc writes, and cleanup of its temp files. */
interface PreparedExec {
  file: string;
  args: string[];
  env: NodeJS.ProcessEnv;
  pidFile: string;
  cleanup(): Promise<void>;
}

/** The first terminal size the client sends, or undefined if none comes within `ms`. */
async function firstResize(it: AsyncIterator<TerminalSize>, ms: number): Promise<TerminalSize | undefined> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<undefined>((r) => {
    timer = setTimeout(() => r(undefined), ms);
  });
  const next = it.next().then((r) => (r.done ? undefined : r.value));
  const size = await Promise.race([next, timeout]);
  clearTimeout(timer);
  return size && size.width > 0 && size.height > 0 ? size : undefined;
}

async function execTty(
  cmd: PreparedExec,
  io: SessionIO,
  resizes: AsyncIterator<TerminalSize>,
  first: TerminalSize | undefined,
  kill: () => Promise<void>,
): Promise<{ exitCode: number }> {
  // runc, in the foreground, puts our side of the terminal in raw mode and copies its size to
  // the container's console on start and on every SIGWINCH that p.resize() causes.
  const p = pty.spawn(cmd.file, cmd.args, {
    cols: first?.width ?? 80,
    rows: first?.height ?? 24,
    env: cmd.env as Record<string, string>,
    name: "xterm",
    // Bytes both ways: neither the client's keystrokes nor the program's output need be UTF-8.
    encoding: null,
  });
  let running = true;
  const exited = new Promise<number>((resolve) =>
    p.onExit((e) => {
      running = false;
      resolve(e.signal ? 128 + e.signal : e.exitCode);
    }),
  );
  // Raw input from the start: until runc switches our side to raw mode, this terminal's line
  // discipline would echo the client's first keystrokes and hold them back line by line. Output
  // processing stays on (`opost`), as runc's raw mode leaves it, so whichever of stty and runc
  // comes last the terminal ends up the same. Not execFileSync: under load a synchronous stty
  // stalls every other RPC for as long as it waits for a CPU; stdin waits for it instead.
  const rawInput = setRawInput((p as unknown as { ptsName: string }).ptsName);
  const crlf = createCrCrLfCollapser();
  // With `encoding: null` node-pty hands out Buffers, whatever its typings say.
  p.onData((d: string | Buffer) => {
    const out = crlf.push(Buffer.isBuffer(d) ? d : Buffer.from(d));
    if (out.length > 0) io.stdout?.write(out);
  });
  io.stdin?.on("data", (b: Buffer) => {
    // Promise callbacks run in order, so keystrokes keep theirs.
    void rawInput.then(() => {
      if (running && b.length > 0) p.write(b);
    });
  });
  // A terminal has no half-close: when the client's stdin ends we just stop writing, as containerd does.
  void (async () => {
    for (let r = await resizes.next(); !r.done && running; r = await resizes.next()) {
      if (r.value.width <= 0 || r.value.height <= 0) continue;
      try {
        p.resize(r.value.width, r.value.height);
      } catch {
        // The terminal closed under us (EBADF): the command is exiting; a late resize is moot.
      }
    }
  })().catch(() => {
    // The client's resize stream broke: the session is ending, and sizes no longer matter.
  });
  // The exec'd process first, by the PID runc recorded: runc does not pass SIGKILL on, and once
  // runc is gone its temporary directory (and the PID file) is removed.
  const onAbort = () => {
    void kill()
      .finally(() => {
        // node-pty kills by PID: not once runc is reaped and its PID may be another process's.
        if (running) p.kill("SIGKILL");
      })
      .catch(() => {
        // Exited in the meantime: nothing left to kill.
      });
  };
  io.signal.addEventListener("abort", onAbort, { once: true });
  // The client may have left while runc was being prepared: no abort event comes for that.
  if (io.signal.aborted) onAbort();
  try {
    const exitCode = await exited;
    const rest = crlf.flush();
    if (rest.length > 0) io.stdout?.write(rest);
    return { exitCode };
  } finally {
    io.signal.removeEventListener("abort", onAbort);
  }
}

const CR = 0x0d;
const CRCRLF = Buffer.from("\r\r\n");

/**
 * Turns CR CR LF into CR LF in a terminal's output, across chunk boundaries. Our side of the
 * exec terminal maps LF to CR LF (runc's raw mode keeps output processing on), and runc clears
 * that mapping on the container's console only once the exec'd process is already running: the
 * first lines of a quick command come out as CR CR LF. A terminal shows both the same; clients
 * that compare bytes do not. A trailing CR is held back until the next chunk (or `flush()`)
 * shows what follows it.
 */
export function createCrCrLfCollapser(): { push(chunk: Buffer): Buffer; flush(): Buffer } {
  let held = Buffer.alloc(0);
  return {
    push(chunk) {
      const buf = held.length > 0 ? Buffer.concat([held, chunk]) : chunk;
      let keep = 0;
      while (keep < 2 && keep < buf.length && buf[buf.length - 1 - keep] === CR) keep++;
      held = Buffer.from(buf.subarray(buf.length - keep));
      const body = buf.subarray(0, buf.length - keep);
      const parts: Buffer[] = [];
      let from = 0;
      for (let i = body.indexOf(CRCRLF); i >= 0; i = body.indexOf(CRCRLF, from)) {
        parts.push(body.subarray(from, i));
        from = i + 1;
      }
      if (parts.length === 0) return body;
      parts.push(body.subarray(from));
      return Buffer.concat(parts);
    },
    flush() {
      const rest = held;
      held = Buffer.alloc(0);
      return rest;
    },
  };
}

async function execPipes(cmd: PreparedExec, io: SessionIO, kill: () => Promise<void>): Promise<{ exitCode: number }> {
  const child = spawn(cmd.file, cmd.args, { env: cmd.env, stdio: ["pipe", "pipe", "pipe"] });
  let spawnError: Error | undefined;
  // A runc that cannot be started fails this exec, not the daemon; "close" follows the error.
  child.on("error", (err) => {
    spawnError = err;
  });
  // The command may exit without reading its input: the client's bytes then have nowhere to go.
  child.stdin.on("error", () => {});
  const exited = new Promise<number>((resolve, reject) =>
    child.on("close", (code, sig) => {
      if (spawnError) reject(new RuntimeError("Internal", `exec: run ${cmd.file}: ${spawnError.message}`));
      else resolve(code ?? (sig === "SIGKILL" ? 137 : 128 + 15));
    }),
  );
  // The exec'd process first, by the PID runc recorded: runc does not pass SIGKILL on, and once
  // runc is gone its temporary directory (and the PID file) is removed.
  const onAbort = () => {
    void kill()
      .finally(() => child.kill("SIGKILL"))
      .catch(() => {
        // Exited in the meantime: nothing left to kill.
      });
  };
  io.signal.addEventListener("abort", onAbort, { once: true });
  // The client may have left while runc was being prepared: no abort event comes for that.
  if (io.signal.aborted) onAbort();
  const pumps: Promise<unknown>[] = [];
  // The client closing stdin early is normal; the session's end is the outcome.
  if (io.stdin) pumps.push(pipeline(io.stdin, child.stdin).catch(() => {}));
  else child.stdin.end();
  pumps.push(copyOut(child.stdout, io.stdout));
  pumps.push(copyOut(child.stderr, io.stderr));
  try {
    const code = await exited;
    await Promise.allSettled(pumps.slice(io.stdin ? 1 : 0));
    return { exitCode: code };
  } finally {
    io.signal.removeEventListener("abort", onAbort);
  }
}

/**
 * Copies a child's output to the client without ending the client's stream (the server does that).
 * A client gone mid-stream stops the wait for "drain" (which would never come) and the copying;
 * the child's output is then read and dropped so it never blocks on a full pipe.
 */
async function copyOut(from: NodeJS.ReadableStream, to: Writable | undefined): Promise<void> {
  for await (const chunk of from) {
    if (!to || to.destroyed || to.write(chunk)) continue;
    await new Promise<void>((r) => {
      const done = () => {
        to.off("drain", done);
        to.off("close", done);
        r();
      };
      to.on("drain", done);
      to.on("close", done);
    });
  }
}
