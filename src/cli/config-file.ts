/**
 * crictl-compatible config files (`runp pod-config.json`, `create POD container-config.yaml ...`):
 * the CRI message in protobuf's JSON mapping, written as JSON or YAML. protobuf-es accepts both
 * the lowerCamelCase JSON names and the proto's snake_case names, enum names or numbers, and int64
 * as numbers or strings, which covers crictl's sample files; an unknown field is an error naming it.
 */
import { readFile } from "node:fs/promises";
import { type DescMessage, fromJson, type JsonValue, type MessageShape } from "@bufbuild/protobuf";
import { yaml } from "./lazy-yaml.js";

/** Decodes `text` (JSON or YAML) as a `schema` message; `name` prefixes errors (usually the file's path). */
export function parseMessage<S extends DescMessage>(schema: S, text: string, name: string): MessageShape<S> {
  let value: unknown;
  try {
    // JSON first: its errors are clearer for .json files, and YAML would accept a truncated file.
    value = /\.json$/i.test(name) || text.trimStart().startsWith("{") ? JSON.parse(text) : yaml().parse(text);
  } catch (err) {
    throw new Error(`${name}: ${err instanceof Error ? err.message : String(err)}`);
  }
  if (value === null || value === undefined) value = {};
  if (typeof value !== "object" || Array.isArray(value))
    throw new Error(`${name}: expected an object at the top level`);
  try {
    return fromJson(schema, value as JsonValue, { ignoreUnknownFields: false });
  } catch (err) {
    throw new Error(`${name}: ${err instanceof Error ? err.message : String(err)}`);
  }
}

/** Reads and decodes a config file (see {@link parseMessage}). */
export async function readMessageFile<S extends DescMessage>(schema: S, path: string): Promise<MessageShape<S>> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new Error(code === "ENOENT" ? `${path}: no such file` : `${path}: ${(err as Error).message}`);
  }
  return parseMessage(schema, text, path);
}
