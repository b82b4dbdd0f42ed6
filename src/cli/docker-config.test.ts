import assert from "node:assert/strict";
import { mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { credentialsFor, dockerConfigPath, removeCredentials, storeCredentials } from "./docker-config.js";

describe("the docker config file", () => {
  let dir: string;
  let path: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "berth-docker-config-"));
    path = join(dir, "sub", "config.json");
  });
  after(() => rm(dir, { recursive: true, force: true }));

  test("its path is $DOCKER_CONFIG/config.json, else ~/.docker/config.json", () => {
    assert.equal(dockerConfigPath({ DOCKER_CONFIG: "/x" }), "/x/config.json");
    assert.equal(dockerConfigPath({ HOME: "/home/u" }), "/home/u/.docker/config.json");
  });

  test("stored credentials read back, the file is 0600 and other keys are kept", async () => {
    assert.equal(await credentialsFor("127.0.0.1:5000", path), undefined);
    await storeCredentials("127.0.0.1:5000", { username: "u", password: "p:w" }, path);
    const doc = JSON.parse(await readFile(path, "utf8")) as { auths: Record<string, { auth: string }> };
    doc.auths["other.example"] = { auth: Buffer.from("a:b").toString("base64") };
    await writeFile(path, JSON.stringify({ ...doc, psFormat: "x" }));
    await storeCredentials("docker.io", { username: "hub", password: "h" }, path);
    assert.equal((await stat(path)).mode & 0o777, 0o600);
    assert.deepEqual(await credentialsFor("127.0.0.1:5000", path), { username: "u", password: "p:w" });
    assert.deepEqual(await credentialsFor("index.docker.io", path), { username: "hub", password: "h" });
    const after = JSON.parse(await readFile(path, "utf8")) as Record<string, unknown>;
    assert.equal(after.psFormat, "x");
    assert.ok((after.auths as Record<string, unknown>)["https://index.docker.io/v1/"]);
    assert.equal(await removeCredentials("127.0.0.1:5000", path), true);
    assert.equal(await removeCredentials("127.0.0.1:5000", path), false);
    assert.equal(await credentialsFor("127.0.0.1:5000", path), undefined);
  });

  test("credential helpers are refused with a clear error", async () => {
    const p = join(dir, "helpers.json");
    await writeFile(p, JSON.stringify({ credHelpers: { "reg.example": "pass" } }));
    await assert.rejects(credentialsFor("reg.example", p), /docker-credential-pass, which berth does not run/);
    await writeFile(p, JSON.stringify({ credsStore: "desktop", auths: { "reg.example": {} } }));
    await assert.rejects(credentialsFor("reg.example", p), /docker-credential-desktop/);
  });
});
