/**
 * The client side of Exec, Attach and PortForward: the CRI call returns a URL on the runtime's
 * streaming server, which this module dials over SPDY/3.1 the way kubectl and crictl do.
 */
import { createServer, type Server, type Socket } from "node:net";
import type { Readable, Writable } from "node:stream";
import { pipeline } from "node:stream/promises";
import type { SpdyPortForwardClient } from "../client/streaming/index.js";

/**
 * The streaming client, loaded on first use: only exec -i/-t, attach and port-forward need it, and
 * no other command should fail to start because of it.
 */
function streamingClient() {
  return import("../client/streaming/index.js");
}

/** The terminal and streams of an interactive session (process.stdin/stdout/stderr by default). */
export interface RemoteCommandOptions {
  /** Send stdin to the process. */
  stdin: boolean;
  /** Allocate a terminal: raw mode locally, stderr merged into stdout, resizes sent. */
  tty: boolean;
  input?: Readable & { isTTY?: boolean; setRawMode?: (raw: boolean) => unknown };
  output?: Writable & { columns?: number; rows?: number; on?: (ev: "resize", fn: () => void) => unknown };
  errorOutput?: Writable;
  signal?: AbortSignal;
}

const REMOTE_COMMAND_PROTOCOLS = ["v4.channel.k8s.io", "v3.channel.k8s.io", "v2.channel.k8s.io", "channel.k8s.io"];

/**
 * Runs an exec or attach session at `url` until the remote side ends it; returns the exit code
 * (0 when the protocol carries none, 1 when the session failed without one).
 */
export async function runRemoteCommand(url: string, options: RemoteCommandOptions): Promise<number> {
  const input = options.input ?? process.stdin;
  const output = options.output ?? process.stdout;
  const errorOutput = options.errorOutput ?? process.stderr;
  const { dialSpdy, openStream, decodeErrorStream } = await streamingClient();
  const { session, protocol } = await dialSpdy(url, {
    protocols: REMOTE_COMMAND_PROTOCOLS,
    ...(options.signal ? { signal: options.signal } : {}),
  });
  const onAbort = () => session.destroy();
  options.signal?.addEventListener("abort", onAbort, { once: true });
  let restoreTerminal = () => {};
  try {
    // The stream order is client-go's: error, stdin, stdout, stderr, resize.
    const errorStream = await openStream(session, { streamtype: "error" });
    const errorText = collectText(errorStream);
    const stdin = options.stdin ? await openStream(session, { streamtype: "stdin" }) : undefined;
    const stdout = await openStream(session, { streamtype: "stdout" });
    const stderr = options.tty ? undefined : await openStream(session, { streamtype: "stderr" });
    const version = Number(/^v(\d)\./.exec(protocol)?.[1] ?? 1);
    const resize = options.tty && version >= 3 ? await openStream(session, { streamtype: "resize" }) : undefined;

    if (resize) {
      const send = () => {
        if (output.columns && output.rows)
          resize.write(`${JSON.stringify({ Width: output.columns, Height: output.rows })}\n`);
      };
      send();
      output.on?.("resize", send);
    }
    if (options.tty && input.isTTY && input.setRawMode) {
      input.setRawMode(true);
      restoreTerminal = () => input.setRawMode?.(false);
    }
    if (stdin) {
      // Our stdin ending half-closes the remote stdin; the remote side may end first (exit).
      pipeline(input, stdin).catch(() => undefined);
    }
    const copies = [pipeline(stdout, output, { end: false })];
    if (stderr) copies.push(pipeline(stderr, errorOutput, { end: false }));
    await Promise.allSettled(copies);
    const error = await errorText;
    const { exitCode, status } = decodeErrorStream(protocol, error);
    if (exitCode !== undefined) return exitCode;
    if (error !== "") errorOutput.write(`berth: ${status?.message ?? error.trim()}\n`);
    return 1;
  } finally {
    restoreTerminal();
    options.signal?.removeEventListener("abort", onAbort);
    await session.close().catch(() => undefined);
    // Nothing more goes to the remote stdin; a terminal left open would keep the CLI alive.
    if (options.stdin && !input.destroyed) input.destroy();
  }
}

