export { signalOption, type UntilAbortedOptions, untilAborted } from "./abort.js";
export { fsyncDir, writeFileAtomic } from "./atomic-file.js";
export { formatHostPort, type HostPort, parseHostPort } from "./host-port.js";
export { AmbiguousPrefixError, newId, resolvePrefix, shortId } from "./ids.js";
export { KeyedMutex } from "./keyed-mutex.js";
export { pathExists } from "./path-exists.js";
export { ensureDir } from "./private-dir.js";
export { createRefreshingCache, type RefreshingCache, type RefreshingCacheOptions } from "./refreshing-cache.js";
export { packageRoot, packageVersion } from "./version.js";
