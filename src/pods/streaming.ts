import { execFile, spawn } from "node:child_process";
import { constants as fsc } from "node:fs";
import { open, readFile, stat } from "node:fs/promises";
import { basename, dirname } from "node:path";
import type { Duplex, Writable } from "node:stream";
import { pipeline } from "node:stream/promises";
import * as pty from "node-pty";
import { failedPrecondition, RuntimeError } from "../errdefs/index.js";
import type { Logger } from "../log/index.js";
import type { ContainerRuntime } from "../runtime/index.js";
import type {
  AttachRequest,
  ExecRequest,
  ExecResult,
  PortForwardTarget,
  StreamIO,
  StreamingBackend,
  TerminalSize,
} from "../streaming/index.js";
import type { ContainerManager } from "./containers.js";
import type { SandboxManager } from "./sandboxes.js";

export interface StreamingBackendOptions {
  containers: ContainerManager;
  sandboxes: SandboxManager;
  runtime: ContainerRuntime;
  log: Logger;
  /** socat, for the attach socket (SOCK_SEQPACKET, which Node cannot open) and port-forward. */
  socatPath?: string;
  nsenterPath?: string;
}

/**
 * The runtime side of kubectl/crictl exec, attach and port-forward.
 *
 * - exec: `runc exec` in the foreground, with the container's process settings (env, user,
 *   capabilities, cgroup). With a TTY it runs inside a pseudo-terminal (node-pty), so runc
 *   proxies the container's console and resizes reach it as SIGWINCH; without, plain pipes.
 *   The exec'd process is killed (by the PID runc records) when the client goes away.
 * - attach: output comes from the container's CRI log (conmon writes every byte there, with
 *   the stream it came from), stdin goes to conmon's attach socket through socat, and resizes
 *   to conmon's control FIFO. Detaching never stops the container.
 * - port-forward: one `nsenter --net=<pod netns> socat STDIO TCP:localhost:<port>` per
 *   connection, IPv4 first, then IPv6.
 */
