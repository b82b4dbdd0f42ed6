/** Summary statistics of the samples of one round, and the median that combines rounds. */

/** p50, p90 and max of a set of latencies (nearest-rank percentiles), with the sum. */
export interface Distribution {
  p50: number;
  p90: number;
  max: number;
  sum: number;
  n: number;
}

/** Nearest-rank percentile (`p` in 0..100) of `values`; NaN for none. */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.max(1, Math.ceil((p / 100) * sorted.length));
  return sorted[rank - 1] as number;
}

/** The distribution of `values`. */
export function distribution(values: readonly number[]): Distribution {
  return {
    p50: percentile(values, 50),
    p90: percentile(values, 90),
    max: values.length === 0 ? Number.NaN : Math.max(...values),
    sum: values.reduce((a, b) => a + b, 0),
    n: values.length,
  };
}

/** Median of `values` (mean of the middle two for an even count); NaN for none. */
export function median(values: readonly number[]): number {
  const v = values.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0) return Number.NaN;
  const mid = Math.floor(v.length / 2);
  return v.length % 2 === 1 ? (v[mid] as number) : ((v[mid - 1] as number) + (v[mid] as number)) / 2;
}
