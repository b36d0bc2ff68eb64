// Small statistics over samples: percentiles of latencies, medians of runs.

/** The p-th percentile (0..100) by the nearest-rank method; null when empty. */
export function percentile(sorted: readonly number[], p: number): number | null {
  if (sorted.length === 0) return null;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))]!;
}

export function sortedCopy(values: Iterable<number>): number[] {
  return [...values].sort((a, b) => a - b);
}

export function median(values: readonly number[]): number | null {
  if (values.length === 0) return null;
  const sorted = sortedCopy(values);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

export function round(value: number | null, digits = 3): number | null {
  if (value === null || !Number.isFinite(value)) return value;
  const scale = 10 ** Math.max(0, digits - Math.max(0, Math.floor(Math.log10(Math.abs(value) || 1)) + 1));
  return Math.round(value * scale) / scale;
}

/** p50/p99/max of latencies in ms. */
export function latencySummary(samples: number[]): { p50_ms: number | null; p99_ms: number | null; max_ms: number | null; count: number } {
  const sorted = sortedCopy(samples);
  return {
    p50_ms: percentile(sorted, 50),
    p99_ms: percentile(sorted, 99),
    max_ms: sorted.length > 0 ? sorted[sorted.length - 1]! : null,
    count: sorted.length,
  };
}
