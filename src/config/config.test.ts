import assert from "node:assert/strict";
import { test } from "node:test";
import { defaultConfig, formatConfig, parseConfig } from "./config.js";

test("an empty file gives the defaults", () => {
  assert.deepEqual(parseConfig(""), defaultConfig());
});

test("the printed default config parses back to the defaults", () => {
  assert.deepEqual(parseConfig(formatConfig(defaultConfig())), defaultConfig());
});

test("values override defaults and handlers can be added", () => {
  const c = parseConfig(`root = "/x"\n[log]\nlevel = "debug"\n[runtime.handlers.kata]\npath = "/usr/bin/kata"\n`);
  assert.equal(c.root, "/x");
  assert.equal(c.log.level, "debug");
  assert.equal(c.runtime.handlers.kata?.path, "/usr/bin/kata");
  assert.equal(c.runtime.handlers.runc?.path, "/usr/sbin/runc");
});

test("an unknown key is an error naming the key and its line", () => {
  assert.throws(() => parseConfig(`root = "/x"\n\n[cni]\nconf_dir = "/a"\nbin_dir = ["/b"]\n`, "c.toml"), {
    message: "c.toml:5: cni.bin_dir: unknown key",
  });
  assert.throws(() => parseConfig(`[nope]\nx = 1\n`, "c.toml"), { message: "c.toml:1: nope: unknown key" });
});

test("a wrong type is an error naming the key", () => {
  assert.throws(() => parseConfig(`[streaming]\nport = "80"\n`, "c.toml"), {
    message: "c.toml:2: streaming.port: must be a number",
  });
  assert.throws(() => parseConfig(`[log]\nlevel = "loud"\n`, "c.toml"), /c.toml:2: log.level: must be one of/);
});

test("a TOML syntax error names the line", () => {
  assert.throws(() => parseConfig(`root = "/x"\nstate = \n`, "c.toml"), /^Error: c.toml:2:|c.toml:2:/);
});

test("the default handler must exist", () => {
  assert.throws(() => parseConfig(`[runtime]\ndefault = "kata"\n`, "c.toml"), /runtime.default: names no handler/);
});
