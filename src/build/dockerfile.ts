import { RuntimeError } from "../errdefs/index.js";

/**
 * A Dockerfile parser written for berth (dockerfile-ast was evaluated and not used: it is an editor
 * AST without heredoc bodies or word expansion, so the builder would have re-parsed most of it).
 *
 * Two layers:
 * - {@link parseDockerfile}: text -> parser directives and instructions (keyword, flags, raw
 *   arguments, heredoc bodies, the line each starts on). Continuations use the `escape` character;
 *   comment lines inside a continuation are dropped, as Docker does.
 * - {@link expandWord}/{@link splitWords}: Docker's word processing (quotes, `$V`, `${V}`,
 *   `${V:-x}`, `${V-x}`, `${V:+x}`, `${V+x}`), run by the builder with the variables in scope at
 *   each step (an `ENV a=1 b=$a` sees the `a` of before the line).
 *
 * Every error is InvalidArgument and names `file:line` and the instruction.
 */

/** One instruction as written. */
export interface Instruction {
  /** Upper-case keyword (`RUN`, `COPY`, ...). */
  keyword: string;
  /** `--name=value` flags before the arguments, in order (a flag may repeat, e.g. `--mount`). */
  flags: Array<{ name: string; value: string }>;
  /** The arguments after the flags, continuation lines joined with a space. */
  args: string;
  /** The arguments as a JSON string array (exec form), when they are one. */
  json?: string[];
  /** Here-documents (`<<EOF` ... `EOF`) of RUN/COPY/ADD, in order. */
  heredocs: Heredoc[];
  /** 1-based line of the keyword. */
  line: number;
  /** The logical line as written (continuations joined), for history and errors. */
  text: string;
}

export interface Heredoc {
  name: string;
  body: string;
  /** `<<"EOF"` / `<<'EOF'`: no variable expansion in the body. */
  quoted: boolean;
}

export interface Dockerfile {
  file: string;
  syntax?: string;
  escape: string;
  instructions: Instruction[];
}

const KEYWORDS = new Set([
  "FROM",
  "RUN",
  "CMD",
  "ENTRYPOINT",
  "ENV",
  "ARG",
  "LABEL",
  "EXPOSE",
  "WORKDIR",
  "USER",
  "VOLUME",
  "STOPSIGNAL",
  "HEALTHCHECK",
  "SHELL",
  "ONBUILD",
  "COPY",
  "ADD",
  "MAINTAINER",
]);
const FLAGGED = new Set(["FROM", "RUN", "COPY", "ADD", "HEALTHCHECK"]);
const HEREDOC_KEYWORDS = new Set(["RUN", "COPY", "ADD"]);

/** A Dockerfile error naming the file, line and instruction. */
export function dockerfileError(file: string, line: number, what: string, message: string): RuntimeError {
  return new RuntimeError("InvalidArgument", `${file}:${line}: ${what}: ${message}`);
}