async function collectText(stream: AsyncIterable<unknown>): Promise<string> {
  const chunks: Buffer[] = [];
  try {
    for await (const chunk of stream) chunks.push(Buffer.from(chunk as Uint8Array));
  } catch {
    // A reset ends the stream; keep what arrived.
  }
  return Buffer.concat(chunks).toString();
}

/** One `[ADDRESS:]LOCAL:REMOTE` (or `REMOTE`, or `:REMOTE` for any free local port) mapping. */
export interface PortMapping {
  local: number;
  remote: number;
}

/** Parses `8080:80`, `80` (same port locally) or `:80` (a free local port); throws on anything else. */
export function parsePortMapping(spec: string): PortMapping {
  const m = /^(?:(\d*):)?(\d+)$/.exec(spec);
  const port = (s: string, zeroOk: boolean) => {
    const n = Number(s);
    if (!Number.isInteger(n) || n > 65535 || n < (zeroOk ? 0 : 1))
      throw new Error(`invalid port in ${JSON.stringify(spec)}`);
    return n;
  };
  if (!m) throw new Error(`invalid port mapping ${JSON.stringify(spec)}: expected [LOCAL:]REMOTE`);
  const remote = port(m[2] as string, false);
  const local = m[1] === undefined ? remote : m[1] === "" ? 0 : port(m[1], true);
  return { local, remote };
}

/** A running port forward: the bound local addresses, and `done` settling when it ends. */
export interface PortForwarder {
  readonly listening: { address: string; local: number; remote: number }[];
  /** Settles when the SPDY session ends or `signal` aborts. */
  readonly done: Promise<void>;
  close(): Promise<void>;
}

/**
 * Listens on `address` for each mapping and forwards every accepted connection through one SPDY
 * port-forward session at `url` (one stream pair per connection, as kubectl does).
 */
export async function startPortForward(
  url: string,
  mappings: readonly PortMapping[],
  options: { address?: string; signal?: AbortSignal; onError?: (message: string) => void } = {},
): Promise<PortForwarder> {
  const address = options.address ?? "127.0.0.1";
  const { SpdyPortForwardClient } = await streamingClient();
  const client = await SpdyPortForwardClient.connect(url, options.signal ? { signal: options.signal } : {});
  const servers: Server[] = [];
  const sockets = new Set<Socket>();
  const listening: PortForwarder["listening"] = [];
  const close = async () => {
    for (const s of servers) s.close();
    for (const s of sockets) s.destroy();
    await client.close().catch(() => undefined);
  };
  try {
    for (const m of mappings) {
      const server = createServer({ allowHalfOpen: true }, (socket) => {
        sockets.add(socket);
        socket.once("close", () => sockets.delete(socket));
        void forwardOne(client, socket, m.remote, options.onError);
      });
      servers.push(server);
      await new Promise<void>((resolve, reject) => {
        server.once("error", reject);
        server.listen(m.local, address, () => resolve());
      });
      const bound = server.address();
      listening.push({ address, local: typeof bound === "object" && bound ? bound.port : m.local, remote: m.remote });
    }
  } catch (err) {
    await close();
    throw err;
  }
  const done = new Promise<void>((resolve) => {
    options.signal?.addEventListener("abort", () => resolve(), { once: true });
    void client.session.closed.then(() => resolve());
  }).then(close);
  return { listening, done, close };
}

async function forwardOne(
  client: SpdyPortForwardClient,
  socket: Socket,
  remote: number,
  onError: ((message: string) => void) | undefined,
): Promise<void> {
  try {
    const conn = await client.forward(remote);
    void conn.error.then((text) => {
      if (text.trim() !== "") onError?.(`port ${remote}: ${text.trim()}`);
    });
    await Promise.allSettled([pipeline(socket, conn.data), pipeline(conn.data, socket)]);
  } catch (err) {
    onError?.(`port ${remote}: ${err instanceof Error ? err.message : String(err)}`);
  } finally {
    socket.destroy();
  }
}
