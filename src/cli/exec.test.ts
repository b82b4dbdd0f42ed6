import assert from "node:assert/strict";
import { test } from "node:test";
import { separateExecCommand } from "./exec.js";

test("the command after exec's container keeps its own options", () => {
  assert.deepEqual(separateExecCommand(["exec", "3f2a", "ls", "-la"]), ["exec", "3f2a", "--", "ls", "-la"]);
  assert.deepEqual(separateExecCommand(["exec", "-it", "3f2a", "sh", "-c", "echo hi"]), [
    "exec",
    "-it",
    "3f2a",
    "--",
    "sh",
    "-c",
    "echo hi",
  ]);
  assert.deepEqual(separateExecCommand(["-s", "/x.sock", "-o", "json", "exec", "-o", "yaml", "3f2a", "ps", "-t"]), [
    "-s",
    "/x.sock",
    "-o",
    "json",
    "exec",
    "-o",
    "yaml",
    "3f2a",
    "--",
    "ps",
    "-t",
  ]);
});

test("argv without exec, with --, or without a command is left alone", () => {
  assert.deepEqual(separateExecCommand(["ps", "-a"]), ["ps", "-a"]);
  assert.deepEqual(separateExecCommand(["exec", "3f2a", "--", "ls"]), ["exec", "3f2a", "--", "ls"]);
  assert.deepEqual(separateExecCommand(["exec", "3f2a"]), ["exec", "3f2a"]);
  assert.deepEqual(separateExecCommand(["logs", "exec"]), ["logs", "exec"]);
});
