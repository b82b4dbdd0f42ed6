// biome-ignore-all lint/suspicious/noTemplateCurlyInString: the strings are Dockerfile text, where ${V} is a variable
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { isKind } from "../errdefs/index.js";
import { expandVars, expandWord, parseDockerfile, parseKeyValues, splitWords } from "./dockerfile.js";
import { planBuild } from "./stages.js";

const vars =
  (o: Record<string, string>) =>
  (n: string): string | undefined =>
    o[n];
const none = vars({});
const amd64 = { os: "linux", architecture: "amd64" };

function parseError(text: string): string {
  try {
    parseDockerfile(text, "Dockerfile");
  } catch (err) {
    assert.ok(isKind(err, "InvalidArgument"));
    return (err as Error).message;
  }
  assert.fail("expected a parse error");
}

describe("parseDockerfile", () => {
  test("keywords are case-insensitive and carry their line", () => {
    const df = parseDockerfile("from busybox\n\nrun echo hi\n", "Dockerfile");
    assert.deepEqual(
      df.instructions.map((i) => [i.keyword, i.args, i.line]),
      [
        ["FROM", "busybox", 1],
        ["RUN", "echo hi", 3],
      ],
    );
  });

  test("line continuations join lines; comment and blank lines inside them are dropped", () => {
    const df = parseDockerfile("FROM x\nRUN a \\\n# a comment\n\n  && b \\\n  c\nCMD d\n");
    assert.equal(df.instructions[1]?.args, "a    && b    c");
    assert.equal(df.instructions[2]?.line, 7);
  });

  test("the escape directive changes the continuation character only", () => {
    const df = parseDockerfile("# escape=`\nFROM x\nRUN dir c:\\ `\n  && echo\n");
    assert.equal(df.escape, "`");
    assert.equal(df.instructions[1]?.args, "dir c:\\    && echo");
  });

  test("directives count only at the very top", () => {
    const df = parseDockerfile("# syntax=docker/dockerfile:1\n# escape=\\\nFROM x\n");
    assert.equal(df.syntax, "docker/dockerfile:1");
    const late = parseDockerfile("FROM x\n# escape=`\nRUN a `\n");
    assert.equal(late.escape, "\\");
    const afterComment = parseDockerfile("# hello\n# escape=`\nFROM x\n");
    assert.equal(afterComment.escape, "\\");
  });

  test("flags are split from the arguments, repeated flags kept in order", () => {
    const df = parseDockerfile(
      "FROM --platform=linux/amd64 x AS b\nRUN --mount=type=cache,target=/c --mount=type=secret,id=s --network=none make\nCOPY --from=b --chown=1:2 --chmod=0644 a b /d/\n",
    );
    assert.deepEqual(df.instructions[0]?.flags, [{ name: "platform", value: "linux/amd64" }]);
    assert.equal(df.instructions[0]?.args, "x AS b");
    assert.deepEqual(
      df.instructions[1]?.flags.map((f) => f.name),
      ["mount", "mount", "network"],
    );
    assert.equal(df.instructions[1]?.args, "make");
    assert.equal(df.instructions[2]?.args, "a b /d/");
  });

  test("exec form is a JSON string array; anything else is shell form", () => {
    const df = parseDockerfile('FROM x\nCMD ["a", "b c"]\nCMD [a, b]\nENTRYPOINT ["x", 1]\n');
    assert.deepEqual(df.instructions[1]?.json, ["a", "b c"]);
    assert.equal(df.instructions[2]?.json, undefined);
    assert.equal(df.instructions[3]?.json, undefined);
  });

  test("heredocs: body, <<- strips tabs, quoted names", () => {
    const df = parseDockerfile("FROM x\nRUN <<EOF\necho $A\nEOF\nCOPY <<-'END' /f\n\tline\n\tEND\nCMD x\n");
    assert.deepEqual(df.instructions[1]?.heredocs, [{ name: "EOF", body: "echo $A\n", quoted: false }]);
    assert.deepEqual(df.instructions[2]?.heredocs, [{ name: "END", body: "line\n", quoted: true }]);
    assert.equal(df.instructions[3]?.line, 8);
  });

  test("errors name the file, line and instruction", () => {
    assert.equal(parseError("FROM x\nRUN a\nFROBNICATE b\n"), "Dockerfile:3: FROBNICATE: unknown instruction");
    assert.match(parseError("FROM x\nRUN <<EOF\necho\n"), /^Dockerfile:2: RUN: unterminated heredoc <<EOF/);
    assert.match(parseError("FROM x\nCMD\n"), /^Dockerfile:2: CMD: requires at least one argument/);
    assert.match(parseError("# escape=x\nFROM x\n"), /^Dockerfile:1: directive: invalid escape x/);
  });
});

