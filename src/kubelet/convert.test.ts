import assert from "node:assert/strict";
import { describe, test } from "node:test";
import {
  MountPropagation,
  NamespaceMode,
  Protocol,
  SecurityProfile_ProfileType,
  SupplementalGroupsPolicy,
} from "../api/gen/runtime/v1/api_pb.js";
import { containerConfig, dnsConfig, expandVars, type HostInfo, sandboxConfig } from "./convert.js";
import { createLayout } from "./layout.js";
import { parseManifest } from "./manifest.js";
import { ANNOTATIONS, LABELS } from "./types.js";

const host: HostInfo = {
  nodeName: "node-1",
  hostIP: "192.0.2.10",
  dns: { servers: ["192.0.2.53"], searches: ["corp.example"], options: ["ndots:1"] },
};
const layout = createLayout({ stateDir: "/var/lib/berth/kubelet", logRoot: "/var/log/pods" });

const MANIFEST = `
apiVersion: v1
kind: Pod
metadata:
  name: web
  namespace: shop
  labels: { app: web }
  annotations: { team: storefront }
spec:
  hostname: front
  terminationGracePeriodSeconds: 5
  dnsConfig: { nameservers: [10.96.0.10], searches: [shop.svc], options: [{ name: ndots, value: "5" }, { name: edns0 }] }
  securityContext:
    runAsUser: 1000
    runAsGroup: 3000
    supplementalGroups: [4000]
    fsGroup: 2000
    supplementalGroupsPolicy: Strict
    sysctls: [{ name: net.ipv4.ip_unprivileged_port_start, value: "0" }]
    seccompProfile: { type: RuntimeDefault }
  volumes:
    - { name: cache, emptyDir: {} }
    - { name: host, hostPath: { path: /srv/data, type: DirectoryOrCreate } }
  containers:
    - name: app
      image: registry.example/app:1.0
      command: [/bin/app, "--listen=$(PORT)"]
      args: ["$(GREETING) $(UNDEFINED) $$(PORT)"]
      workingDir: /work
      env:
        - { name: PORT, value: "8080" }
        - { name: GREETING, value: "hello on $(PORT)" }
        - { name: POD_NAME, valueFrom: { fieldRef: { fieldPath: metadata.name } } }
        - { name: POD_NS, valueFrom: { fieldRef: { fieldPath: metadata.namespace } } }
        - { name: POD_IP, valueFrom: { fieldRef: { fieldPath: status.podIP } } }
        - { name: NODE, valueFrom: { fieldRef: { fieldPath: spec.nodeName } } }
        - { name: APP, valueFrom: { fieldRef: { fieldPath: "metadata.labels['app']" } } }
        - { name: MEM_MI, valueFrom: { resourceFieldRef: { resource: limits.memory, divisor: 1Mi } } }
        - { name: CPU_M, valueFrom: { resourceFieldRef: { resource: requests.cpu, divisor: 1m } } }
      ports:
        - { containerPort: 8080, hostPort: 18080 }
        - { containerPort: 53, protocol: UDP }
      resources:
        requests: { cpu: 250m, memory: 64Mi }
        limits: { cpu: "1.5", memory: 128Mi }
      securityContext:
        runAsUser: 1001
        readOnlyRootFilesystem: true
        allowPrivilegeEscalation: false
        capabilities: { add: [NET_ADMIN], drop: [ALL] }
      volumeMounts:
        - { name: cache, mountPath: /cache, readOnly: true, recursiveReadOnly: Enabled }
        - { name: host, mountPath: /data, readOnly: true, subPath: sub, mountPropagation: HostToContainer }
    - name: sidecar
      image: busybox
      resources: { limits: { cpu: 100m } }
`;

const pod = parseManifest(MANIFEST, { path: "/srv/pods/web.yaml" }).pods[0]!;
const uid = pod.metadata.uid;

