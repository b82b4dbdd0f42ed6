import { spawn } from "node:child_process";
import { pipeline } from "node:stream/promises";
import { createGunzip } from "node:zlib";
import { invalidArgument, RuntimeError } from "../errdefs/index.js";

/** How a layer blob is compressed. */
export type Compression = "gzip" | "zstd" | "none";

/**
 * What a layer media type says about compression; undefined for media types that are not
 * tar layers (OCI `...layer.v1.tar[+gzip|+zstd]`, their nondistributable variants, Docker's
 * `...rootfs.diff.tar[.gzip]` and `...rootfs.foreign.diff.tar.gzip`).
 */
export function compressionOfMediaType(mediaType: string): Compression | undefined {
  if (!/^application\/vnd\.(oci\.image\.layer\.|docker\.image\.rootfs\.)/.test(mediaType)) return undefined;
  if (/(\+|\.)gzip$/.test(mediaType)) return "gzip";
  if (mediaType.endsWith("+zstd")) return "zstd";
  if (/\.tar$/.test(mediaType)) return "none";
  return undefined;
}

/** What the first bytes say: gzip (1f 8b) and zstd frames (28 b5 2f fd) have magic numbers; anything else is taken as tar. */
export function compressionOfMagic(head: Uint8Array): Compression {
  if (head[0] === 0x1f && head[1] === 0x8b) return "gzip";
  if (head[0] === 0x28 && head[1] === 0xb5 && head[2] === 0x2f && head[3] === 0xfd) return "zstd";
  return "none";
}

/**
 * The first `n` bytes of `source` (fewer if it is shorter) and an iterable of all of its bytes,
 * those included, so that a format can be sniffed without losing anything.
 */
export async function peek(
  source: AsyncIterable<Uint8Array>,
  n: number,
): Promise<{ head: Buffer; all: AsyncIterable<Uint8Array> }> {
  const it = source[Symbol.asyncIterator]();
  const buffered: Uint8Array[] = [];
  let length = 0;
  let done = false;
  while (length < n) {
    const r = await it.next();
    if (r.done) {
      done = true;
      break;
    }
    buffered.push(r.value);
    length += r.value.length;
  }
  async function* all(): AsyncGenerator<Uint8Array> {
    yield* buffered;
    if (done) return;
    // Delegating keeps early termination working: return() reaches the original source.
    yield* { [Symbol.asyncIterator]: () => it };
  }
  return { head: Buffer.concat(buffered).subarray(0, n), all: all() };
}

/** A pipeline stage that decompresses `compression`, or undefined when there is nothing to do. */
export function decompressor(
  compression: Compression,
): ((source: AsyncIterable<Uint8Array>) => AsyncIterable<Uint8Array>) | undefined {
  switch (compression) {
    case "gzip":
      return gunzip;
    case "zstd":
      return zstdDecompress;
    case "none":
      return undefined;
  }
}

async function* gunzip(source: AsyncIterable<Uint8Array>): AsyncGenerator<Uint8Array> {
  const z = createGunzip();
  const feeding = pipeline(source, z);
  feeding.catch(() => {}); // Reported below, after the output, so the first error wins.
  try {
    yield* z;
  } catch (err) {
    // zlib's data errors (Z_DATA_ERROR, Z_BUF_ERROR: corrupt or truncated input) are the layer's fault.
    if (String((err as NodeJS.ErrnoException).code).startsWith("Z_"))
      throw invalidArgument(`gzip: ${(err as Error).message}`);
    throw err;
  }
  await feeding;
}

/**
 * The one wrapper of the `zstd` binary: `zstd -d -c` fed from `source`, its stdout yielded as it
 * comes (Node 20's zlib has no zstd). A non-zero exit fails with zstd's stderr; stopping early or
 * failing kills the child.
 */
export async function* zstdDecompress(source: AsyncIterable<Uint8Array>): AsyncGenerator<Uint8Array> {
  const child = spawn("zstd", ["-d", "-c", "-q"], { stdio: ["pipe", "pipe", "pipe"] });
  let stderr = "";
  child.stderr.setEncoding("utf8");
  child.stderr.on("data", (d: string) => {
    if (stderr.length < 4096) stderr += d;
  });
  const exited = new Promise<number | null>((resolve, reject) => {
    child.once("error", reject);
    child.once("close", (code) => resolve(code));
  });
  // Awaited below; this only avoids an unhandled rejection before then.
  exited.catch(() => {});
  let feedError: unknown;
  const feeding = pipeline(source, child.stdin).catch((err: unknown) => {
    feedError = err;
  });
  try {
    yield* child.stdout;
    let code: number | null;
    try {
      code = await exited;
    } catch (err) {
      throw new RuntimeError("Unavailable", `zstd: ${(err as Error).message} (is the zstd binary installed?)`, {
        cause: err,
      });
    }
    // zstd's own verdict first: a corrupt frame makes it exit, which then breaks our stdin pipe.
    if (code !== 0)
      throw invalidArgument(`zstd: exit status ${String(code)}${stderr.trim() ? `: ${stderr.trim()}` : ""}`);
    await feeding;
    if (feedError !== undefined) throw feedError;
  } finally {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
  }
}
