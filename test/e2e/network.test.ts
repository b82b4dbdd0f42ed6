/**
 * Pod networking end to end (issue #5): a real berthd driving Debian's CNI plugins (bridge, host-local, portmap,
 * bandwidth) on bridges and private /24s (10.231.21-28.0/24) no other test file uses. All traffic stays on
 * loopback and inside the pods' namespaces.
 *
 * Two daemons:
 * - "bridge network": berth's default conflist (bridge `bte2e-net0`, 10.231.21.0/24); pods talk to each other
 *   and to a hostPort on 127.0.0.1, and are checked for leftovers after stop/remove and after a SIGKILL + restart.
 * - "conf dir changes": starts with an empty conf dir and a private plugin dir first in `bin_dirs` holding
 *   shell-script plugins (fail ADD, fail everything, hang, record what they were given) and a 6 s plugin
 *   timeout; conflists are swapped in and out to check NetworkReady, broken configurations, a crash mid-ADD,
 *   the timeout, `{{podCidr}}` and ipRanges, the CNI arguments and capabilities, and the bandwidth plugin.
 *
 * Each daemon gets one temp dir (`<dir>/cni` conf dir, `<dir>/ipam` host-local's dataDir, `<dir>/logs`); cleanup
 * removes every pod through CRI, stops the daemon, deletes the bridges and the directory, and at the end
 * portmap's shared CNI-HOSTPORT-* chains if this run created them and no pod uses them.
 */
