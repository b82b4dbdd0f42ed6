/**
 * Kubernetes resource quantities (`500m`, `1.5`, `128Mi`, `1G`, `1e3`), parsed exactly: the value
 * is kept as a fraction of bigints, so `0.1` CPU is exactly 100 millicores and `1.5Gi` is exactly
 * 1610612736 bytes. Rounding is always up, as `resource.Quantity.MilliValue()`/`Value()` do.
 *
 * Grammar (k8s.io/apimachinery/pkg/api/resource):
 * ```
 * quantity ::= sign? number suffix
 * number   ::= digits | digits "." digits? | "." digits
 * suffix   ::= "" | binarySI | decimalSI | ("e" | "E") sign? digits
 * binarySI ::= Ki | Mi | Gi | Ti | Pi | Ei
 * decimalSI ::= n | u | m | k | M | G | T | P | E
 * ```
 */

/** A parsed quantity: `numerator / denominator`, denominator > 0. */
export interface Quantity {
  numerator: bigint;
  denominator: bigint;
}

const QUANTITY = /^([+-]?)(\d+\.?\d*|\.\d+)(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E|[eE][+-]?\d+)?$/;

const BINARY: Record<string, bigint> = {
  Ki: 1n << 10n,
  Mi: 1n << 20n,
  Gi: 1n << 30n,
  Ti: 1n << 40n,
  Pi: 1n << 50n,
  Ei: 1n << 60n,
};
const DECIMAL: Record<string, number> = { n: -9, u: -6, m: -3, k: 3, M: 6, G: 9, T: 12, P: 15, E: 18 };

/** Parses a quantity string (or a plain number, as YAML gives `cpu: 2`); throws an Error saying why not. */
export function parseQuantity(input: string | number): Quantity {
  const text = typeof input === "number" ? numberText(input) : input.trim();
  const m = QUANTITY.exec(text);
  if (!m)
    throw new Error(
      `quantity ${JSON.stringify(String(input))}: must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'`,
    );
  const [, sign = "", digits = "", suffix = ""] = m;
  const [whole = "", frac = ""] = digits.split(".");
  let numerator = BigInt(`${whole || "0"}${frac}`);
  let denominator = 10n ** BigInt(frac.length);
  if (sign === "-") numerator = -numerator;
  if (suffix in BINARY) {
    numerator *= BINARY[suffix] as bigint;
  } else {
    const exp = suffix in DECIMAL ? (DECIMAL[suffix] as number) : suffix ? Number(suffix.slice(1)) : 0;
    if (Math.abs(exp) > 100) throw new Error(`quantity ${JSON.stringify(text)}: exponent out of range`);
    if (exp >= 0) numerator *= 10n ** BigInt(exp);
    else denominator *= 10n ** BigInt(-exp);
  }
  return { numerator, denominator };
}

function numberText(n: number): string {
  if (!Number.isFinite(n)) throw new Error(`quantity ${n}: not a finite number`);
  // Avoid "1e-7" forms losing precision through the regular expression path: toString is exact enough here.
  return String(n);
}

/** ceil(q × scale) as a bigint. */
function scaledCeil(q: Quantity, scale: bigint): bigint {
  const n = q.numerator * scale;
  const d = q.denominator;
  const floor = n / d;
  // bigint division truncates toward zero; ceil differs only for positive remainders.
  return n % d !== 0n && n > 0n ? floor + 1n : floor;
}

/** CPU quantity → millicores, rounded up (`100m` → 100, `0.5` → 500, `2` → 2000). */
export function cpuMillis(input: string | number): number {
  return toSafeNumber(scaledCeil(parseQuantity(input), 1000n), input);
}

/** Memory (or any byte) quantity → bytes, rounded up (`128Mi` → 134217728, `1G` → 1e9). */
export function bytesOf(input: string | number): number {
  return toSafeNumber(scaledCeil(parseQuantity(input), 1n), input);
}

/** Rounds `q / divisor` up, for `resourceFieldRef` values (`limits.memory` with divisor `1Mi`). */
export function divideCeil(value: Quantity, divisor: Quantity): bigint {
  if (divisor.numerator <= 0n) throw new Error("divisor must be positive");
  return scaledCeil(
    { numerator: value.numerator * divisor.denominator, denominator: value.denominator * divisor.numerator },
    1n,
  );
}

function toSafeNumber(v: bigint, input: string | number): number {
  if (v > BigInt(Number.MAX_SAFE_INTEGER) || v < -BigInt(Number.MAX_SAFE_INTEGER)) {
    throw new Error(`quantity ${JSON.stringify(String(input))}: too large`);
  }
  return Number(v);
}

/** Default CFS period (µs), as the kubelet uses. */
export const CPU_PERIOD_US = 100_000;
/** The kubelet's floor for cpu.shares (cgroup v1 semantics; the runtime converts to cpu.weight). */
export const MIN_SHARES = 2;
/** The kubelet's floor for a CFS quota (µs). */
export const MIN_QUOTA_US = 1000;

/** Millicores → cpu.shares the way the kubelet computes them: millicores × 1024 / 1000, at least 2. */
export function milliCpuToShares(millis: number): number {
  if (millis === 0) return MIN_SHARES;
  return Math.max(MIN_SHARES, Math.floor((millis * 1024) / 1000));
}

/** Millicores → CFS quota (µs) for `period`: millicores × period / 1000, at least 1000; 0 = no limit. */
export function milliCpuToQuota(millis: number, period = CPU_PERIOD_US): number {
  if (millis === 0) return 0;
  return Math.max(MIN_QUOTA_US, Math.floor((millis * period) / 1000));
}

/** Formats millicores the way Kubernetes prints them (`250m`, `2`). */
export function formatCpu(millis: number): string {
  return millis % 1000 === 0 ? String(millis / 1000) : `${millis}m`;
}

/** Formats bytes with the largest exact binary suffix (`128Mi`, `1Gi`, `1000`). */
export function formatBytes(bytes: number): string {
  for (const [suffix, size] of [
    ["Ei", 2 ** 60],
    ["Pi", 2 ** 50],
    ["Ti", 2 ** 40],
    ["Gi", 2 ** 30],
    ["Mi", 2 ** 20],
    ["Ki", 2 ** 10],
  ] as const) {
    if (bytes >= size && bytes % size === 0) return `${bytes / size}${suffix}`;
  }
  return String(bytes);
}
