import assert from "node:assert/strict";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { defaultHosts, isLocalhost, loadRegistryHosts, parseHostsToml } from "./hosts.js";

const where = { dir: "/etc/berth/certs.d/docker.io", registry: "docker.io" };

test("no configuration: docker.io is registry-1.docker.io over HTTPS, others their own host", () => {
  assert.deepEqual(defaultHosts("docker.io"), [
    {
      scheme: "https",
      host: "registry-1.docker.io",
      path: "/v2",
      capabilities: ["pull", "resolve", "push"],
      skipVerify: false,
      caFiles: [],
      clientPairs: [],
      header: {},
      httpFallback: false,
    },
  ]);
  const [q] = defaultHosts("quay.io");
  assert.equal(q?.host, "quay.io");
  assert.equal(q?.scheme, "https");
  assert.equal(q?.httpFallback, false);
});

test("localhost registries on any other port try HTTPS unverified, then fall back to plain HTTP", () => {
  for (const r of ["localhost:5000", "127.0.0.1:5000", "[::1]:5000", "127.0.0.2:1234"]) {
    const [h] = defaultHosts(r);
    assert.equal(h?.scheme, "https", r);
    assert.equal(h?.skipVerify, true, r);
    assert.equal(h?.httpFallback, true, r);
  }
  assert.equal(defaultHosts("localhost:80")[0]?.scheme, "http");
  assert.equal(defaultHosts("localhost")[0]?.httpFallback, false);
  assert.equal(defaultHosts("localhost:443")[0]?.httpFallback, false);
  assert.equal(defaultHosts("example.com:5000")[0]?.httpFallback, false);
  assert.ok(isLocalhost("[::1]") && isLocalhost("localhost") && !isLocalhost("localhost.example.com"));
});

test("mirrors come first in file order, the server last", () => {
  const hosts = parseHostsToml(
    `server = "https://registry-1.docker.io"

[host."https://mirror-b.example.com"]
  capabilities = ["pull", "resolve"]
  ca = "mirror.crt"
  skip_verify = false

[host."http://mirror-a.example.com:5000/some/path"]
  capabilities = ["pull"]

[host."https://odd.example.com/custom/api"]
  override_path = true
  client = [["/etc/certs/c.cert", "/etc/certs/c.key"], ["pem-with-key.pem", ""]]
  header = { x-a = "1", x-b = ["2", "3"] }
  dial_timeout = "1m30s"
`,
    where,
  );
  assert.deepEqual(
    hosts.map((h) => `${h.scheme}://${h.host}${h.path} ${h.capabilities.join(",")}`),
    [
      "https://mirror-b.example.com/v2 pull,resolve",
      "http://mirror-a.example.com:5000/some/path/v2 pull",
      "https://odd.example.com/custom/api pull,resolve,push",
      "https://registry-1.docker.io/v2 pull,resolve,push",
    ],
  );
  assert.deepEqual(hosts[0]?.caFiles, ["/etc/berth/certs.d/docker.io/mirror.crt"]);
  assert.deepEqual(hosts[2]?.clientPairs, [
    { cert: "/etc/certs/c.cert", key: "/etc/certs/c.key" },
    { cert: "/etc/berth/certs.d/docker.io/pem-with-key.pem" },
  ]);
  assert.deepEqual(hosts[2]?.header, { "x-a": ["1"], "x-b": ["2", "3"] });
  assert.equal(hosts[2]?.dialTimeoutMs, 90_000);
  assert.equal(hosts[1]?.httpFallback, false);
});

test("without server the upstream is the registry itself, with the root table's TLS settings", () => {
  const hosts = parseHostsToml(`ca = ["a.crt", "/abs/b.crt"]\nskip_verify = true\n`, {
    dir: "/c/r.io",
    registry: "r.io:5000",
  });
  assert.equal(hosts.length, 1);
  assert.equal(hosts[0]?.host, "r.io:5000");
  assert.deepEqual(hosts[0]?.caFiles, ["/c/r.io/a.crt", "/abs/b.crt"]);
  assert.equal(hosts[0]?.skipVerify, true);
});

