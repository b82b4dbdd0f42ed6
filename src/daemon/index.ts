export { type Daemon, startDaemon } from "./daemon.js";
export { CONFIG_PATH, defaultConfigFile, type InstallResult, install, serviceUnit, UNIT_PATH } from "./install.js";
export { installLastResortHandler, type LastResortOptions, type ProcessEvents } from "./last-resort.js";
export { berthdMain } from "./main.js";
