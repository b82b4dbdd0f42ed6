import assert from "node:assert/strict";
import { test } from "node:test";
import { Code, ConnectError } from "@connectrpc/connect";
import { pickUnique } from "./resolve.js";

const A = "aa11000000000000000000000000000000000000000000000000000000000001";
const B = "aa22000000000000000000000000000000000000000000000000000000000002";
const C = "bb33000000000000000000000000000000000000000000000000000000000003";

function code(c: Code, message: RegExp): (e: unknown) => boolean {
  return (e) => e instanceof ConnectError && e.code === c && message.test(e.rawMessage);
}

test("a unique prefix names its ID; a full ID names itself", () => {
  assert.equal(pickUnique("container", "aa1", [A, B, C]), A);
  assert.equal(pickUnique("container", "b", [A, B, C]), C);
  assert.equal(pickUnique("container", A, [A, B, C]), A);
});

test("an exact match wins over longer IDs it prefixes", () => {
  assert.equal(pickUnique("pod sandbox", "aa1", ["aa1", A]), "aa1");
});

test("image IDs match with or without sha256:", () => {
  assert.equal(pickUnique("image", "aa2", [`sha256:${A}`, `sha256:${B}`]), `sha256:${B}`);
  assert.equal(pickUnique("image", "sha256:aa2", [`sha256:${A}`, `sha256:${B}`]), `sha256:${B}`);
});

test("an ambiguous prefix is InvalidArgument listing the matches", () => {
  assert.throws(
    () => pickUnique("container", "aa", [A, B, C]),
    code(Code.InvalidArgument, /ambiguous.*aa11000000000.*aa22000000000/),
  );
});

test("a prefix matching nothing is NotFound; an empty one InvalidArgument", () => {
  assert.throws(() => pickUnique("container", "cc", [A, B, C]), code(Code.NotFound, /container "cc" not found/));
  assert.throws(() => pickUnique("container", "", [A]), code(Code.InvalidArgument, /required/));
});

test("the list is checked again: IDs the runtime returned that do not match are ignored", () => {
  // A runtime that ignores the ID filter returns everything.
  assert.equal(pickUnique("container", "bb", [A, B, C]), C);
});
