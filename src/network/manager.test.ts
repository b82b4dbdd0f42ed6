/**
 * NetworkManager against the real CNI plugins (bridge, host-local, portmap) on a bridge and a
 * /24 private to this file. Traffic stays between namespaces the tests create, except the
 * portmap test, which connects to 127.0.0.1 on the host as a hostPort user would.
 */
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { chmod, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import {
  cleanupHost,
  eventually,
  type HostSnapshot,
  iptablesLinesWith,
  privateNet,
  rootSkipReason,
  snapshotHost,
} from "../../test/support/network-env.js";
import { runUnchecked } from "../sys/index.js";
import { newId } from "../util/index.js";
import {
  createNetns,
  createNetworkManager,
  defaultConflist,
  isNetns,
  type NetworkManager,
  netnsArgv,
  type PodNetwork,
  pluginErrorOf,
  removeNetns,
  runInNetns,
  type SetUpRequest,
} from "./index.js";

const skip = await rootSkipReason();

describe("pod networking with the real CNI plugins", { skip }, () => {
  let base = "";
  let confDir = "";
  let resultDir = "";
  let netnsDir = "";
  let ipamDir = "";
  let netName = "";
  let net: Awaited<ReturnType<typeof privateNet>>;
  let snapshot: HostSnapshot;
  let manager: NetworkManager;
  const pods = new Map<string, string>(); // sandbox ID -> netns path, for cleanup
  const children: ChildProcess[] = [];

  before(async () => {
    net = await privateNet();
    snapshot = await snapshotHost();
    base = await mkdtemp(join(tmpdir(), "berth-net-"));
    confDir = join(base, "net.d");
    resultDir = join(base, "results");
    netnsDir = join(base, "netns");
    ipamDir = join(base, "ipam");
    netName = `bt-${net.tag}`;
    await mkdir(confDir);
    await writeFile(join(confDir, "10-test.conflist"), conflist());
    manager = await createNetworkManager({ confDir, resultDir });
  });

  after(async () => {
    for (const c of children) c.kill("SIGKILL");
    // Whatever a failed test left: DEL through a fresh manager, then the host-level leftovers.
    const sweeper = await createNetworkManager({ confDir, resultDir });
    for (const [id, ns] of pods) {
      await sweeper.tearDown(id, ns).catch(() => {});
      await removeNetns(ns).catch(() => {});
    }
    sweeper.close();
    manager?.close();
    await cleanupHost(snapshot, net.bridge, [...pods.keys()]);
    await runUnchecked("umount", [netnsDir]);
    await rm(base, { recursive: true, force: true });
  });

  function conflist(extraPlugins: object[] = []): string {
    const list = JSON.parse(
      defaultConflist({ bridge: net.bridge, subnet: net.subnet, name: netName, ipamDataDir: ipamDir }),
    );
    list.plugins.push(...extraPlugins);
    return JSON.stringify(list);
  }

  async function newPod(
    m: NetworkManager = manager,
    extra: Partial<SetUpRequest> = {},
  ): Promise<{ id: string; ns: string; net: PodNetwork; ip: string }> {
    const id = newId();
    const ns = await createNetns(id, { dir: netnsDir });
    pods.set(id, ns);
    const podNet = await m.setUp({
      sandboxId: id,
      netnsPath: ns,
      podName: `pod-${id.slice(0, 6)}`,
      podNamespace: "test",
      podUid: newId(),
      ...extra,
    });
    return { id, ns, net: podNet, ip: podNet.ips[0] ?? "" };
  }

  async function removePod(pod: { id: string; ns: string }, m: NetworkManager = manager): Promise<void> {
    await m.tearDown(pod.id, pod.ns);
    await removeNetns(pod.ns);
  }

  /** Starts `nc -l` in the pod answering "pong" to one connection, once it listens. */
  async function pongServer(ns: string, port: number): Promise<void> {
    const [file, args] = netnsArgv(ns, ["busybox", "nc", "-l", "-p", String(port), "-e", "busybox", "echo", "pong"]);
    children.push(spawn(file, args, { stdio: "ignore" }));
    const listening = await eventually(async () => (await runInNetns(ns, ["ss", "-Hltn"])).stdout.includes(`:${port}`));
    assert.ok(listening, "nc did not start listening");
  }

  /** host-local's reservation files (named by address, holding the container ID) of `id`. */
  async function reservationsOf(id: string): Promise<string[]> {
    const dir = join(ipamDir, netName);
    const names = await readdir(dir).catch(() => [] as string[]);
    const held: string[] = [];
    for (const n of names.filter((n) => /^[0-9.]+$/.test(n) || n.includes(":"))) {
      if ((await readFile(join(dir, n), "utf8").catch(() => "")).includes(id)) held.push(n);
    }
    return held;
  }

  test("two pods on the bridge get addresses in the subnet and reach each other by ping and TCP", async () => {
    const a = await newPod();
    const b = await newPod();
    for (const p of [a, b]) assert.ok(p.ip.startsWith(`${net.prefix}.`), `${p.ip} not in ${net.subnet}`);
    assert.notEqual(a.ip, b.ip);
    assert.ok(a.net.interfaces.some((i) => i.name === "eth0" && i.sandbox === a.ns));

    await runInNetns(a.ns, ["busybox", "ping", "-c", "1", "-W", "2", b.ip], { timeoutMs: 5000 });
    await pongServer(b.ns, 8080);
    const { stdout } = await runInNetns(a.ns, ["busybox", "nc", "-w", "3", b.ip, "8080"], { timeoutMs: 5000 });
    assert.equal(stdout.trim(), "pong");

    await removePod(a);
    await removePod(b);
  });

  test("a hostPort on 127.0.0.1 reaches the pod's port through portmap", async () => {
    const hostPort = 20000 + Math.floor(Math.random() * 20000);
    const pod = await newPod(manager, {
      portMappings: [{ hostPort, containerPort: 8080, protocol: "tcp", hostIP: "127.0.0.1" }],
    });
    assert.ok(
      (await iptablesLinesWith([pod.id])).some((l) => l.includes("-j CNI-DN-") && l.includes(String(hostPort))),
      "no DNAT rule for the hostPort",
    );
    await pongServer(pod.ns, 8080);
    assert.equal((await readTcp("127.0.0.1", hostPort)).trim(), "pong");
    await removePod(pod);
    assert.deepEqual(await iptablesLinesWith([pod.id]), []);
  });

  test("tearDown leaves no veth, netns file, address reservation, iptables rule or cache, and can be repeated", async (t) => {
    const started = performance.now();
    const pod = await newPod(manager, {
      portMappings: [{ hostPort: 20000 + Math.floor(Math.random() * 20000), containerPort: 80, protocol: "tcp" }],
    });
    const added = performance.now();
    const veth = pod.net.interfaces.find((i) => i.sandbox === undefined && i.name !== net.bridge)?.name;
    assert.ok(veth, "no host veth in the result");
    assert.ok((await iptablesLinesWith([pod.id])).length > 0, "expected masquerade/DNAT rules while attached");
    assert.deepEqual(await reservationsOf(pod.id), [pod.ip]);

    await manager.tearDown(pod.id, pod.ns);
    t.diagnostic(
      `ADD ${Math.round(added - started)} ms (incl. netns), DEL ${Math.round(performance.now() - added)} ms`,
    );
    await removeNetns(pod.ns);

    assert.notEqual((await runUnchecked("ip", ["link", "show", veth])).code, 0, `veth ${veth} still exists`);
    assert.equal(await isNetns(pod.ns), false);
    await assert.rejects(readdir(pod.ns));
    assert.deepEqual(await reservationsOf(pod.id), []);
    assert.deepEqual(await iptablesLinesWith([pod.id]), []);
    assert.deepEqual(
      (await readdir(resultDir)).filter((n) => n.startsWith(pod.id)),
      [],
    );

    await manager.tearDown(pod.id, pod.ns);
    await removeNetns(pod.ns);
  });

  test("setPodCidr moves new pods of the default network into the pod cidr", async () => {
    manager.setPodCidr(`${net.prefix}.128/25`);
    try {
      const pod = await newPod();
      const last = Number(pod.ip.split(".")[3]);
      assert.ok(last > 128, `${pod.ip} not in ${net.prefix}.128/25`);
      await removePod(pod);
      assert.deepEqual(await reservationsOf(pod.id), []);
    } finally {
      manager.setPodCidr("");
    }
  });

  test("a plugin type that is not installed fails clearly and leaves nothing behind", async () => {
    const dir = join(base, "broken-missing");
    await mkdir(dir);
    await writeFile(join(dir, "10.conflist"), conflist([{ type: "berth-no-such-plugin" }]));
    const m = await createNetworkManager({ confDir: dir, resultDir });
    try {
      await assertCleanFailure(m, /cni plugin "berth-no-such-plugin" not found in \/usr\/lib\/cni/);
    } finally {
      m.close();
    }
  });

  test("the pod cidr reaches an IPAM that declares the ipRanges capability", async () => {
    const dir = join(base, "ip-ranges");
    await mkdir(dir);
    const list = JSON.parse(conflist());
    delete list.berthDefault;
    // No ranges of its own: host-local prepends ipRanges to configured ranges, one address from each set.
    list.plugins[0].capabilities = { ipRanges: true };
    list.plugins[0].ipam = { type: "host-local", dataDir: ipamDir, routes: [{ dst: "0.0.0.0/0" }] };
    await writeFile(join(dir, "10.conflist"), JSON.stringify(list));
    const m = await createNetworkManager({ confDir: dir, resultDir });
    m.setPodCidr(`${net.prefix}.128/25`);
    try {
      const pod = await newPod(m);
      assert.ok(Number(pod.ip.split(".")[3]) > 128, `${pod.ip} not in ${net.prefix}.128/25`);
      await removePod(pod, m);
      assert.deepEqual(await reservationsOf(pod.id), []);
    } finally {
      m.close();
    }
  });

  test("a plugin's error object reaches the caller with its code, msg and details, and nothing stays behind", async () => {
    const dir = join(base, "broken-error");
    const bin = join(base, "bin");
    await mkdir(dir);
    await mkdir(bin, { recursive: true });
    const script = [
      "#!/bin/sh",
      "cat >/dev/null",
      'if [ "$CNI_COMMAND" = ADD ]; then',
      `  echo '{"cniVersion":"1.0.0","code":123,"msg":"fake failure","details":"requested by the test"}'`,
      "  exit 1",
      "fi",
    ].join("\n");
    await writeFile(join(bin, "berth-failing"), `${script}\n`);
    await chmod(join(bin, "berth-failing"), 0o755);
    await writeFile(join(dir, "10.conflist"), conflist([{ type: "berth-failing" }]));
    const m = await createNetworkManager({ confDir: dir, resultDir, pluginDirs: [bin, "/usr/lib/cni"] });
    try {
      const err = await assertCleanFailure(
        m,
        /cni plugin berth-failing ADD failed \(code 123\): fake failure: requested by the test/,
      );
      const pe = pluginErrorOf(err);
      assert.equal(pe?.code, 123);
      assert.equal(pe?.msg, "fake failure");
      assert.equal(pe?.details, "requested by the test");
    } finally {
      m.close();
    }
  });

  /** setUp fails with `message`; the netns has no eth0 and no reservation, rule or cache remains. */
  async function assertCleanFailure(m: NetworkManager, message: RegExp): Promise<unknown> {
    const id = newId();
    const ns = await createNetns(id, { dir: netnsDir });
    pods.set(id, ns);
    let caught: unknown;
    await assert.rejects(
      m.setUp({ sandboxId: id, netnsPath: ns, podName: "broken", podNamespace: "test", podUid: newId() }),
      (err: Error) => {
        caught = err;
        assert.match(err.message, message);
        assert.match(err.message, new RegExp(`^set up network for sandbox ${id}: `));
        return true;
      },
    );
    assert.notEqual(
      (await runUnchecked("nsenter", [`--net=${ns}`, "ip", "link", "show", "eth0"])).code,
      0,
      "eth0 left in the netns",
    );
    assert.deepEqual(await reservationsOf(id), []);
    assert.deepEqual(await iptablesLinesWith([id]), []);
    assert.deepEqual(
      (await readdir(resultDir)).filter((n) => n.startsWith(id)),
      [],
    );
    await removeNetns(ns);
    return caught;
  }

  test("tearDown by a fresh manager (a restart) uses the cached config even after the conf dir emptied", async () => {
    const hostPort = 20000 + Math.floor(Math.random() * 20000);
    const pod = await newPod(manager, { portMappings: [{ hostPort, containerPort: 80, protocol: "tcp" }] });
    const emptyConf = join(base, "empty-net.d");
    await mkdir(emptyConf);
    const restarted = await createNetworkManager({ confDir: emptyConf, resultDir });
    try {
      assert.equal(restarted.status().ready, false);
      assert.deepEqual((await restarted.podNetwork(pod.id))?.ips, pod.net.ips);
      await restarted.tearDown(pod.id, pod.ns);
    } finally {
      restarted.close();
    }
    await removeNetns(pod.ns);
    // portmap only removes its DNAT chain when DEL carries the portMappings: from the cache.
    assert.deepEqual(await iptablesLinesWith([pod.id]), []);
    assert.deepEqual(await reservationsOf(pod.id), []);
    assert.equal((await runUnchecked("ip", ["-o", "link", "show", "master", net.bridge])).stdout.trim(), "");
  });
});

function readTcp(host: string, port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const sock = connect({ host, port });
    let data = "";
    sock.setTimeout(5000, () => sock.destroy(new Error(`timeout reading ${host}:${port}`)));
    sock.on("data", (b) => {
      data += b.toString();
    });
    sock.on("end", () => resolve(data));
    sock.on("error", reject);
  });
}
