import { constants } from "node:fs";
import { access, mkdir, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { defaultConfig, formatConfig, parseConfig } from "../config/index.js";
import { writeFileAtomic } from "../util/index.js";

/** Where `berthd install --write` puts its two files (under `dest`, "/" on a real host). */
export const UNIT_PATH = "/etc/systemd/system/berthd.service";
export const CONFIG_PATH = "/etc/berth/config.toml";

/**
 * berthd's systemd unit, in the shape of containerd's:
 * - `Delegate=yes`: berthd (through runc's cgroupfs driver) manages cgroups below its own, and
 *   systemd leaves them alone;
 * - `KillMode=process`: stopping or restarting the service signals berthd only, never conmon or the
 *   containers (they outlive a restart, and the new berthd reconnects to them);
 * - no process, file or task limits (a node runs thousands of containers and their monitors),
 *   core dumps allowed, and an OOM score that keeps the kernel from choosing berthd first;
 * - the overlay and br_netfilter modules loaded first (`-`: a kernel with them built in is fine).
 * berthd does not notify systemd, so the service is `Type=simple`.
 */
export function serviceUnit(execStart: string): string {
  return `# berthd: the berth Kubernetes container runtime (CRI v1 on /run/berth/berth.sock).
# Written by \`berthd install\`; see contrib/berthd.service in the berth source.
[Unit]
Description=berth container runtime (Kubernetes CRI)
After=network.target local-fs.target

[Service]
ExecStartPre=-/sbin/modprobe overlay
ExecStartPre=-/sbin/modprobe br_netfilter
ExecStart=${execStart}
Type=simple
Delegate=yes
KillMode=process
Restart=always
RestartSec=5
LimitNPROC=infinity
LimitCORE=infinity
LimitNOFILE=infinity
TasksMax=infinity
OOMScoreAdjust=-999

[Install]
WantedBy=multi-user.target
`;
}

/** The default configuration file: every key at its default, parsed back by berthd's own validator first. */
export function defaultConfigFile(): string {
  const text = `# berthd configuration (every key at its default; \`berthd config default\` prints the same).\n${formatConfig(defaultConfig())}`;
  parseConfig(text, CONFIG_PATH);
  return text;
}

/** What `berthd install` did with each file. */
export interface InstallResult {
  path: string;
  action: "written" | "kept";
}

/**
 * Writes the unit and, unless one exists, the default config under `dest` (atomic writes). An
 * existing config is kept, never overwritten: it is the operator's. The unit is always rewritten.
 */
export async function install(execStart: string, dest = "/"): Promise<InstallResult[]> {
  const unit = join(dest, UNIT_PATH);
  const config = join(dest, CONFIG_PATH);
  await mkdir(dirname(unit), { recursive: true });
  await writeFileAtomic(unit, serviceUnit(execStart), { mode: 0o644 });
  const out: InstallResult[] = [{ path: unit, action: "written" }];
  if (await exists(config)) {
    out.push({ path: config, action: "kept" });
  } else {
    await mkdir(dirname(config), { recursive: true, mode: 0o755 });
    await writeFile(config, defaultConfigFile(), { mode: 0o644, flag: "wx" });
    out.push({ path: config, action: "written" });
  }
  return out;
}

async function exists(path: string): Promise<boolean> {
  try {
    await access(path, constants.F_OK);
    return true;
  } catch {
    return false;
  }
}