describe("word processing", () => {
  test("$V, ${V}, ${V:-x}, ${V-x}, ${V:+x}, ${V+x}", () => {
    const v = vars({ A: "a", E: "" });
    assert.equal(expandWord("$A-${A}", v), "a-a");
    assert.equal(expandWord("${B:-def}", v), "def");
    assert.equal(expandWord("${E:-def}", v), "def");
    assert.equal(expandWord("${E-def}", v), "");
    assert.equal(expandWord("${B-def}", v), "def");
    assert.equal(expandWord("${A:+set}", v), "set");
    assert.equal(expandWord("${E:+set}", v), "");
    assert.equal(expandWord("${E+set}", v), "set");
    assert.equal(expandWord("${B:-${A}x}", v), "ax");
  });

  test("quotes: single quotes stop expansion, double quotes keep spaces, escapes", () => {
    const v = vars({ A: "a b" });
    assert.deepEqual(splitWords(`'$A' "$A" $A \\$A x\\ y`, v), ["$A", "a b", "a", "b", "$A", "x y"]);
    assert.deepEqual(splitWords('a="b c" d', none), ["a=b c", "d"]);
    assert.throws(() => splitWords('"open', none), /unmatched/);
    assert.throws(() => expandWord("${A", v), /missing '}'/);
    assert.throws(() => expandWord("${1x}", v), /bad substitution/);
  });

  test("heredoc bodies expand variables but keep quotes", () => {
    assert.equal(expandVars("echo '$A' \\$B\n", vars({ A: "1" })), "echo '1' $B\n");
  });

  test("ENV/LABEL key=value pairs and the legacy form", () => {
    assert.deepEqual(parseKeyValues('A=1 B="two words" C=$X', vars({ X: "x" }), "\\", true), [
      ["A", "1"],
      ["B", "two words"],
      ["C", "x"],
    ]);
    assert.deepEqual(parseKeyValues("KEY value with  spaces", none, "\\", true), [["KEY", "value with  spaces"]]);
    assert.throws(() => parseKeyValues("A=1 B", none, "\\", false), /expected KEY=VALUE/);
  });
});

describe("planBuild", () => {
  const df = parseDockerfile(
    [
      "ARG BASE=busybox",
      "ARG TAG",
      "FROM ${BASE}:${TAG:-1} AS deps",
      "FROM deps AS build",
      "RUN make",
      "FROM alpine AS other",
      "FROM scratch AS final",
      "COPY --from=build /out /out",
      "RUN --mount=type=bind,from=2,target=/x true",
    ].join("\n"),
  );

  test("global ARGs expand FROM lines, build args override defaults", () => {
    const p = planBuild(df, { buildArgs: { TAG: "2" }, platform: amd64 });
    assert.equal(p.stages[0]?.base, "busybox:2");
    assert.equal(planBuild(df, { buildArgs: {}, platform: amd64 }).stages[0]?.base, "busybox:1");
    assert.equal(p.stages[1]?.baseStage, 0);
  });

  test("only the stages the target needs are built", () => {
    assert.deepEqual(planBuild(df, { buildArgs: {}, platform: amd64 }).needed, [0, 1, 2, 3]);
    assert.deepEqual(planBuild(df, { target: "build", buildArgs: {}, platform: amd64 }).needed, [0, 1]);
    assert.throws(() => planBuild(df, { target: "nope", buildArgs: {}, platform: amd64 }), /target stage "nope"/);
  });

  test("instructions before FROM other than ARG, and duplicate stage names, are errors with lines", () => {
    assert.throws(
      () => planBuild(parseDockerfile("RUN x\nFROM a\n"), { buildArgs: {}, platform: amd64 }),
      /Dockerfile:1: RUN: only ARG may come before the first FROM/,
    );
    assert.throws(
      () => planBuild(parseDockerfile("FROM a AS x\nFROM b AS x\n"), { buildArgs: {}, platform: amd64 }),
      /Dockerfile:2: FROM: duplicate stage name x/,
    );
    assert.throws(
      () => planBuild(parseDockerfile("ARG A\n"), { buildArgs: {}, platform: amd64 }),
      /Dockerfile:1: FROM: the Dockerfile has no FROM/,
    );
  });

  test("automatic platform ARGs are available to FROM", () => {
    const p = planBuild(parseDockerfile("FROM img-$TARGETARCH\n"), { buildArgs: {}, platform: amd64 });
    assert.equal(p.stages[0]?.base, "img-amd64");
  });
});
