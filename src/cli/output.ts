import { type DescMessage, type JsonValue, type MessageShape, toJson } from "@bufbuild/protobuf";
import { yaml } from "./lazy-yaml.js";

/** Table layout of crictl (Go's tabwriter with minwidth 20, padding 3): every column but the last is padded. */
export interface TableOptions {
  /** Smallest width of a padded cell, padding included (default 20). */
  minWidth?: number;
  /** Spaces after the longest cell of a column (default 3). */
  padding?: number;
}

/** Lays rows out as crictl does; the result ends with a newline. */
export function formatTable(
  headers: readonly string[],
  rows: readonly (readonly string[])[],
  options: TableOptions = {},
): string {
  const minWidth = options.minWidth ?? 20;
  const padding = options.padding ?? 3;
  const widths = headers.map((h, i) =>
    Math.max(minWidth, padding + Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length))),
  );
  const line = (cells: readonly string[]) =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i] ?? 0)))
      .join("")
      .trimEnd();
  return `${[line(headers), ...rows.map(line)].join("\n")}\n`;
}

/** Prints rows as a table on stdout. */
export function printTable(
  headers: readonly string[],
  rows: readonly (readonly string[])[],
  options?: TableOptions,
): void {
  process.stdout.write(formatTable(headers, rows, options));
}

/** Prints a value as JSON or YAML; bigints become decimal strings (as protobuf JSON writes int64). */
export function printStructured(value: unknown, format: "json" | "yaml"): void {
  process.stdout.write(formatStructured(value, format));
}

/** `value` as pretty JSON or YAML text. */
export function formatStructured(value: unknown, format: "json" | "yaml"): string {
  const plain = JSON.parse(JSON.stringify(value, (_k, v) => (typeof v === "bigint" ? v.toString() : v)));
  return format === "yaml" ? yaml().stringify(plain) : `${JSON.stringify(plain, null, 2)}\n`;
}

/**
 * A protobuf message in its canonical JSON form (lowerCamelCase names, int64 as strings, enums by
 * name), with fields at their default values included, as crictl prints them (a READY pod has
 * state SANDBOX_READY, which is 0).
 */
export function messageJson<S extends DescMessage>(schema: S, message: MessageShape<S>): JsonValue {
  return toJson(schema, message, { alwaysEmitImplicit: true });
}

/** Prints a protobuf message as JSON or YAML (see {@link messageJson}). */
export function printMessage<S extends DescMessage>(
  schema: S,
  message: MessageShape<S>,
  format: "json" | "yaml",
): void {
  printStructured(messageJson(schema, message), format);
}

/**
 * A CRI `info` map (verbose status) with every value that is JSON parsed into structure, as
 * `crictl inspect` prints it; other values stay strings.
 */
export function parseInfo(info: Readonly<Record<string, string>>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(info)) {
    try {
      out[k] = JSON.parse(v);
    } catch {
      out[k] = v;
    }
  }
  return out;
}

/** Prints several documents: JSON objects one after another, YAML documents separated by `---`. */
export function printDocuments(values: readonly unknown[], format: "json" | "yaml"): void {
  const texts = values.map((v) => formatStructured(v, format));
  process.stdout.write(format === "yaml" ? texts.join("---\n") : texts.join(""));
}

/** Prints `key: value` lines, aligned, as the table form of the inspect commands. */
export function printFields(fields: readonly (readonly [string, string])[]): void {
  const width = Math.max(0, ...fields.map(([k]) => k.length)) + 2;
  process.stdout.write(`${fields.map(([k, v]) => `${`${k}:`.padEnd(width)}${v}`.trimEnd()).join("\n")}\n`);
}

/** `k=v,k2=v2` for label and annotation maps in field listings. */
export function formatMap(map: Readonly<Record<string, string>>): string {
  return Object.entries(map)
    .map(([k, v]) => `${k}=${v}`)
    .join(",");
}

/** An RFC 3339 time of a CRI nanosecond timestamp; "" when unset. */
export function formatTime(ns: bigint): string {
  if (ns <= 0n) return "";
  return new Date(Number(ns / 1_000_000n)).toISOString();
}
