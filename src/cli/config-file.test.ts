import assert from "node:assert/strict";
import { test } from "node:test";
import { ContainerConfigSchema, NamespaceMode, PodSandboxConfigSchema } from "../api/gen/runtime/v1/api_pb.js";
import { parseMessage } from "./config-file.js";

test("crictl's snake_case JSON pod config decodes", () => {
  const text = JSON.stringify({
    metadata: { name: "nginx-sandbox", namespace: "default", attempt: 1, uid: "hdishd83djaidwnduwk28bcsb" },
    log_directory: "/tmp",
    port_mappings: [{ container_port: 80, host_port: 8080 }],
    linux: { security_context: { namespace_options: { network: 2 } } },
    labels: { app: "web" },
  });
  const c = parseMessage(PodSandboxConfigSchema, text, "pod-config.json");
  assert.equal(c.metadata?.name, "nginx-sandbox");
  assert.equal(c.metadata?.attempt, 1);
  assert.equal(c.logDirectory, "/tmp");
  assert.equal(c.portMappings[0]?.hostPort, 8080);
  assert.equal(c.linux?.securityContext?.namespaceOptions?.network, NamespaceMode.NODE);
  assert.deepEqual(c.labels, { app: "web" });
});

test("lowerCamelCase YAML with enum names decodes", () => {
  const text = [
    "metadata:",
    "  name: busybox",
    "image:",
    "  image: busybox:latest",
    "command: [sh, -c, 'echo hi']",
    "logPath: busybox.log",
    "linux:",
    "  resources:",
    "    memoryLimitInBytes: '67108864'",
    "  securityContext:",
    "    namespaceOptions:",
    "      pid: CONTAINER",
  ].join("\n");
  const c = parseMessage(ContainerConfigSchema, text, "container.yaml");
  assert.deepEqual(c.command, ["sh", "-c", "echo hi"]);
  assert.equal(c.logPath, "busybox.log");
  assert.equal(c.linux?.resources?.memoryLimitInBytes, 67108864n);
  assert.equal(c.linux?.securityContext?.namespaceOptions?.pid, NamespaceMode.CONTAINER);
});

test("an unknown field or bad syntax is an error naming the file", () => {
  assert.throws(
    () => parseMessage(PodSandboxConfigSchema, '{"metadata":{"nmae":"x"}}', "pod.json"),
    /^Error: pod\.json: .*nmae/,
  );
  assert.throws(() => parseMessage(PodSandboxConfigSchema, '{"metadata":', "pod.json"), /^Error: pod\.json: /);
  assert.throws(() => parseMessage(PodSandboxConfigSchema, "- a\n- b\n", "pod.yaml"), /pod\.yaml: expected an object/);
});

test("an empty file is an empty message", () => {
  assert.equal(parseMessage(PodSandboxConfigSchema, "", "empty.yaml").hostname, "");
});
