/**
 * A small walker for untyped manifest data that collects problems by field path, the way the
 * Kubernetes API server reports them (`spec.containers[1].ports[0].containerPort: must be 1-65535`).
 *
 * Each reader returns the typed value, or undefined after recording an error, so validation
 * code reads top to bottom and reports every problem of a document at once. Every key of every
 * object goes through `fields()`, which sorts it into supported, ignored (a warning: accepted
 * but has no effect in berth), unsupported (an error: running without it would be wrong) or
 * unknown (a warning) — no field is ever dropped silently.
 */

/** How `fields()` treats the keys of one object. */
export interface FieldRules {
  /** Keys the caller reads itself. */
  supported: readonly string[];
  /** Keys accepted with a warning: why ignoring them is harmless. */
  ignored?: Readonly<Record<string, string>>;
  /** Keys rejected with an error: why berth cannot honour them. */
  unsupported?: Readonly<Record<string, string>>;
}

export class Checker {
  readonly errors: string[] = [];
  readonly warnings: string[] = [];

  error(path: string, message: string): undefined {
    this.errors.push(`${path}: ${message}`);
    return undefined;
  }

  warn(path: string, message: string): void {
    this.warnings.push(`${path}: ${message}`);
  }

  /** Checks the keys of `o` against `rules`; returns `o` for chaining. */
  fields(o: Record<string, unknown>, path: string, rules: FieldRules): Record<string, unknown> {
    for (const [key, value] of Object.entries(o)) {
      if (rules.supported.includes(key)) continue;
      const p = join(path, key);
      if (value === null || value === undefined) continue; // `key:` with no value is the same as absent
      const ignored = rules.ignored?.[key];
      if (ignored !== undefined) {
        this.warn(p, `ignored: ${ignored}`);
        continue;
      }
      const unsupported = rules.unsupported?.[key];
      if (unsupported !== undefined) {
        this.error(p, `not supported by berth: ${unsupported}`);
        continue;
      }
      this.warn(p, "unknown field, ignored");
    }
    return o;
  }

  /** An object (mapping); null/undefined → undefined without an error unless `required`. */
  obj(v: unknown, path: string, required = false): Record<string, unknown> | undefined {
    if (v === undefined || v === null) return required ? this.error(path, "required value") : undefined;
    if (typeof v !== "object" || Array.isArray(v)) return this.error(path, `must be an object, got ${typeName(v)}`);
    return v as Record<string, unknown>;
  }

  /** A list; null/undefined → [] unless `required`. */
  list(v: unknown, path: string, required = false): unknown[] {
    if (v === undefined || v === null) {
      if (required) this.error(path, "required value");
      return [];
    }
    if (!Array.isArray(v)) {
      this.error(path, `must be a list, got ${typeName(v)}`);
      return [];
    }
    return v;
  }

  str(
    v: unknown,
    path: string,
    options: { required?: boolean; pattern?: RegExp; patternText?: string; max?: number } = {},
  ): string | undefined {
    if (v === undefined || v === null || v === "") {
      return options.required ? this.error(path, "required value") : undefined;
    }
    if (typeof v !== "string") return this.error(path, `must be a string, got ${typeName(v)}`);
    if (options.max !== undefined && v.length > options.max)
      return this.error(path, `must be no more than ${options.max} characters`);
    if (options.pattern && !options.pattern.test(v)) {
      return this.error(
        path,
        `invalid value ${JSON.stringify(v)}: ${options.patternText ?? `must match ${options.pattern}`}`,
      );
    }
    return v;
  }

  oneOf<T extends string>(v: unknown, path: string, values: readonly T[], fallback: T): T;
  oneOf<T extends string>(v: unknown, path: string, values: readonly T[]): T | undefined;
  oneOf<T extends string>(v: unknown, path: string, values: readonly T[], fallback?: T): T | undefined {
    if (v === undefined || v === null || v === "") return fallback;
    if (typeof v !== "string" || !(values as readonly string[]).includes(v)) {
      this.error(
        path,
        `unsupported value ${JSON.stringify(v)}: supported values: ${values.map((x) => `"${x}"`).join(", ")}`,
      );
      return fallback;
    }
    return v as T;
  }

  int(
    v: unknown,
    path: string,
    options: { min?: number; max?: number; required?: boolean; range?: string } = {},
  ): number | undefined {
    if (v === undefined || v === null) return options.required ? this.error(path, "required value") : undefined;
    if (typeof v !== "number" || !Number.isInteger(v))
      return this.error(path, `must be an integer, got ${typeName(v)}`);
    const { min, max } = options;
    if ((min !== undefined && v < min) || (max !== undefined && v > max)) {
      const range = options.range ?? (max === undefined ? `greater than or equal to ${min}` : `${min}-${max}`);
      return this.error(path, `must be ${range}`);
    }
    return v;
  }

  bool(v: unknown, path: string): boolean | undefined {
    if (v === undefined || v === null) return undefined;
    if (typeof v !== "boolean") return this.error(path, `must be a boolean, got ${typeName(v)}`);
    return v;
  }

  strings(v: unknown, path: string): string[] {
    const out: string[] = [];
    this.list(v, path).forEach((item, i) => {
      if (typeof item === "string") out.push(item);
      else if (typeof item === "number" || typeof item === "boolean") {
        // YAML turns `- 1` into a number; Kubernetes rejects it, and so do we, naming the item.
        this.error(`${path}[${i}]`, `must be a string, got ${typeName(item)} (quote it)`);
      } else this.error(`${path}[${i}]`, `must be a string, got ${typeName(item)}`);
    });
    return out;
  }

  /** A map of string to string (labels, annotations). */
  stringMap(v: unknown, path: string): Record<string, string> {
    const o = this.obj(v, path);
    const out: Record<string, string> = {};
    for (const [k, val] of Object.entries(o ?? {})) {
      if (typeof val !== "string") this.error(`${path}[${k}]`, `must be a string, got ${typeName(val)} (quote it)`);
      else out[k] = val;
    }
    return out;
  }
}

/** `a.b`, or `a[0]` style paths. */
export function join(path: string, key: string): string {
  return path ? `${path}.${key}` : key;
}

function typeName(v: unknown): string {
  if (v === null) return "null";
  if (Array.isArray(v)) return "list";
  return typeof v === "object" ? "object" : typeof v;
}

/** RFC 1123 label: what Kubernetes requires of container, volume and namespace names. */
export const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
export const DNS1123_LABEL_TEXT =
  "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character";
/** RFC 1123 subdomain: what Kubernetes requires of pod names. */
export const DNS1123_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
export const DNS1123_SUBDOMAIN_TEXT =
  "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character";
/** IANA service name: port names. */
export const IANA_SVC_NAME = /^(?=.*[a-z])[a-z0-9]([a-z0-9]|-(?!-))*(?<!-)$/;