import assert from "node:assert/strict";
import { chmod, mkdir, mkdtemp, readdir, readFile, rename, rm, writeFile } from "node:fs/promises";
import { connect, createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import {
  type ContainerConfigSchema,
  NamespaceMode,
  type PodSandboxConfig,
  type PodSandboxConfigSchema,
  Protocol,
} from "../../src/api/gen/runtime/v1/api_pb.js";
import { defaultConflist, POD_CIDR_PLACEHOLDER } from "../../src/network/index.js";
import { run, runUnchecked } from "../../src/sys/index.js";
import { pathExists } from "../../src/util/index.js";
import { isRoot, removeAllPods, removeTestDir, startBerthd, type TestDaemon } from "../support/berthd.js";
import { ensureFixtureRegistry, type FixtureRegistry } from "../support/fixtures.js";
import { skipUnlessCi } from "../support/skip.js";

type SandboxConfigInit = MessageInitShape<typeof PodSandboxConfigSchema>;
type ContainerConfigInit = MessageInitShape<typeof ContainerConfigSchema>;
/** What a test may add to the sandbox config `runPod` builds. */
type SandboxExtra = Pick<
  Exclude<SandboxConfigInit, PodSandboxConfig>,
  "portMappings" | "dnsConfig" | "linux" | "annotations"
>;

const NOT_READY = "NetworkPluginNotReady";

describe("pod networking", {
  skip: skipUnlessCi(isRoot() ? false : "needs root (CNI plugins, netns, iptables, runc)"),
}, () => {
  let reg: FixtureRegistry;
  let chainsBefore: Set<string>;
  const latencies: number[] = [];

  before(async () => {
    chainsBefore = await iptablesChains();
    reg = await ensureFixtureRegistry();
  });
  after(async () => {
    await removeNewChains(chainsBefore);
    await reg?.stop();
    if (latencies.length > 0) {
      const sorted = [...latencies].sort((a, b) => a - b);
      console.error(
        `# RunPodSandbox with CNI (ms): n=${sorted.length} min=${sorted[0]} median=${sorted[Math.floor(sorted.length / 2)]} max=${sorted.at(-1)}`,
      );
    }
  });

  const busybox = () => `${reg.plain.host}/berth-test/busybox:latest`;
  const web = () => `${reg.plain.host}/berth-test/web:latest`;

  describe("bridge network", () => {
    const BRIDGE = "bte2e-net0";
    const NAME = "bte2e-net";
    const SUBNET = /^10\.231\.21\.\d+$/;
    let env: Env;

    before(async () => {
      env = await startEnv({ bridges: [BRIDGE], latencies });
      await env.useConf(
        "10-net.conflist",
        defaultConflist({ bridge: BRIDGE, subnet: "10.231.21.0/24", name: NAME, ipamDataDir: env.ipam }),
      );
      await env.waitReady(true);
      for (const image of [busybox(), web()]) await env.d.client.image.pullImage({ image: { image } });
    });
    after(async () => {
      await env?.close();
    });

    test("two pods on the bridge reach each other by IP; status IP is eth0's; loopback is up", async () => {
      const server = await env.runPod("web");
      const client = await env.runPod("client");
      const serverC = await env.startContainer(server, { metadata: { name: "web" }, image: { image: web() } });
      const clientC = await env.startContainer(client, sleeper(busybox()));
      const serverIp = await env.podIp(server.id);
      const clientIp = await env.podIp(client.id);
      assert.match(serverIp, SUBNET);
      assert.match(clientIp, SUBNET);
      assert.notEqual(serverIp, clientIp);

      // PodSandboxStatus.network.ip is the address on the pod's eth0.
      for (const [c, ip] of [
        [serverC, serverIp],
        [clientC, clientIp],
      ] as const) {
        const addr = await env.exec(c, "ip -4 -o addr show eth0");
        assert.match(addr.out, new RegExp(`inet ${reEscape(ip)}/24 `), addr.out);
        const lo = await env.exec(c, "ip -o link show lo; ip -4 -o addr show lo");
        assert.match(lo.out, /<LOOPBACK,UP,LOWER_UP>/, lo.out);
        assert.match(lo.out, /inet 127\.0\.0\.1\/8 /, lo.out);
      }
      // Loopback actually carries traffic: the web pod reaches its own server on 127.0.0.1.
      await eventually("httpd to listen", async () =>
        (await httpGetIn(env, serverC, "127.0.0.1")).includes("hello from berth"),
      );
      const reply = await httpGetIn(env, clientC, serverIp);
      assert.match(reply, /^HTTP\/1\.[01] 200/);
      assert.match(reply, /hello from berth/);

      await env.removePod(client);
      await env.removePod(server);
    });

    test("a hostPort on 127.0.0.1 reaches the pod's containerPort from the host", async () => {
      const hostPort = await freePort();
      const pod = await env.runPod("hostport", {
        portMappings: [{ protocol: Protocol.TCP, containerPort: 80, hostPort, hostIp: "127.0.0.1" }],
      });
      const c = await env.startContainer(pod, { metadata: { name: "web" }, image: { image: web() } });
      await eventually("httpd to listen", async () =>
        (await httpGetIn(env, c, "127.0.0.1")).includes("hello from berth"),
      );
      const reply = await httpGetFromHost("127.0.0.1", hostPort);
      assert.match(reply, /^HTTP\/1\.[01] 200/);
      assert.match(reply, /hello from berth/);
      // hostIp is honoured: the DNAT matches 127.0.0.1 only.
      const ip = await env.podIp(pod.id);
      assert.match(
        await iptablesSave(),
        new RegExp(
          `-d 127\\.0\\.0\\.1/32 -p tcp -m tcp --dport ${hostPort} -j DNAT --to-destination ${reEscape(ip)}:80`,
        ),
      );

      await env.removePod(pod);
      assert.doesNotMatch(await iptablesSave(), new RegExp(`--dport ${hostPort}\\b`), "the hostPort DNAT rule is gone");
      await assert.rejects(httpGetFromHost("127.0.0.1", hostPort), "nothing answers on the hostPort any more");
    });

    test("a port mapping without a host port (a declared containerPort) starts the pod and maps nothing", async () => {
      const pod = await env.runPod("nohostport", {
        portMappings: [
          { protocol: Protocol.TCP, containerPort: 80, hostPort: 0 },
          { protocol: Protocol.UDP, containerPort: 53 },
        ],
      });
      const ip = await env.podIp(pod.id);
      assert.match(ip, SUBNET);
      assert.doesNotMatch(await iptablesSave(), new RegExp(`--to-destination ${reEscape(ip)}:`), "no DNAT rule");
      await env.removePod(pod);
    });

    test("DNSConfig servers, searches and options land in the pod's /etc/resolv.conf", async () => {
      const pod = await env.runPod("dns", {
        dnsConfig: {
          servers: ["10.96.0.10", "10.96.0.11"],
          searches: ["ns1.svc.cluster.local", "svc.cluster.local"],
          options: ["ndots:5", "timeout:2"],
        },
      });
      const c = await env.startContainer(pod, sleeper(busybox()));
      const { out } = await env.exec(c, "cat /etc/resolv.conf");
      assert.equal(
        out,
        "nameserver 10.96.0.10\nnameserver 10.96.0.11\nsearch ns1.svc.cluster.local svc.cluster.local\noptions ndots:5 timeout:2\n",
      );
      await env.removePod(pod);
    });

    test("stop and remove leave no veth, netns, IP reservation or iptables rule; StopPodSandbox is idempotent", async () => {
      const hostPort = await freePort();
      const pod = await env.runPod("leftovers", {
        portMappings: [{ protocol: Protocol.TCP, containerPort: 80, hostPort, hostIp: "127.0.0.1" }],
      });
      const ip = await env.podIp(pod.id);
      const traces = await env.traces(pod.id, ip, NAME);
      assert.ok(traces.veth, "the pod has a veth on the host");
      assert.ok(traces.netns && traces.reservation && traces.iptables, JSON.stringify(traces));

      await env.d.client.runtime.stopPodSandbox({ podSandboxId: pod.id });
      assert.deepEqual(await env.traces(pod.id, ip, NAME, traces.veth), NO_TRACES, "after StopPodSandbox");
      assert.deepEqual(await bridgePorts(BRIDGE), []);
      assert.equal((await env.d.client.runtime.podSandboxStatus({ podSandboxId: pod.id })).status?.network?.ip, "");
      await env.d.client.runtime.stopPodSandbox({ podSandboxId: pod.id });
      await env.d.client.runtime.removePodSandbox({ podSandboxId: pod.id });
      await env.d.client.runtime.stopPodSandbox({ podSandboxId: pod.id }).catch((err: unknown) => {
        // After removal the kubelet tolerates NotFound, as containerd returns it.
        assert.ok(err instanceof ConnectError && err.code === Code.NotFound, String(err));
      });
      assert.deepEqual(await env.traces(pod.id, ip, NAME, traces.veth), NO_TRACES, "after RemovePodSandbox");
    });

    test("StopPodSandbox after a berthd SIGKILL and restart deletes from the cached result", async () => {
      const hostPort = await freePort();
      const pod = await env.runPod("restart", {
        portMappings: [{ protocol: Protocol.TCP, containerPort: 80, hostPort, hostIp: "127.0.0.1" }],
      });
      const ip = await env.podIp(pod.id);
      const was = await env.traces(pod.id, ip, NAME);
      assert.ok(was.veth && was.netns && was.reservation && was.iptables, JSON.stringify(was));

      // The conf dir is emptied while berthd is down: DEL can only use what the ADD cached.
      await env.restart(async () => {
        await rename(join(env.cni, "10-net.conflist"), join(env.dir, "10-net.conflist.away"));
      });
      await env.waitReady(false);
      assert.equal(await env.podIp(pod.id), ip, "the pod keeps its IP across the restart");
      await env.d.client.runtime.stopPodSandbox({ podSandboxId: pod.id });
      assert.deepEqual(await env.traces(pod.id, ip, NAME, was.veth), NO_TRACES);
      assert.deepEqual(await bridgePorts(BRIDGE), []);
      await env.d.client.runtime.stopPodSandbox({ podSandboxId: pod.id });
      await env.d.client.runtime.removePodSandbox({ podSandboxId: pod.id });

      await rename(join(env.dir, "10-net.conflist.away"), join(env.cni, "10-net.conflist"));
      await env.waitReady(true);
    });

    test("a pod whose netns pin was unmounted (a container still in it) is stopped and removed, leaving nothing", async () => {
      const hostPort = await freePort();
      const pod = await env.runPod("unpinned", {
        portMappings: [{ protocol: Protocol.TCP, containerPort: 80, hostPort, hostIp: "127.0.0.1" }],
      });
      await env.startContainer(pod, sleeper(busybox()));
      const ip = await env.podIp(pod.id);
      const was = await env.traces(pod.id, ip, NAME);
      assert.ok(was.veth && was.netns && was.reservation && was.iptables, JSON.stringify(was));

      // An admin (or a reboot with the state dir on tmpfs) unmounts the pin: the file stays, but it is
      // no nsfs any more, and the bridge plugin fails on it ("unknown FS magic").
      const pin = join(env.d.state, "netns", pod.id);
      await run("umount", [pin], { name: "umount" });
      await env.d.client.runtime.stopPodSandbox({ podSandboxId: pod.id });
      await env.d.client.runtime.removePodSandbox({ podSandboxId: pod.id });
      // The sleeper held the namespace; once it is killed the kernel frees it and its veth.
      await eventually("the pod's veth to go", async () => !(await linkExists(was.veth as string)));
      assert.deepEqual(await env.traces(pod.id, ip, NAME, was.veth), NO_TRACES);
      assert.equal(await pathExists(pin), false, "the pin file is removed");
      assert.deepEqual(await bridgePorts(BRIDGE), []);
      assert.deepEqual((await env.d.client.runtime.listPodSandbox({ filter: { id: pod.id } })).items, []);
    });

    test("a pod whose netns pin was replaced by a plain file is stopped and removed, leaving nothing", async () => {
      const pod = await env.runPod("plainfile");
      const ip = await env.podIp(pod.id);
      const was = await env.traces(pod.id, ip, NAME);
      assert.ok(was.veth && was.netns && was.reservation, JSON.stringify(was));

      const pin = join(env.d.state, "netns", pod.id);
      await run("umount", [pin], { name: "umount" });
      await rm(pin);
      await writeFile(pin, "not a namespace\n");
      // Nothing held the namespace but the pin: it and its veth are gone already.
      await eventually("the pod's veth to go", async () => !(await linkExists(was.veth as string)));
      await env.d.client.runtime.stopPodSandbox({ podSandboxId: pod.id });
      assert.equal((await reservations(env.ipam, NAME)).includes(ip), false, "the IP is released by StopPodSandbox");
      await env.d.client.runtime.removePodSandbox({ podSandboxId: pod.id });
      assert.deepEqual(await env.traces(pod.id, ip, NAME, was.veth), NO_TRACES);
      assert.equal(await pathExists(pin), false, "the plain file is removed");
    });

    test("a host-network pod skips CNI: no IP, no veth, no netns", async () => {
      const vethsBefore = await bridgePorts(BRIDGE);
      const reservationsBefore = await reservations(env.ipam, NAME);
      const pod = await env.runPod("hostnet", {
        linux: { securityContext: { namespaceOptions: { network: NamespaceMode.NODE } } },
      });
      const st = await env.d.client.runtime.podSandboxStatus({ podSandboxId: pod.id });
      assert.equal(st.status?.network?.ip, "", "containerd reports no IP for host-network pods");
      assert.deepEqual(st.status?.network?.additionalIps ?? [], []);
      assert.deepEqual(await bridgePorts(BRIDGE), vethsBefore);
      assert.deepEqual(await reservations(env.ipam, NAME), reservationsBefore);
      assert.equal(await pathExists(join(env.d.state, "netns", pod.id)), false);
      await env.removePod(pod);
    });
  });

  describe("conf dir changes", () => {
    // Shell-script plugins in a private bin dir: `fail` fails ADD with a CNI error object (spec section 5) and
    // succeeds at DEL; `broken` fails every command; `hang` records its PID and sleeps through ADD; `record` (below).
    const FAIL = "berth-e2e-fail";
    const BROKEN = "berth-e2e-broken";
    const HANG = "berth-e2e-hang";
    const RECORD = "berth-e2e-record";
    let bin: string;
    let env: Env;

    before(async () => {
      bin = await mkdtemp(join(tmpdir(), "berth-e2e-cnibin-"));
      const plugin = async (name: string, body: string) => {
        await writeFile(join(bin, name), `#!/bin/sh\ncat >/dev/null\n${body}`);
        await chmod(join(bin, name), 0o755);
      };
      const error = (msg: string) =>
        `echo '{"cniVersion":"1.0.0","code":7,"msg":"${msg}","details":"sandbox '"$CNI_CONTAINERID"'"}'\nexit 1\n`;
      await plugin(FAIL, `if [ "$CNI_COMMAND" = ADD ]; then\n${error("berth test plugin refuses")}fi\nexit 0\n`);
      await plugin(BROKEN, error("berth test plugin is broken"));
      // `record` writes its CNI_* variables and stdin to <bin>/record-<command>.json and passes prevResult on.
      await writeFile(
        join(bin, RECORD),
        `#!${process.execPath}
const fs = require("node:fs");
const conf = JSON.parse(fs.readFileSync(0, "utf8"));
const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => k.startsWith("CNI_")));
fs.writeFileSync(${JSON.stringify(bin)} + "/record-" + env.CNI_COMMAND + ".json", JSON.stringify({ env, conf }));
if (env.CNI_COMMAND === "ADD") process.stdout.write(JSON.stringify(conf.prevResult));
`,
      );
      await chmod(join(bin, RECORD), 0o755);
      await plugin(
        HANG,
        `if [ "$CNI_COMMAND" = ADD ]; then\n  echo $$ > ${bin}/hang.pid\n  exec /bin/sleep 60\nfi\nexit 0\n`,
      );
      env = await startEnv({
        bridges: ["bte2e-brk0", "bte2e-bw0", "bte2e-cidr0", "bte2e-part0"],
        latencies,
        config: `bin_dirs = ["${bin}", "/usr/lib/cni"]\nplugin_timeout_seconds = 6\n`,
        extraDirs: [bin],
      });
      await env.d.client.image.pullImage({ image: { image: busybox() } });
    });
    after(async () => {
      await env?.close();
    });

    test("NetworkReady follows a conflist being added to and removed from the conf dir", async () => {
      const first = await env.networkCondition();
      assert.equal(first.status, false);
      assert.equal(first.reason, NOT_READY);
      assert.match(first.message, /no network config found/);

      await env.useConf(
        "10-ready.conflist",
        defaultConflist({ bridge: "bte2e-brk0", subnet: "10.231.22.0/24", name: "bte2e-ready" }),
      );
      await env.waitReady(true);
      await rm(join(env.cni, "10-ready.conflist"));
      const back = await env.waitReady(false);
      assert.equal(back.reason, NOT_READY);
    });

    test("a conflist naming a missing plugin fails RunPodSandbox clearly and leaves nothing behind", async () => {
      await env.useConf(
        "10-missing.conflist",
        JSON.stringify({ cniVersion: "1.0.0", name: "bte2e-missing", plugins: [{ type: "berth-no-such-plugin" }] }),
      );
      await env.waitReady(true);
      const err = await env.runPod("missing").then(
        () => assert.fail("RunPodSandbox succeeded"),
        (e: unknown) => e,
      );
      assert.ok(err instanceof ConnectError, String(err));
      assert.match(
        err.rawMessage,
        /cni plugin "berth-no-such-plugin" not found in .*berth-e2e-cnibin-.*:\/usr\/lib\/cni/,
      );
      assert.equal(err.code, Code.FailedPrecondition);
      await env.assertNothingLeft();
      await env.clearConf();
    });

    test("a plugin's CNI error fails RunPodSandbox with its code, msg and details, rolls back the bridge ADD and leaves nothing behind", async () => {
      const conf = JSON.parse(
        defaultConflist({ bridge: "bte2e-brk0", subnet: "10.231.23.0/24", name: "bte2e-brk", ipamDataDir: env.ipam }),
      ) as { plugins: unknown[] };
      conf.plugins.push({ type: FAIL });
      await env.useConf("10-fail.conflist", JSON.stringify(conf));
      await env.waitReady(true);
      const err = await env.runPod("failing").then(
        () => assert.fail("RunPodSandbox succeeded"),
        (e: unknown) => e,
      );
      assert.ok(err instanceof ConnectError, String(err));
      assert.match(
        err.rawMessage,
        /cni plugin berth-e2e-fail ADD failed \(code 7\): berth test plugin refuses: sandbox [0-9a-f]+/,
      );
      assert.equal(err.code, Code.Internal);
      await env.assertNothingLeft();
      assert.deepEqual(await bridgePorts("bte2e-brk0"), [], "the bridge ADD's veth was deleted");
      assert.deepEqual(await reservations(env.ipam, "bte2e-brk"), [], "the bridge ADD's IP was released");
      assert.doesNotMatch(await iptablesSave(), /bte2e-brk/, "the bridge ADD's masquerade rule was deleted");
      await env.clearConf();
    });

    test("a plugin failing both ADD and DEL still leaves no sandbox, netns or veth behind", async () => {
      const conf = JSON.parse(
        defaultConflist({ bridge: "bte2e-brk0", subnet: "10.231.23.0/24", name: "bte2e-brk", ipamDataDir: env.ipam }),
      ) as { plugins: unknown[] };
      conf.plugins.push({ type: BROKEN });
      await env.useConf("10-broken.conflist", JSON.stringify(conf));
      await env.waitReady(true);
      const err = await env.runPod("broken").then(
        () => assert.fail("RunPodSandbox succeeded"),
        (e: unknown) => e,
      );
      assert.ok(err instanceof ConnectError, String(err));
      assert.match(err.rawMessage, /cni plugin berth-e2e-broken ADD failed \(code 7\): berth test plugin is broken/);
      await env.assertNothingLeft();
      assert.deepEqual(await reservations(env.ipam, "bte2e-brk"), []);
      assert.doesNotMatch(await iptablesSave(), /bte2e-brk/);
      await env.clearConf();
    });

    test("a RunPodSandbox cut short by a berthd SIGKILL mid-ADD is undone at restart", async () => {
      const conf = JSON.parse(
        defaultConflist({ bridge: "bte2e-part0", subnet: "10.231.26.0/24", name: "bte2e-part", ipamDataDir: env.ipam }),
      ) as { plugins: unknown[] };
      conf.plugins.push({ type: HANG });
      await rm(join(bin, "hang.pid"), { force: true });
      await env.useConf("10-partial.conflist", JSON.stringify(conf));
      await env.waitReady(true);
      const pending = env.runPod("partial").then(
        () => assert.fail("RunPodSandbox succeeded"),
        (e: unknown) => e,
      );
      const pid = await eventually("the hanging plugin to start", async () => {
        const n = Number((await readFile(join(bin, "hang.pid"), "utf8").catch(() => "")).trim());
        return n > 0 ? n : undefined;
      });
      // The bridge ADD is done (veth, IP, masquerade rule) when the second plugin runs.
      assert.equal((await bridgePorts("bte2e-part0")).length, 1);
      assert.equal((await reservations(env.ipam, "bte2e-part")).length, 1);
      await env.restart(async () => {
        try {
          process.kill(pid, "SIGKILL");
        } catch {
          // already gone: the ADD ended some other way; what follows must hold all the same
        }
        await rm(join(env.cni, "10-partial.conflist"));
      });
      assert.ok((await pending) instanceof ConnectError);
      await env.assertNothingLeft();
      assert.deepEqual(await reservations(env.ipam, "bte2e-part"), []);
      assert.doesNotMatch(await iptablesSave(), /bte2e-part/);
    });

    test("a plugin that hangs is killed after plugin_timeout_seconds and RunPodSandbox fails, leaving nothing", async () => {
      await rm(join(bin, "hang.pid"), { force: true });
      const conf = JSON.parse(
        defaultConflist({ bridge: "bte2e-part0", subnet: "10.231.26.0/24", name: "bte2e-tmo", ipamDataDir: env.ipam }),
      ) as { plugins: unknown[] };
      conf.plugins.push({ type: HANG });
      await env.useConf("10-timeout.conflist", JSON.stringify(conf));
      await env.waitReady(true);
      const started = performance.now();
      const err = await env.runPod("timeout").then(
        () => assert.fail("RunPodSandbox succeeded"),
        (e: unknown) => e,
      );
      const ms = performance.now() - started;
      assert.ok(err instanceof ConnectError, String(err));
      assert.equal(err.code, Code.DeadlineExceeded, err.rawMessage);
      assert.match(err.rawMessage, /cni plugin berth-e2e-hang ADD: timed out after 6000 ms/);
      assert.ok(ms >= 6000 && ms < 15_000, `failed after ${ms} ms`);
      const pid = Number((await readFile(join(bin, "hang.pid"), "utf8")).trim());
      assert.throws(() => process.kill(pid, 0), /ESRCH/, "the plugin was killed");
      await env.assertNothingLeft();
      assert.deepEqual(await reservations(env.ipam, "bte2e-tmo"), []);
      assert.doesNotMatch(await iptablesSave(), /bte2e-tmo/);
      await env.clearConf();
    });

    test("UpdateRuntimeConfig's pod CIDR replaces {{podCidr}} in the host-local range", async () => {
      await env.useConf(
        "10-cidr.conflist",
        JSON.stringify({
          cniVersion: "1.0.0",
          name: "bte2e-cidr",
          plugins: [
            {
              type: "bridge",
              bridge: "bte2e-cidr0",
              isGateway: true,
              ipam: {
                type: "host-local",
                ranges: [[{ subnet: POD_CIDR_PLACEHOLDER }]],
                routes: [{ dst: "0.0.0.0/0" }],
                dataDir: env.ipam,
              },
            },
          ],
        }),
      );
      const waiting = await eventually("the placeholder conflist to load", async () => {
        const c = await env.networkCondition();
        return /pod cidr/.test(c.message) ? c : undefined;
      });
      assert.equal(waiting.status, false);
      assert.equal(waiting.reason, NOT_READY);

      await env.d.client.runtime.updateRuntimeConfig({
        runtimeConfig: { networkConfig: { podCidr: "10.231.25.0/24" } },
      });
      await env.waitReady(true);
      const pod = await env.runPod("cidr");
      const ip = await env.podIp(pod.id);
      assert.match(ip, /^10\.231\.25\.\d+$/);
      const c = await env.startContainer(pod, sleeper(busybox()));
      assert.match((await env.exec(c, "ip -4 -o addr show eth0")).out, new RegExp(`inet ${reEscape(ip)}/24 `));
      await env.removePod(pod);
      assert.deepEqual(await reservations(env.ipam, "bte2e-cidr"), []);
      await env.clearConf();
    });

    test("ADD and DEL get CNI_ARGS with the K8S_POD_* keys and the portMappings, bandwidth, dns and ipRanges capabilities", async () => {
      // The node's pod CIDR reaches host-local as the ipRanges capability.
      await env.d.client.runtime.updateRuntimeConfig({
        runtimeConfig: { networkConfig: { podCidr: "10.231.25.0/24" } },
      });
      await env.useConf(
        "10-record.conflist",
        JSON.stringify({
          cniVersion: "1.0.0",
          name: "bte2e-rec",
          plugins: [
            {
              type: "bridge",
              bridge: "bte2e-cidr0",
              isGateway: true,
              capabilities: { ipRanges: true },
              // No ranges of its own: host-local prepends ipRanges to configured ranges (one address from each set).
              ipam: { type: "host-local", dataDir: env.ipam },
            },
            {
              type: RECORD,
              capabilities: { portMappings: true, bandwidth: true, dns: true, ipRanges: true, aliases: true },
            },
          ],
        }),
      );
      await env.waitReady(true);
      const hostPort = await freePort();
      const pod = await env.runPod("caps", {
        portMappings: [
          { protocol: Protocol.TCP, containerPort: 80, hostPort, hostIp: "127.0.0.1" },
          { protocol: Protocol.UDP, containerPort: 53, hostPort: hostPort + 1 },
        ],
        annotations: { "kubernetes.io/ingress-bandwidth": "1M", "kubernetes.io/egress-bandwidth": "2M" },
        dnsConfig: { servers: ["10.96.0.10"], searches: ["svc.cluster.local"], options: ["ndots:5"] },
      });
      const ip = await env.podIp(pod.id);
      assert.match(ip, /^10\.231\.25\.\d+$/, "host-local used the ipRanges capability");
      const add = JSON.parse(await readFile(join(bin, "record-ADD.json"), "utf8")) as Recorded;
      assert.equal(
        add.env.CNI_ARGS,
        `IgnoreUnknown=1;K8S_POD_NAMESPACE=e2e-net;K8S_POD_NAME=caps;K8S_POD_INFRA_CONTAINER_ID=${pod.id};K8S_POD_UID=uid-caps`,
      );
      assert.equal(add.env.CNI_CONTAINERID, pod.id);
      assert.equal(add.env.CNI_NETNS, join(env.d.state, "netns", pod.id));
      assert.equal(add.env.CNI_IFNAME, "eth0");
      const expectedRuntimeConfig = {
        portMappings: [
          { hostPort, containerPort: 80, protocol: "tcp", hostIP: "127.0.0.1" },
          { hostPort: hostPort + 1, containerPort: 53, protocol: "udp" },
        ],
        bandwidth: { ingressRate: 1_000_000, ingressBurst: 4294967295, egressRate: 2_000_000, egressBurst: 4294967295 },
        dns: { servers: ["10.96.0.10"], searches: ["svc.cluster.local"], options: ["ndots:5"] },
        ipRanges: [[{ subnet: "10.231.25.0/24" }]],
      };
      assert.deepEqual(add.conf.runtimeConfig, expectedRuntimeConfig);
      assert.equal(add.conf.capabilities, undefined, "capabilities are the runtime's, not the plugin's");
      assert.equal(
        (add.conf.prevResult as { ips: { address: string }[] }).ips[0]?.address,
        `${ip}/24`,
        "the bridge's result is chained",
      );

      await env.removePod(pod);
      const del = JSON.parse(await readFile(join(bin, "record-DEL.json"), "utf8")) as Recorded;
      assert.equal(del.env.CNI_ARGS, add.env.CNI_ARGS);
      assert.deepEqual(del.conf.runtimeConfig, expectedRuntimeConfig, "DEL gets what ADD got (portmap needs it)");
      assert.deepEqual(del.conf.prevResult, add.conf.prevResult, "DEL gets the cached result");
      assert.deepEqual(await reservations(env.ipam, "bte2e-rec"), []);
      await env.clearConf();
    });

    test("bandwidth annotations shape the pod's veth when the conflist has the bandwidth plugin", async () => {
      const conf = JSON.parse(
        defaultConflist({ bridge: "bte2e-bw0", subnet: "10.231.24.0/24", name: "bte2e-bw", ipamDataDir: env.ipam }),
      ) as { berthDefault?: boolean; plugins: unknown[] };
      // Not berth's default list any more: the pod CIDR set by the previous test must not move its subnet.
      delete conf.berthDefault;
      conf.plugins.push({ type: "bandwidth", capabilities: { bandwidth: true } });
      await env.useConf("10-bw.conflist", JSON.stringify(conf));
      await env.waitReady(true);
      const ifbsBefore = await ifbLinks();
      const pod = await env.runPod("bw", {
        annotations: { "kubernetes.io/ingress-bandwidth": "10M", "kubernetes.io/egress-bandwidth": "20M" },
      });
      const ip = await env.podIp(pod.id);
      assert.match(ip, /^10\.231\.24\.\d+$/);
      const veth = await hostVethOf(join(env.d.state, "netns", pod.id));
      assert.ok(veth, "the pod has a host veth");
      const qdiscs = (await run("tc", ["qdisc", "show", "dev", veth], { name: "tc" })).stdout;
      // Ingress to the pod: a token bucket on the host veth; egress: the veth's ingress redirected to an ifb.
      assert.match(qdiscs, /qdisc tbf .* rate 10Mbit/, qdiscs);
      assert.match(qdiscs, /qdisc ingress ffff:/, qdiscs);
      const ifb = (await ifbLinks()).filter((l) => !ifbsBefore.includes(l));
      assert.equal(ifb.length, 1, `one new ifb device for egress: ${ifb.join(", ")}`);
      assert.match(ifb[0] ?? "", /^bwp/);
      const ifbQdisc = (await run("tc", ["qdisc", "show", "dev", ifb[0] ?? ""], { name: "tc" })).stdout;
      assert.match(ifbQdisc, /qdisc tbf .* rate 20Mbit/, ifbQdisc);

      await env.removePod(pod);
      assert.equal(await linkExists(veth), false, "the veth is deleted");
      assert.equal(await linkExists(ifb[0] ?? ""), false, "the egress ifb is deleted");
      await env.clearConf();
    });
  });
});

/** What the `record` plugin saw. */
interface Recorded {
  env: Record<string, string>;
  conf: Record<string, unknown>;
}

/** The traces a networked pod leaves on the host. */
interface Traces {
  veth: string | undefined;
  netns: boolean;
  reservation: boolean;
  iptables: boolean;
}
const NO_TRACES: Traces = { veth: undefined, netns: false, reservation: false, iptables: false };

interface Pod {
  id: string;
  config: SandboxConfigInit;
}

/** One berthd with its own conf dir, IPAM dir and bridges. */
interface Env {
  d: TestDaemon;
  readonly dir: string;
  readonly cni: string;
  readonly ipam: string;
  /** Replaces the conf dir's content with one conflist (after NetworkReady went false, so no stale list is in force). */
  useConf(name: string, text: string): Promise<void>;
  /** Removes every config and waits for NetworkReady false. */
  clearConf(): Promise<void>;
  networkCondition(): Promise<{ status: boolean; reason: string; message: string }>;
  waitReady(ready: boolean): Promise<{ status: boolean; reason: string; message: string }>;
  runPod(name: string, extra?: SandboxExtra): Promise<Pod>;
  startContainer(pod: Pod, config: ContainerConfigInit): Promise<string>;
  exec(containerId: string, script: string): Promise<{ out: string; err: string }>;
  podIp(id: string): Promise<string>;
  /** What of the pod is on the host; `veth` is its host veth from an earlier call, to look for after the netns is gone. */
  traces(id: string, ip: string, network: string, veth?: string): Promise<Traces>;
  /** No sandbox listed, no netns file, no veth on any of the env's bridges. */
  assertNothingLeft(): Promise<void>;
  removePod(pod: Pod): Promise<void>;
  restart(beforeStart?: () => Promise<void>): Promise<void>;
  close(): Promise<void>;
}

async function startEnv(o: {
  bridges: string[];
  latencies: number[];
  config?: string;
  extraDirs?: string[];
}): Promise<Env> {
  const dir = await mkdtemp(join(tmpdir(), "berth-e2e-net-"));
  const cni = join(dir, "cni");
  const ipam = join(dir, "ipam");
  await mkdir(cni);
  const config = `[cni]\nconf_dir = "${cni}"\n${o.config ?? ""}`;
  let d: TestDaemon;
  try {
    d = await startBerthd({ dir, config });
  } catch (err) {
    await removeTestDir(dir);
    throw err;
  }
  const condition = async () => {
    const st = await env.d.client.runtime.status({});
    const c = st.status?.conditions.find((x) => x.type === "NetworkReady");
    assert.ok(c, "Status has a NetworkReady condition");
    return { status: c.status, reason: c.reason, message: c.message };
  };
  const env: Env = {
    d,
    dir,
    cni,
    ipam,
    async useConf(name, text) {
      await env.clearConf();
      // Renamed into place, as an admin's tools do, so the watcher never reads half a file.
      await writeFile(join(cni, `.${name}.tmp`), text);
      await rename(join(cni, `.${name}.tmp`), join(cni, name));
    },
    async clearConf() {
      for (const f of await readdir(cni)) await rm(join(cni, f), { force: true });
      await env.waitReady(false);
    },
    networkCondition: condition,
    waitReady: (ready) =>
      eventually(`NetworkReady ${ready}`, async () => {
        const c = await condition();
        return c.status === ready ? c : undefined;
      }),
    async runPod(name, extra = {}) {
      const config: SandboxConfigInit = {
        ...extra,
        metadata: { name, namespace: "e2e-net", uid: `uid-${name}`, attempt: 0 },
        hostname: name,
        logDirectory: join(dir, "logs", name),
      };
      const started = performance.now();
      const r = await env.d.client.runtime.runPodSandbox({ config });
      if (config.linux?.securityContext?.namespaceOptions?.network !== NamespaceMode.NODE)
        o.latencies.push(Math.round(performance.now() - started));
      return { id: r.podSandboxId, config };
    },
    async startContainer(pod, config) {
      const c = await env.d.client.runtime.createContainer({
        podSandboxId: pod.id,
        sandboxConfig: pod.config,
        config: { logPath: `${config.metadata?.name ?? "c"}.log`, ...config },
      });
      await env.d.client.runtime.startContainer({ containerId: c.containerId });
      return c.containerId;
    },
    async exec(containerId, script) {
      const r = await env.d.client.runtime.execSync({ containerId, cmd: ["sh", "-c", script], timeout: 10n });
      const out = Buffer.from(r.stdout).toString();
      const err = Buffer.from(r.stderr).toString();
      assert.equal(r.exitCode, 0, `${script}: exit ${r.exitCode}: ${out}${err}`);
      return { out, err };
    },
    async podIp(id) {
      return (await env.d.client.runtime.podSandboxStatus({ podSandboxId: id })).status?.network?.ip ?? "";
    },
    async traces(id, ip, network, veth) {
      const netnsFile = join(env.d.state, "netns", id);
      const netns = await pathExists(netnsFile);
      const found = netns ? await hostVethOf(netnsFile) : undefined;
      return {
        veth: found ?? (veth !== undefined && (await linkExists(veth)) ? veth : undefined),
        netns,
        reservation: (await reservations(ipam, network)).includes(ip),
        iptables: (await iptablesSave()).includes(id),
      };
    },
    async assertNothingLeft() {
      assert.deepEqual((await env.d.client.runtime.listPodSandbox({})).items, [], "no sandbox listed");
      const netnsDir = join(env.d.state, "netns");
      assert.deepEqual((await pathExists(netnsDir)) ? await readdir(netnsDir) : [], [], "no netns file");
      for (const b of o.bridges) assert.deepEqual(await bridgePorts(b), [], `no veth on ${b}`);
    },
    async removePod(pod) {
      await env.d.client.runtime.stopPodSandbox({ podSandboxId: pod.id });
      await env.d.client.runtime.removePodSandbox({ podSandboxId: pod.id });
    },
    async restart(beforeStart) {
      await env.d.stop("SIGKILL");
      await beforeStart?.();
      env.d = await startBerthd({ dir, config });
    },
    async close() {
      try {
        await removeAllPods(env.d.client);
      } finally {
        await env.d.stop("SIGTERM");
        for (const b of o.bridges) await runUnchecked("ip", ["link", "del", b]);
        await removeTestDir(dir);
        for (const x of o.extraDirs ?? []) await rm(x, { recursive: true, force: true });
      }
    },
  };
  return env;
}

function sleeper(image: string): ContainerConfigInit {
  return { metadata: { name: "sleeper" }, image: { image }, command: ["sleep", "3600"] };
}

/** An HTTP/1.0 GET from inside a container with busybox nc ("" when nothing answers). */
async function httpGetIn(env: Env, containerId: string, ip: string): Promise<string> {
  const r = await env.d.client.runtime.execSync({
    containerId,
    cmd: ["sh", "-c", `printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 3 ${ip} 80`],
    timeout: 10n,
  });
  return Buffer.from(r.stdout).toString();
}

/** An HTTP/1.0 GET from the host; rejects when the connection fails. */
function httpGetFromHost(host: string, port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = connect({ host, port, timeout: 3000 });
    let out = "";
    s.on("connect", () => s.end("GET / HTTP/1.0\r\n\r\n"));
    s.on("data", (b: Buffer) => {
      out += b.toString();
    });
    s.on("timeout", () => s.destroy(new Error(`timeout connecting to ${host}:${port}`)));
    s.on("error", reject);
    s.on("close", () => resolve(out));
  });
}

