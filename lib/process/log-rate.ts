/**
 * A plugin's log lines the host passes on: DEFAULT_LOG_RATE lines and bytes a second sustained,
 * a burst of ten seconds' worth. Past either, lines are dropped, and how many is reported (never
 * as a log line: a plugin could write one that looks the same) once a second while it drops, and
 * once after the last, so the application learns what it lost without the plugin choosing how
 * much it writes.
 */
import { DEFAULT_LOG_RATE } from '../defaults';

const BURST_SECONDS = 10;
const REPORT_MS = 1000;

export class LogRate {
  private lines: number;
  private bytes: number;
  private refilledAt = performance.now();
  private dropped = 0;
  private reportTimer: NodeJS.Timeout | undefined;

  /** @param report called with a count of lines dropped since the last report */
  constructor(
    private readonly report: (dropped: number) => void,
    private readonly rate: Readonly<{ lines: number; bytes: number }> = DEFAULT_LOG_RATE,
  ) {
    this.lines = rate.lines * BURST_SECONDS;
    this.bytes = rate.bytes * BURST_SECONDS;
  }

  /** True if this line (of `message`) may be passed on; false: dropped (counted). */
  take(message: string): boolean {
    const now = performance.now();
    const dt = (now - this.refilledAt) / 1000;
    this.refilledAt = now;
    this.lines = Math.min(this.rate.lines * BURST_SECONDS, this.lines + dt * this.rate.lines);
    this.bytes = Math.min(this.rate.bytes * BURST_SECONDS, this.bytes + dt * this.rate.bytes);
    if (this.lines >= 1) {
      // Measured only for a line within the line rate: at most `lines` a second are measured.
      const size = Buffer.byteLength(message);
      if (this.bytes >= size) {
        this.lines--;
        this.bytes -= size;
        return true;
      }
    }
    this.dropped++;
    if (this.reportTimer === undefined) {
      this.reportTimer = setTimeout(() => this.flush(), REPORT_MS);
      this.reportTimer.unref();
    }
    return false;
  }

  /** Reports what was dropped and not reported yet (also when the plugin goes). */
  flush(): void {
    clearTimeout(this.reportTimer);
    this.reportTimer = undefined;
    if (this.dropped === 0) return;
    const n = this.dropped;
    this.dropped = 0;
    this.report(n);
  }
}
