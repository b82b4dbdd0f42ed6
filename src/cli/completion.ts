/** `completion bash`: a bash completion script generated from the command tree (so every command is in it). */
import type { Command } from "commander";
import { invalidArgumentStatus } from "./context.js";

/** What the positional arguments of a command complete to. */
const ARGUMENT_KINDS: Record<string, "container" | "pod" | "image" | "file"> = {
  start: "container",
  stop: "container",
  rm: "container",
  inspect: "container",
  logs: "container",
  exec: "container",
  attach: "container",
  stats: "container",
  stopp: "pod",
  rmp: "pod",
  inspectp: "pod",
  "port-forward": "pod",
  rmi: "image",
  inspecti: "image",
  runp: "file",
  create: "file",
};

/** Registers `completion`. */
export function registerCompletion(program: Command): void {
  program
    .command("completion")
    .description("print a shell completion script (bash); load it with: source <(berth completion bash)")
    .argument("[shell]", "the shell", "bash")
    .action((shell: string) => {
      if (shell !== "bash") throw invalidArgumentStatus(`completion: only bash is supported, not ${shell}`);
      process.stdout.write(bashCompletion(program));
    });
}

function flags(cmd: Command): string[] {
  const out: string[] = [];
  for (const o of cmd.options) {
    if (o.short) out.push(o.short);
    if (o.long) out.push(o.long);
  }
  return [...out, "-h", "--help"];
}

/** The bash script: commands, each command's options, and IDs fetched from the runtime for arguments. */
export function bashCompletion(program: Command): string {
  const commands = program.commands.filter((c) => c.name() !== "help");
  const valued = program.options
    .filter((o) => o.required || o.optional)
    .flatMap((o) => [o.short, o.long].filter(Boolean));
  const cases = commands
    .map((c) => `    ${[c.name(), ...c.aliases()].join("|")}) opts="${flags(c).join(" ")}" ;;`)
    .join("\n");
  const kinds = (kind: string) =>
    Object.entries(ARGUMENT_KINDS)
      .filter(([, k]) => k === kind)
      .map(([n]) => n)
      .join("|");
  return `# bash completion for berth; load with: source <(berth completion bash)
_berth() {
  local cur prev cmd="" i sock=()
  cur="\${COMP_WORDS[COMP_CWORD]}"
  prev="\${COMP_WORDS[COMP_CWORD-1]}"
  for ((i = 1; i < COMP_CWORD; i++)); do
    case "\${COMP_WORDS[i]}" in
      -s|--socket) sock=(--socket "\${COMP_WORDS[i+1]}"); ((i++)) ;;
      ${valued.filter((v) => v !== "-s" && v !== "--socket").join("|")}) ((i++)) ;;
      -*) ;;
      *) [[ -z "$cmd" ]] && cmd="\${COMP_WORDS[i]}" ;;
    esac
  done
  case "$prev" in
    -o|--output) COMPREPLY=($(compgen -W "table json yaml" -- "$cur")); return ;;
    -s|--socket|--pod-config) COMPREPLY=($(compgen -f -- "$cur")); return ;;
  esac
  local global="${flags(program).join(" ")}"
  if [[ -z "$cmd" ]]; then
    if [[ "$cur" == -* ]]; then
      COMPREPLY=($(compgen -W "$global" -- "$cur"))
    else
      COMPREPLY=($(compgen -W "${commands.map((c) => c.name()).join(" ")}" -- "$cur"))
    fi
    return
  fi
  local opts=""
  case "$cmd" in
${cases}
  esac
  if [[ "$cur" == -* ]]; then
    COMPREPLY=($(compgen -W "$opts $global" -- "$cur"))
    return
  fi
  case "$cmd" in
    ${kinds("container")}) COMPREPLY=($(compgen -W "$(berth "\${sock[@]}" ps -a -q 2>/dev/null | cut -c1-13)" -- "$cur")) ;;
    ${kinds("pod")}) COMPREPLY=($(compgen -W "$(berth "\${sock[@]}" pods -q 2>/dev/null | cut -c1-13)" -- "$cur")) ;;
    ${kinds("image")}) COMPREPLY=($(compgen -W "$(berth "\${sock[@]}" images 2>/dev/null | awk 'NR > 1 && $2 != "<none>" { print $1 ":" $2 }')" -- "$cur")) ;;
    ${kinds("file")}) COMPREPLY=($(compgen -f -- "$cur")) ;;
    completion) COMPREPLY=($(compgen -W "bash" -- "$cur")) ;;
  esac
}
complete -F _berth berth
`;
}