/** A TCP port nothing listens on right now. */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.listen(0, "127.0.0.1", () => {
      const addr = srv.address();
      srv.close(() => (typeof addr === "object" && addr ? resolve(addr.port) : reject(new Error("no port"))));
    });
  });
}

/** The host end of the pod's eth0: `ip link` inside the netns names the peer's ifindex (`eth0@if17`). */
async function hostVethOf(netnsFile: string): Promise<string | undefined> {
  const r = await runUnchecked("nsenter", [`--net=${netnsFile}`, "--", "ip", "-o", "link", "show", "eth0"]);
  const index = /eth0@if(\d+):/.exec(r.stdout)?.[1];
  if (index === undefined) return undefined;
  const links = (await run("ip", ["-o", "link", "show"], { name: "ip" })).stdout;
  return new RegExp(`^${index}: ([^:@]+)`, "m").exec(links)?.[1];
}

/** The interfaces enslaved to a bridge (its pods' veths); [] when the bridge does not exist. */
async function bridgePorts(bridge: string): Promise<string[]> {
  const r = await runUnchecked("ip", ["-o", "link", "show", "master", bridge]);
  if (r.code !== 0) return [];
  return [...r.stdout.matchAll(/^\d+: ([^:@]+)/gm)].map((m) => m[1] ?? "");
}

