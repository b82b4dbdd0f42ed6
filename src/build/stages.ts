import { messageOf, RuntimeError } from "../errdefs/index.js";
import { type Dockerfile, dockerfileError, expandWord, type Instruction } from "./dockerfile.js";

/**
 * Stages of a parsed Dockerfile: the global ARGs before the first FROM (usable in FROM lines only, and
 * inside a stage once redeclared), each stage's base and instructions, and which stages a target needs
 * (its base chain and every `COPY --from` / `RUN --mount from=` stage, transitively): the others are
 * skipped, as BuildKit does.
 */

export interface Stage {
  index: number;
  /** Lower-case `AS` name, if any. */
  name?: string;
  /** The FROM argument after global ARG expansion: an image reference, `scratch` or an earlier stage's name. */
  base: string;
  /** The stage `base` names, when it names one. */
  baseStage?: number;
  platform?: string;
  from: Instruction;
  instructions: Instruction[];
}

export interface BuildPlan {
  stages: Stage[];
  /** Values of the global (pre-FROM) ARGs, build args applied. */
  globalArgs: Map<string, string | undefined>;
  target: number;
  /** Stage indexes needed by the target, in order. */
  needed: number[];
}

/** The ARGs every build has without declaring them (BuildKit's automatic platform args). */
export function automaticArgs(platform: { os: string; architecture: string; variant?: string }): Map<string, string> {
  const p = `${platform.os}/${platform.architecture}${platform.variant ? `/${platform.variant}` : ""}`;
  return new Map([
    ["TARGETPLATFORM", p],
    ["TARGETOS", platform.os],
    ["TARGETARCH", platform.architecture],
    ["TARGETVARIANT", platform.variant ?? ""],
    ["BUILDPLATFORM", p],
    ["BUILDOS", platform.os],
    ["BUILDARCH", platform.architecture],
    ["BUILDVARIANT", platform.variant ?? ""],
  ]);
}

/** Splits `ARG NAME[=default]`: InvalidArgument for an empty name. */
export function parseArg(inst: Instruction, file: string): { name: string; value?: string; quotedValue?: string } {
  const m = /^([A-Za-z_][A-Za-z0-9_]*)(?:=(.*))?$/s.exec(inst.args.trim());
  if (!m) throw dockerfileError(file, inst.line, "ARG", `invalid argument ${JSON.stringify(inst.args)}`);
  return { name: m[1] as string, ...(m[2] !== undefined ? { quotedValue: m[2] } : {}) };
}

/** Plans the build of `df` for `target` (a stage name; empty = the last stage). */
export function planBuild(
  df: Dockerfile,
  options: { target?: string; buildArgs: Record<string, string>; platform: { os: string; architecture: string } },
): BuildPlan {
  const file = df.file;
  const globalArgs = new Map<string, string | undefined>(automaticArgs(options.platform));
  const stages: Stage[] = [];
  let current: Stage | undefined;
  const lookup = (n: string) => globalArgs.get(n);
  for (const inst of df.instructions) {
    if (inst.keyword === "FROM") {
      const words = inst.args.split(/\s+/);
      let name: string | undefined;
      if (words.length === 3 && words[1]?.toLowerCase() === "as") name = words[2]?.toLowerCase();
      else if (words.length !== 1) throw dockerfileError(file, inst.line, "FROM", "expected FROM <image> [AS <name>]");
      if (name !== undefined && !/^[a-z][a-z0-9._-]*$/.test(name))
        throw dockerfileError(file, inst.line, "FROM", `invalid stage name ${JSON.stringify(name)}`);
      if (name !== undefined && stages.some((s) => s.name === name))
        throw dockerfileError(file, inst.line, "FROM", `duplicate stage name ${name}`);
      let base: string;
      try {
        base = expandWord(words[0] as string, lookup, df.escape);
      } catch (err) {
        throw dockerfileError(file, inst.line, "FROM", messageOf(err));
      }
      if (!base) throw dockerfileError(file, inst.line, "FROM", `base name ${words[0]} expands to nothing`);
      const baseStage = stages.find((s) => s.name === base.toLowerCase())?.index;
      const platformFlag = inst.flags.find((f) => f.name === "platform")?.value;
      for (const f of inst.flags)
        if (f.name !== "platform") throw dockerfileError(file, inst.line, "FROM", `unknown flag --${f.name}`);
      current = {
        index: stages.length,
        ...(name !== undefined ? { name } : {}),
        base,
        ...(baseStage !== undefined ? { baseStage } : {}),
        ...(platformFlag !== undefined ? { platform: expandWord(platformFlag, lookup, df.escape) } : {}),
        from: inst,
        instructions: [],
      };
      stages.push(current);
      continue;
    }
    if (current === undefined) {
      if (inst.keyword !== "ARG")
        throw dockerfileError(file, inst.line, inst.keyword, "only ARG may come before the first FROM");
      const a = parseArg(inst, file);
      const given = options.buildArgs[a.name];
      globalArgs.set(
        a.name,
        given ?? (a.quotedValue !== undefined ? expandWord(a.quotedValue, lookup, df.escape) : globalArgs.get(a.name)),
      );
      continue;
    }
    current.instructions.push(inst);
  }
  if (stages.length === 0) throw dockerfileError(file, 1, "FROM", "the Dockerfile has no FROM");
  let target = stages.length - 1;
  if (options.target) {
    const t = stages.find((s) => s.name === options.target?.toLowerCase());
    if (!t) throw new RuntimeError("InvalidArgument", `target stage ${JSON.stringify(options.target)} not found`);
    target = t.index;
  }
  const needed = new Set<number>();
  const visit = (i: number) => {
    if (needed.has(i)) return;
    needed.add(i);
    const s = stages[i] as Stage;
    if (s.baseStage !== undefined) visit(s.baseStage);
    for (const inst of s.instructions) {
      for (const ref of stageRefs(inst)) {
        const dep = resolveStageRef(stages, ref, i);
        if (dep !== undefined) visit(dep);
      }
    }
  };
  visit(target);
  return { stages, globalArgs, target, needed: [...needed].sort((a, b) => a - b) };
}

/** Stage references of an instruction: `COPY --from=x`, `RUN --mount=...,from=x`. */
export function stageRefs(inst: Instruction): string[] {
  const refs: string[] = [];
  for (const f of inst.flags) {
    if (f.name === "from" && (inst.keyword === "COPY" || inst.keyword === "ADD")) refs.push(f.value);
    if (f.name === "mount" && inst.keyword === "RUN") {
      const from = /(?:^|,)from=([^,]+)/.exec(f.value)?.[1];
      if (from) refs.push(from);
    }
  }
  return refs;
}

/** The earlier stage `ref` names (by name or index), or undefined when it names an image. */
export function resolveStageRef(stages: readonly Stage[], ref: string, before: number): number | undefined {
  const byName = stages.find((s) => s.name === ref.toLowerCase() && s.index < before);
  if (byName) return byName.index;
  if (/^\d+$/.test(ref)) {
    const n = Number(ref);
    if (n < before) return n;
  }
  return undefined;
}
