import { stringify as toYaml } from "yaml";

/** Prints rows as a left-aligned table with crictl-like spacing (three spaces between columns). */
export function printTable(headers: string[], rows: string[][]): void {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i] ?? 0)))
      .join("   ")
      .trimEnd();
  process.stdout.write(`${[line(headers), ...rows.map(line)].join("\n")}\n`);
}

/** Prints a value as JSON or YAML; bigint becomes a number string-safe value. */
export function printStructured(value: unknown, format: "json" | "yaml"): void {
  const plain = JSON.parse(JSON.stringify(value, (_k, v) => (typeof v === "bigint" ? v.toString() : v)));
  process.stdout.write(format === "yaml" ? toYaml(plain) : `${JSON.stringify(plain, null, 2)}\n`);
}