async function ifbLinks(): Promise<string[]> {
  const r = await run("ip", ["-o", "link", "show", "type", "ifb"], { name: "ip" });
  return [...r.stdout.matchAll(/^\d+: ([^:@]+)/gm)].map((m) => m[1] ?? "");
}

async function linkExists(name: string): Promise<boolean> {
  return (await runUnchecked("ip", ["link", "show", "dev", name])).code === 0;
}

/** The addresses host-local has reserved for `network` (one file per IP in its dataDir). */
async function reservations(dataDir: string, network: string): Promise<string[]> {
  try {
    return (await readdir(join(dataDir, network))).filter((f) => /^\d+\.\d+\.\d+\.\d+$/.test(f) || f.includes(":"));
  } catch {
    return [];
  }
}

async function iptablesSave(): Promise<string> {
  return (await run("iptables-save", [], { name: "iptables-save" })).stdout;
}

/** Every user-defined chain, as `table/chain`. */
async function iptablesChains(): Promise<Set<string>> {
  const chains = new Set<string>();
  let table = "";
  for (const line of (await iptablesSave()).split("\n")) {
    if (line.startsWith("*")) table = line.slice(1);
    const m = /^:(\S+) (\S+)/.exec(line);
    if (m && m[2] === "-") chains.add(`${table}/${m[1]}`);
  }
  return chains;
}

