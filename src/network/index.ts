/**
 * Pod networking through CNI: network namespaces, configuration discovery and watching,
 * plugin execution per the CNI spec, and the result cache that makes DEL survive restarts; pods'
 * networking over them (createSandboxNetworking) and port-forward relays into a pod's namespace.
 * Domain types only; `cri/` converts CRI messages to these. The on-disk layout is in paths.ts.
 */
export {
  bandwidthFromAnnotations,
  type CapabilityArgs,
  EGRESS_BANDWIDTH_ANNOTATION,
  INGRESS_BANDWIDTH_ANNOTATION,
  parseQuantity,
} from "./capabilities.js";
export {
  type DefaultConflistOptions,
  defaultConflist,
  loadNetworkConfig,
  type NetworkConfigList,
  type PluginConf,
  POD_CIDR_PLACEHOLDER,
  parseNetworkConfig,
  SUPPORTED_CNI_VERSIONS,
} from "./config.js";
export {
  createNetworkManager,
  NETWORK_NOT_READY_REASON,
  NetworkManager,
  type NetworkManagerOptions,
  type NetworkOperation,
  type SetUpRequest,
} from "./manager.js";
export { createNetns, isNetns, type NetnsOptions, netnsArgv, removeNetns, runInNetns } from "./netns.js";
export {
  DEFAULT_CONF_DIR,
  DEFAULT_IFNAME,
  DEFAULT_NETNS_DIR,
  DEFAULT_PLUGIN_DIRS,
  DEFAULT_RESULT_DIR,
  netnsPath,
} from "./paths.js";
export { type CniCommand, CniPluginError, pluginErrorOf } from "./plugin.js";
export { type ForwardPortOptions, forwardPort } from "./port-forward.js";
export {
  createSandboxNetworking,
  type PodNetworkSpec,
  type SandboxNetworking,
  type SandboxNetworkingOptions,
} from "./sandbox-network.js";
export type {
  Bandwidth,
  CniResult,
  DnsConfig,
  IpConfig,
  IpRange,
  NetworkInterface,
  NetworkStatus,
  PodNetwork,
  PortMapping,
  ResultDns,
  Route,
} from "./types.js";
export { ConfigWatcher, type ConfigWatcherOptions } from "./watcher.js";
