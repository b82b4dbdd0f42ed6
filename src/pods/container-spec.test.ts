import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { isKind } from "../errdefs/index.js";
import { buildSpec } from "../oci/index.js";
import { pidNamespaceOpt, processEnv } from "./container-spec.js";
import type { NamespaceMode } from "./types.js";

const kv = (key: string, value: string) => ({ key, value });

describe("processEnv", () => {
  test("a terminal gets TERM=xterm; without one there is no TERM", () => {
    assert.ok(processEnv({ envs: [], tty: true }, {}, "h").includes("TERM=xterm"));
    assert.ok(!processEnv({ envs: [], tty: false }, {}, "h").some((e) => e.startsWith("TERM=")));
  });

  test("a TERM from the image or the container wins over the default", () => {
    const fromImage = processEnv({ envs: [], tty: true }, { Env: ["TERM=vt100"] }, "h");
    assert.deepEqual(
      fromImage.filter((e) => e.startsWith("TERM=")),
      ["TERM=vt100"],
    );
    const fromConfig = processEnv({ envs: [kv("TERM", "dumb")], tty: true }, { Env: ["TERM=vt100"] }, "h");
    assert.deepEqual(
      fromConfig.filter((e) => e.startsWith("TERM=")),
      ["TERM=dumb"],
    );
  });
});

describe("pidNamespaceOpt", () => {
  const pidNs = async (mode: NamespaceMode, podMode: NamespaceMode, path?: string) =>
    (await buildSpec(pidNamespaceOpt(mode, podMode, path))).linux?.namespaces?.find((n) => n.type === "pid");

  test("POD joins the infra's namespace in a pod that shares one, the host's in a host-PID pod, else a new one", async () => {
    assert.deepEqual(await pidNs("pod", "pod", "/proc/7/ns/pid"), { type: "pid", path: "/proc/7/ns/pid" });
    assert.equal(await pidNs("pod", "node"), undefined);
    assert.deepEqual(await pidNs("pod", "container"), { type: "pid" });
    assert.throws(
      () => pidNamespaceOpt("pod", "pod", undefined),
      (e) => isKind(e, "FailedPrecondition"),
    );
  });

  test("CONTAINER is a new namespace, NODE the host's, TARGET the target's", async () => {
    assert.deepEqual(await pidNs("container", "pod", "/proc/7/ns/pid"), { type: "pid" });
    assert.equal(await pidNs("node", "container"), undefined);
    assert.deepEqual(await pidNs("target", "container", "/proc/9/ns/pid"), { type: "pid", path: "/proc/9/ns/pid" });
    assert.throws(
      () => pidNamespaceOpt("target", "pod", undefined),
      (e) => isKind(e, "FailedPrecondition"),
    );
  });
});
