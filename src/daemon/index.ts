export { type Daemon, startDaemon } from "./daemon.js";
export { installLastResortHandler, type LastResortOptions, type ProcessEvents } from "./last-resort.js";
export { berthdMain } from "./main.js";
