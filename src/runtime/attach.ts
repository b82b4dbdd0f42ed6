/**
 * Attach (kubectl/crictl attach): the client joins a running container's stdio.
 *
 * - output comes from the container's CRI log (conmon writes every byte there, with the stream it came
 *   from), followed from where it ends when the client connects;
 * - stdin goes to conmon's attach socket (SOCK_SEQPACKET) through socat;
 * - resizes go to conmon's control FIFO.
 *
 * Detaching never stops the container. The session lasts until the client goes away or closes stdin, or
 * the container stops running.
 */
import { constants as fsc } from "node:fs";
import { open } from "node:fs/promises";
import { basename, dirname } from "node:path";
import type { Writable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { CriLogReader } from "../crilog/index.js";
import type { Logger } from "../log/index.js";
import { startSocat } from "../sys/index.js";
import type { SessionIO } from "./exec-session.js";
import type { ContainerRuntime } from "./runtime.js";

/** Options of {@link attachSession}. */
export interface AttachSessionOptions {
  /** The container's CRI log file (its configured log path, or the runtime's default one). */
  logPath: string;
  tty: boolean;
  /** Relay the client's stdin (the container must have been created with stdin open). */
  stdin: boolean;
  stdout: boolean;
  stderr: boolean;
  io: SessionIO;
  /** Whether the container still runs; the session ends soon after this says no. */
  isRunning: () => boolean;
  log: Logger;
}

/** How often the session looks for new log records and asks whether the container still runs. */
const POLL_MS = 50;
const EXIT_CHECK_MS = 200;

/** Connects `io` to running container `id` until the client detaches or the container stops. */
export async function attachSession(
  runtime: Pick<ContainerRuntime, "ctlFifoPath" | "attachSocketPath">,
  id: string,
  o: AttachSessionOptions,
): Promise<void> {
  const { io } = o;
  const done = new AbortController();
  const signal = AbortSignal.any([io.signal, done.signal]);
  const tasks: Promise<unknown>[] = [];
  if (o.stdout || o.stderr) {
    // Opened where the log ends now, before any stdin is relayed: the container's answer to the
    // client's first line must come after it, however slow the follower's first read is.
    const reader = await CriLogReader.open(o.logPath, { fromEnd: true, waitForFile: true });
    tasks.push(
      copyLog(reader, {
        stdout: o.stdout ? io.stdout : undefined,
        stderr: o.stderr ? io.stderr : undefined,
        signal,
      }).finally(() => reader.close()),
    );
  }
  if (o.tty) {
    // Not one of `tasks`: the resize stream ends only once attach has returned, so awaiting it
    // would keep the session open after the container exits or the client closes stdin.
    void (async () => {
      for await (const size of io.resize) {
        if (signal.aborted) return;
        // A resize the container missed (it exited) is harmless; the session goes on.
        await writeCtl(runtime.ctlFifoPath(id), `1 ${size.height} ${size.width}\n`).catch(() => {});
      }
    })().catch((err: unknown) => o.log.debug({ err, containerId: id }, "attach: resize stream failed"));
  }
  if (o.stdin && io.stdin) {
    // conmon binds the socket in the bundle directory, next to the ctl FIFO, and links
    // `<attach dir>/<id>` to it only when that path fits in sun_path (108 bytes): under a
    // long state directory it shortens the link's name, so attachSocketPath() does not
    // exist. Connect by the socket's relative name from the bundle directory instead.
    const child = startSocat({
      direction: "to-target",
      target: { kind: "unix-seqpacket", path: basename(runtime.attachSocketPath(id)) },
      cwd: dirname(runtime.ctlFifoPath(id)),
    });
    let socatErr = "";
    child.stderr.on("data", (b: Buffer) => {
      socatErr = (socatErr + b.toString()).slice(-2000);
    });
    // socat -u writes nothing back; its stdout is read only so that the pipe never fills.
    child.stdout.resume();
    child.on("error", (err) => o.log.warn({ err, containerId: id }, "attach: cannot run socat"));
    child.on("close", (code) => {
      if (code !== 0 && !signal.aborted)
        o.log.warn({ containerId: id, code, stderr: socatErr.trim() }, "attach: stdin relay failed");
    });
    signal.addEventListener("abort", () => child.kill("SIGTERM"), { once: true });
    // The client closing stdin early is normal; the container's state is the outcome.
    const stdinDone = pipeline(io.stdin, child.stdin).catch(() => {});
    tasks.push(stdinDone);
    // A client that closes stdin has detached (kubectl attach -i ends this way).
    void stdinDone.then(() => setTimeout(() => done.abort(), 100));
  }
  // The session lasts until the client goes away or the container exits.
  const watchExit = (async () => {
    while (!signal.aborted) {
      if (!o.isRunning()) {
        // Let the log follower copy the container's last words.
        await new Promise((r) => setTimeout(r, EXIT_CHECK_MS));
        done.abort();
        return;
      }
      await new Promise((r) => setTimeout(r, EXIT_CHECK_MS));
    }
  })();
  await Promise.race([
    watchExit,
    new Promise<void>((r) => signal.addEventListener("abort", () => r(), { once: true })),
  ]);
  done.abort();
  await Promise.allSettled(tasks);
}

/**
 * Writes the content of each record the log gets to the stream it came from, until `signal` aborts. `F`
 * ends a line (conmon dropped its newline), `P` does not. Bytes, not text: a terminal's records end in CR
 * and may hold any control byte.
 */
async function copyLog(
  reader: CriLogReader,
  o: { stdout: Writable | undefined; stderr: Writable | undefined; signal: AbortSignal },
): Promise<void> {
  for await (const rec of reader.follow({ signal: o.signal, pollMs: POLL_MS })) {
    const out = rec.stream === "stderr" ? o.stderr : o.stdout;
    if (out === undefined || out.destroyed) continue;
    out.write(rec.partial ? rec.content : Buffer.concat([rec.content, NEWLINE]));
  }
}

const NEWLINE = Buffer.from("\n");

/** Writes one message to conmon's control FIFO; O_NONBLOCK, so a FIFO nobody reads fails instead of hanging. */
async function writeCtl(path: string, msg: string): Promise<void> {
  const fh = await open(path, fsc.O_WRONLY | fsc.O_NONBLOCK);
  try {
    await fh.write(msg);
  } finally {
    await fh.close();
  }
}
