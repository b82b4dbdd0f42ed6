import assert from "node:assert/strict";
import { test } from "node:test";
import { create, toBinary } from "@bufbuild/protobuf";
import {
  ListContainersRequestSchema,
  StreamContainersRequestSchema,
  StreamContainersResponseSchema,
  StreamPodSandboxesRequestSchema,
  StreamPodSandboxesResponseSchema,
} from "../api/gen/runtime/v1/api_pb.js";
import type { ContainerRecord, SandboxRecord } from "../pods/index.js";
import { listContainers } from "./container.js";
import type { CriContext } from "./context.js";
import { LIST_BATCH, streamContainers, streamPodSandboxes } from "./list-streams.js";

const N = 500;

function fakeContext(): CriContext {
  const containers: ContainerRecord[] = Array.from({ length: N }, (_, i) => ({
    id: i.toString(16).padStart(64, "0"),
    sandboxId: "s".repeat(64),
    state: i % 2 === 0 ? "running" : "exited",
    config: { name: `c${i}`, attempt: 0, labels: { app: "web", n: String(i) }, annotations: { a: "x".repeat(200) } },
    imageRef: "registry.example/app:1",
    imageId: `sha256:${"a".repeat(64)}`,
    createdAt: "1700000000000000000",
  })) as unknown as ContainerRecord[];
  const sandboxes = Array.from({ length: N }, (_, i) => ({
    id: i.toString(16).padStart(64, "1"),
    state: "ready",
    config: { metadata: { name: `p${i}`, namespace: "ns", uid: `u${i}`, attempt: 0 }, labels: {}, annotations: {} },
    runtimeHandler: "",
    createdAt: "1700000000000000000",
  })) as unknown as SandboxRecord[];
  const byState = <T extends { state: string }>(items: T[], f: { state?: string }) =>
    items.filter((r) => !f.state || r.state === f.state);
  return {
    pods: {
      containers: { list: (f: { state?: string } = {}) => byState(containers, f) },
      sandboxes: { list: (f: { state?: string } = {}) => byState(sandboxes, f) },
    },
  } as unknown as CriContext;
}

test("StreamContainers sends every container of ListContainers once, in order, in bounded messages", async () => {
  const ctx = fakeContext();
  const ids: string[] = [];
  let messages = 0;
  for await (const batch of streamContainers(ctx, create(StreamContainersRequestSchema, {}))) {
    const bytes = toBinary(StreamContainersResponseSchema, create(StreamContainersResponseSchema, batch)).length;
    assert.ok((batch.containers?.length ?? 0) >= 1 && (batch.containers?.length ?? 0) <= LIST_BATCH);
    assert.ok(bytes < 64 * 1024, `a message of ${bytes} bytes`);
    messages++;
    for (const c of batch.containers ?? []) ids.push(c.id ?? "");
  }
  const listed = (listContainers(ctx, create(ListContainersRequestSchema, {})).containers ?? []).map((c) => c.id);
  assert.deepEqual(ids, listed);
  assert.equal(ids.length, N);
  assert.equal(messages, Math.ceil(N / LIST_BATCH));
});

test("the streams apply the List filters (a state filter halves the containers) and send nothing for no match", async () => {
  const ctx = fakeContext();
  let running = 0;
  const req = create(StreamContainersRequestSchema, { filter: { state: { state: 1 } } });
  for await (const batch of streamContainers(ctx, req)) running += batch.containers?.length ?? 0;
  assert.equal(running, N / 2);
  let sandboxes = 0;
  for await (const batch of streamPodSandboxes(ctx, create(StreamPodSandboxesRequestSchema, {}))) {
    assert.ok(
      toBinary(StreamPodSandboxesResponseSchema, create(StreamPodSandboxesResponseSchema, batch)).length < 64 * 1024,
    );
    sandboxes += batch.podSandboxes?.length ?? 0;
  }
  assert.equal(sandboxes, N);
  const none = create(StreamPodSandboxesRequestSchema, { filter: { state: { state: 1 } } });
  for await (const _ of streamPodSandboxes(ctx, none)) assert.fail("a batch for no sandbox");
});
