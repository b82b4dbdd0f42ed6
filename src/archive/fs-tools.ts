import { RuntimeError, wrap } from "../errdefs/index.js";
import { run, runUnchecked } from "../sys/index.js";

/**
 * Wrappers of the two binaries that do what Node's fs cannot, without a native addon:
 * `mknod` (coreutils) for device nodes, fifos and overlay whiteouts, and `setfattr` (Debian's
 * `attr` package) for extended attributes, including overlay's `trusted.overlay.opaque`.
 */

/** A node `mknod` can create: character or block device (with numbers) or fifo. */
export type NodeSpec = { type: "char" | "block"; major: number; minor: number } | { type: "fifo" };

/** Creates the node at absolute `path`, which must not exist. Mode and owner are the caller's to set afterwards. */
export async function mknod(path: string, spec: NodeSpec, options: { signal?: AbortSignal } = {}): Promise<void> {
  const args =
    spec.type === "fifo"
      ? [path, "p"]
      : [path, spec.type === "char" ? "c" : "b", String(spec.major), String(spec.minor)];
  await run("mknod", args, { name: "mknod", ...(options.signal ? { signal: options.signal } : {}) });
}

/** Extended attributes to set: absolute path -> attribute name -> raw value. */
export type XattrBatch = ReadonlyMap<string, ReadonlyMap<string, Uint8Array>>;

/**
 * Sets every attribute in `batch` with one `setfattr -h --restore=-` (never following a final
 * symlink), feeding it getfattr's dump format with paths and names octal-escaped and values as
 * hex, so no byte of either can break the format. Returns the paths whose filesystem does not
 * support xattrs (ENOTSUP), which a caller may treat as a warning; any other failure throws.
 */
export async function setXattrs(batch: XattrBatch, options: { signal?: AbortSignal } = {}): Promise<string[]> {
  if (batch.size === 0) return [];
  const lines: string[] = [];
  for (const [path, attrs] of batch) {
    lines.push(`# file: ${quote(path)}`);
    for (const [name, value] of attrs) lines.push(`${quote(name)}=0x${Buffer.from(value).toString("hex")}`);
    lines.push("");
  }
  let result: Awaited<ReturnType<typeof runUnchecked>>;
  try {
    result = await runUnchecked("setfattr", ["-h", "--restore=-"], {
      name: "setfattr",
      input: `${lines.join("\n")}\n`,
      ...(options.signal ? { signal: options.signal } : {}),
    });
  } catch (err) {
    throw wrap(err, "set xattrs (setfattr comes with Debian's attr package)");
  }
  if (result.code === 0) return [];
  const unsupported: string[] = [];
  const failures: string[] = [];
  for (const line of result.stderr.split("\n")) {
    const m = /^setfattr: (.*): Operation not supported$/.exec(line.trim());
    if (m?.[1] !== undefined) unsupported.push(m[1]);
    else if (line.trim() !== "") failures.push(line.trim());
  }
  if (failures.length > 0 || unsupported.length === 0) {
    throw new RuntimeError(
      "Internal",
      `set xattrs: setfattr: exit status ${result.code}: ${failures.join("; ").slice(0, 4000)}`,
    );
  }
  return unsupported;
}

/** getfattr's quoting: every byte that is not printable ASCII, and `\` and `=`, as `\ooo`. */
function quote(s: string): string {
  let out = "";
  for (const byte of Buffer.from(s, "utf8")) {
    if (byte > 0x20 && byte < 0x7f && byte !== 0x5c && byte !== 0x3d) out += String.fromCharCode(byte);
    else out += `\\${byte.toString(8).padStart(3, "0")}`;
  }
  return out;
}
