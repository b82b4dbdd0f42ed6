export { type Config, defaultConfig, formatConfig, loadConfig, parseConfig, type RuntimeHandler } from "./config.js";
