import assert from "node:assert/strict";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { applyPodCidrs, type NetworkConfigList, needsPodCidr } from "./config.js";
import { defaultConflist, loadNetworkConfig, POD_CIDR_PLACEHOLDER, parseNetworkConfig } from "./index.js";

/** The host-local ranges of a list's first plugin. */
function rangesOf(list: NetworkConfigList): unknown {
  return (list.plugins[0]?.ipam as { ranges?: unknown } | undefined)?.ranges;
}

const bridge = { type: "bridge", bridge: "cni0", ipam: { type: "host-local", subnet: "10.1.0.0/16" } };

describe("parseNetworkConfig", () => {
  test("a conflist keeps its plugins and selects the highest supported version", () => {
    const list = parseNetworkConfig(
      JSON.stringify({
        cniVersion: "0.4.0",
        cniVersions: ["0.3.1", "1.0.0", "9.9.9"],
        name: "net",
        plugins: [bridge, { type: "portmap", capabilities: { portMappings: true } }],
      }),
      "/x/10.conflist",
    );
    assert.equal(list.name, "net");
    assert.equal(list.cniVersion, "1.0.0");
    assert.equal(list.disableCheck, false);
    assert.deepEqual(
      list.plugins.map((p) => p.type),
      ["bridge", "portmap"],
    );
    assert.equal(list.berthDefault, false);
  });

  test("a .conf is wrapped as a single-plugin list", () => {
    const list = parseNetworkConfig(JSON.stringify({ cniVersion: "0.3.1", name: "single", ...bridge }), "/x/10.conf");
    assert.equal(list.plugins.length, 1);
    assert.equal(list.plugins[0]?.type, "bridge");
    assert.equal(list.cniVersion, "0.3.1");
  });

  const invalid: [string, string, unknown, RegExp][] = [
    ["not JSON", "a.conflist", "{", /invalid network config a\.conflist: not JSON/],
    ["no name", "a.conflist", { cniVersion: "1.0.0", plugins: [bridge] }, /"name" must match/],
    ["a name with a slash", "a.conflist", { cniVersion: "1.0.0", name: "a/b", plugins: [bridge] }, /"name" must match/],
    ["no plugins", "a.conflist", { cniVersion: "1.0.0", name: "n", plugins: [] }, /"plugins" must be a non-empty list/],
    [
      "a plugin without type",
      "a.conflist",
      { cniVersion: "1.0.0", name: "n", plugins: [{}] },
      /plugins\[0\]: "type" must be a plugin binary name/,
    ],
    [
      "a type with a path",
      "a.conflist",
      { cniVersion: "1.0.0", name: "n", plugins: [{ type: "../bin/sh" }] },
      /"type" must be a plugin binary name/,
    ],
    [
      "an unsupported version",
      "a.conflist",
      { cniVersion: "0.2.0", name: "n", plugins: [bridge] },
      /unsupported cniVersion "0\.2\.0"/,
    ],
    [
      "bad capabilities",
      "a.conflist",
      { cniVersion: "1.0.0", name: "n", plugins: [{ type: "x", capabilities: { a: 1 } }] },
      /"capabilities" must map names to booleans/,
    ],
    [
      "a conflist in a .conf",
      "a.conf",
      { cniVersion: "1.0.0", name: "n", plugins: [bridge] },
      /a config list needs the \.conflist extension/,
    ],
    ["a .conf without type", "a.conf", { cniVersion: "1.0.0", name: "n" }, /network type not specified/],
  ];
  for (const [what, file, body, message] of invalid) {
    test(`${what} is an InvalidArgument naming the file`, () => {
      const text = typeof body === "string" ? body : JSON.stringify(body);
      assert.throws(
        () => parseNetworkConfig(text, file),
        (err: Error & { kind?: string }) => {
          assert.equal(err.kind, "InvalidArgument");
          assert.match(err.message, message);
          assert.ok(err.message.startsWith(`invalid network config ${file}: `));
          return true;
        },
      );
    });
  }
});

