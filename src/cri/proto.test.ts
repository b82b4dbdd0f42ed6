import assert from "node:assert/strict";
import { test } from "node:test";
import { ImageService, RuntimeService } from "../api/gen/runtime/v1/api_pb.js";

// The RPCs of k8s.io/cri-api runtime/v1 (v0.36.3). Kept here by hand so that a proto edit that drops,
// renames or reorders an RPC fails loudly.
const RUNTIME_RPCS = [
  "Version",
  "RunPodSandbox",
  "StopPodSandbox",
  "RemovePodSandbox",
  "PodSandboxStatus",
  "ListPodSandbox",
  "StreamPodSandboxes",
  "CreateContainer",
  "StartContainer",
  "StopContainer",
  "RemoveContainer",
  "ListContainers",
  "StreamContainers",
  "ContainerStatus",
  "UpdateContainerResources",
  "ReopenContainerLog",
  "ExecSync",
  "Exec",
  "Attach",
  "PortForward",
  "ContainerStats",
  "ListContainerStats",
  "StreamContainerStats",
  "PodSandboxStats",
  "ListPodSandboxStats",
  "StreamPodSandboxStats",
  "UpdateRuntimeConfig",
  "Status",
  "CheckpointContainer",
  "GetContainerEvents",
  "ListMetricDescriptors",
  "ListPodSandboxMetrics",
  "StreamPodSandboxMetrics",
  "RuntimeConfig",
  "UpdatePodSandboxResources",
];
const IMAGE_RPCS = ["ListImages", "StreamImages", "ImageStatus", "PullImage", "RemoveImage", "ImageFsInfo"];
const SERVER_STREAMING = new Set([
  "StreamPodSandboxes",
  "StreamContainers",
  "StreamContainerStats",
  "StreamPodSandboxStats",
  "GetContainerEvents",
  "StreamPodSandboxMetrics",
  "StreamImages",
]);

test("the proto declares every RuntimeService and ImageService RPC of cri-api runtime.v1", () => {
  assert.equal(RuntimeService.typeName, "runtime.v1.RuntimeService");
  assert.equal(ImageService.typeName, "runtime.v1.ImageService");
  assert.deepEqual(
    RuntimeService.methods.map((m) => m.name),
    RUNTIME_RPCS,
  );
  assert.deepEqual(
    ImageService.methods.map((m) => m.name),
    IMAGE_RPCS,
  );
});

test("streaming RPCs are server-streaming and the rest unary", () => {
  for (const m of [...RuntimeService.methods, ...ImageService.methods]) {
    assert.equal(m.methodKind, SERVER_STREAMING.has(m.name) ? "server_streaming" : "unary", m.name);
  }
});

test("wire-relevant field numbers match cri-api for a sample of messages", () => {
  const field = (svc: typeof RuntimeService, rpc: string, name: string) =>
    svc.methods.find((m) => m.name === rpc)?.input.fields.find((f) => f.name === name)?.number;
  assert.equal(field(RuntimeService, "CreateContainer", "pod_sandbox_id"), 1);
  assert.equal(field(RuntimeService, "CreateContainer", "config"), 2);
  assert.equal(field(RuntimeService, "CreateContainer", "sandbox_config"), 3);
  assert.equal(field(RuntimeService, "ExecSync", "timeout"), 3);
  assert.equal(field(RuntimeService, "RunPodSandbox", "runtime_handler"), 2);
});
