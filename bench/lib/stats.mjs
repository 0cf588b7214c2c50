// Small statistics and formatting helpers for the benchmark report.

/**
 * Percentiles by the nearest-rank method.
 * @param {Float64Array} sorted ascending
 * @param {number} p in [0, 100]
 */
export function percentile(sorted, p) {
  if (sorted.length === 0) return NaN;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1];
}

/**
 * @param {Array<number[]>} arrays latency samples from several processes
 */
export function summarize(arrays) {
  const n = arrays.reduce((s, a) => s + a.length, 0);
  const all = new Float64Array(n);
  let i = 0;
  for (const a of arrays) for (const v of a) all[i++] = v;
  all.sort();
  return {
    n,
    p50: percentile(all, 50),
    p90: percentile(all, 90),
    p99: percentile(all, 99),
    p999: percentile(all, 99.9),
    max: n ? all[n - 1] : NaN,
    min: n ? all[0] : NaN,
  };
}

/** Formats a number with `d` decimals; '-' for NaN or undefined. */
export function fmt(v, d = 0) {
  if (v === undefined || v === null || Number.isNaN(v)) return '-';
  if (!Number.isFinite(v)) return String(v);
  return v.toLocaleString('en-US', { minimumFractionDigits: d, maximumFractionDigits: d });
}

/** a / b as "0.42x", or '-' when either is missing or b is 0. */
export function ratio(a, b) {
  if (![a, b].every((v) => typeof v === 'number' && Number.isFinite(v)) || b === 0) return '-';
  return `${(a / b).toFixed(2)}x`;
}

/** Merges {key: count} maps. */
export function mergeCounts(maps) {
  const out = {};
  for (const m of maps) for (const [k, v] of Object.entries(m || {})) out[k] = (out[k] || 0) + v;
  return out;
}

/**
 * Merges per-second [count, max] buckets from several processes.
 * @param {Array<Array<[number, number]>>} lists
 */
export function mergeTimelines(lists) {
  const out = [];
  for (const list of lists) {
    list.forEach(([n, mx], i) => {
      const b = out[i] || (out[i] = [0, 0]);
      b[0] += n;
      b[1] = Math.max(b[1], mx);
    });
  }
  return Array.from(out, (b) => b || [0, 0]);
}
