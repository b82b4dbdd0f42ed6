import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import {
  ContainerConfigSchema,
  NamespaceMode,
  PodSandboxConfigSchema,
  type Protocol,
} from "../api/gen/runtime/v1/api_pb.js";
import { isKind } from "../errdefs/index.js";
import { toContainerConfig, toSandboxConfig } from "./convert.js";
import {
  validateContainerConfig,
  validateHostname,
  validateRuntimeHandler,
  validateSandboxConfig,
  validateSysctls,
} from "./validate.js";

type PodInit = MessageInitShape<typeof PodSandboxConfigSchema>;
type ContainerInit = MessageInitShape<typeof ContainerConfigSchema>;
const bytes = (s: string) => new TextEncoder().encode(s);

const invalid = (re: RegExp) => (e: unknown) => isKind(e, "InvalidArgument") && re.test(String(e));
const pod = (init: PodInit = {}) =>
  toSandboxConfig(
    create(PodSandboxConfigSchema, { metadata: { name: "p", namespace: "n", uid: "u" }, ...init } as PodInit),
  );
const podNs = (network: NamespaceMode, ipc: NamespaceMode) =>
  pod({ linux: { securityContext: { namespaceOptions: { network, ipc, pid: NamespaceMode.CONTAINER } } } }).namespaces;
const container = (init: ContainerInit = {}) =>
  toContainerConfig(
    create(ContainerConfigSchema, { metadata: { name: "c" }, image: { image: "busybox" }, ...init } as ContainerInit),
    pod(),
  );

describe("hostname", () => {
  test("RFC 1123 names and empty pass", () => {
    for (const h of ["", "web-1", "a", "node1.example.com", "A1", "x".repeat(63)]) validateHostname(h);
  });
  test("an option, a path, spaces, newlines, a leading or trailing hyphen or over 64 characters are InvalidArgument", () => {
    for (const h of ["-F/etc/x", "-b", "a/b", "a b", "a\nb", "web-", "-web", "a..b", ".a", "a_b", "x".repeat(65)]) {
      assert.throws(() => validateHostname(h), invalid(/config\.hostname .*RFC 1123/), h);
    }
  });
});

describe("sysctls", () => {
  const own = podNs(NamespaceMode.POD, NamespaceMode.POD);
  test("namespaced sysctls pass when the pod has its own namespaces", () => {
    validateSysctls(
      {
        "kernel.shm_rmid_forced": "1",
        "kernel.shmmax": "1000",
        "kernel.msgmax": "1",
        "kernel.sem": "250\t32000 32 128",
        "fs.mqueue.msg_max": "10",
        "net.ipv4.ip_unprivileged_port_start": "0",
        "net/ipv4/conf/eth0.100/forwarding": "1",
        "kernel.domainname": "example",
      },
      own,
    );
  });
  test("host-global sysctls are InvalidArgument naming the key", () => {
    for (const key of [
      "kernel.core_pattern",
      "vm.overcommit_memory",
      "kernel.hostname",
      "fs.file-max",
      "kernel.modprobe",
    ]) {
      assert.throws(() => validateSysctls({ [key]: "1" }, own), invalid(new RegExp(key.replace(/\./g, "\\."))), key);
    }
  });
  test("net.* with the host network and IPC ones with host IPC are refused", () => {
    const hostNet = podNs(NamespaceMode.NODE, NamespaceMode.POD);
    assert.throws(() => validateSysctls({ "net.ipv4.ip_forward": "1" }, hostNet), invalid(/host network/));
    assert.throws(() => validateSysctls({ "kernel.domainname": "x" }, hostNet), invalid(/not a namespaced/));
    validateSysctls({ "kernel.shmmax": "1" }, hostNet);
    const hostIpc = podNs(NamespaceMode.POD, NamespaceMode.NODE);
    for (const key of ["kernel.shmmax", "kernel.msgmnb", "kernel.sem", "fs.mqueue.queues_max"]) {
      assert.throws(() => validateSysctls({ [key]: "1" }, hostIpc), invalid(/host IPC/), key);
    }
    validateSysctls({ "net.core.somaxconn": "1024" }, hostIpc);
  });
  test("path tricks and control characters in values are refused", () => {
    for (const key of ["net/../kernel/core_pattern", "net..ipv4", "net.ipv4/../../x", "net.a b", "", "net./"]) {
      assert.throws(() => validateSysctls({ [key]: "1" }, own), invalid(/not a sysctl name/), key);
    }
    assert.throws(() => validateSysctls({ "net.core.somaxconn": "1\n2" }, own), invalid(/control characters/));
  });
});

