/**
 * The CRI container log format (cri-api; written here by conmon's k8s-file driver):
 * `<RFC 3339 timestamp> <stdout|stderr> <P|F>[:more tags] <content>\n`. A `P` record is a chunk of a line
 * that had not ended when it was written; its trailing `\n` belongs to the record, not to the content.
 */

/** One parsed record. */
export interface CriLogRecord {
  timestamp: string;
  stream: "stdout" | "stderr";
  partial: boolean;
  content: string;
}

/** Parses one line (without its `\n`); `undefined` for anything that is not a CRI record. */
export function parseCriLogLine(line: string): CriLogRecord | undefined {
  const s1 = line.indexOf(" ");
  const s2 = s1 < 0 ? -1 : line.indexOf(" ", s1 + 1);
  if (s2 < 0) return undefined;
  const stream = line.slice(s1 + 1, s2);
  if (stream !== "stdout" && stream !== "stderr") return undefined;
  // An empty full line may be written without the separator before the (empty) content.
  const s3 = line.indexOf(" ", s2 + 1);
  const tags = s3 < 0 ? line.slice(s2 + 1) : line.slice(s2 + 1, s3);
  const first = tags.split(":", 1)[0];
  if (first !== "P" && first !== "F") return undefined;
  return { timestamp: line.slice(0, s1), stream, partial: first === "P", content: s3 < 0 ? "" : line.slice(s3 + 1) };
}

/**
 * The bytes each stream carried, rebuilt from a CRI log: full records end in `\n`, partial ones are joined
 * to what follows. Lines that are not CRI records are skipped.
 */
export function parseCriLog(text: string): { stdout: string; stderr: string } {
  const out = { stdout: [] as string[], stderr: [] as string[] };
  const lines = text.split("\n");
  // A final element after the last "\n" is an incomplete write, or "" for a complete file.
  if (lines[lines.length - 1] === "") lines.pop();
  for (const line of lines) {
    const rec = parseCriLogLine(line);
    if (!rec) continue;
    out[rec.stream].push(rec.partial ? rec.content : `${rec.content}\n`);
  }
  return { stdout: out.stdout.join(""), stderr: out.stderr.join("") };
}
