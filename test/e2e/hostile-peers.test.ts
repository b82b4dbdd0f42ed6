/**
 * Peers that break the connection under berthd (issue #12): a pod server that closes while the
 * client is still sending (EPIPE on the relay's input), and a client that hangs up mid-stream.
 * berthd must stay up, keep serving, and leave no relay process behind.
 */
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { after, before, describe, test } from "node:test";
import { roundTrip, SpdyPortForwardClient } from "../../src/client/streaming/index.js";
import { isRoot } from "../support/berthd.js";
import { closePodEnv, type Pod, type PodEnv, shell, startPodEnv } from "../support/pods.js";
import { skipUnlessCi } from "../support/skip.js";

describe("hostile peers", {
  skip: skipUnlessCi(isRoot() ? false : "needs root (runc, conmon, CNI, netns)"),
  timeout: 180_000,
}, () => {
  let env: PodEnv;
  let pod: Pod;
  let servers = "";

  before(async () => {
    env = await startPodEnv({ bridge: "bte2e-hp", subnet: "10.231.58.0/24", images: ["berth-test/busybox"] });
    pod = await env.runPod("peers");
    servers = await env.startContainer(
      pod,
      // 9000 reads one byte and hangs up (the rest of what the client sends is refused: EPIPE);
      // 9001 sends zeros without end. Both serve again after each connection.
      shell(
        env,
        "servers",
        [
          "(while true; do nc -l -p 9000 -e head -c 1; done) &",
          "while true; do nc -l -p 9001 -e cat /dev/zero; done",
        ].join("\n"),
      ),
    );
  });
  after(() => closePodEnv(env));

  const alive = async () => {
    assert.equal(env.d.child.exitCode, null, `berthd exited:\n${env.d.stderr().slice(-3000)}`);
    assert.equal(env.d.child.signalCode, null);
    await env.d.client.runtime.version({});
  };

  /** berthd's child processes (the socat relays run as its children). */
  const children = async (): Promise<string[]> => {
    const pid = env.d.child.pid as number;
    const tasks = await readFile(`/proc/${pid}/task/${pid}/children`, "utf8").catch(() => "");
    const out: string[] = [];
    for (const c of tasks.split(" ").filter(Boolean)) {
      const cmd = await readFile(`/proc/${c}/cmdline`, "utf8").catch(() => "");
      if (cmd.includes("socat")) out.push(cmd.replaceAll("\0", " "));
    }
    return out;
  };

  const until = async (what: string, ok: () => Promise<boolean>) => {
    const deadline = Date.now() + 20_000;
    while (!(await ok())) {
      if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  };

  test("a pod server that closes while the client keeps sending: berthd stays up and serves the next forward", async () => {
    await until("the pod's servers to listen", async () => {
      const r = await env.d.client.runtime.execSync({
        containerId: servers,
        cmd: ["cat", "/proc/net/tcp", "/proc/net/tcp6"],
        timeout: 10n,
      });
      // 9000 = 0x2328, 9001 = 0x2329; state 0A = LISTEN (busybox nc may listen on IPv6 "::").
      const table = Buffer.from(r.stdout).toString();
      return /:2328 \S+ 0A/.test(table) && /:2329 \S+ 0A/.test(table);
    });
    // Each URL serves one connection.
    const newUrl = async () => (await env.d.client.runtime.portForward({ podSandboxId: pod.id, port: [] })).url;
    for (let round = 0; round < 3; round++) {
      const client = await SpdyPortForwardClient.connect(await newUrl());
      try {
        const conn = await client.forward(9000);
        const chunk = Buffer.alloc(64 * 1024, 0x61);
        // Send until berthd ends the stream (the pod hung up), or give up after 10 s.
        const ended = new Promise<void>((resolve) => {
          conn.data.on("close", resolve);
          conn.data.on("end", resolve);
          conn.data.on("error", () => resolve());
          conn.data.resume();
        });
        const stopAt = Date.now() + 10_000;
        let open = true;
        void ended.then(() => {
          open = false;
        });
        while (open && Date.now() < stopAt && !conn.data.destroyed && conn.data.writable) {
          if (!conn.data.write(chunk)) await Promise.race([new Promise((r) => conn.data.once("drain", r)), ended]);
        }
        await Promise.race([ended, new Promise((r) => setTimeout(r, 10_000))]);
        assert.equal(open, false, "the forward ended when the pod hung up");
      } finally {
        await client.close().catch(() => {});
      }
      await alive();
    }
    await until("no socat relay left", async () => (await children()).length === 0);
  });

  test("a client that hangs up mid-stream: berthd stays up and the relay is gone", async () => {
    // Each URL serves one connection.
    const newUrl = async () => (await env.d.client.runtime.portForward({ podSandboxId: pod.id, port: [] })).url;
    for (let round = 0; round < 3; round++) {
      const client = await SpdyPortForwardClient.connect(await newUrl());
      const conn = await client.forward(9001);
      let received = 0;
      await new Promise<void>((resolve) => {
        conn.data.on("data", (b: Buffer) => {
          received += b.length;
          if (received > 256 * 1024) resolve();
        });
      });
      // Abruptly: reset the stream, then drop the whole connection.
      conn.data.on("error", () => {});
      conn.data.destroy(new Error("client gone"));
      await client.close().catch(() => {});
      await alive();
    }
    await until("no socat relay left", async () => (await children()).length === 0);
    // And port-forward still works afterwards.
    const client = await SpdyPortForwardClient.connect(await newUrl());
    try {
      const conn = await client.forward(9000);
      await roundTrip(conn, "x");
      assert.equal(await conn.error, "", "the forward reached the pod's server");
    } finally {
      await client.close();
    }
    await alive();
  });
});