describe("runtime handler", () => {
  test("empty and configured names pass; unknown ones are refused", () => {
    validateRuntimeHandler("", ["runc"]);
    validateRuntimeHandler("runc", ["runc", "crun"]);
    assert.throws(() => validateRuntimeHandler("kata", ["runc"]), invalid(/"kata": no such handler/));
  });
  test("names unsafe as path components are refused before the lookup", () => {
    for (const name of ["../runc", "a/b", "..", ".", "-x", "a\0b", "x".repeat(65)]) {
      assert.throws(() => validateRuntimeHandler(name, [name]), invalid(/not a valid handler name/), name);
    }
  });
});

describe("pod sandbox config", () => {
  test("a normal pod passes", () => {
    validateSandboxConfig(
      pod({
        hostname: "web-1",
        logDirectory: "/var/log/pods/n_p_u",
        dnsConfig: { servers: ["10.96.0.10", "fd00::a"], searches: ["n.svc.cluster.local"], options: ["ndots:5"] },
        portMappings: [{ containerPort: 80, hostPort: 8080, hostIp: "127.0.0.1" }],
        linux: { cgroupParent: "/kubepods/besteffort/podu" },
      }),
    );
  });
  test("resolv.conf injection through DNS servers, searches or options is refused", () => {
    const cases: [PodInit["dnsConfig"], RegExp][] = [
      [{ servers: ["1.1.1.1\nnameserver 6.6.6.6"] }, /servers: .* not an IP/],
      [{ servers: ["dns.example"] }, /servers: .* not an IP/],
      [{ searches: ["a.svc\nnameserver 6.6.6.6"] }, /searches: .* not one word/],
      [{ searches: ["a b"] }, /searches/],
      [{ options: ["ndots:5\nnameserver 6.6.6.6"] }, /options: .* not one word/],
      [{ searches: Array.from({ length: 33 }, (_, i) => `s${i}`) }, /more than 32/],
    ];
    for (const [dnsConfig, re] of cases) assert.throws(() => validateSandboxConfig(pod({ dnsConfig })), invalid(re));
  });
  test("paths with '..', relative log directories, bad ports and host IPs, names with '/' are refused", () => {
    const cases: [PodInit, RegExp][] = [
      [{ logDirectory: "/var/log/pods/../../etc" }, /config\.log_directory .* "\.\." component/],
      [{ logDirectory: "var/log" }, /config\.log_directory .* not absolute/],
      [{ linux: { cgroupParent: "/kubepods/../../x" } }, /config\.linux\.cgroup_parent/],
      [{ linux: { cgroupParent: "/kubepods\n" } }, /control characters/],
      [{ portMappings: [{ containerPort: 70000 }] }, /container_port 70000/],
      [{ portMappings: [{ containerPort: 80, hostPort: -1 }] }, /host_port -1/],
      [{ portMappings: [{ containerPort: 80, hostIp: "0.0.0.0 -j ACCEPT" }] }, /host_ip/],
      [{ portMappings: [{ containerPort: 80, protocol: 7 as Protocol }] }, /protocol 7: unknown/],
      [{ metadata: { name: "a/b", namespace: "n", uid: "u" } }, /config\.metadata\.name/],
      [{ metadata: { name: "a", namespace: "n\0", uid: "u" } }, /config\.metadata\.namespace/],
    ];
    for (const [init, re] of cases) assert.throws(() => validateSandboxConfig(pod(init)), invalid(re), re.source);
  });
});

describe("container config", () => {
  test("a normal container passes", () => {
    validateContainerConfig(
      container({
        command: ["sh", "-c"],
        args: ["echo hi"],
        envs: [{ key: "A", value: bytes("b=c") }],
        workingDir: "/srv",
        logPath: "c/0.log",
      }),
    );
  });
  test("NUL in argv or env, '=' in env keys, relative working dirs and log paths with '..' are refused", () => {
    const cases: [ContainerInit, RegExp][] = [
      [{ command: ["sh\0x"] }, /config\.command\[0\]: holds a NUL/],
      [{ args: ["ok", "a\0"] }, /config\.args\[1\]/],
      [{ envs: [{ key: "A=B", value: bytes("x") }] }, /config\.envs\[0\]/],
      [{ envs: [{ key: "", value: bytes("x") }] }, /config\.envs\[0\]/],
      [{ workingDir: "srv" }, /config\.working_dir/],
      [{ logPath: "../../etc/cron.d/x" }, /config\.log_path .* "\.\."/],
      [{ logPath: "c/0.log\0" }, /config\.log_path/],
      [{ metadata: { name: "a/b" } }, /config\.metadata\.name/],
    ];
    for (const [init, re] of cases)
      assert.throws(() => validateContainerConfig(container(init)), invalid(re), re.source);
  });
});
