import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import {
  ContainerConfigSchema,
  type LinuxContainerSecurityContextSchema,
  NamespaceMode,
  PodSandboxConfigSchema,
} from "../api/gen/runtime/v1/api_pb.js";
import { isKind } from "../errdefs/index.js";
import { toContainerConfig, toSandboxConfig } from "./convert.js";

type SecurityContextInit = MessageInitShape<typeof LinuxContainerSecurityContextSchema>;

const sandbox = toSandboxConfig(create(PodSandboxConfigSchema, { metadata: { name: "p", namespace: "n", uid: "u" } }));
const container = (securityContext?: SecurityContextInit) =>
  toContainerConfig(
    create(ContainerConfigSchema, {
      metadata: { name: "c" },
      image: { image: "busybox" },
      ...(securityContext ? { linux: { securityContext } } : {}),
    }),
    sandbox,
  );
const invalid = (re: RegExp) => (e: unknown) => isKind(e, "InvalidArgument") && re.test(String(e));

describe("toContainerConfig", () => {
  test("run_as_group without run_as_user or run_as_username is InvalidArgument", () => {
    assert.throws(() => container({ runAsGroup: { value: 5n } }), invalid(/user group "5" is specified without user/));
    assert.equal(container({ runAsGroup: { value: 5n }, runAsUser: { value: 0n } }).runAsGroup, 5);
    assert.equal(container({ runAsGroup: { value: 5n }, runAsUsername: "nobody" }).runAsGroup, 5);
  });

  test("legacy seccomp and AppArmor profile strings map to profiles; anything else is InvalidArgument", () => {
    assert.deepEqual(container({ seccompProfilePath: "runtime/default" }).seccomp, {
      type: "runtime-default",
      localhostRef: "",
    });
    assert.deepEqual(container({ seccompProfilePath: "docker/default" }).seccomp?.type, "runtime-default");
    assert.deepEqual(container({ seccompProfilePath: "unconfined" }).seccomp?.type, "unconfined");
    assert.deepEqual(container({ seccompProfilePath: "localhost/profiles/a.json" }).seccomp, {
      type: "localhost",
      localhostRef: "profiles/a.json",
    });
    assert.equal(container({ seccompProfilePath: "" }).seccomp, undefined);
    assert.throws(
      () => container({ seccompProfilePath: "/etc/seccomp.json" }),
      invalid(/unsupported seccomp profile "\/etc\/seccomp.json"/),
    );
    assert.equal(container({ apparmorProfile: "unconfined" }).apparmor?.type, "unconfined");
    assert.throws(
      () => container({ apparmorProfile: "my-profile" }),
      invalid(/unsupported apparmor profile "my-profile"/),
    );
    assert.throws(
      () =>
        toSandboxConfig(
          create(PodSandboxConfigSchema, {
            metadata: { name: "p", namespace: "n", uid: "u" },
            linux: { securityContext: { seccompProfilePath: "bogus" } },
          }),
        ),
      invalid(/unsupported seccomp profile "bogus"/),
    );
  });

  test("a container's unset PID mode is POD, the CRI zero value, with or without namespace options", () => {
    assert.equal(container().namespaces.pid, "pod");
    assert.equal(container({ namespaceOptions: { network: NamespaceMode.POD } }).namespaces.pid, "pod");
    assert.equal(container({ namespaceOptions: { pid: NamespaceMode.CONTAINER } }).namespaces.pid, "container");
  });
});

describe("toSandboxConfig", () => {
  test("a pod without namespace options gets no shared PID namespace; an explicit zero value is POD", () => {
    assert.equal(sandbox.namespaces.pid, "container");
    const withOptions = toSandboxConfig(
      create(PodSandboxConfigSchema, {
        metadata: { name: "p", namespace: "n", uid: "u" },
        linux: { securityContext: { namespaceOptions: { network: NamespaceMode.NODE } } },
      }),
    );
    assert.equal(withOptions.namespaces.pid, "pod");
  });
});

describe("user namespaces", () => {
  const userns = { mode: NamespaceMode.POD, uids: [{ hostId: 100000, containerId: 0, length: 65536 }] };
  const unsupported = (e: unknown) => isKind(e, "Unimplemented") && /userns_options: mode POD/.test(String(e));

  test("a pod or container asking for its own user namespace is refused, never run as host root", () => {
    assert.throws(
      () =>
        toSandboxConfig(
          create(PodSandboxConfigSchema, {
            metadata: { name: "p", namespace: "n", uid: "u" },
            linux: { securityContext: { namespaceOptions: { usernsOptions: userns } } },
          }),
        ),
      unsupported,
    );
    assert.throws(() => container({ namespaceOptions: { usernsOptions: userns } }), unsupported);
  });

  test("mode NODE (the host's user namespace) and no userns_options are accepted", () => {
    const node = { namespaceOptions: { usernsOptions: { mode: NamespaceMode.NODE } } };
    assert.equal(container(node).namespaces.network, "pod");
    assert.equal(container({ namespaceOptions: {} }).namespaces.network, "pod");
  });
});
