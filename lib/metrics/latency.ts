/**
 * Latency in fixed buckets: a Float64Array of counts per bucket, the same bounds for every plugin, so
 * a histogram costs 8 bytes per bucket whatever the number of calls, and quantiles (p50, p99) are
 * read from the counts. The bounds are Prometheus' `le` labels: few of them, since each is one line
 * per plugin in every scrape (with 200 plugins the buckets are most of a scrape's cost).
 */

/** Upper bounds in seconds (the last bucket, +Inf, is implicit). */
export const LATENCY_BUCKETS: readonly number[] = Object.freeze([0.0001, 0.0005, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5]);

export class LatencyHistogram {
  /** counts[i]: observations ≤ LATENCY_BUCKETS[i] and > the bound before; the last slot is +Inf. */
  readonly counts = new Float64Array(LATENCY_BUCKETS.length + 1);
  sum = 0;
  count = 0;

  observe(seconds: number): void {
    if (!(seconds >= 0)) seconds = 0;
    let i = 0;
    while (i < LATENCY_BUCKETS.length && seconds > LATENCY_BUCKETS[i]!) i++;
    this.counts[i]!++;
    this.sum += seconds;
    this.count++;
  }

  reset(): void {
    this.counts.fill(0);
    this.sum = 0;
    this.count = 0;
  }

  /** Cumulative counts per `le` bound, +Inf last (what Prometheus' `_bucket` series hold). */
  cumulative(): number[] {
    const out: number[] = [];
    let acc = 0;
    for (const c of this.counts) out.push((acc += c));
    return out;
  }

  /**
   * The q-quantile (0..1) in seconds, interpolated inside its bucket as Prometheus'
   * histogram_quantile does; NaN without observations. Past the last bound: that bound.
   */
  quantile(q: number): number {
    if (this.count === 0) return NaN;
    const rank = q * this.count;
    let acc = 0;
    for (let i = 0; i < this.counts.length; i++) {
      const c = this.counts[i]!;
      if (acc + c >= rank && c > 0) {
        if (i === LATENCY_BUCKETS.length) return LATENCY_BUCKETS[i - 1]!;
        const lo = i === 0 ? 0 : LATENCY_BUCKETS[i - 1]!;
        const hi = LATENCY_BUCKETS[i]!;
        return lo + ((hi - lo) * (rank - acc)) / c;
      }
      acc += c;
    }
    return LATENCY_BUCKETS[LATENCY_BUCKETS.length - 1]!;
  }
}
