/**
 * A plugin's log lines the host passes on: DEFAULT_LOG_LINES_PER_SECOND sustained, a burst of ten
 * seconds' worth. Past it lines are dropped, and the count is reported in one warning line once a
 * second while it drops (and once after the last), so the application learns what it lost without
 * the plugin choosing how much it writes.
 */
import { DEFAULT_LOG_LINES_PER_SECOND } from '../defaults';

const BURST_SECONDS = 10;
const REPORT_MS = 1000;

export class LogRate {
  private tokens: number;
  private refilledAt = performance.now();
  private dropped = 0;
  private reportTimer: NodeJS.Timeout | undefined;

  /** @param report called with a count of lines dropped since the last report */
  constructor(
    private readonly report: (dropped: number) => void,
    private readonly perSecond = DEFAULT_LOG_LINES_PER_SECOND,
  ) {
    this.tokens = perSecond * BURST_SECONDS;
  }

  /** True if this line may be passed on; false: dropped (counted). */
  take(): boolean {
    const now = performance.now();
    this.tokens = Math.min(this.perSecond * BURST_SECONDS, this.tokens + ((now - this.refilledAt) / 1000) * this.perSecond);
    this.refilledAt = now;
    if (this.tokens >= 1) {
      this.tokens--;
      return true;
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
