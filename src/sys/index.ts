export { type RunOptions, type RunResult, run, runUnchecked } from "./exec.js";