/** Parses Dockerfile `text` (named `file` in errors). Throws InvalidArgument on a syntax error. */
export function parseDockerfile(text: string, file = "Dockerfile"): Dockerfile {
  const lines = text.replace(/\r\n?/g, "\n").split("\n");
  let esc = "\\";
  let syntax: string | undefined;
  let i = 0;
  // Parser directives: only at the very top, before any blank line, comment or instruction.
  const seen = new Set<string>();
  for (; i < lines.length; i++) {
    const m = /^#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.*?)\s*$/.exec(lines[i] ?? "");
    if (!m) break;
    const name = (m[1] ?? "").toLowerCase();
    const value = m[2] ?? "";
    if (name !== "escape" && name !== "syntax" && name !== "check") break;
    if (seen.has(name)) throw dockerfileError(file, i + 1, "directive", `${name} given twice`);
    seen.add(name);
    if (name === "escape") {
      if (value !== "\\" && value !== "`") throw dockerfileError(file, i + 1, "directive", `invalid escape ${value}`);
      esc = value;
    } else if (name === "syntax") syntax = value;
  }
  const instructions: Instruction[] = [];
  while (i < lines.length) {
    const raw = lines[i] ?? "";
    if (/^\s*$/.test(raw) || /^\s*#/.test(raw)) {
      i++;
      continue;
    }
    const start = i;
    let logical = "";
    let current = raw;
    for (;;) {
      const trimmed = current.replace(/\s+$/, "");
      if (trimmed.endsWith(esc) && !trimmed.endsWith(esc + esc)) {
        logical += `${trimmed.slice(0, -1)} `;
        i++;
        // Comment lines and blank lines inside a continuation are skipped.
        while (i < lines.length && (/^\s*#/.test(lines[i] ?? "") || /^\s*$/.test(lines[i] ?? ""))) i++;
        if (i >= lines.length) break;
        current = lines[i] ?? "";
        continue;
      }
      logical += trimmed;
      i++;
      break;
    }
    logical = logical.trim();
    const km = /^(\S+)\s*(.*)$/s.exec(logical);
    const keyword = (km?.[1] ?? "").toUpperCase();
    let rest = km?.[2] ?? "";
    const line = start + 1;
    if (!KEYWORDS.has(keyword)) throw dockerfileError(file, line, km?.[1] ?? "", "unknown instruction");
    const flags: Array<{ name: string; value: string }> = [];
    if (FLAGGED.has(keyword)) {
      for (;;) {
        const fm = /^--([a-zA-Z][a-zA-Z0-9-]*)(?:=((?:"[^"]*"|[^\s])*))?(?:\s+|$)/.exec(rest);
        if (!fm) break;
        flags.push({ name: fm[1] ?? "", value: unquote(fm[2] ?? "") });
        rest = rest.slice(fm[0].length);
      }
    }
    const heredocs: Heredoc[] = [];
    if (HEREDOC_KEYWORDS.has(keyword)) {
      const re = /<<(-?)(["']?)([A-Za-z_][A-Za-z0-9_]*)\2/g;
      for (let m = re.exec(rest); m; m = re.exec(rest)) {
        const strip = m[1] === "-";
        const name = m[3] ?? "";
        const body: string[] = [];
        let closed = false;
        while (i < lines.length) {
          const l = lines[i] ?? "";
          i++;
          const cmp = strip ? l.replace(/^\t+/, "") : l;
          if (cmp === name) {
            closed = true;
            break;
          }
          body.push(cmp);
        }
        if (!closed) throw dockerfileError(file, line, keyword, `unterminated heredoc <<${name}`);
        heredocs.push({ name, body: body.length ? `${body.join("\n")}\n` : "", quoted: m[2] !== "" });
      }
    }
    const inst: Instruction = { keyword, flags, args: rest.trim(), heredocs, line, text: logical };
    const json = parseJsonArray(inst.args);
    if (json) inst.json = json;
    if (inst.args === "" && heredocs.length === 0 && keyword !== "ONBUILD")
      throw dockerfileError(file, line, keyword, "requires at least one argument");
    instructions.push(inst);
  }
  return { file, ...(syntax !== undefined ? { syntax } : {}), escape: esc, instructions };
}

function unquote(v: string): string {
  return v.length >= 2 && v.startsWith('"') && v.endsWith('"') ? v.slice(1, -1) : v;
}

/** Exec form: a JSON array of strings; anything else (even invalid JSON) is shell form. */
function parseJsonArray(args: string): string[] | undefined {
  if (!args.startsWith("[")) return undefined;
  try {
    const v: unknown = JSON.parse(args);
    if (Array.isArray(v) && v.every((x) => typeof x === "string")) return v as string[];
  } catch {
    // Not JSON: shell form, as Docker does.
  }
  return undefined;
}

/** Variables in scope: a lookup returning undefined for unset. */
export type Vars = (name: string) => string | undefined;

/**
 * Docker's word processing of one argument string: splits on unquoted whitespace, removes quotes,
 * expands variables outside single quotes. `esc` (the escape character) escapes the next character. Throws
 * InvalidArgument (message without location; the caller adds it) on a bad substitution.
 */
export function splitWords(input: string, vars: Vars, esc = "\\"): string[] {
  return wordsOf(input, vars, esc, true);
}

/** Word processing; `split`: an unquoted variable's value is split into words (ProcessWords), else kept whole. */
function wordsOf(input: string, vars: Vars, esc: string, split: boolean): string[] {
  const words: string[] = [];
  let cur = "";
  let inWord = false;
  let quote: '"' | "'" | undefined;
  for (let i = 0; i < input.length; i++) {
    const c = input[i] ?? "";
    if (quote === "'") {
      if (c === "'") quote = undefined;
      else cur += c;
      continue;
    }
    if (c === esc && i + 1 < input.length) {
      const n = input[i + 1] ?? "";
      // Inside double quotes only the quote, the escape character and $ are escapable.
      if (quote === '"' && n !== '"' && n !== esc && n !== "$") cur += c;
      else cur += n;
      i++;
      inWord = true;
      continue;
    }
    if (c === "$") {
      const r = expandAt(input, i, vars, esc);
      i = r.end - 1;
      if (quote || !split) {
        cur += r.value;
        inWord = true;
        continue;
      }
      // Unquoted: the value's whitespace separates words.
      const parts = r.value.split(/\s+/);
      parts.forEach((part, k) => {
        if (k > 0 && (inWord || cur)) {
          words.push(cur);
          cur = "";
          inWord = false;
        }
        if (part) {
          cur += part;
          inWord = true;
        }
      });
      continue;
    }
    if (quote === '"') {
      if (c === '"') quote = undefined;
      else cur += c;
      continue;
    }
    if (c === '"' || c === "'") {
      quote = c;
      inWord = true;
      continue;
    }
    if (/\s/.test(c) && !split) {
      // One word (WORKDIR, USER, a legacy ENV value): whitespace is literal.
      cur += c;
      inWord = true;
      continue;
    }
    if (/\s/.test(c)) {
      if (inWord) words.push(cur);
      cur = "";
      inWord = false;
      continue;
    }
    cur += c;
    inWord = true;
  }
  if (quote) throw new RuntimeError("InvalidArgument", `unmatched ${quote} quote`);
  if (inWord) words.push(cur);
  return words;
}

/** The whole string with variables expanded and quotes removed, as one word (WORKDIR, USER, ...). */
export function expandWord(input: string, vars: Vars, esc = "\\"): string {
  return wordsOf(input, vars, esc, false).join(" ");
}

/** Expands variables only (quotes kept): heredoc bodies, onbuild text. */
export function expandVars(input: string, vars: Vars, esc = "\\"): string {
  let out = "";
  for (let i = 0; i < input.length; i++) {
    const c = input[i] ?? "";
    if (c === esc && input[i + 1] === "$") {
      out += "$";
      i++;
    } else if (c === "$") {
      const r = expandAt(input, i, vars, esc);
      out += r.value;
      i = r.end - 1;
    } else out += c;
  }
  return out;
}

function expandAt(input: string, i: number, vars: Vars, esc: string): { value: string; end: number } {
  const rest = input.slice(i + 1);
  const simple = /^[A-Za-z_][A-Za-z0-9_]*/.exec(rest);
  if (simple) return { value: vars(simple[0]) ?? "", end: i + 1 + simple[0].length };
  if (!rest.startsWith("{")) return { value: "$", end: i + 1 };
  // ${...}: find the matching brace (nested ${} allowed in the word).
  let depth = 0;
  let j = 0;
  for (; j < rest.length; j++) {
    if (rest[j] === "{") depth++;
    else if (rest[j] === "}") {
      depth--;
      if (depth === 0) break;
    }
  }
  if (j >= rest.length) throw new RuntimeError("InvalidArgument", `missing '}' in ${input.slice(i)}`);
  const body = rest.slice(1, j);
  const end = i + 1 + j + 1;
  const m = /^([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-+])(.*))?$/s.exec(body);
  if (!m) throw new RuntimeError("InvalidArgument", `bad substitution \${${body}}`);
  const name = m[1] ?? "";
  const op = m[2];
  const value = vars(name);
  if (op === undefined) return { value: value ?? "", end };
  const word = () => wordsOf(m[3] ?? "", vars, esc, false).join(" ");
  switch (op) {
    case ":-":
      return { value: value ? value : word(), end };
    case "-":
      return { value: value !== undefined ? value : word(), end };
    case ":+":
      return { value: value ? word() : "", end };
    default:
      return { value: value !== undefined ? word() : "", end };
  }
}

/** `KEY=VALUE ...` pairs (ENV, LABEL, ARG), or the legacy `KEY value with spaces` form (ENV, LABEL). */
export function parseKeyValues(args: string, vars: Vars, esc: string, legacy: boolean): Array<[string, string]> {
  const first = /^(\S+)/.exec(args)?.[1] ?? "";
  if (legacy && !first.includes("=")) {
    const key = first;
    const value = args.slice(first.length).trim();
    if (!value) throw new RuntimeError("InvalidArgument", `${key} needs a value`);
    return [[key, expandWord(value, vars, esc)]];
  }
  const out: Array<[string, string]> = [];
  for (const w of splitWords(args, vars, esc)) {
    const eq = w.indexOf("=");
    if (eq <= 0) throw new RuntimeError("InvalidArgument", `${w}: expected KEY=VALUE`);
    out.push([w.slice(0, eq), w.slice(eq + 1)]);
  }
  return out;
}
