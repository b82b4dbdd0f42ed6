import { Code, ConnectError } from "@connectrpc/connect";
import type { Command } from "commander";
import { type CriClient, createCriClient, DEFAULT_SOCKET } from "../client/index.js";

/** Global options every command sees. */
export interface GlobalOptions {
  socket: string;
  output: "table" | "json" | "yaml";
  timeout: number;
  debug: boolean;
}

/** Reads the global options from the root command. */
export function globals(cmd: Command): GlobalOptions {
  const o = cmd.optsWithGlobals<{ socket?: string; output?: string; timeout?: string; debug?: boolean }>();
  return {
    socket: o.socket ?? process.env.BERTH_SOCKET ?? DEFAULT_SOCKET,
    output: (o.output ?? "table") as GlobalOptions["output"],
    timeout: Number(o.timeout ?? 30),
    debug: Boolean(o.debug),
  };
}

/** Runs `fn` with a client for the selected socket, always closing it. */
export async function withClient<T>(cmd: Command, fn: (client: CriClient, g: GlobalOptions) => Promise<T>): Promise<T> {
  const g = globals(cmd);
  const client = createCriClient({ socket: g.socket, timeoutMs: g.timeout * 1000 });
  try {
    return await fn(client, g);
  } finally {
    client.close();
  }
}

/** One line for a failed command: a friendly hint when the daemon is not there, else the gRPC message. */
export function describeError(err: unknown, socket: string): string {
  if (err instanceof ConnectError) {
    if (/\b(ENOENT|ECONNREFUSED|EACCES)\b/.test(err.rawMessage) && /connect/.test(err.rawMessage)) {
      return `cannot reach a CRI runtime at ${socket}: is berthd running? Start it with \`berthd\` (as root), or pass --socket`;
    }
    return `${Code[err.code]}: ${err.rawMessage}`;
  }
  return err instanceof Error ? err.message : String(err);
}
