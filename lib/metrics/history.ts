/**
 * Usage history: fixed-size rings of typed arrays. The host keeps one ring of sample times; each
 * plugin keeps one Float32Array per series, written at the same slot, so a plugin costs
 * SERIES.length × points × 4 bytes (8 series × 120 points: 3.75 KiB; 1000 plugins: under 4 MiB)
 * however long the host runs. NaN marks a slot where the plugin had no running instance.
 */

/** What is recorded per sample. cpu: cores used over the interval; calls, errors: per second; p50, p99: ms. */
export const HISTORY_SERIES = ['cpu', 'memory', 'memoryLimit', 'pids', 'calls', 'errors', 'p50', 'p99'] as const;
export type HistorySeries = (typeof HISTORY_SERIES)[number];

export interface HistoryView {
  intervalMs: number;
  /** Date.now() of each sample, oldest first. */
  times: number[];
  /** One array per series, aligned with `times`; null where there was no running instance. */
  series: Record<HistorySeries, Array<number | null>>;
}

export class TimeRing {
  readonly times: Float64Array;
  /** Slot of the most recent sample; -1 before the first. */
  head = -1;
  filled = 0;

  constructor(readonly points: number) {
    this.times = new Float64Array(points);
  }

  /** Starts a new sample; returns its slot. */
  advance(at: number): number {
    this.head = (this.head + 1) % this.points;
    this.times[this.head] = at;
    if (this.filled < this.points) this.filled++;
    return this.head;
  }

  /** Slots oldest first. */
  slots(): number[] {
    const out: number[] = [];
    for (let i = this.filled - 1; i >= 0; i--) out.push((this.head - i + this.points) % this.points);
    return out;
  }
}

export class PluginHistory {
  private readonly data: Float32Array;

  constructor(private readonly points: number) {
    this.data = new Float32Array(points * HISTORY_SERIES.length).fill(NaN);
  }

  write(slot: number, values: Record<HistorySeries, number> | undefined): void {
    for (let s = 0; s < HISTORY_SERIES.length; s++) {
      this.data[s * this.points + slot] = values === undefined ? NaN : values[HISTORY_SERIES[s]!];
    }
  }

  /** The last value of a series, NaN if none. */
  last(ring: TimeRing, series: HistorySeries): number {
    if (ring.head < 0) return NaN;
    return this.data[HISTORY_SERIES.indexOf(series) * this.points + ring.head]!;
  }

  view(ring: TimeRing, intervalMs: number): HistoryView {
    const slots = ring.slots();
    const series = {} as HistoryView['series'];
    HISTORY_SERIES.forEach((name, s) => {
      series[name] = slots.map((slot) => {
        const v = this.data[s * this.points + slot]!;
        return Number.isNaN(v) ? null : v;
      });
    });
    return { intervalMs, times: slots.map((slot) => ring.times[slot]!), series };
  }
}
