import { createRequire } from "node:module";

type Yaml = typeof import("yaml");
let loaded: Yaml | undefined;

/**
 * The yaml package, loaded on first use (synchronously, through its CommonJS build): loading it costs about
 * as much as the rest of a short command's start-up, and most runs never read or write YAML.
 */
export function yaml(): Yaml {
  loaded ??= createRequire(import.meta.url)("yaml") as Yaml;
  return loaded;
}
