import { bandwidthFromAnnotations } from "./capabilities.js";
import type { NetworkManager } from "./manager.js";
import { createNetns, removeNetns } from "./netns.js";
import { netnsPath } from "./paths.js";
import type { DnsConfig } from "./types.js";

/** A pod as its network sees it: the sandbox domain's record, in the few fields networking reads. */
export interface PodNetworkSpec {
  id: string;
  /** The pinned namespace (from `createNetns`); none while the pod has not got one. */
  netnsPath?: string | undefined;
  config: {
    metadata: { name: string; namespace: string; uid: string };
    annotations: Readonly<Record<string, string>>;
    portMappings: readonly {
      hostPort: number;
      containerPort: number;
      protocol: "tcp" | "udp" | "sctp";
      hostIp: string;
    }[];
    dns?: DnsConfig | undefined;
  };
}

/** A pod's network lifecycle, as the sandbox manager drives it (its `SandboxNetwork`). */
export interface SandboxNetworking {
  /** Where `createNetns` pins the sandbox's netns (known before it exists, so it can be persisted first). */
  netnsPath(sandboxId: string): string;
  createNetns(sandboxId: string): Promise<string>;
  removeNetns(path: string): Promise<void>;
  /** CNI ADD with the pod's port mappings, bandwidth annotations and DNS; returns the pod's addresses. */
  setUp(pod: PodNetworkSpec, options: { signal?: AbortSignal }): Promise<{ ips: string[] }>;
  /** CNI DEL, then the namespace's removal. */
  tearDown(pod: PodNetworkSpec): Promise<void>;
}

/** Options of {@link createSandboxNetworking}. */
export interface SandboxNetworkingOptions {
  /** Where pods' namespaces are pinned (`<state>/netns` unless [cni] netns_dir). */
  netnsDir: string;
}

/** Pods' networking over `manager`: pinned namespaces under `netnsDir` and CNI ADD/DEL in them. */
export function createSandboxNetworking(manager: NetworkManager, o: SandboxNetworkingOptions): SandboxNetworking {
  return {
    netnsPath: (id) => netnsPath(o.netnsDir, id),
    createNetns: (id) => createNetns(id, { dir: o.netnsDir }),
    removeNetns: (path) => removeNetns(path),
    setUp: async (pod, options) => {
      const m = pod.config.metadata;
      const bandwidth = bandwidthFromAnnotations(pod.config.annotations);
      const net = await manager.setUp({
        sandboxId: pod.id,
        netnsPath: pod.netnsPath ?? "",
        podName: m.name,
        podNamespace: m.namespace,
        podUid: m.uid,
        // A mapping without a host port only documents the container's port (the kubelet sends one for
        // every declared containerPort): the portmap plugin rejects host port 0, and containerd drops them too.
        portMappings: pod.config.portMappings
          .filter((p) => p.hostPort > 0)
          .map((p) => ({
            hostPort: p.hostPort,
            containerPort: p.containerPort,
            protocol: p.protocol,
            ...(p.hostIp ? { hostIP: p.hostIp } : {}),
          })),
        ...(bandwidth ? { bandwidth } : {}),
        ...(pod.config.dns ? { dns: pod.config.dns } : {}),
        ...(options.signal ? { signal: options.signal } : {}),
      });
      return { ips: net.ips };
    },
    tearDown: async (pod) => {
      await manager.tearDown(pod.id, pod.netnsPath ?? "");
      if (pod.netnsPath) await removeNetns(pod.netnsPath);
    },
  };
}
