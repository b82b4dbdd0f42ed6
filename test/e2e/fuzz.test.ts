/**
 * Bad input end to end: 10,000 hostile calls against a real berthd (every CRI RPC of RuntimeService and
 * ImageService), while a pod started before keeps running. Four kinds of input:
 *
 *   A. well-formed requests with hostile field values (huge strings, NUL bytes, negative and extreme numbers,
 *      unknown enum values, large repeated and map fields), generated from the CRI descriptors;
 *   B. malformed protobuf bodies (random bytes, truncated messages, wrong wire types, nested groups, ...);
 *   C. malformed gRPC framing and headers (compressed flag without an encoding, lying length prefixes, two
 *      messages to a unary RPC, bad timeouts, unknown methods, other content types);
 *   D. garbage and truncated HTTP/2 frames on raw connections to the socket.
 *
 * Every call has a deadline. berthd must never exit, every gRPC call must end with a gRPC status (none may
 * hang or be reset), no call may end Unknown or Internal (a crash a handler caught is still a bug), and the
 * pod started before must still run and be listed after. The run is seeded: the seed is printed, and
 * BERTH_FUZZ_SEED=<seed> replays it. Calls that could reach the internet or the host are tamed first: image
 * references point at 127.0.0.1:1, host paths at the test's directory, no host ports or cgroup parents.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { type DescMethod, fromBinary, toBinary } from "@bufbuild/protobuf";
import { ContainerState, ImageService, PodSandboxState, RuntimeService } from "../../src/api/gen/runtime/v1/api_pb.js";
import { isRoot } from "../support/berthd.js";
import {
  type CallOutcome,
  createRng,
  GARBAGE_KINDS,
  garbageBytes,
  garbageConnection,
  grpcFrame,
  malformedBody,
  RawGrpc,
  type Rng,
  randomMessage,
  randomString,
} from "../support/fuzz.js";
import { type Pod, type PodEnv, shell, startPodEnv } from "../support/pods.js";
import { skipUnlessCi } from "../support/skip.js";

const SEED = Number(process.env.BERTH_FUZZ_SEED ?? Math.floor(Math.random() * 2 ** 31));
const STRUCTURED = 4000;
const MALFORMED = 4500;
const FRAMING = 1000;
const CONNECTIONS = 500;
const BATCH = 32;
/** At most this many RunPodSandbox calls carry a well-formed (so possibly successful) config. */
const MAX_POD_ATTEMPTS = 15;
/** Every call's deadline (sent as grpc-timeout; the client waits 5 s longer before calling it a hang). */
const CALL_TIMEOUT_MS = 10_000;
/** Server-streaming calls (GetContainerEvents) only end at their deadline. */
const STREAM_TIMEOUT_MS = 200;

/**
 * The INTERNAL answers gRPC itself gives for a body that does not parse or is compressed without an
 * encoding (grpc-go answers these INTERNAL too); any other INTERNAL or UNKNOWN comes from berth's code
 * and fails the test.
 */
const FRAMEWORK_INTERNAL =
  /^(parse binary: |received compressed envelope, but do not know how to decompress$|decompression failed$)/;

interface Rpc {
  path: string;
  method: DescMethod;
}

const RPCS: Rpc[] = [RuntimeService, ImageService].flatMap((s) =>
  s.methods.map((m) => ({ path: `/${s.typeName}/${m.name}`, method: m })),
);

interface Failure {
  phase: string;
  call: number;
  rpc: string;
  what: string;
  outcome: CallOutcome;
}

