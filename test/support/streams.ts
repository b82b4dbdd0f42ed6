/**
 * Live exec/attach sessions for end-to-end tests of berthd's streaming server: what `spdyExec` and
 * `wsExec` (src/client/streaming) do in one go, taken apart so a test can type into a session,
 * wait for the output, resize, close stdin, detach or drop the connection when it chooses.
 *
 *   openSession(url) ──▶ write / resize / until(/re/) ... ──▶ closeStdin() ──▶ outcome   (the command ends)
 *                                                          └─▶ detach() / drop()           (the client leaves)
 *
 * Plus a census of what a daemon holds (fds, child processes, ptys) for leak checks.
 */
import { readdir, readFile, readlink } from "node:fs/promises";
import { join } from "node:path";
import type { Readable } from "node:stream";
import {
  decodeErrorStream,
  dialSpdy,
  type ExecOutcome,
  openStream,
  WsChannelClient,
} from "../../src/client/streaming/index.js";
import type { SpdyStream, TerminalSize } from "../../src/streaming/index.js";

export type Transport = "spdy" | "websocket";

/** Options of {@link openSession}; stream flags must match the CRI request behind the URL. */
export interface SessionOptions {
  transport: Transport;
  tty?: boolean;
  stdin?: boolean;
  stdout?: boolean;
  /** Default: !tty. */
  stderr?: boolean;
  /** Offered protocols (default: what kubectl offers for the transport). */
  protocols?: readonly string[];
}

/** Output of one stream as it arrives. */
export class Output {
  #chunks: Buffer[] = [];
  #waiters = new Set<() => void>();
  readonly ended: Promise<void>;

