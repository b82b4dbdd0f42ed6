import type { Builder } from "../build/index.js";
import type { Config } from "../config/index.js";
import type { ImageService } from "../images/index.js";
import type { Logger } from "../log/index.js";
import type { ContainerManager, SandboxManager } from "../pods/index.js";
import type { StreamingServer } from "../streaming/index.js";

/** A readiness condition as the CRI reports it (RuntimeReady, NetworkReady). */
export interface Condition {
  ready: boolean;
  reason: string;
  message: string;
}

/**
 * Everything the CRI handlers reach: the image domain, the pod managers, the streaming server's request
 * cache, the config and readiness. The daemon's composition root (daemon/daemon.ts) builds it once; the
 * handlers import no other domain state, so each RPC is a conversion (convert.ts) around one call here.
 */
export interface CriContext {
  log: Logger;
  /** berth's version, from package.json. */
  version: string;
  config: Config;
  runtimeCondition(): Condition;
  networkCondition(): Condition;
  /** Records the node's pod CIDR (UpdateRuntimeConfig) for the default IPAM. */
  setPodCidr(cidr: string): Promise<void>;
  images: ImageService;
  /** The image builder (berth.v1.Builder); absent in tests that do not build. */
  builder?: Pick<Builder, "build" | "prune">;
  /** Where Exec/Attach/PortForward requests are cached and served. */
  streaming: Pick<StreamingServer, "prepareExec" | "prepareAttach" | "preparePortForward">;
  /** Pod sandboxes and their containers. */
  pods: { sandboxes: SandboxManager; containers: ContainerManager };
  /** Extra facts for `Status` with verbose=true: each key becomes one `info` entry holding its value as JSON. */
  verboseInfo(): Record<string, unknown>;
}