describe("bad input: a fuzzer against berthd", {
  skip: skipUnlessCi(isRoot() ? false : "needs root (runc, conmon, CNI, mounts)"),
  timeout: 240_000,
}, () => {
  let env: PodEnv;
  let canary: Pod;
  let canaryContainer: string;
  let raw: RawGrpc[];
  const failures: Failure[] = [];
  const codes = new Map<string, number>();

  before(async () => {
    env = await startPodEnv({ bridge: "bte2e-fz", subnet: "10.231.61.0/24", images: ["berth-test/busybox"] });
    canary = await env.runPod("canary");
    canaryContainer = await env.startContainer(canary, shell(env, "canary", "exec sleep 3600"));
    raw = [new RawGrpc(env.d.socket), new RawGrpc(env.d.socket)];
  });
  after(async () => {
    for (const r of raw ?? []) r.close();
    await env?.close();
  });

  /**
   * Keeps a fuzzed request away from the internet, the host and the canary: image references to pull go to
   * 127.0.0.1:1 (refused at once), host paths and log directories into the test directory, no host ports or
   * cgroup parents, and no ID that names the canary. Returns whether anything changed.
   */
  const tame = (rpc: Rpc, msg: Record<string, unknown>, rng: Rng): boolean => {
    let changed = false;
    const protect = new Set([canary.id, canaryContainer]);
    const walk = (o: unknown, key: string): void => {
      if (o === null || typeof o !== "object" || o instanceof Uint8Array) return;
      if (Array.isArray(o)) {
        for (const x of o) walk(x, key);
        return;
      }
      const rec = o as Record<string, unknown>;
      for (const [k, v] of Object.entries(rec)) {
        if (k === "cgroupParent" && v !== "") rec[k] = "";
        else if (k === "portMappings" && Array.isArray(v) && v.length > 0) rec[k] = [];
        else if ((k === "logDirectory" || k === "hostPath") && v !== "")
          rec[k] = join(env.dir, "fuzz-paths", rng.int(1e9).toString(16));
        else if ((k === "podSandboxId" || k === "containerId") && typeof v === "string") {
          if ([...protect].some((id) => id.startsWith(v))) rec[k] = `not-${v.slice(0, 80)}`;
          else continue;
        } else if (k === "image" && typeof v === "string" && key === "image") {
          if (rpc.method.name === "PullImage") rec[k] = `127.0.0.1:1/${v}`;
          else if (rpc.method.name === "RemoveImage" && v.length < 100 && v !== "") rec[k] = `gone-${v}`;
          else continue;
        } else {
          walk(v, k);
          continue;
        }
        changed = true;
      }
    };
    walk(msg, "");
    return changed;
  };

  let podAttempts = 0;
  /** A well-formed request of random values for `rpc`, tamed; RunPodSandbox beyond its budget gets none. */
  const structuredBody = (rng: Rng, rpc: Rpc): Uint8Array | undefined => {
    if (rpc.method.name === "RunPodSandbox" && podAttempts++ >= MAX_POD_ATTEMPTS) return undefined;
    const msg = randomMessage(rng, rpc.method.input) as unknown as Record<string, unknown>;
    tame(rpc, msg, rng);
    return toBinary(rpc.method.input, msg as never);
  };

  /** A malformed body; one that happens to decode is tamed like a structured one. */
  const malformed = (rng: Rng, rpc: Rpc): { body: Uint8Array; kind: string } => {
    const body = malformedBody(rng, rpc.method.input);
    try {
      const msg = fromBinary(rpc.method.input, body) as unknown as Record<string, unknown>;
      if (rpc.method.name === "RunPodSandbox" && podAttempts++ >= MAX_POD_ATTEMPTS)
        return { body: Buffer.from([0xff]), kind: "invalid-tag" };
      if (tame(rpc, msg, rng)) return { body: toBinary(rpc.method.input, msg as never), kind: "decodable-tamed" };
    } catch {
      // does not decode: exactly what is wanted
    }
    return { body, kind: "malformed" };
  };

  const record = (phase: string, call: number, rpc: string, what: string, o: CallOutcome, grpc: boolean, ms = 0) => {
    if (process.env.BERTH_FUZZ_TRACE && ms > 3000)
      process.stderr.write(`SLOW ${ms} ${phase}#${call} ${rpc} ${what} ${JSON.stringify(o)}\n`);
    const key = o.grpcStatus !== undefined ? `grpc ${o.grpcStatus}` : `http ${o.httpStatus ?? "-"}`;
    codes.set(key, (codes.get(key) ?? 0) + 1);
    const bad =
      o.hung === true ||
      (grpc && o.grpcStatus === undefined) ||
      (!grpc && o.httpStatus === undefined && o.grpcStatus === undefined) ||
      o.grpcStatus === 2 ||
      (o.grpcStatus === 13 && !FRAMEWORK_INTERNAL.test(decodeURIComponent(o.grpcMessage ?? "")));
    if (!bad) return;
    failures.push({ phase, call, rpc, what, outcome: o });
    if (process.env.BERTH_FUZZ_TRACE)
      process.stderr.write(`FAIL ${phase}#${call} ${rpc} ${what} ${JSON.stringify(o)}\n`);
  };

  const timeoutOf = (rpc: Rpc) => (rpc.method.methodKind === "server_streaming" ? STREAM_TIMEOUT_MS : CALL_TIMEOUT_MS);

  /** Runs `n` calls made by `make`, BATCH at a time over the raw connections. */
  const runPhase = async (phase: string, n: number, make: (rng: Rng, i: number) => Promise<void>): Promise<void> => {
    const rng = createRng(SEED ^ phase.charCodeAt(0));
    for (let i = 0; i < n; i += BATCH) {
      const batch: Promise<void>[] = [];
      for (let j = i; j < Math.min(n, i + BATCH); j++) batch.push(make(rng, j));
      const tb = performance.now();
      await Promise.all(batch);
      if (process.env.BERTH_FUZZ_TRACE)
        process.stderr.write(`${phase} ${i} ${Math.round(performance.now() - tb)} ms\n`);
      assert.equal(
        env.d.child.exitCode,
        null,
        `berthd exited during ${phase} (seed ${SEED}): ${env.d.stderr().slice(-4000)}`,
      );
    }
    await env.d.client.runtime.version({}, { timeoutMs: 10_000 });
  };

  test(`${STRUCTURED + MALFORMED + FRAMING + CONNECTIONS} hostile calls: berthd stays up and answers each with a gRPC status`, {
    timeout: 200_000,
  }, async (t) => {
    t.diagnostic(`seed ${SEED} (replay with BERTH_FUZZ_SEED=${SEED})`);
    const t0 = performance.now();
    const malformedCall = async (rng: Rng, i: number, rpc: Rpc) => {
      const { body, kind } = malformed(rng, rpc);
      const o = await (raw[i % 2] as RawGrpc).call(rpc.path, grpcFrame(body), { timeoutMs: timeoutOf(rpc) });
      record("B", i, rpc.method.name, `${kind} ${body.length} bytes`, o, true);
    };

    await runPhase("A structured", STRUCTURED, async (rng, i) => {
      const rpc = RPCS[i % RPCS.length] as Rpc;
      const body = structuredBody(rng, rpc);
      if (body === undefined) return malformedCall(rng, i, rpc);
      const o = await (raw[i % 2] as RawGrpc).call(rpc.path, grpcFrame(body), { timeoutMs: timeoutOf(rpc) });
      record("A", i, rpc.method.name, `${body.length} bytes`, o, true);
    });
    const afterA = performance.now();
    await removeFuzzPods();

    await runPhase("B malformed", MALFORMED, async (rng, i) => malformedCall(rng, i, RPCS[i % RPCS.length] as Rpc));
    const afterB = performance.now();
    await removeFuzzPods();

    await runPhase("C framing", FRAMING, async (rng, i) => {
      const rpc = RPCS[i % RPCS.length] as Rpc;
      const body = Buffer.from(malformed(rng, rpc).body);
      const variant = rng.int(10);
      let frame: Buffer = grpcFrame(body);
      let headers: Record<string, string> = {};
      let grpcTimeout: string | undefined;
      let grpc = true;
      let path = rpc.path;
      switch (variant) {
        case 0:
          frame = grpcFrame(body, { flag: 1 });
          break;
        case 1:
          frame = grpcFrame(body, { flag: 1 });
          headers = { "grpc-encoding": "gzip" };
          break;
        case 2:
          frame = grpcFrame(body, { length: body.length + 1 + rng.int(1 << 20) });
          break;
        case 3:
          frame = grpcFrame(body, { length: Math.max(0, body.length - 1 - rng.int(4)) });
          break;
        case 4:
          frame = Buffer.concat([grpcFrame(body), grpcFrame(body)]);
          break;
        case 5:
          frame = rng.bytes(rng.int(5));
          break;
        case 6:
          grpcTimeout = rng.pick(["abc", "99999999H", "-1S", "0n", "1n", ""]);
          break;
        case 7:
          path = `/${rng.pick(["runtime.v1.RuntimeService", "runtime.v1.ImageService", "x"])}/${randomString(rng)
            .replace(/[^\x21-\x7e]/g, "")
            .slice(0, 64)}`;
          break;
        case 8:
          headers = { "content-type": rng.pick(["application/json", "text/plain", "application/grpc-web"]) };
          grpc = false;
          break;
        default:
          headers = { "content-type": "application/grpc+json" };
          frame = grpcFrame(
            Buffer.from(rng.pick(["{", "[]", "null", '{"x":', "1e999999", `"${"\\u0000".repeat(1000)}"`])),
          );
      }
      const c0 = performance.now();
      const o = await (raw[i % 2] as RawGrpc).call(path, frame, {
        timeoutMs: timeoutOf(rpc),
        headers,
        ...(grpcTimeout !== undefined ? { grpcTimeout } : {}),
      });
      record("C", i, `${rpc.method.name} variant ${variant}`, `${frame.length} bytes`, o, grpc, performance.now() - c0);
    });
    const afterC = performance.now();

    let closedByServer = 0;
    await runPhase("D connections", CONNECTIONS, async (rng, i) => {
      const kind = GARBAGE_KINDS[i % GARBAGE_KINDS.length] as (typeof GARBAGE_KINDS)[number];
      if (await garbageConnection(env.d.socket, garbageBytes(rng, kind), 300)) closedByServer++;
    });
    const afterD = performance.now();
    t.diagnostic(
      `phases: structured ${Math.round(afterA - t0)} ms, malformed ${Math.round(afterB - afterA)} ms, framing ${Math.round(afterC - afterB)} ms, connections ${Math.round(afterD - afterC)} ms (${closedByServer} closed by berthd)`,
    );
    t.diagnostic(`answers: ${JSON.stringify(Object.fromEntries([...codes].sort()))}`);

    assert.equal(env.d.child.exitCode, null, "berthd is still running");
    assert.deepEqual(
      failures.slice(0, 20).map((f) => `${f.phase}#${f.call} ${f.rpc} (${f.what}): ${JSON.stringify(f.outcome)}`),
      [],
      `${failures.length} calls failed (seed ${SEED})`,
    );
  });

  test("the pod started before the fuzz still runs and is listed", async () => {
    const pods = (await env.d.client.runtime.listPodSandbox({})).items;
    assert.equal(pods.find((p) => p.id === canary.id)?.state, PodSandboxState.SANDBOX_READY);
    const containers = (await env.d.client.runtime.listContainers({ filter: { podSandboxId: canary.id } })).containers;
    assert.equal(containers.find((c) => c.id === canaryContainer)?.state, ContainerState.CONTAINER_RUNNING);
    const r = await env.d.client.runtime.execSync({
      containerId: canaryContainer,
      cmd: ["echo", "alive"],
      timeout: 10n,
    });
    assert.equal(Buffer.from(r.stdout).toString(), "alive\n");
    assert.equal(env.d.child.exitCode, null);
  });

  /** Removes every pod the fuzz created (well-formed RunPodSandbox calls can succeed), keeping the canary. */
  async function removeFuzzPods(): Promise<void> {
    const { items } = await env.d.client.runtime.listPodSandbox({});
    for (const p of items) {
      if (p.id === canary.id) continue;
      await env.d.client.runtime.stopPodSandbox({ podSandboxId: p.id }).catch(() => {});
      await env.d.client.runtime.removePodSandbox({ podSandboxId: p.id }).catch(() => {});
    }
  }
});