test("an http:// host with TLS settings is tried with TLS first, then plain HTTP", () => {
  const [h] = parseHostsToml(`server = "http://r.example.com:5000"\nskip_verify = true\n`, where);
  assert.equal(h?.scheme, "https");
  assert.equal(h?.httpFallback, true);
  const [plain] = parseHostsToml(`server = "http://r.example.com:5000"\n`, where);
  assert.equal(plain?.scheme, "http");
  assert.equal(plain?.httpFallback, false);
});

test("a server without a scheme is HTTPS", () => {
  const [h] = parseHostsToml(`server = "r.example.com"\n`, where);
  assert.equal(`${h?.scheme}://${h?.host}${h?.path}`, "https://r.example.com/v2");
});

test("malformed hosts.toml is InvalidArgument naming the file and key", () => {
  assert.throws(() => parseHostsToml(`[host."https://m"]\ncapabilities = ["fly"]\n`, where), {
    name: "RuntimeError",
    message: 'hosts config /etc/berth/certs.d/docker.io/hosts.toml: host."https://m": unknown capability "fly"',
  });
  assert.throws(() => parseHostsToml(`server = 3\n`, where), /server must be a string/);
  assert.throws(() => parseHostsToml(`skip_verify = "yes"\n`, where), /skip_verify must be a boolean/);
  assert.throws(() => parseHostsToml(`server = \n`, where), /hosts config .*hosts.toml: /);
  assert.throws(() => parseHostsToml(`[host."https://m"]\ndial_timeout = "soon"\n`, where), /invalid duration "soon"/);
  for (const bad of ["0s", "0ms", "600h"])
    assert.throws(
      () => parseHostsToml(`[host."https://m"]\ndial_timeout = "${bad}"\n`, where),
      new RegExp(`dial_timeout: "${bad}" is out of range`),
    );
});

test("host directories: host_port_, host:port, then _default; certs.d files without hosts.toml", async () => {
  const root = await mkdtemp(join(tmpdir(), "berth-hosts-"));
  try {
    assert.deepEqual(await loadRegistryHosts(root, "quay.io"), defaultHosts("quay.io"));
    assert.deepEqual(await loadRegistryHosts("", "quay.io"), defaultHosts("quay.io"));

    await mkdir(join(root, "r.io:5000"));
    await writeFile(join(root, "r.io:5000", "hosts.toml"), `[host."https://m1"]\n`);
    assert.equal((await loadRegistryHosts(root, "r.io:5000"))[0]?.host, "m1");
    await mkdir(join(root, "r.io_5000_"));
    await writeFile(join(root, "r.io_5000_", "hosts.toml"), `[host."https://m2"]\n`);
    assert.equal((await loadRegistryHosts(root, "r.io:5000"))[0]?.host, "m2");

    await mkdir(join(root, "_default"));
    await writeFile(join(root, "_default", "hosts.toml"), `[host."https://everything-mirror"]\n`);
    const d = await loadRegistryHosts(`/nonexistent:${root}`, "quay.io");
    assert.deepEqual(
      d.map((h) => h.host),
      ["everything-mirror", "quay.io"],
    );

    await mkdir(join(root, "certs.example"));
    for (const f of ["ca.crt", "client.cert", "client.key", "other.cert"])
      await writeFile(join(root, "certs.example", f), "");
    const [c] = await loadRegistryHosts(root, "certs.example");
    assert.deepEqual(c?.caFiles, [join(root, "certs.example", "ca.crt")]);
    assert.deepEqual(c?.clientPairs, [
      { cert: join(root, "certs.example", "client.cert"), key: join(root, "certs.example", "client.key") },
      { cert: join(root, "certs.example", "other.cert") },
    ]);
  } finally {
    await rm(root, { recursive: true, force: true });
  }
});
