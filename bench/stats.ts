/** Small statistics helpers for the benchmarks. */

/** The p-th percentile (0..100) of `values`, nearest-rank. */
export function percentile(values: number[], p: number): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[rank]!;
}

/** Rounds to `digits` decimals. */
export function round(n: number, digits = 1): number {
  const f = 10 ** digits;
  return Math.round(n * f) / f;
}

/** The median of `values` (the mean of the two middle ones when their number is even). */
export function median(values: number[]): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/**
 * The figures of several runs of one scenario as one record (`npm run bench -- --repeat N`):
 * each numeric field is the median of the runs, and `worst` names the fields where the worst
 * run is the figure instead (the largest: `lost` must be 0 in every run, not in most). A
 * field that is not a finite number in every run, or is not a number, is taken from the
 * first run. Medians are rounded to three decimals. `ranges` gives the smallest and largest value of the fields asked for.
 */
export function combineRuns<T extends object>(runs: readonly T[], opts: { worst?: readonly string[]; ranges?: readonly string[] } = {}): { combined: T; ranges: Record<string, [number, number]> } {
  if (runs.length === 0) throw new Error('combineRuns needs at least one run');
  const first = runs[0] as Record<string, unknown>;
  const combined: Record<string, unknown> = { ...first };
  const ranges: Record<string, [number, number]> = {};
  for (const key of Object.keys(first)) {
    const values = runs.map((r) => (r as Record<string, unknown>)[key]);
    if (!values.every((v): v is number => typeof v === 'number' && Number.isFinite(v))) continue;
    // rounded: the mean of two middle values is a float sum (0.65 + 0.78 is 0.7150000000000001)
    combined[key] = opts.worst?.includes(key) ? Math.max(...values) : round(median(values), 3);
    if (opts.ranges?.includes(key)) ranges[key] = [Math.min(...values), Math.max(...values)];
  }
  return { combined: combined as T, ranges };
}