/** portmap's shared nat chains: they stay after the last DEL, unlike the bridge's per-pod CNI-<hash> chains. */
const PORTMAP_CHAINS = ["CNI-HOSTPORT-DNAT", "CNI-HOSTPORT-SETMARK", "CNI-HOSTPORT-MASQ"];

/**
 * Deletes portmap's shared chains when this run created them (absent from `before`) and no pod uses them any more
 * (CNI-HOSTPORT-DNAT is empty, so no other test's pod loses its hostPorts): first the rules jumping to them, by
 * line number from the bottom, then the chains. Per-pod chains are left alone: DEL removes them, and the tests
 * assert that.
 */
async function removeNewChains(before: Set<string>): Promise<void> {
  const now = await iptablesChains();
  const created = PORTMAP_CHAINS.filter((c) => now.has(`nat/${c}`) && !before.has(`nat/${c}`));
  if (created.length === 0) return;
  const dnat = (await runUnchecked("iptables", ["-t", "nat", "-S", "CNI-HOSTPORT-DNAT"])).stdout;
  if (dnat.split("\n").some((l) => l.startsWith("-A "))) return;
  for (const from of ["PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"]) {
    const rules = (await run("iptables", ["-t", "nat", "-S", from], { name: "iptables" })).stdout
      .split("\n")
      .filter((l) => l.startsWith("-A "));
    for (let i = rules.length; i >= 1; i--) {
      const target = /-j (\S+)/.exec(rules[i - 1] ?? "")?.[1];
      if (target && created.includes(target)) await runUnchecked("iptables", ["-t", "nat", "-D", from, String(i)]);
    }
  }
  for (const chain of created) await runUnchecked("iptables", ["-t", "nat", "-F", chain]);
  for (const chain of created) await runUnchecked("iptables", ["-t", "nat", "-X", chain]);
}

function reEscape(s: string): string {
  return s.replaceAll(".", "\\.");
}

async function eventually<T>(
  what: string,
  check: () => Promise<T | undefined | false>,
  timeoutMs = 10_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
