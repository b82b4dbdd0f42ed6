/**
 * The argv that runs `argv` inside the network namespace at `path` (`nsenter --net=<path> -- ...`): the one
 * place nsenter's flags are written, for run-to-completion commands and long-lived children alike.
 */
export function netnsArgv(path: string, argv: readonly string[], nsenterPath = "nsenter"): [string, string[]] {
  return [nsenterPath, [`--net=${path}`, "--", ...argv]];
}
