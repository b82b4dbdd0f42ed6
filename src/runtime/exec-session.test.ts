import assert from "node:assert/strict";
import { test } from "node:test";
import { createCrCrLfCollapser } from "./exec-session.js";

const run = (chunks: string[]) => {
  const c = createCrCrLfCollapser();
  return chunks.map((x) => c.push(Buffer.from(x)).toString()).join("") + c.flush().toString();
};

test("CR CR LF from an exec terminal becomes CR LF; other bytes pass unchanged", () => {
  assert.equal(run(["45 123\r\r\n", "a\r\n"]), "45 123\r\na\r\n");
  assert.equal(run(["x\r\r\ny\r\r\nz"]), "x\r\ny\r\nz");
  assert.equal(run(["plain\n", "\rprogress", "\t\u00e9\u2713"]), "plain\n\rprogress\t\u00e9\u2713");
});

test("CR CR LF split across chunks is still collapsed, and a held CR comes out at the end", () => {
  assert.equal(run(["a\r", "\r\nb"]), "a\r\nb");
  assert.equal(run(["a\r\r", "\nb"]), "a\r\nb");
  assert.equal(run(["a\r", "\r", "\n"]), "a\r\n");
  assert.equal(run(["50%\r"]), "50%\r");
  assert.equal(run(["a\r", "b"]), "a\rb");
});
