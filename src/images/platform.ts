import { RuntimeError } from "../errdefs/index.js";

/**
 * Platforms (`os/architecture[/variant]` plus `os.version`) and the choice of one manifest from
 * a multi-platform index, following containerd's `platforms` package: names are normalised
 * (`x86_64` → `amd64`, `aarch64` → `arm64`, ...), a wanted variant also accepts older variants
 * of the same architecture (arm v7 runs v6 and v5 images; arm64 is v8), and the best candidate
 * is the most specific one: same variant first, then the newest compatible one, then none.
 */

/** An OCI platform. `osVersion` is the spec's `os.version` (used by Windows images). */
export interface Platform {
  os: string;
  architecture: string;
  variant?: string;
  osVersion?: string;
}

const ARCH_ALIASES: Record<string, [string, string?]> = {
  x86_64: ["amd64"],
  "x86-64": ["amd64"],
  amd64: ["amd64"],
  i386: ["386"],
  i686: ["386"],
  "386": ["386"],
  aarch64: ["arm64"],
  arm64: ["arm64"],
  armhf: ["arm", "v7"],
  armel: ["arm", "v6"],
  arm: ["arm"],
};

/** Normalises names the way containerd does, so comparisons are exact string equality. */
export function normalizePlatform(p: Platform): Platform {
  const os = p.os.toLowerCase() === "macos" ? "darwin" : p.os.toLowerCase();
  const alias = ARCH_ALIASES[p.architecture.toLowerCase()];
  const architecture = alias?.[0] ?? p.architecture.toLowerCase();
  let variant = (p.variant ?? alias?.[1] ?? "").toLowerCase();
  if (architecture === "arm64" && (variant === "8" || variant === "v8")) variant = "";
  if (architecture === "arm" && /^[5-8]$/.test(variant)) variant = `v${variant}`;
  if (architecture === "arm" && variant === "") variant = "v7";
  if (architecture === "amd64" && variant === "v1") variant = "";
  const out: Platform = { os, architecture };
  if (variant !== "") out.variant = variant;
  if (p.osVersion !== undefined && p.osVersion !== "") out.osVersion = p.osVersion;
  return out;
}

/** Parses `os/arch[/variant]` (as in the `registry.platform` setting); throws InvalidArgument. */
export function parsePlatform(s: string): Platform {
  const parts = s.split("/");
  if (parts.length < 2 || parts.length > 3 || parts.some((x) => !/^[A-Za-z0-9_.-]+$/.test(x))) {
    throw new RuntimeError("InvalidArgument", `invalid platform ${JSON.stringify(s)}: want os/arch[/variant]`);
  }
  const p: Platform = { os: parts[0] as string, architecture: parts[1] as string };
  if (parts[2] !== undefined) p.variant = parts[2];
  return normalizePlatform(p);
}

/** `os/arch[/variant]`. */
export function formatPlatform(p: Platform): string {
  return [p.os, p.architecture, p.variant].filter((x) => x !== undefined && x !== "").join("/");
}

/** The platform of this host, normalised (linux/amd64 on x86-64 machines). */
export function hostPlatform(): Platform {
  const arch: Record<string, string> = {
    x64: "amd64",
    ia32: "386",
    arm64: "arm64",
    arm: "arm",
    ppc64: "ppc64le",
    s390x: "s390x",
    riscv64: "riscv64",
    loong64: "loong64",
  };
  const p: Platform = { os: process.platform, architecture: arch[process.arch] ?? process.arch };
  if (process.arch === "arm") {
    const v = (process.config.variables as Record<string, unknown>).arm_version;
    if (typeof v === "string" || typeof v === "number") p.variant = `v${v}`;
  }
  return normalizePlatform(p);
}

/** The variants an architecture's wanted variant can run, best first. */
function compatibleVariants(architecture: string, variant: string | undefined): (string | undefined)[] {
  const ladder: Record<string, string[]> = {
    arm: ["v8", "v7", "v6", "v5"],
    amd64: ["v4", "v3", "v2"],
  };
  const steps = ladder[architecture];
  if (steps === undefined || variant === undefined) return [variant];
  const i = steps.indexOf(variant);
  if (i === -1) return [variant];
  return [...steps.slice(i), undefined];
}

/** `os.version` `major.minor.build` prefix, which decides compatibility (Windows hosts). */
function buildPrefix(v: string): string {
  return v.split(".").slice(0, 3).join(".");
}

/**
 * Ranks `candidate` against `want` (normalised): undefined when it cannot run here, otherwise a
 * number where lower is better.
 */
export function platformRank(want: Platform, candidate: Platform): number | undefined {
  const w = normalizePlatform(want);
  const c = normalizePlatform(candidate);
  if (c.os !== w.os || c.architecture !== w.architecture) return undefined;
  const variants = compatibleVariants(w.architecture, w.variant);
  const vi = variants.indexOf(c.variant);
  if (vi === -1) return undefined;
  let osRank = 0;
  if (w.osVersion !== undefined && c.osVersion !== undefined) {
    if (buildPrefix(w.osVersion) !== buildPrefix(c.osVersion)) return undefined;
    osRank = w.osVersion === c.osVersion ? 0 : 1;
  }
  return vi * 2 + osRank;
}

/**
 * Picks the best entry of an index for `want`, or undefined when none can run here. Entries
 * without a platform are skipped (attestations and other artifacts carry `unknown/unknown`).
 * Among equally good entries the first in the index wins, as in containerd.
 */
export function selectPlatform<T extends { platform?: Platform }>(
  entries: readonly T[],
  want: Platform,
): T | undefined {
  let best: T | undefined;
  let bestRank = Number.POSITIVE_INFINITY;
  for (const e of entries) {
    if (e.platform === undefined) continue;
    const r = platformRank(want, e.platform);
    if (r !== undefined && r < bestRank) {
      best = e;
      bestRank = r;
    }
  }
  return best;
}
