import type { Config } from "../config/index.js";
import type { Logger } from "../log/index.js";

/** A readiness condition as the CRI reports it (RuntimeReady, NetworkReady). */
export interface Condition {
  ready: boolean;
  reason: string;
  message: string;
}

/**
 * What the CRI handlers need from the rest of the daemon. The daemon's composition root
 * builds it; handlers see only this, never concrete implementations. Later issues add
 * the image, sandbox, container and streaming services here.
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
  /** Extra facts for `Status` with verbose=true, shown as JSON. */
  verboseInfo(): Record<string, unknown>;
}