export function createStreamingBackend(o: StreamingBackendOptions): StreamingBackend {
  const socat = o.socatPath ?? "/usr/bin/socat";
  const nsenter = o.nsenterPath ?? "/usr/bin/nsenter";

  const runningContainer = (id: string) => {
    const rec = o.containers.get(id);
    if (rec.state !== "running") throw failedPrecondition(`container ${rec.id} is not running`);
    return rec;
  };

  return {
    async exec(req: ExecRequest, io: StreamIO): Promise<ExecResult> {
      const rec = runningContainer(req.containerId);
      // kubectl and crictl send the terminal's size right after connecting; start at that size.
      const resizes = io.resize[Symbol.asyncIterator]();
      const first = req.tty ? await firstResize(resizes, 500) : undefined;
      // A client gone while we waited has no session left to run a process for.
      if (io.signal.aborted) throw failedPrecondition("exec: client went away before the command started");
      const cmd = await o.runtime.prepareExec(rec.id, req.cmd, {
        tty: req.tty,
        ...(first ? { consoleSize: first } : {}),
      });
      const killExec = async () => {
        const pid = Number.parseInt(await readFile(cmd.pidFile, "utf8").catch(() => ""), 10);
        if (pid > 0) {
          try {
            process.kill(pid, "SIGKILL");
          } catch {
            // already gone
          }
        }
      };
      try {
        if (req.tty) return await execTty(cmd, io, resizes, first, killExec);
        return await execPipes(cmd, io, killExec);
      } finally {
        await cmd.cleanup();
      }
    },

    async attach(req: AttachRequest, io: StreamIO): Promise<void> {
      const rec = runningContainer(req.containerId);
      const done = new AbortController();
      const signal = AbortSignal.any([io.signal, done.signal]);
      const tasks: Promise<unknown>[] = [];
      if (req.stdout || req.stderr) {
        // Without a path from the kubelet, conmon logs to the runtime's default file.
        const logPath = rec.logPath || o.runtime.defaultLogPath(rec.id);
        // Where the log ends now, before any stdin is relayed: the container's answer to the
        // client's first line must come after it, however slow the follower's first stat is.
        const from = await stat(logPath).catch(() => undefined);
        tasks.push(
          followLog(logPath, {
            from: from ? { ino: from.ino, pos: from.size } : { ino: -1, pos: 0 },
            stdout: req.stdout ? io.stdout : undefined,
            stderr: req.stderr ? io.stderr : undefined,
            signal,
          }),
        );
      }
      if (req.tty) {
        // Not one of `tasks`: the resize stream ends only once attach has returned, so awaiting it
        // would keep the session open after the container exits or the client closes stdin.
        void (async () => {
          for await (const size of io.resize) {
            if (signal.aborted) return;
            // A resize the container missed (it exited) is harmless; the session goes on.
            await writeCtl(o.runtime.ctlFifoPath(rec.id), `1 ${size.height} ${size.width}\n`).catch(() => {});
          }
        })().catch((err: unknown) => o.log.debug({ err, containerId: rec.id }, "attach: resize stream failed"));
      }
      if (req.stdin && io.stdin && rec.config.stdin) {
        // conmon binds the socket in the bundle directory, next to the ctl FIFO, and links
        // `<attach dir>/<id>` to it only when that path fits in sun_path (108 bytes): under a
        // long state directory it shortens the link's name, so attachSocketPath() does not
        // exist. Connect by the socket's relative name from the bundle directory instead.
        const bundleDir = dirname(o.runtime.ctlFifoPath(rec.id));
        const child = spawn(
          socat,
          ["-u", "STDIN", `UNIX-CONNECT:${basename(o.runtime.attachSocketPath(rec.id))},type=5`],
          {
            cwd: bundleDir,
            stdio: ["pipe", "ignore", "pipe"],
          },
        );
        let socatErr = "";
        child.stderr.on("data", (b: Buffer) => {
          socatErr = (socatErr + b.toString()).slice(-2000);
        });
        child.on("error", (err) => o.log.warn({ err, containerId: rec.id }, "attach: cannot run socat"));
        child.on("close", (code) => {
          if (code !== 0 && !signal.aborted)
            o.log.warn({ containerId: rec.id, code, stderr: socatErr.trim() }, "attach: stdin relay failed");
        });
        signal.addEventListener("abort", () => child.kill("SIGTERM"), { once: true });
        // The client closing stdin early is normal; the exec's exit code is the outcome.
        const stdinDone = pipeline(io.stdin, child.stdin).catch(() => {});
        tasks.push(stdinDone);
        // A client that closes stdin has detached (kubectl attach -i ends this way).
        void stdinDone.then(() => setTimeout(() => done.abort(), 100));
      }
      // The session lasts until the client goes away or the container exits.
      const watchExit = (async () => {
        while (!signal.aborted) {
          if (o.containers.get(rec.id).state !== "running") {
            // Let the log follower flush the container's last words.
            await new Promise((r) => setTimeout(r, 200));
            done.abort();
            return;
          }
          await new Promise((r) => setTimeout(r, 200));
        }
      })();
      await Promise.race([
        watchExit,
        new Promise<void>((r) => signal.addEventListener("abort", () => r(), { once: true })),
      ]);
      done.abort();
      await Promise.allSettled(tasks);
    },

    async portForward(target: PortForwardTarget, stream: Duplex, options: { signal: AbortSignal }): Promise<void> {
      const sb = o.sandboxes.get(target.podSandboxId);
      if (sb.state !== "ready") throw failedPrecondition(`pod sandbox ${sb.id} is not ready`);
      const netns = sb.netnsPath;
      const argv = (addr: string) =>
        netns
          ? [nsenter, [`--net=${netns}`, "--", socat, "-d", "-d", "STDIO", addr]]
          : [socat, ["-d", "-d", "STDIO", addr]];
      for (const addr of [`TCP4:127.0.0.1:${target.port}`, `TCP6:[::1]:${target.port}`]) {
        const [file, args] = argv(addr) as [string, string[]];
        const result = await forwardOnce(file, args, stream, options.signal, o.log);
        if (result !== "refused") return;
      }
      throw failedPrecondition(`port ${target.port} in pod ${sb.id}: connection refused`);
    },
  };
}

