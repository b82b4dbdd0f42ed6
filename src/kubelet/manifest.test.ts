import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { ManifestError, parseManifest } from "./manifest.js";
import { defaultPullPolicy } from "./validate.js";

const PATH = "/srv/pods/web.yaml";

/** The error lines of a manifest that must not parse. */
function problems(text: string): string[] {
  try {
    parseManifest(text, { path: PATH, displayName: "web.yaml" });
  } catch (err) {
    assert.ok(err instanceof ManifestError, String(err));
    return err.problems;
  }
  assert.fail("expected a ManifestError");
}

const POD = `
apiVersion: v1
kind: Pod
metadata:
  name: web
  labels: { app: web }
spec:
  containers:
    - name: web
      image: 127.0.0.1:5000/berth-test/web:latest
      ports: [{ containerPort: 80 }]
`;

describe("manifests", () => {
  test("a minimal pod gets Kubernetes' defaults", () => {
    const m = parseManifest(POD, { path: PATH });
    assert.equal(m.pods.length, 1);
    const pod = m.pods[0]!;
    assert.equal(pod.metadata.namespace, "default");
    assert.equal(pod.spec.restartPolicy, "Always");
    assert.equal(pod.spec.terminationGracePeriodSeconds, 30);
    assert.equal(pod.spec.hostname, "web");
    assert.equal(pod.spec.dnsPolicy, "ClusterFirst");
    const c = pod.spec.containers[0]!;
    assert.equal(c.imagePullPolicy, "Always", ":latest pulls always");
    assert.equal(c.terminationMessagePath, "/dev/termination-log");
    assert.equal(c.terminationMessagePolicy, "File");
    assert.deepEqual(c.ports, [{ containerPort: 80, hostPort: 0, hostIP: "", protocol: "TCP" }]);
    assert.deepEqual(m.warnings, []);
  });

  test("the uid is deterministic, changes with the content and the path, not with formatting", () => {
    const a = parseManifest(POD, { path: PATH }).pods[0]!.metadata.uid;
    const reformatted = POD.replace("labels: { app: web }", "labels:\n    app: web  # same");
    assert.equal(parseManifest(reformatted, { path: PATH }).pods[0]!.metadata.uid, a);
    assert.notEqual(parseManifest(POD.replace("app: web", "app: web2"), { path: PATH }).pods[0]!.metadata.uid, a);
    assert.notEqual(parseManifest(POD, { path: "/srv/other.yaml" }).pods[0]!.metadata.uid, a);
    assert.match(a, /^[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  });

  test("an invalid port names its field path", () => {
    const text = `
apiVersion: v1
kind: Pod
metadata: { name: web }
spec:
  containers:
    - name: a
      image: busybox
    - name: b
      image: busybox
      ports:
        - containerPort: 70000
`;
    assert.deepEqual(problems(text), ["web.yaml: spec.containers[1].ports[0].containerPort: must be 1-65535"]);
  });

  test("every error of a document is reported at once, each with its path", () => {
    const text = `
apiVersion: v1
kind: Pod
metadata: { name: Web_1 }
spec:
  restartPolicy: Sometimes
  volumes:
    - name: data
      configMap: { name: cfg }
  initContainers:
    - name: init
      image: busybox
      readinessProbe: { exec: { command: [true] } }
  containers:
    - name: app
      image: ""
      imagePullPolicy: Maybe
      env:
        - name: A
          valueFrom: { secretKeyRef: { name: s, key: k } }
        - name: B
          valueFrom: { fieldRef: { fieldPath: status.phase } }
      resources:
        limits: { cpu: lots, nvidia.com/gpu: 1 }
      volumeMounts:
        - name: missing
          mountPath: relative/path
      livenessProbe:
        httpGet: { port: web }
        successThreshold: 2
`;
    const p = problems(text);
    const expect = [
      /^web\.yaml: metadata\.name: invalid value "Web_1": a lowercase RFC 1123 subdomain/,
      /^web\.yaml: spec\.volumes\[0\]\.configMap: not supported by berth: supported volume types are emptyDir and hostPath$/,
      /^web\.yaml: spec\.initContainers\[0\]\.readinessProbe: may not be set for init containers$/,
      /^web\.yaml: spec\.containers\[0\]\.image: required value$/,
      /^web\.yaml: spec\.containers\[0\]\.imagePullPolicy: unsupported value "Maybe"/,
      /^web\.yaml: spec\.containers\[0\]\.env\[0\]\.valueFrom\.secretKeyRef: not supported by berth/,
      /^web\.yaml: spec\.containers\[0\]\.env\[1\]\.valueFrom\.fieldRef\.fieldPath: unsupported value "status\.phase"/,
      /^web\.yaml: spec\.containers\[0\]\.resources\.limits\.cpu: quantity "lots": must match/,
      /^web\.yaml: spec\.containers\[0\]\.resources\.limits\.nvidia\.com\/gpu: not supported by berth/,
      /^web\.yaml: spec\.containers\[0\]\.volumeMounts\[0\]\.name: not found: no volume named "missing"/,
      /^web\.yaml: spec\.containers\[0\]\.volumeMounts\[0\]\.mountPath: must be an absolute path$/,
      /^web\.yaml: spec\.containers\[0\]\.livenessProbe\.httpGet\.port: port name "web" not found/,
      /^web\.yaml: spec\.containers\[0\]\.livenessProbe\.successThreshold: must be 1$/,
      /^web\.yaml: spec\.restartPolicy: unsupported value "Sometimes": supported values: "Always", "OnFailure", "Never"$/,
    ];
    for (const re of expect)
      assert.ok(
        p.some((l) => re.test(l)),
        `missing ${re} in:\n${p.join("\n")}`,
      );
    assert.equal(p.length, expect.length, p.join("\n"));
  });

  test("harmless unsupported and unknown fields are warnings, never silently dropped", () => {
    const text = `
apiVersion: v1
kind: Pod
metadata: { name: web, creationTimestamp: null }
spec:
  nodeSelector: { disk: ssd }
  serviceAccountName: builder
  frobnicate: true
  containers:
    - name: web
      image: busybox:1.36
      stdin: true
      resources:
        requests: { ephemeral-storage: 1Gi }
status: {}
`;
    const m = parseManifest(text, { path: PATH, displayName: "web.yaml" });
    assert.deepEqual(m.warnings, [
      "web.yaml: spec.nodeSelector: ignored: the pod runs on this machine",
      "web.yaml: spec.serviceAccountName: ignored: no service account token is mounted",
      "web.yaml: spec.frobnicate: unknown field, ignored",
      "web.yaml: spec.containers[0].stdin: ignored: berth run does not attach stdin (use berth attach)",
      "web.yaml: spec.containers[0].resources.requests.ephemeral-storage: ignored: ephemeral storage is not enforced by berth",
      "web.yaml: status: ignored: status is reported, not declared",
    ]);
    assert.equal(m.pods[0]!.spec.containers[0]!.imagePullPolicy, "IfNotPresent");
  });

  test("multi-document files name the document; other kinds are skipped with a warning", () => {
    const text = `${POD}---
apiVersion: v1
kind: Service
metadata: { name: web }
---
apiVersion: v1
kind: Pod
metadata: { name: worker, namespace: jobs }
spec:
  restartPolicy: OnFailure
  containers: [{ name: w, image: busybox, ports: [{ containerPort: 0 }] }]
---
`;
    assert.deepEqual(problems(text), [
      "web.yaml (document 3): spec.containers[0].ports[0].containerPort: must be 1-65535",
    ]);
    const ok = parseManifest(text.replace("containerPort: 0", "containerPort: 8080"), {
      path: PATH,
      displayName: "web.yaml",
    });
    assert.deepEqual(
      ok.pods.map((p) => `${p.metadata.namespace}/${p.metadata.name}`),
      ["default/web", "jobs/worker"],
    );
    assert.deepEqual(ok.warnings, [
      'web.yaml (document 2): kind "Service" is not run by berth, skipped (only Pod and List)',
    ]);
  });

  test("a v1 List of pods is accepted, with item paths in errors", () => {
    const list = `
apiVersion: v1
kind: List
items:
  - apiVersion: v1
    kind: Pod
    metadata: { name: a }
    spec: { containers: [{ name: a, image: busybox }] }
  - apiVersion: v1
    kind: Pod
    metadata: { name: b }
    spec: { containers: [{ name: b, image: busybox }], terminationGracePeriodSeconds: -1 }
`;
    assert.deepEqual(problems(list), [
      "web.yaml: items[1].spec.terminationGracePeriodSeconds: must be greater than or equal to 0",
    ]);
  });

  test("YAML syntax errors carry line and column; wrong kinds and versions are errors", () => {
    assert.match(problems("apiVersion: v1\nkind: Pod\nmetadata: { name: web\n")[0]!, /^web\.yaml:\d+:\d+: /);
    assert.deepEqual(problems("apiVersion: v2\nkind: Pod\nmetadata: { name: web }\n"), [
      'web.yaml: apiVersion: unsupported value "v2": supported values: "v1"',
    ]);
    assert.deepEqual(problems("apiVersion: v1\nmetadata: { name: web }\n"), ["web.yaml: kind: required value"]);
    assert.deepEqual(problems(""), ["web.yaml: no pods (expected a v1 Pod, or a v1 List of Pods)"]);
  });

  test("duplicate names, host ports and mount paths are errors", () => {
    const text = `
apiVersion: v1
kind: Pod
metadata: { name: web }
spec:
  volumes: [{ name: v, emptyDir: {} }]
  initContainers: [{ name: web, image: busybox }]
  containers:
    - name: web
      image: busybox
      ports: [{ containerPort: 80, hostPort: 8080 }]
      volumeMounts: [{ name: v, mountPath: /data }, { name: v, mountPath: /data/ }]
    - name: other
      image: busybox
      ports: [{ containerPort: 81, hostPort: 8080 }]
`;
    assert.deepEqual(problems(text), [
      "web.yaml: spec.containers[0].volumeMounts[1].mountPath: must be unique (/data/)",
      'web.yaml: spec.containers[0].name: duplicate value "web" (also spec.initContainers[0].name)',
      'web.yaml: spec.containers[1].ports[0].hostPort: duplicate value "0.0.0.0:8080/TCP" (also spec.containers[0].ports[0].hostPort)',
    ]);
  });

  test("hostNetwork pods may not map a hostPort to another port", () => {
    const text = `
apiVersion: v1
kind: Pod
metadata: { name: web }
spec:
  hostNetwork: true
  containers: [{ name: web, image: busybox, ports: [{ containerPort: 80, hostPort: 8080 }] }]
`;
    assert.deepEqual(problems(text), [
      "web.yaml: spec.containers[0].ports[0].hostPort: must match containerPort when hostNetwork is true",
    ]);
  });

  test("recursiveReadOnly needs readOnly, and Enabled needs propagation None", () => {
    const text = `
apiVersion: v1
kind: Pod
metadata: { name: web }
spec:
  volumes: [{ name: v, emptyDir: {} }]
  containers:
    - name: web
      image: busybox
      volumeMounts:
        - { name: v, mountPath: /a, recursiveReadOnly: IfPossible }
        - { name: v, mountPath: /b, readOnly: true, recursiveReadOnly: Enabled, mountPropagation: HostToContainer }
        - { name: v, mountPath: /c, readOnly: true, recursiveReadOnly: Sometimes }
`;
    assert.deepEqual(problems(text), [
      "web.yaml: spec.containers[0].volumeMounts[0].recursiveReadOnly: may only be specified when readOnly is true",
      "web.yaml: spec.containers[0].volumeMounts[1].recursiveReadOnly: Enabled requires mountPropagation None",
      'web.yaml: spec.containers[0].volumeMounts[2].recursiveReadOnly: unsupported value "Sometimes": supported values: "Disabled", "IfPossible", "Enabled"',
    ]);
  });

  test("reserved label prefixes and bad label values are errors", () => {
    const text = POD.replace("labels: { app: web }", 'labels: { berth.io/manifest: x, app: "not ok!" }');
    assert.deepEqual(problems(text), [
      "web.yaml: metadata.labels[berth.io/manifest]: the prefix is reserved for the pod runner",
      "web.yaml: metadata.labels[app]: invalid value \"not ok!\": a label value must be empty or at most 63 alphanumeric characters, '-', '_' or '.', starting and ending with an alphanumeric character",
    ]);
  });

  test("probes, env and security contexts are read with their defaults", () => {
    const text = `
apiVersion: v1
kind: Pod
metadata: { name: web }
spec:
  securityContext: { runAsUser: 1000, sysctls: [{ name: net.ipv4.ip_unprivileged_port_start, value: "0" }] }
  containers:
    - name: web
      image: busybox
      ports: [{ name: http, containerPort: 80 }]
      env:
        - { name: POD, valueFrom: { fieldRef: { fieldPath: metadata.name } } }
        - { name: APP, valueFrom: { fieldRef: { fieldPath: "metadata.labels['app']" } } }
        - { name: MEM, valueFrom: { resourceFieldRef: { resource: limits.memory, divisor: 1Mi } } }
      securityContext: { allowPrivilegeEscalation: false, capabilities: { drop: [ALL], add: [NET_BIND_SERVICE] } }
      readinessProbe: { httpGet: { path: healthz, port: http } }
      livenessProbe: { tcpSocket: { port: 80 }, periodSeconds: 2 }
`;
    const pod = parseManifest(text, { path: PATH }).pods[0]!;
    const c = pod.spec.containers[0]!;
    assert.deepEqual(c.readinessProbe, {
      httpGet: { host: "", path: "/healthz", port: "http", scheme: "HTTP", httpHeaders: [] },
      initialDelaySeconds: 0,
      periodSeconds: 10,
      timeoutSeconds: 1,
      successThreshold: 1,
      failureThreshold: 3,
    });
    assert.equal(c.livenessProbe?.periodSeconds, 2);
    assert.deepEqual(
      c.env.map((e) => e.fieldRef ?? e.resourceFieldRef?.resource),
      ["metadata.name", "metadata.labels['app']", "limits.memory"],
    );
    assert.deepEqual(c.securityContext.capabilities, { add: ["NET_BIND_SERVICE"], drop: ["ALL"] });
    assert.equal(c.securityContext.allowPrivilegeEscalation, false);
    assert.equal(pod.spec.securityContext.runAsUser, 1000);
  });

  test("the default pull policy follows the API server", () => {
    assert.equal(defaultPullPolicy("busybox"), "Always");
    assert.equal(defaultPullPolicy("busybox:latest"), "Always");
    assert.equal(defaultPullPolicy("busybox:1.36"), "IfNotPresent");
    assert.equal(defaultPullPolicy("127.0.0.1:5000/web"), "Always", "a registry port is not a tag");
    assert.equal(defaultPullPolicy("127.0.0.1:5000/web:v1"), "IfNotPresent");
    assert.equal(defaultPullPolicy("busybox@sha256:abcd"), "IfNotPresent");
  });
});
