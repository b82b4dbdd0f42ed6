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

test("timeouts that are zero, negative, NaN, infinite or beyond the timer range are refused with key and line", () => {
  for (const [key, table] of [
    ["plugin_timeout_seconds", "cni"],
    ["idle_timeout_seconds", "streaming"],
    ["request_timeout_seconds", "registry"],
    ["idle_timeout_seconds", "registry"],
  ] as const) {
    for (const bad of ["0", "-1", "nan", "inf", "-inf", "2147484", "0.0001"]) {
      assert.throws(
        () => parseConfig(`root = "/x"\n[${table}]\n${key} = ${bad}\n`, "c.toml"),
        { message: new RegExp(`^c\\.toml:3: ${table}\\.${key}: must be a number of seconds from 0\\.001 to 2147483$`) },
        `${table}.${key} = ${bad}`,
      );
    }
    assert.equal(parseConfig(`[${table}]\n${key} = 2147483\n`)[table][key as never], 2147483);
    assert.equal(parseConfig(`[${table}]\n${key} = 0.5\n`)[table][key as never], 0.5);
  }
});

test("root, state and socket must be absolute paths", () => {
  for (const key of ["root", "state", "socket"]) {
    assert.throws(() => parseConfig(`# c\n${key} = ""\n`, "c.toml"), {
      message: `c.toml:2: ${key}: must be an absolute path`,
    });
    assert.throws(() => parseConfig(`${key} = "var/lib/berth"\n`, "c.toml"), {
      message: `c.toml:1: ${key}: must be an absolute path`,
    });
  }
});

test("other paths, when set, must be absolute", () => {
  assert.throws(() => parseConfig(`[cni]\nbin_dirs = ["/opt/cni/bin", "bin"]\n`, "c.toml"), {
    message: 'c.toml:2: cni.bin_dirs: "bin" is not an absolute path',
  });
  assert.throws(() => parseConfig(`[runtime.handlers.kata]\npath = "kata"\n`, "c.toml"), {
    message: 'c.toml:2: runtime.handlers.kata.path: "kata" is not an absolute path',
  });
  assert.throws(() => parseConfig(`[registry]\nconfig_path = "/etc/a:certs.d"\n`, "c.toml"), {
    message: 'c.toml:2: registry.config_path: "certs.d" is not an absolute path',
  });
  assert.equal(parseConfig(`[cni]\ncache_dir = ""\n`).cni.cache_dir, "");
});

test("streaming.address must be an IP literal", () => {
  for (const bad of ["", "localhost", "127.0.0.1:80", "0.0.0.0/0", "::1]"]) {
    assert.throws(() => parseConfig(`[streaming]\naddress = ${JSON.stringify(bad)}\n`, "c.toml"), {
      message: `c.toml:2: streaming.address: ${JSON.stringify(bad)} is not an IP address`,
    });
  }
  assert.equal(parseConfig(`[streaming]\naddress = "::1"\n`).streaming.address, "::1");
  assert.equal(parseConfig(`[streaming]\naddress = "0.0.0.0"\n`).streaming.address, "0.0.0.0");
});

test("metrics.address is ip:port or [ipv6]:port, empty (off) by default, and anything else is refused with its line", () => {
  assert.equal(defaultConfig().metrics.address, "");
  assert.equal(parseConfig(`[metrics]\naddress = "127.0.0.1:9100"\n`).metrics.address, "127.0.0.1:9100");
  assert.equal(parseConfig(`[metrics]\naddress = "[::1]:0"\n`).metrics.address, "[::1]:0");
  for (const bad of [
    "localhost:9100",
    "127.0.0.1",
    ":9100",
    "127.0.0.1:65536",
    "::1:9100",
    "[127.0.0.1]:1",
    "1.2.3.4:x",
  ]) {
    assert.throws(() => parseConfig(`# x\n[metrics]\naddress = "${bad}"\n`, "c.toml"), {
      message: `c.toml:3: metrics.address: ${JSON.stringify(bad)} is not ip:port (or [ipv6]:port), nor empty`,
    });
  }
});

test("every key of the default config is read by the daemon (no accepted-but-ignored key)", async () => {
  // The composition root and the CRI handlers are the only readers of the config; every leaf key
  // must appear in one of them, or in a validation that refuses anything but its default.
  const { readFile } = await import("node:fs/promises");
  const readers = (
    await Promise.all(
      [
        "../daemon/modules.ts",
        "../daemon/daemon.ts",
        "../daemon/main.ts",
        "../cri/runtime-config.ts",
        "../cri/status.ts",
      ].map((f) => readFile(new URL(f, import.meta.url), "utf8")),
    )
  ).join("\n");
  const refused = new Set(["sandbox.image"]);
  const leaves = (o: Record<string, unknown>, prefix: string[]): string[][] =>
    Object.entries(o).flatMap(([k, v]) =>
      typeof v === "object" && v !== null && !Array.isArray(v)
        ? leaves(v as Record<string, unknown>, [...prefix, k])
        : [[...prefix, k]],
    );
  for (const path of leaves(defaultConfig() as unknown as Record<string, unknown>, [])) {
    const dotted = path.join(".");
    if (refused.has(dotted)) continue;
    // runtime.handlers.runc.path is read as `h.path` over Object.entries(config.runtime.handlers).
    const last = path.at(-1) as string;
    const pattern =
      path[1] === "handlers"
        ? new RegExp(`\\bh\\.${last}\\b`)
        : new RegExp(`config\\.${dotted.replaceAll(".", "\\.")}\\b`);
    assert.match(readers, pattern, `${dotted} is accepted but nothing reads it`);
  }
});

test("unpack limits must be positive integers and max_workers 0-64, named with their line", () => {
  const c = parseConfig(`[unpack]\nmax_layer_bytes = 1048576\nmax_layer_entries = 10\nmax_workers = 2\n`);
  assert.deepEqual(c.unpack, { max_layer_bytes: 1048576, max_layer_entries: 10, max_workers: 2 });
  for (const [key, value] of [
    ["max_layer_bytes", "0"],
    ["max_layer_bytes", "-5"],
    ["max_layer_bytes", "1.5"],
    ["max_layer_bytes", "nan"],
    ["max_layer_bytes", "inf"],
    ["max_layer_entries", "0"],
  ]) {
    assert.throws(() => parseConfig(`[unpack]\n${key} = ${value}\n`, "c.toml"), {
      message: `c.toml:2: unpack.${key}: must be a positive integer`,
    });
  }
  assert.throws(() => parseConfig(`[unpack]\nmax_workers = 65\n`, "c.toml"), {
    message: "c.toml:2: unpack.max_workers: must be 0 (automatic) to 64",
  });
});
