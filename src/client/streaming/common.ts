import type { IncomingHttpHeaders, IncomingMessage } from "node:http";
import { Readable } from "node:stream";
import type { KubeStatus, TerminalSize } from "../../streaming/index.js";

/** The server answered an upgrade request with a plain HTTP response (404, 400, 403, ...). */
export class UpgradeRejectedError extends Error {
  constructor(
    readonly status: number,
    /** Response headers; repeated headers keep every value. */
    readonly headers: Readonly<Record<string, string[]>>,
    readonly body: string,
  ) {
    super(`upgrade rejected: HTTP ${status}: ${body.trim()}`);
    this.name = "UpgradeRejectedError";
  }
}

/** Builds an UpgradeRejectedError from a response, reading its body. */
export async function rejectedFrom(res: IncomingMessage): Promise<UpgradeRejectedError> {
  const chunks: Buffer[] = [];
  for await (const chunk of res) chunks.push(chunk as Buffer);
  const headers: Record<string, string[]> = {};
  for (const [name, values] of Object.entries(res.headersDistinct)) if (values !== undefined) headers[name] = values;
  return new UpgradeRejectedError(res.statusCode ?? 0, headers, Buffer.concat(chunks).toString());
}

/** What a client session of exec or attach should carry. The server's cached request must match. */
export interface ExecClientOptions {
  /** Bytes for stdin; undefined means no stdin stream. Stdin is closed after the last byte. */
  stdin?: string | Uint8Array | AsyncIterable<Uint8Array>;
  /** Open stdout (default true). */
  stdout?: boolean;
  /** Open stderr (default true unless tty). */
  stderr?: boolean;
  tty?: boolean;
  /** Terminal sizes to send, before stdin (tty only). */
  resize?: readonly TerminalSize[];
}

/** What came back from an exec or attach, as kubectl would see it. */
export interface ExecOutcome {
  /** The negotiated protocol. */
  protocol: string;
  stdout: Buffer;
  stderr: Buffer;
  /** The raw error stream: JSON status (v4+), failure text (older), or empty. */
  error: string;
  /** The decoded status, for v4+ protocols. */
  status?: KubeStatus;
  /**
   * The exit code as client-go's decoders derive it: 0 for success or an empty v1-v3 error
   * stream, the ExitCode cause for NonZeroExitCode; undefined for other failures.
   */
  exitCode?: number;
}

/** Derives status and exit code from an error stream, as client-go's v4 and v1 decoders do. */
export function decodeErrorStream(protocol: string, error: string): Pick<ExecOutcome, "status" | "exitCode"> {
  if (!/^v[45]\./.test(protocol)) return error.length === 0 ? { exitCode: 0 } : {};
  if (error.length === 0) return {};
  const status = JSON.parse(error) as KubeStatus;
  if (status.status === "Success") return { status, exitCode: 0 };
  if (status.reason === "NonZeroExitCode") {
    const cause = status.details?.causes.find((c) => c.reason === "ExitCode");
    if (cause !== undefined) return { status, exitCode: Number(cause.message) };
  }
  return { status };
}

/** All bytes of a readable; what was read so far when it is destroyed early. */
export async function collect(stream: Readable | undefined): Promise<Buffer> {
  if (stream === undefined) return Buffer.alloc(0);
  const chunks: Buffer[] = [];
  try {
    for await (const chunk of stream) chunks.push(Buffer.from(chunk as Uint8Array));
  } catch {
    // A reset or a closed connection ends the stream; keep what arrived.
  }
  return Buffer.concat(chunks);
}

/** The stdin option as a Readable. */
export function stdinSource(stdin: string | Uint8Array | AsyncIterable<Uint8Array>): Readable {
  if (typeof stdin === "string" || stdin instanceof Uint8Array) return Readable.from([Buffer.from(stdin)]);
  return Readable.from(stdin);
}

/** A resize event as remotecommand encodes it (Go field names, newline-delimited like json.Encoder). */
export function encodeResize(size: TerminalSize): string {
  return `${JSON.stringify({ Width: size.width, Height: size.height })}\n`;
}

/** Headers of a Node response in the UpgradeRejectedError shape. */
export function distinctHeaders(headers: IncomingHttpHeaders): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined) continue;
    out[name] = Array.isArray(value) ? value : [value];
  }
  return out;
}
