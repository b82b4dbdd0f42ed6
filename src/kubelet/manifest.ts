/**
 * Manifest files: YAML (or JSON) with one or more documents, each a `v1` Pod or a `v1` List of
 * Pods. Every problem of every document is reported at once, each line naming the file, the
 * document (when there are several) and the field path:
 *
 * ```
 * web.yaml: spec.containers[1].ports[0].containerPort: must be 1-65535
 * app.yaml (document 2): spec.restartPolicy: unsupported value "Sometimes": supported values: ...
 * ```
 *
 * A pod's uid is derived from the manifest's path, the pod's namespace/name and the document's
 * content (not its formatting), so re-reading an unchanged file gives the same pods — which is
 * how a restarted runner adopts its pods instead of duplicating them — and any change to the
 * document gives a new uid, which is how a changed file recreates its pods.
 */
import { createHash } from "node:crypto";
import { readFile } from "node:fs/promises";
import { basename, resolve } from "node:path";
import { parseAllDocuments } from "yaml";
import { RuntimeError } from "../errdefs/index.js";
import { Checker } from "./checker.js";
import type { Pod } from "./types.js";
import { validatePod } from "./validate.js";

/** The pods of one manifest file, with the warnings found while reading it. */
export interface ParsedManifest {
  /** Absolute path ("" when parsed from a string without one). */
  path: string;
  manifestHash: string;
  pods: Pod[];
  /** One line per accepted-but-ignored or unknown field, prefixed like errors. */
  warnings: string[];
}

/** A manifest that cannot be run; `problems` holds one line per error (also joined in `message`). */
export class ManifestError extends RuntimeError {
  readonly problems: string[];
  readonly warnings: string[];

  constructor(problems: string[], warnings: string[] = []) {
    super("InvalidArgument", problems.join("\n"));
    this.name = "ManifestError";
    this.problems = problems;
    this.warnings = warnings;
  }
}

/** Short hash of an absolute manifest path: the `berth.io/manifest` label value. */
export function manifestHash(absPath: string): string {
  return createHash("sha256").update(absPath).digest("hex").slice(0, 16);
}

/** Reads and parses a manifest file; throws ManifestError (or the read error) when it cannot be run. */
export async function loadManifest(file: string): Promise<ParsedManifest> {
  const path = resolve(file);
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new RuntimeError(
      code === "ENOENT" ? "NotFound" : "InvalidArgument",
      `${file}: ${code === "ENOENT" ? "no such file" : (err as Error).message}`,
    );
  }
  return parseManifest(text, { path, displayName: file });
}

/** Parses manifest text. `path` (absolute) gives the pods their identity; `displayName` prefixes messages. */
export function parseManifest(text: string, options: { path?: string; displayName?: string } = {}): ParsedManifest {
  const path = options.path ?? "";
  const display = options.displayName ?? (path ? basename(path) : "manifest");
  const hash = manifestHash(path);
  const docs = parseAllDocuments(text, { prettyErrors: true, uniqueKeys: true });
  const problems: string[] = [];
  const warnings: string[] = [];
  const documents = Array.isArray(docs) ? docs : [];
  if (!Array.isArray(docs)) problems.push(`${display}: not a YAML stream`);
  const multi = documents.length > 1;
  const pods: Pod[] = [];
  documents.forEach((doc, index) => {
    const where = multi ? `${display} (document ${index + 1})` : display;
    if (doc.errors.length > 0) {
      for (const e of doc.errors) {
        const pos = e.linePos?.[0];
        const message = (e.message.split("\n")[0] ?? "").replace(/ at line \d+, column \d+:?$/, "");
        problems.push(`${display}${pos ? `:${pos.line}:${pos.col}` : ""}: ${message}`);
      }
      return;
    }
    const value: unknown = doc.toJS({ maxAliasCount: 100 });
    if (value === null || value === undefined) return; // an empty document (a trailing `---`)
    const objects = topLevelPods(value, where, warnings, problems);
    for (const { raw, prefix } of objects) {
      const c = new Checker();
      const valid = validatePod(raw, c);
      const at = (line: string) => `${where}: ${prefix}${line}`;
      warnings.push(...c.warnings.map(at));
      problems.push(...c.errors.map(at));
      if (!valid) continue;
      const uid = podUid(path, valid.metadata.namespace, valid.metadata.name, raw);
      pods.push({
        metadata: { ...valid.metadata, uid },
        spec: valid.spec,
        source: { path, document: index, manifestHash: hash },
      });
    }
  });
  const seen = new Set<string>();
  for (const pod of pods) {
    const key = `${pod.metadata.namespace}/${pod.metadata.name}`;
    if (seen.has(key)) problems.push(`${display}: pod ${key} is declared more than once`);
    seen.add(key);
  }
  if (problems.length === 0 && pods.length === 0)
    problems.push(`${display}: no pods (expected a v1 Pod, or a v1 List of Pods)`);
  if (problems.length > 0) throw new ManifestError(problems, warnings);
  return { path, manifestHash: hash, pods, warnings };
}