describe("pod → CRI config", () => {
  test("the sandbox carries identity, hostname, log directory, DNS, ports, labels and security context", () => {
    const sb = sandboxConfig(pod, { layout, attempt: 2, owner: "run", host });
    assert.deepEqual(
      { ...sb.metadata, $typeName: undefined },
      { $typeName: undefined, name: "web", namespace: "shop", uid, attempt: 2 },
    );
    assert.equal(sb.hostname, "front");
    assert.equal(sb.logDirectory, `/var/log/pods/shop_web_${uid}`);
    assert.deepEqual(
      [sb.dnsConfig?.servers, sb.dnsConfig?.searches, sb.dnsConfig?.options],
      [
        ["192.0.2.53", "10.96.0.10"],
        ["corp.example", "shop.svc"],
        ["ndots:5", "edns0"],
      ],
    );
    assert.deepEqual(
      sb.portMappings.map((p) => [p.protocol, p.containerPort, p.hostPort]),
      [[Protocol.TCP, 8080, 18080]],
      "only ports with a hostPort are mapped",
    );
    assert.equal(sb.labels.app, "web");
    assert.equal(sb.labels[LABELS.podUid], uid);
    assert.equal(sb.labels[LABELS.podName], "web");
    assert.equal(sb.labels[LABELS.podNamespace], "shop");
    assert.equal(sb.labels[LABELS.owner], "run");
    assert.match(sb.labels[LABELS.manifest] ?? "", /^[0-9a-f]{16}$/);
    assert.equal(sb.annotations.team, "storefront");
    assert.equal(sb.annotations[ANNOTATIONS.gracePeriod], "5");
    assert.deepEqual(JSON.parse(sb.annotations[ANNOTATIONS.pod] ?? "{}").metadata.uid, uid);
    assert.deepEqual(sb.linux?.sysctls, { "net.ipv4.ip_unprivileged_port_start": "0" });
    const sc = sb.linux?.securityContext;
    assert.equal(sc?.runAsUser?.value, 1000n);
    assert.equal(sc?.runAsGroup?.value, 3000n);
    assert.deepEqual(sc?.supplementalGroups, [4000n, 2000n]);
    assert.equal(sc?.supplementalGroupsPolicy, SupplementalGroupsPolicy.Strict);
    assert.equal(sc?.namespaceOptions?.network, NamespaceMode.POD);
    assert.equal(sc?.namespaceOptions?.pid, NamespaceMode.CONTAINER);
    assert.equal(sc?.seccomp?.profileType, SecurityProfile_ProfileType.RuntimeDefault);
    assert.equal(sc?.privileged, false);
  });

  test("hostNetwork pods use the node's network and name; dnsPolicy None uses dnsConfig alone", () => {
    const hn = parseManifest(
      MANIFEST.replace("  hostname: front\n", "  hostNetwork: true\n  dnsPolicy: None\n").replace(
        "hostPort: 18080",
        "hostPort: 8080",
      ),
      {
        path: "/srv/pods/web.yaml",
      },
    ).pods[0]!;
    const sb = sandboxConfig(hn, { layout, attempt: 0, owner: "run", host });
    assert.equal(sb.linux?.securityContext?.namespaceOptions?.network, NamespaceMode.NODE);
    assert.equal(sb.hostname, "node-1");
    assert.deepEqual(sb.portMappings, [], "no port mappings on the host network");
    assert.deepEqual(dnsConfig(hn, host)?.servers, ["10.96.0.10"]);
    const env = containerConfig(hn, hn.spec.containers[0]!, {
      layout,
      restartCount: 0,
      init: false,
      podIP: "",
      host,
      terminationMessageFile: "",
      owner: "run",
    }).envs;
    assert.equal(
      new TextDecoder().decode(env.find((e) => e.key === "POD_IP")?.value),
      "192.0.2.10",
      "a hostNetwork pod's IP is the host's",
    );
  });

  test("a container gets command/args with $(VAR) expansion, resolved env, mounts, resources and security context", () => {
    const c = containerConfig(pod, pod.spec.containers[0]!, {
      layout,
      restartCount: 3,
      init: false,
      podIP: "10.88.0.7",
      host,
      terminationMessageFile: `/var/lib/berth/kubelet/pods/${uid}/containers/app/3`,
      owner: "run",
    });
    assert.deepEqual([c.metadata?.name, c.metadata?.attempt], ["app", 3]);
    assert.equal(c.image?.image, "registry.example/app:1.0");
    assert.deepEqual(c.command, ["/bin/app", "--listen=8080"]);
    assert.deepEqual(c.args, ["hello on 8080 $(UNDEFINED) $(PORT)"]);
    assert.equal(c.workingDir, "/work");
    const env = Object.fromEntries(c.envs.map((e) => [e.key, new TextDecoder().decode(e.value)]));
    assert.deepEqual(env, {
      PORT: "8080",
      GREETING: "hello on 8080",
      POD_NAME: "web",
      POD_NS: "shop",
      POD_IP: "10.88.0.7",
      NODE: "node-1",
      APP: "web",
      MEM_MI: "128",
      CPU_M: "250",
    });
    assert.equal(c.logPath, "app/3.log");
    assert.deepEqual(
      c.mounts.map((m) => [m.containerPath, m.hostPath, m.readonly, m.recursiveReadOnly, m.propagation]),
      [
        [
          "/cache",
          `/var/lib/berth/kubelet/pods/${uid}/volumes/kubernetes.io~empty-dir/cache`,
          true,
          true,
          MountPropagation.PROPAGATION_PRIVATE,
        ],
        ["/data", "/srv/data/sub", true, false, MountPropagation.PROPAGATION_HOST_TO_CONTAINER],
        [
          "/dev/termination-log",
          `/var/lib/berth/kubelet/pods/${uid}/containers/app/3`,
          false,
          false,
          MountPropagation.PROPAGATION_PRIVATE,
        ],
      ],
    );
    const r = c.linux?.resources;
    assert.deepEqual(
      [r?.cpuShares, r?.cpuQuota, r?.cpuPeriod, r?.memoryLimitInBytes],
      [256n, 150_000n, 100_000n, 134_217_728n],
    );
    const sc = c.linux?.securityContext;
    assert.equal(sc?.runAsUser?.value, 1001n, "the container's runAsUser wins over the pod's");
    assert.equal(sc?.runAsGroup?.value, 3000n, "the pod's runAsGroup applies");
    assert.equal(sc?.readonlyRootfs, true);
    assert.equal(sc?.noNewPrivs, true);
    assert.deepEqual([sc?.capabilities?.addCapabilities, sc?.capabilities?.dropCapabilities], [["NET_ADMIN"], ["ALL"]]);
    assert.equal(c.labels[LABELS.containerName], "app");
    assert.equal(c.annotations[ANNOTATIONS.restartCount], "3");
    assert.equal(c.annotations[ANNOTATIONS.containerType], "regular");
    assert.equal(c.annotations[ANNOTATIONS.terminationMessagePath], "/dev/termination-log");
  });

  test("limits without requests: requests default to limits, shares from them", () => {
    const c = containerConfig(pod, pod.spec.containers[1]!, {
      layout,
      restartCount: 0,
      init: true,
      podIP: "",
      host,
      terminationMessageFile: "",
      owner: "run",
    });
    const r = c.linux?.resources;
    assert.deepEqual([r?.cpuShares, r?.cpuQuota, r?.cpuPeriod, r?.memoryLimitInBytes], [102n, 10_000n, 100_000n, 0n]);
    assert.equal(c.annotations[ANNOTATIONS.containerType], "init");
    assert.deepEqual(c.mounts, [], "no termination message file when none is given");
  });

  test("$(VAR) expansion follows Kubernetes: undefined stays, $$ escapes, unclosed stays", () => {
    const vars: Record<string, string> = { A: "1", B: "two" };
    const lookup = (n: string) => vars[n];
    assert.equal(expandVars("$(A)-$(B)", lookup), "1-two");
    assert.equal(expandVars("$(C)", lookup), "$(C)");
    assert.equal(expandVars("$$(A) $$ $", lookup), "$(A) $ $");
    assert.equal(expandVars("$(A", lookup), "$(A");
    assert.equal(expandVars("cost: $5", lookup), "cost: $5");
  });
});
