/**
 * OCI runtime-spec types and composable spec builders. Domain types only: the CRI adapter converts its
 * protobuf messages into these options, and the runtime writes the resulting `Spec` as `config.json`.
 *
 * Typical use: `await buildSpec(withArgs(argv), withUser(u), withCapabilities(c), withSeccomp("RuntimeDefault"),
 * withResources(r, features), withCgroupsPath(p))`.
 */

export {
  CAPABILITIES,
  capabilitiesFromMask,
  currentCapabilities,
  DEFAULT_CAPABILITIES,
  normalizeCapability,
} from "./capabilities.js";
export { deviceFromPath, devicesFromHostPath, devicesUnder } from "./devices.js";
export { type CgroupFeatures, currentOomScoreAdj, detectCgroupFeatures } from "./host.js";
export {
  applyOpts,
  type BindMount,
  buildSpec,
  clampOomScoreAdj,
  compose,
  DEFAULT_DEVICE_RULES,
  DEFAULT_MASKED_PATHS,
  DEFAULT_PATH_ENV,
  DEFAULT_READONLY_PATHS,
  type DeviceRequest,
  defaultSpec,
  linuxResources,
  type Propagation,
  type ResourceLimits,
  type SpecOpt,
  withAnnotations,
  withArgs,
  withBindMounts,
  withCapabilities,
  withCgroupsPath,
  withCwd,
  withDevices,
  withEnv,
  withHostNamespace,
  withHostname,
  withMaskedPaths,
  withNamespace,
  withNoNewPrivileges,
  withOomScoreAdj,
  withPrivileged,
  withReadonlyPaths,
  withReadonlyRootfs,
  withResources,
  withRlimit,
  withRootPath,
  withSeccomp,
  withSysctls,
  withTerminal,
  withUser,
} from "./opts.js";
export { defaultSeccompProfile } from "./seccomp-default.js";
export {
  type Linux,
  type LinuxCapabilities,
  type LinuxCPU,
  type LinuxDevice,
  type LinuxDeviceCgroup,
  type LinuxHugepageLimit,
  type LinuxIDMapping,
  type LinuxMemory,
  type LinuxNamespace,
  type LinuxPids,
  type LinuxResources,
  type LinuxSeccomp,
  type LinuxSeccompArg,
  type LinuxSyscall,
  type Mount,
  type NamespaceType,
  OCI_VERSION,
  type POSIXRlimit,
  type Process,
  type Root,
  type SeccompAction,
  type Spec,
  type User,
} from "./spec.js";