/** The Pod objects of one document: itself, or the items of a List; other kinds are skipped with a warning. */
function topLevelPods(
  value: unknown,
  where: string,
  warnings: string[],
  problems: string[],
): { raw: Record<string, unknown>; prefix: string }[] {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    problems.push(`${where}: must be an object with apiVersion and kind`);
    return [];
  }
  const o = value as Record<string, unknown>;
  if (o.kind === "List" || o.kind === "PodList") {
    if (o.apiVersion !== "v1")
      problems.push(`${where}: apiVersion: unsupported value ${JSON.stringify(o.apiVersion)}: supported values: "v1"`);
    if (!Array.isArray(o.items)) {
      problems.push(`${where}: items: must be a list`);
      return [];
    }
    return o.items.flatMap((item, i) => {
      const sub = topLevelPods(item, where, warnings, problems);
      return sub.map((s) => ({ raw: s.raw, prefix: `items[${i}].${s.prefix}` }));
    });
  }
  if (o.kind === undefined) {
    problems.push(`${where}: kind: required value`);
    return [];
  }
  if (o.kind !== "Pod") {
    warnings.push(`${where}: kind ${JSON.stringify(o.kind)} is not run by berth, skipped (only Pod and List)`);
    return [];
  }
  if (o.apiVersion !== "v1") {
    problems.push(`${where}: apiVersion: unsupported value ${JSON.stringify(o.apiVersion)}: supported values: "v1"`);
    return [];
  }
  const extra = Object.keys(o).filter((k) => !["apiVersion", "kind", "metadata", "spec", "status"].includes(k));
  for (const k of extra) warnings.push(`${where}: ${k}: unknown field, ignored`);
  return [{ raw: o, prefix: "" }];
}

/** A UUID-shaped, deterministic uid: sha256 over path, namespace/name and the document's canonical JSON. */
export function podUid(path: string, namespace: string, name: string, raw: unknown): string {
  const h = createHash("sha256")
    .update(`berth-pod\0${path}\0${namespace}/${name}\0${canonicalJson(raw)}`)
    .digest("hex");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-5${h.slice(13, 16)}-${((Number.parseInt(h.slice(16, 17), 16) & 0x3) | 0x8).toString(16)}${h.slice(17, 20)}-${h.slice(20, 32)}`;
}

/** JSON with object keys sorted at every level. */
export function canonicalJson(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonicalJson).join(",")}]`;
  if (v !== null && typeof v === "object") {
    const o = v as Record<string, unknown>;
    return `{${Object.keys(o)
      .sort()
      .filter((k) => o[k] !== undefined)
      .map((k) => `${JSON.stringify(k)}:${canonicalJson(o[k])}`)
      .join(",")}}`;
  }
  return JSON.stringify(v) ?? "null";
}
