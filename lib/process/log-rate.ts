/**
 * A plugin's log lines the host passes on: DEFAULT_LOG_RATE lines and bytes a second sustained,
 * a burst of ten seconds' worth. Past either, lines are dropped, and how many is reported (never
 * as a log line: a plugin could write one that looks the same) once a second while it drops, and
 * once after the last, so the application learns what it lost without the plugin choosing how
 * much it writes.
 */
import { DEFAULT_LOG_RATE } from '../defaults';
import { TokenBucket } from '../token-bucket';

const BURST_SECONDS = 10;
const REPORT_MS = 1000;

export class LogRate {
  private readonly lines: TokenBucket;
  private readonly bytes: TokenBucket;
  private dropped = 0;
  private reportTimer: NodeJS.Timeout | undefined;

  /** @param report called with a count of lines dropped since the last report */
  constructor(
    private readonly report: (dropped: number) => void,
    rate: Readonly<{ lines: number; bytes: number }> = DEFAULT_LOG_RATE,
  ) {
    const now = performance.now();
    this.lines = new TokenBucket(rate.lines, rate.lines * BURST_SECONDS, now);
    this.bytes = new TokenBucket(rate.bytes, rate.bytes * BURST_SECONDS, now);
  }

  /** True if this line (of `message`) may be passed on; false: dropped (counted). */
  take(message: string): boolean {
    const now = performance.now();
    this.lines.refill(now);
    // Measured only for a line within the line rate: at most `lines` a second are measured.
    if (this.lines.tokens >= 1 && this.bytes.tryTake(now, Buffer.byteLength(message))) {
      this.lines.tokens--;
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