describe("loadNetworkConfig", () => {
  let dir = "";
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "berth-netconf-"));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  test("a missing dir and an empty dir are FailedPrecondition", async () => {
    await assert.rejects(loadNetworkConfig(join(dir, "absent")), {
      kind: "FailedPrecondition",
      message: /no network config found in .*absent: directory does not exist/,
    });
    const empty = join(dir, "empty");
    await mkdir(empty);
    await assert.rejects(loadNetworkConfig(empty), {
      kind: "FailedPrecondition",
      message: `no network config found in ${empty}`,
    });
  });

  test("the first config file in lexical order wins; dotfiles and other extensions are ignored", async () => {
    const d = join(dir, "several");
    await mkdir(d);
    const conf = (name: string) => JSON.stringify({ cniVersion: "1.0.0", name, plugins: [bridge] });
    await writeFile(join(d, "30-c.conflist"), conf("c"));
    await writeFile(join(d, "20-b.conf"), JSON.stringify({ cniVersion: "1.0.0", name: "b", ...bridge }));
    await writeFile(join(d, "10-a.conflist.bak"), conf("a"));
    await writeFile(join(d, ".05-tmp.conflist"), "{");
    const list = await loadNetworkConfig(d);
    assert.equal(list.name, "b");
    assert.equal(list.source, join(d, "20-b.conf"));
  });

  test("a broken first file is reported, not skipped", async () => {
    const d = join(dir, "broken");
    await mkdir(d);
    await writeFile(join(d, "10-a.conflist"), "{nope");
    await writeFile(join(d, "20-b.conflist"), JSON.stringify({ cniVersion: "1.0.0", name: "b", plugins: [bridge] }));
    await assert.rejects(loadNetworkConfig(d), {
      kind: "InvalidArgument",
      message: new RegExp(`invalid network config ${join(d, "10-a.conflist")}: not JSON`),
    });
  });
});

describe("defaultConflist and pod cidrs", () => {
  test("the default is bridge (gateway, masquerade, hairpin) with host-local, then portmap", () => {
    const list = parseNetworkConfig(defaultConflist({ bridge: "br9", subnet: "10.9.0.0/16" }), "10-berth.conflist");
    assert.equal(list.name, "berth");
    assert.equal(list.berthDefault, true);
    assert.equal(list.cniVersion, "1.0.0");
    const [br, pm] = list.plugins;
    assert.equal(br?.type, "bridge");
    assert.equal(br?.bridge, "br9");
    assert.equal(br?.isGateway, true);
    assert.equal(br?.ipMasq, true);
    assert.equal(br?.hairpinMode, true);
    assert.equal(br?.forceAddress, true);
    assert.deepEqual(br?.ipam, {
      type: "host-local",
      ranges: [[{ subnet: "10.9.0.0/16" }]],
      routes: [{ dst: "0.0.0.0/0" }],
    });
    assert.deepEqual(pm, { type: "portmap", capabilities: { portMappings: true } });
    assert.equal(needsPodCidr(list), false);
  });

  test("a pod cidr replaces the default list's ranges, one range set per cidr, without touching the input", () => {
    const list = parseNetworkConfig(defaultConflist(), "10-berth.conflist");
    const applied = applyPodCidrs(list, ["10.244.1.0/24", "fd00:1::/64"]);
    assert.deepEqual(rangesOf(applied), [[{ subnet: "10.244.1.0/24" }], [{ subnet: "fd00:1::/64" }]]);
    assert.deepEqual(rangesOf(list), [[{ subnet: "10.88.0.0/16" }]]);
    assert.equal(applyPodCidrs(list, []), list);
  });

  test("the placeholder is substituted in any list, and without a cidr it is a FailedPrecondition", () => {
    const ipam = { type: "host-local", ranges: [[{ subnet: POD_CIDR_PLACEHOLDER }], [{ subnet: "fd00::/64" }]] };
    const list = parseNetworkConfig(
      JSON.stringify({ cniVersion: "1.0.0", name: "n", plugins: [{ type: "bridge", ipam }] }),
      "n.conflist",
    );
    assert.equal(needsPodCidr(list), true);
    assert.throws(() => applyPodCidrs(list, []), {
      kind: "FailedPrecondition",
      message: /uses \{\{podCidr\}\} but no pod cidr is set/,
    });
    const applied = applyPodCidrs(list, ["10.244.2.0/24"]);
    assert.deepEqual(rangesOf(applied), [[{ subnet: "10.244.2.0/24" }], [{ subnet: "fd00::/64" }]]);
  });

  test("other lists are left alone by a pod cidr", () => {
    const list = parseNetworkConfig(
      JSON.stringify({ cniVersion: "1.0.0", name: "n", plugins: [bridge] }),
      "n.conflist",
    );
    assert.deepEqual(applyPodCidrs(list, ["10.244.3.0/24"]).plugins, list.plugins);
  });
});