/** A prepared `runc exec`: argv, environment, the PID file runc writes, and cleanup of its temp files. */
export interface PreparedExec {
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
  io: StreamIO,
  resizes: AsyncIterator<TerminalSize>,
  first: TerminalSize | undefined,
  kill: () => Promise<void>,
): Promise<ExecResult> {
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
  const rawInput = new Promise<void>((resolve) => {
    execFile("stty", ["-F", (p as unknown as { ptsName: string }).ptsName, "raw", "-echo", "opost"], () => resolve());
  });
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

async function execPipes(cmd: PreparedExec, io: StreamIO, kill: () => Promise<void>): Promise<ExecResult> {
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

async function writeCtl(path: string, msg: string): Promise<void> {
  const fh = await open(path, fsc.O_WRONLY | fsc.O_NONBLOCK);
  try {
    await fh.write(msg);
  } finally {
    await fh.close();
  }
}

/**
 * Streams the records of a CRI log file written after `from` to stdout/stderr until `signal`
 * aborts, following rotation (a new file at the same path).
 */
async function followLog(
  path: string,
  o: {
    /** Inode and offset to start from (inode -1: no file yet, start from the beginning of the first one). */
    from: { ino: number; pos: number };
    stdout: Writable | undefined;
    stderr: Writable | undefined;
    signal: AbortSignal;
  },
): Promise<void> {
  let { ino, pos } = o.from;
  // Bytes, not text: a read may end inside a multi-byte character, and output need not be UTF-8.
  let pending = Buffer.alloc(0);
  while (!o.signal.aborted) {
    const st = await stat(path).catch(() => undefined);
    if (st && st.ino !== ino) {
      ino = st.ino;
      pos = 0;
      pending = Buffer.alloc(0);
    }
    if (st && st.size > pos) {
      const fh = await open(path, "r");
      try {
        const buf = Buffer.alloc(Math.min(st.size - pos, 1 << 20));
        const { bytesRead } = await fh.read(buf, 0, buf.length, pos);
        pos += bytesRead;
        pending = Buffer.concat([pending, buf.subarray(0, bytesRead)]);
      } finally {
        await fh.close();
      }
      for (let nl = pending.indexOf(0x0a); nl >= 0; nl = pending.indexOf(0x0a)) {
        writeLogRecord(pending.subarray(0, nl), o);
        pending = pending.subarray(nl + 1);
      }
      continue;
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

/**
 * Writes the content of one CRI log record (`<time> <stream> <tags> <content>`, without its
 * newline) to the stream it came from. Tag F ends a line (conmon dropped its newline), P does
 * not. Content is copied as bytes: a terminal's records end in CR and may hold any control byte.
 */
function writeLogRecord(line: Buffer, o: { stdout: Writable | undefined; stderr: Writable | undefined }): void {
  const a = line.indexOf(0x20);
  const b = a < 0 ? -1 : line.indexOf(0x20, a + 1);
  if (b < 0) return;
  const c = line.indexOf(0x20, b + 1);
  const stream = line.toString("latin1", a + 1, b);
  const tag = line.toString("latin1", b + 1, c < 0 ? line.length : c);
  const out = stream === "stderr" ? o.stderr : stream === "stdout" ? o.stdout : undefined;
  if (out === undefined || out.destroyed || (tag[0] !== "F" && tag[0] !== "P")) return;
  const content = c < 0 ? Buffer.alloc(0) : line.subarray(c + 1);
  out.write(tag[0] === "F" ? Buffer.concat([content, Buffer.from("\n")]) : content);
}

/**
 * Runs one socat relay between `stream` and the pod. Returns "refused" when the connection
 * was refused before any byte moved (so the caller may try the next address family).
 *
 * Either peer may go away at any moment: the pod's server closes its socket while the client is
 * still sending (socat exits, our writes to its stdin fail with EPIPE), or the client hangs up
 * mid-stream. Every stream here therefore has an error listener, and a broken direction only
 * ends that direction. Not `pipeline()`: it destroys every stream on the first error, and the
 * client's stream carries both directions, so the pod's last reply would be cut off with it.
 */
function forwardOnce(
  file: string,
  args: string[],
  stream: Duplex,
  signal: AbortSignal,
  log: Logger,
): Promise<"done" | "refused"> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { stdio: ["pipe", "pipe", "pipe"] });
    let connected = false;
    let stderr = "";
    const onAbort = () => child.kill("SIGKILL");
    signal.addEventListener("abort", onAbort, { once: true });
    const onStreamError = (err: Error) => {
      // The client went away; killing socat ends the relay (the session reports the hang-up).
      log.debug({ err: err.message }, "port-forward: client stream failed");
      child.kill("SIGKILL");
    };
    stream.on("error", onStreamError);
    child.stdin.on("error", (err) => {
      // EPIPE: the pod's side closed first. What the pod still sends keeps flowing to the client.
      log.debug({ err: err.message }, "port-forward: pod side closed its input");
      stream.unpipe(child.stdin);
    });
    child.stdout.on("error", (err) => log.debug({ err: err.message }, "port-forward: reading from the pod failed"));
    child.stderr.on("error", () => {});
    child.stderr.on("data", (b: Buffer) => {
      stderr = (stderr + b.toString()).slice(-8192);
      if (!connected && stderr.includes("starting data transfer loop")) {
        connected = true;
        // Only now read the client's bytes: a refused IPv4 attempt must not swallow them.
        stream.pipe(child.stdin);
        child.stdout.pipe(stream, { end: false });
      }
    });
    child.on("error", (err) => {
      cleanup();
      reject(err);
    });
    const cleanup = () => {
      signal.removeEventListener("abort", onAbort);
      stream.unpipe(child.stdin);
      child.stdout.unpipe(stream);
      stream.off("error", onStreamError);
    };
    child.on("close", (code) => {
      cleanup();
      if (!connected && /refused|Cannot assign|Network is unreachable/i.test(stderr)) return resolve("refused");
      if (!connected && code !== 0)
        return reject(new Error(`port-forward: ${stderr.trim().split("\n").pop() ?? "socat failed"}`));
      resolve("done");
    });
  });
}