  constructor(stream: Readable | undefined) {
    this.ended =
      stream === undefined
        ? Promise.resolve()
        : (async () => {
            try {
              for await (const chunk of stream) {
                this.#chunks.push(Buffer.from(chunk as Uint8Array));
                for (const wake of this.#waiters) wake();
              }
            } catch {
              // a reset or dropped connection ends the stream
            }
          })();
  }

  text(): string {
    return Buffer.concat(this.#chunks).toString();
  }

  /** Resolves with everything so far once it matches `re`; rejects after `ms` or at end of stream. */
  async until(re: RegExp, ms = 10_000): Promise<string> {
    const deadline = Date.now() + ms;
    let ended = false;
    void this.ended.then(() => {
      ended = true;
    });
    for (;;) {
      const text = this.text();
      if (re.test(text)) return text;
      if (ended || Date.now() > deadline)
        throw new Error(
          `output did not match ${re} ${ended ? "before it ended" : `within ${ms} ms`}: ${JSON.stringify(text)}`,
        );
      await new Promise<void>((resolve) => {
        const wake = () => {
          this.#waiters.delete(wake);
          clearTimeout(timer);
          resolve();
        };
        const timer = setTimeout(wake, 100);
        this.#waiters.add(wake);
      });
    }
  }
}

/** A session in progress. */
export interface LiveSession {
  readonly protocol: string;
  readonly stdout: Output;
  readonly stderr: Output;
  write(data: string): void;
  resize(size: TerminalSize): void;
  /** SPDY: FIN on stdin. WebSocket: v5's close signal (older protocols cannot close stdin). */
  closeStdin(): void;
  /** The server ends the session (command exited, attach ended): what kubectl would report. */
  readonly outcome: Promise<ExecOutcome>;
  /** Hangs up politely (SPDY GOAWAY, WebSocket close handshake). */
  detach(): Promise<void>;
  /** Hangs up abruptly (the TCP connection is destroyed). */
  drop(): void;
}

const SPDY_PROTOCOLS = ["v4.channel.k8s.io", "v3.channel.k8s.io", "v2.channel.k8s.io", "channel.k8s.io"];
const WS_PROTOCOLS = ["v5.channel.k8s.io", "v4.channel.k8s.io"];

/** Dials an exec or attach URL and opens the streams a client-go client would. */
export async function openSession(url: string, o: SessionOptions): Promise<LiveSession> {
  const tty = o.tty ?? false;
  const wantStdout = o.stdout ?? true;
  const wantStderr = o.stderr ?? !tty;
  if (o.transport === "spdy") {
    const { session, protocol } = await dialSpdy(url, { protocols: o.protocols ?? SPDY_PROTOCOLS });
    const errorStream = await openStream(session, { streamtype: "error" });
    const errorOut = new Output(errorStream);
    const stdin = o.stdin ? await openStream(session, { streamtype: "stdin" }) : undefined;
    const stdout = new Output(wantStdout ? await openStream(session, { streamtype: "stdout" }) : undefined);
    const stderr = new Output(wantStderr ? await openStream(session, { streamtype: "stderr" }) : undefined);
    const resizable = tty && Number(/^v(\d)\./.exec(protocol)?.[1] ?? 1) >= 3;
    const resize: SpdyStream | undefined = resizable ? await openStream(session, { streamtype: "resize" }) : undefined;
    const outcome = (async (): Promise<ExecOutcome> => {
      await Promise.all([stdout.ended, stderr.ended, errorOut.ended]);
      const error = errorOut.text();
      void session.close();
      return {
        protocol,
        stdout: Buffer.from(stdout.text()),
        stderr: Buffer.from(stderr.text()),
        error,
        ...decodeErrorStream(protocol, error),
      };
    })();
    return {
      protocol,
      stdout,
      stderr,
      write: (data) => void stdin?.write(data),
      resize: (size) => void resize?.write(`${JSON.stringify({ Width: size.width, Height: size.height })}\n`),
      closeStdin: () => void stdin?.end(),
      outcome,
      detach: () => session.close(),
      drop: () => session.destroy(),
    };
  }
  const client = await WsChannelClient.connect(url, { protocols: o.protocols ?? WS_PROTOCOLS });
  const stdout = new Output(client.channel(1));
  const stderr = new Output(client.channel(2));
  const errorOut = new Output(client.channel(3));
  const outcome = (async (): Promise<ExecOutcome> => {
    await client.closed;
    await Promise.all([stdout.ended, stderr.ended, errorOut.ended]);
    const error = errorOut.text();
    return {
      protocol: client.protocol,
      stdout: Buffer.from(stdout.text()),
      stderr: Buffer.from(stderr.text()),
      error,
      ...decodeErrorStream(client.protocol, error),
    };
  })();
  return {
    protocol: client.protocol,
    stdout,
    stderr,
    write: (data) => client.send(0, data),
    resize: (size) => client.send(4, `${JSON.stringify({ Width: size.width, Height: size.height })}\n`),
    closeStdin: () => {
      if (client.protocol.startsWith("v5.")) client.closeChannel(0);
    },
    outcome,
    detach: () => client.close(),
    drop: () => client.ws.terminate(),
  };
}

/** What a daemon holds, as lists so a failure can say what is left. */
export interface DaemonCensus {
  /** `<fd> <target>` of every open fd of the daemon. */
  fds: string[];
  /** `<pid> <argv>` of every process whose parent is the daemon. */
  children: string[];
  /** The daemon's fds on a pseudo-terminal (node-pty's masters for exec with a terminal). */
  ptys: string[];
  /** Temporary `runc exec` directories left in the runtime's state. */
  execDirs: string[];
}

export async function daemonCensus(pid: number, stateDir: string): Promise<DaemonCensus> {
  const ls = (dir: string) => readdir(dir).catch(() => [] as string[]);
  const fdDir = `/proc/${pid}/fd`;
  const fds = await Promise.all(
    (await ls(fdDir)).map(async (fd) => `${fd} ${await readlink(join(fdDir, fd)).catch(() => "?")}`),
  );
  const children: string[] = [];
  for (const p of (await ls("/proc")).filter((x) => /^\d+$/.test(x))) {
    const stat = await readFile(`/proc/${p}/stat`, "utf8").catch(() => "");
    // The command name is in parentheses and may hold spaces: fields start after the last ")".
    const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
    if (ppid !== pid) continue;
    const argv = (await readFile(`/proc/${p}/cmdline`, "utf8").catch(() => "")).split("\0").join(" ");
    children.push(`${p} ${argv.slice(0, 160)}`);
  }
  return {
    fds,
    children,
    ptys: fds.filter((f) => / \/dev\/(ptmx|pts\/\d+)$/.test(f)),
    execDirs: await ls(join(stateDir, "runtime", "exec")),
  };
}

/** Sizes of each census list. */
export function censusCounts(c: DaemonCensus): Record<string, number> {
  return Object.fromEntries(Object.entries(c).map(([k, v]: [string, string[]]) => [k, v.length]));
}

/** What appeared and what went away between two censuses. */
export function censusDiff(
  before: DaemonCensus,
  after: DaemonCensus,
): Record<string, { added: string[]; gone: string[] }> {
  const out: Record<string, { added: string[]; gone: string[] }> = {};
  for (const k of Object.keys(before) as (keyof DaemonCensus)[]) {
    const b = new Set(before[k]);
    const a = new Set(after[k]);
    const added = [...a].filter((x) => !b.has(x));
    const gone = [...b].filter((x) => !a.has(x));
    if (added.length > 0 || gone.length > 0) out[k] = { added, gone };
  }
  return out;
}
