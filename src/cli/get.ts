/**
 * `berth get pods`: pods as the pod runner sees them, read from CRI (plus the runner's status
 * files), so it works from any shell, whichever process runs the pods; laid out like kubectl's.
 */
import type { Command } from "commander";
import { listPodViews, POD_HEADERS, podRow, readHostInfo } from "../kubelet/index.js";
import { withClient } from "./context.js";
import { formatStructured, formatTable } from "./output.js";
import { err, out, POD_ALIASES } from "./pod-runner.js";

interface GetOpts {
  namespace: string;
  allNamespaces?: boolean;
  selector?: string;
}

export function registerGet(program: Command): void {
  program
    .command("get")
    .description("list pods like kubectl get pods (NAME READY STATUS RESTARTS AGE IP)")
    .argument("<resource>", "pods (or pod, po)")
    .argument("[names...]", "only these pods")
    .option("-n, --namespace <ns>", "namespace", "default")
    .option("-A, --all-namespaces", "pods of every namespace")
    .option("-l, --selector <key=value,...>", "only pods with these labels")
    .action(async (resource: string, names: string[], opts: GetOpts, cmd: Command) => {
      if (!POD_ALIASES.includes(resource))
        throw new Error(`the server doesn't have a resource type "${resource}" (berth get supports: pods)`);
      await withClient(cmd, async (client, g) => {
        const host = await readHostInfo();
        const labels = parseSelector(opts.selector);
        let views = await listPodViews(client, {
          hostIP: host.hostIP,
          ...(opts.allNamespaces ? {} : { namespace: opts.namespace }),
        });
        views = views.filter((v) => Object.entries(labels).every(([k, val]) => v.labels[k] === val));
        if (names.length > 0) {
          const missing = names.filter((n) => !views.some((v) => v.name === n));
          views = views.filter((v) => names.includes(v.name));
          for (const n of missing) err(`Error from server (NotFound): pods "${n}" not found`);
          if (missing.length > 0) process.exitCode = 1;
        }
        if (g.output !== "table")
          return out(formatStructured(names.length === 1 && views.length === 1 ? views[0] : views, g.output));
        if (views.length === 0) {
          if (names.length === 0)
            err(`No resources found${opts.allNamespaces ? "" : ` in ${opts.namespace} namespace`}.`);
          return;
        }
        const now = Date.now();
        const headers = opts.allNamespaces ? ["NAMESPACE", ...POD_HEADERS] : POD_HEADERS;
        out(
          formatTable(
            headers,
            views.map((v) => podRow(v, now, opts.allNamespaces === true)),
            { minWidth: 0 },
          ),
        );
      });
    });
}

function parseSelector(s: string | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const part of (s ?? "").split(",").filter(Boolean)) {
    const [k, v = ""] = part.split("=");
    if (!k) throw new Error(`invalid selector ${JSON.stringify(s)}: expected key=value[,key=value]`);
    out[k.trim()] = v.trim();
  }
  return out;
}
