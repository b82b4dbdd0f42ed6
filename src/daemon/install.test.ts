import assert from "node:assert/strict";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { defaultConfig, parseConfig } from "../config/index.js";
import { CONFIG_PATH, defaultConfigFile, install, serviceUnit, UNIT_PATH } from "./install.js";

test("the default config file parses with berth's own validator into the defaults", () => {
  assert.deepEqual(parseConfig(defaultConfigFile(), "config.toml"), defaultConfig());
});

test("the unit keeps containers across restarts and lets berthd manage cgroups (containerd's settings)", () => {
  const unit = serviceUnit("/usr/local/bin/berthd");
  for (const line of [
    "Delegate=yes",
    "KillMode=process",
    "ExecStartPre=-/sbin/modprobe overlay",
    "ExecStartPre=-/sbin/modprobe br_netfilter",
    "ExecStart=/usr/local/bin/berthd",
    "LimitNOFILE=infinity",
    "TasksMax=infinity",
    "WantedBy=multi-user.target",
  ])
    assert.match(unit, new RegExp(`^${line.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}$`, "m"), line);
});

test("contrib/berthd.service is the unit berthd install writes for /usr/local/bin/berthd", async () => {
  const contrib = await readFile(new URL("../../contrib/berthd.service", import.meta.url), "utf8");
  assert.equal(contrib, serviceUnit("/usr/local/bin/berthd"));
});

test("install writes the unit and the config, and keeps an existing config", async () => {
  const dest = await mkdtemp(join(tmpdir(), "berth-install-"));
  try {
    const first = await install("/opt/berth/berthd", dest);
    assert.deepEqual(
      first.map((r) => r.action),
      ["written", "written"],
    );
    assert.equal(await readFile(join(dest, UNIT_PATH), "utf8"), serviceUnit("/opt/berth/berthd"));
    assert.equal(await readFile(join(dest, CONFIG_PATH), "utf8"), defaultConfigFile());
    await writeFile(join(dest, CONFIG_PATH), '[log]\nlevel = "debug"\n');
    const second = await install("/opt/berth/berthd", dest);
    assert.deepEqual(
      second.map((r) => r.action),
      ["written", "kept"],
    );
    assert.equal(await readFile(join(dest, CONFIG_PATH), "utf8"), '[log]\nlevel = "debug"\n');
  } finally {
    await rm(dest, { recursive: true, force: true });
  }
});
