import assert from "node:assert/strict";
import { connect } from "node:net";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { Code } from "@connectrpc/connect";
import { NamespaceMode } from "../../src/api/gen/runtime/v1/api_pb.js";
import { isRoot } from "../support/berthd.js";
import {
  type ContainerConfigInit,
  grpcError,
  type Pod,
  type PodEnv,
  type SandboxConfigInit,
  shell,
  startPodEnv,
} from "../support/pods.js";
import { skipUnlessCi } from "../support/skip.js";

// An ID no object has: 64 hex digits, like berth's own.
const UNKNOWN = "f".repeat(64);

describe("CRI errors for pods and containers", {
  skip: skipUnlessCi(isRoot() ? false : "needs root (runc, conmon, CNI, mounts)"),
  timeout: 60_000,
}, () => {
  let env: PodEnv;
  let pod: Pod;
  let running: string;
  before(async () => {
    env = await startPodEnv({ bridge: "bte2e-er", subnet: "10.231.14.0/24", images: ["berth-test/busybox"] });
    pod = await env.runPod("errors");
    running = await env.startContainer(pod, shell(env, "sleeper", "exec sleep 3600"));
  });
  after(async () => {
    await env?.close();
  });

  test("every per-ID call with an unknown ID is NotFound naming the ID", async () => {
    const rt = env.d.client.runtime;
    const calls: [string, () => Promise<unknown>][] = [
      ["PodSandboxStatus", () => rt.podSandboxStatus({ podSandboxId: UNKNOWN })],
      ["StopPodSandbox", () => rt.stopPodSandbox({ podSandboxId: UNKNOWN })],
      [
        "CreateContainer",
        () => rt.createContainer({ podSandboxId: UNKNOWN, sandboxConfig: pod.config, config: shell(env, "x", "true") }),
      ],
      ["StartContainer", () => rt.startContainer({ containerId: UNKNOWN })],
      ["StopContainer", () => rt.stopContainer({ containerId: UNKNOWN, timeout: 1n })],
      ["ContainerStatus", () => rt.containerStatus({ containerId: UNKNOWN })],
      [
        "UpdateContainerResources",
        () => rt.updateContainerResources({ containerId: UNKNOWN, linux: { cpuShares: 512n } }),
      ],
      ["ReopenContainerLog", () => rt.reopenContainerLog({ containerId: UNKNOWN })],
      ["ExecSync", () => rt.execSync({ containerId: UNKNOWN, cmd: ["true"] })],
    ];
    for (const [rpc, call] of calls) {
      await assert.rejects(call(), grpcError(Code.NotFound, new RegExp(UNKNOWN.slice(0, 12))), rpc);
    }
  });

  test("RemoveContainer and RemovePodSandbox of an unknown ID succeed", async () => {
    await env.d.client.runtime.removeContainer({ containerId: UNKNOWN });
    await env.d.client.runtime.removePodSandbox({ podSandboxId: UNKNOWN });
  });

  test("ListContainers of an unknown sandbox is empty, not an error", async () => {
    assert.deepEqual((await env.d.client.runtime.listContainers({ filter: { podSandboxId: UNKNOWN } })).containers, []);
    assert.deepEqual((await env.d.client.runtime.listPodSandbox({ filter: { id: UNKNOWN } })).items, []);
  });

  test("CreateContainer of an image that is not present is NotFound naming the image", async () => {
    await assert.rejects(
      env.d.client.runtime.createContainer({
        podSandboxId: pod.id,
        sandboxConfig: pod.config,
        config: { metadata: { name: "absent" }, image: { image: "example.com/not/pulled:1" }, command: ["true"] },
      }),
      grpcError(Code.NotFound, /example\.com\/not\/pulled:1/),
    );
  });

  test("every call missing a required field is InvalidArgument", async () => {
    const rt = env.d.client.runtime;
    const image = { image: env.image("berth-test/busybox") };
    const calls: [string, () => Promise<unknown>][] = [
      ["RunPodSandbox without config", () => rt.runPodSandbox({})],
      ["RunPodSandbox without metadata", () => rt.runPodSandbox({ config: { hostname: "x" } })],
      ["RunPodSandbox without name", () => rt.runPodSandbox({ config: { metadata: { namespace: "e2e", uid: "u" } } })],
      ["RunPodSandbox without uid", () => rt.runPodSandbox({ config: { metadata: { name: "n", namespace: "e2e" } } })],
      ["RunPodSandbox without namespace", () => rt.runPodSandbox({ config: { metadata: { name: "n", uid: "u" } } })],
      ["StopPodSandbox without ID", () => rt.stopPodSandbox({})],
      ["RemovePodSandbox without ID", () => rt.removePodSandbox({})],
      ["PodSandboxStatus without ID", () => rt.podSandboxStatus({})],
      ["CreateContainer without sandbox ID", () => rt.createContainer({ config: { metadata: { name: "n" }, image } })],
      ["CreateContainer without config", () => rt.createContainer({ podSandboxId: pod.id, sandboxConfig: pod.config })],
      [
        "CreateContainer without name",
        () =>
          rt.createContainer({ podSandboxId: pod.id, sandboxConfig: pod.config, config: { image, command: ["true"] } }),
      ],
      [
        "CreateContainer without image",
        () =>
          rt.createContainer({
            podSandboxId: pod.id,
            sandboxConfig: pod.config,
            config: { metadata: { name: "n" }, command: ["true"] },
          }),
      ],
      ["StartContainer without ID", () => rt.startContainer({})],
      ["StopContainer without ID", () => rt.stopContainer({})],
      ["RemoveContainer without ID", () => rt.removeContainer({})],
      ["ContainerStatus without ID", () => rt.containerStatus({})],
      ["UpdateContainerResources without ID", () => rt.updateContainerResources({ linux: { cpuShares: 512n } })],
      ["UpdateContainerResources without resources", () => rt.updateContainerResources({ containerId: running })],
      ["ReopenContainerLog without ID", () => rt.reopenContainerLog({})],
      ["ExecSync without ID", () => rt.execSync({ cmd: ["true"] })],
      ["ExecSync without command", () => rt.execSync({ containerId: running })],
    ];
    for (const [what, call] of calls) await assert.rejects(call(), grpcError(Code.InvalidArgument), what);
    // Nothing was half-created by the refused calls.
    assert.equal((await rt.listPodSandbox({})).items.length, 1);
    assert.equal((await rt.listContainers({})).containers.length, 1);
  });

  test("fields that would reach host tools, files or paths are InvalidArgument naming the field", async () => {
    const rt = env.d.client.runtime;
    const podConfig = (extra: SandboxConfigInit): SandboxConfigInit => ({
      metadata: { name: "hostile", namespace: "e2e", uid: "uid-hostile", attempt: 0 },
      logDirectory: join(env.dir, "logs", "hostile"),
      ...extra,
    });
    const hostNetwork = { securityContext: { namespaceOptions: { network: NamespaceMode.NODE } } };
    const before = (await rt.listPodSandbox({})).items.length;
    const pods: [string, RegExp, () => Promise<unknown>][] = [
      [
        "hostname as an option",
        /config\.hostname "-F\/etc\/x"/,
        () => rt.runPodSandbox({ config: podConfig({ hostname: "-F/etc/x" }) }),
      ],
      [
        "a host-global sysctl",
        /kernel\.core_pattern.*not a namespaced sysctl/,
        () => rt.runPodSandbox({ config: podConfig({ linux: { sysctls: { "kernel.core_pattern": "|/tmp/x" } } }) }),
      ],
      [
        "net.* with the host network",
        /net\.ipv4\.ip_forward.*host network/,
        () =>
          rt.runPodSandbox({
            config: podConfig({ linux: { ...hostNetwork, sysctls: { "net.ipv4.ip_forward": "1" } } }),
          }),
      ],
      [
        "a runtime handler that climbs out of its directory",
        /runtime_handler "\.\.\/runc": not a valid handler name/,
        () => rt.runPodSandbox({ config: podConfig({}), runtimeHandler: "../runc" }),
      ],
      [
        "a DNS search domain that adds a resolv.conf line",
        /config\.dns_config\.searches/,
        () => rt.runPodSandbox({ config: podConfig({ dnsConfig: { searches: ["svc\nnameserver 6.6.6.6"] } }) }),
      ],
      [
        "a cgroup parent with '..'",
        /config\.linux\.cgroup_parent/,
        () => rt.runPodSandbox({ config: podConfig({ linux: { cgroupParent: "/berth/../../escape" } }) }),
      ],
    ];
    for (const [what, re, call] of pods) await assert.rejects(call(), grpcError(Code.InvalidArgument, re), what);
    assert.equal((await rt.listPodSandbox({})).items.length, before, "no sandbox was created");

    const containers = (await rt.listContainers({})).containers.length;
    const create = (extra: ContainerConfigInit) =>
      rt.createContainer({
        podSandboxId: pod.id,
        sandboxConfig: pod.config,
        config: { ...shell(env, "bad", "true"), ...extra },
      });
    await assert.rejects(
      create({ logPath: "../../../etc/cron.d/x" }),
      grpcError(Code.InvalidArgument, /config\.log_path/),
    );
    await assert.rejects(create({ command: ["sh\0-c"] }), grpcError(Code.InvalidArgument, /config\.command\[0\]/));
    await assert.rejects(
      rt.execSync({ containerId: running, cmd: ["echo", "a\0b"] }),
      grpcError(Code.InvalidArgument, /cmd\[1\]: holds a NUL/),
    );
    assert.equal((await rt.listContainers({})).containers.length, containers, "no container was created");
  });

  test("hostile HTTP/2 clients on the CRI socket are cut off and berthd keeps serving", async () => {
    const preface = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
    const frame = (type: number, flags: number, streamId: number, length: number) => {
      const head = Buffer.alloc(9);
      head.writeUIntBE(length, 0, 3);
      head[3] = type;
      head[4] = flags;
      head.writeUInt32BE(streamId, 5);
      return Buffer.concat([head, Buffer.alloc(length, 0x61)]);
    };
    const settings = frame(4, 0, 0, 0);
    // A fresh client meanwhile, to show other connections keep working during the attack.
    const attacks: [string, Buffer[]][] = [
      [
        "endless CONTINUATION",
        [preface, settings, frame(1, 0, 1, 16_000), ...Array.from({ length: 2000 }, () => frame(9, 0, 1, 16_000))],
      ],
      ["a 16 MiB frame length", [preface, settings, frame(0, 0, 1, 0xff_ffff).subarray(0, 9)]],
      ["a garbage preface", [Buffer.from("GET / HTTP/1.1\r\nHost: berth\r\n\r\n")]],
    ];
    for (const [what, chunks] of attacks) {
      const sock = connect(env.d.socket);
      sock.on("error", () => undefined);
      sock.resume();
      const closed = new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`${what}: connection still open after 10 s`)), 10_000);
        sock.once("close", () => {
          clearTimeout(timer);
          resolve();
        });
      });
      for (const c of chunks) {
        if (sock.destroyed || sock.writableEnded) break;
        if (!sock.write(c)) await Promise.race([new Promise((r) => sock.once("drain", r)), closed]);
      }
      assert.equal((await env.d.client.runtime.version({})).runtimeName, "berth", what);
      await closed;
    }
    assert.equal(env.d.child.exitCode, null, "berthd is still running");
    assert.ok((await env.d.client.runtime.listPodSandbox({})).items.some((p) => p.id === pod.id));
    assert.match(env.d.stderr(), /cri connection refused/);
  });

  test("a pod asking for its own user namespace is Unimplemented and nothing is created (not run as host root)", async () => {
    const rt = env.d.client.runtime;
    const before = (await rt.listPodSandbox({})).items.length;
    const usernsOptions = { mode: NamespaceMode.POD, uids: [{ hostId: 200000, containerId: 0, length: 65536 }] };
    await assert.rejects(
      rt.runPodSandbox({
        config: {
          metadata: { name: "userns", namespace: "e2e", uid: "uid-userns", attempt: 0 },
          logDirectory: join(env.dir, "logs", "userns"),
          linux: { securityContext: { namespaceOptions: { usernsOptions } } },
        },
      }),
      grpcError(Code.Unimplemented, /userns_options: mode POD/),
    );
    assert.equal((await rt.listPodSandbox({})).items.length, before);
  });

  test("StartContainer of a running container is FailedPrecondition", async () => {
    await assert.rejects(
      env.d.client.runtime.startContainer({ containerId: running }),
      grpcError(Code.FailedPrecondition),
    );
  });

  test("CreateContainer in a stopped sandbox is refused", async () => {
    const stopped = await env.runPod("stopped");
    await env.d.client.runtime.stopPodSandbox({ podSandboxId: stopped.id });
    await assert.rejects(
      env.d.client.runtime.createContainer({
        podSandboxId: stopped.id,
        sandboxConfig: stopped.config,
        config: shell(env, "late", "true"),
      }),
      grpcError(Code.FailedPrecondition, new RegExp(stopped.id)),
    );
    await env.removePod(stopped);
  });

  test("none of the failed calls crashed or wedged the daemon", async () => {
    assert.equal(env.d.child.exitCode, null);
    assert.equal((await env.d.client.runtime.version({})).runtimeName, "berth");
    const r = await env.d.client.runtime.execSync({ containerId: running, cmd: ["echo", "alive"] });
    assert.equal(new TextDecoder().decode(r.stdout), "alive\n");
    assert.doesNotMatch(env.d.stderr(), /"level":(50|60)/, "no error-level log lines");
  });
});
