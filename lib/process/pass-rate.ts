/**
 * What the host passes on from a plugin to the application at a rate: its log lines
 * (DEFAULT_LOG_RATE: lines and their bytes) and its events (DEFAULT_EVENT_RATE: a count). Each
 * rate is sustained, with a burst of ten seconds' worth. Past it, items are dropped, and how many
 * is reported (never as a log line or an event: a plugin could make one that looks the same) once
 * a second while it drops, and once after the last, so the application learns what it lost
 * without the plugin choosing how much of the application's work it causes.
 */
import { TokenBucket } from '../token-bucket';

const BURST_SECONDS = 10;
const REPORT_MS = 1000;

export class PassRate {
  private readonly items: TokenBucket;
  private readonly bytes: TokenBucket | undefined;
  private dropped = 0;
  private reportTimer: NodeJS.Timeout | undefined;

  /**
   * @param report called with a count of items dropped since the last report
   * @param rate items a second, and (for text) UTF-8 bytes a second
   */
  constructor(
    private readonly report: (dropped: number) => void,
    rate: Readonly<{ items: number; bytes?: number }>,
  ) {
    const now = performance.now();
    this.items = new TokenBucket(rate.items, rate.items * BURST_SECONDS, now);
    this.bytes = rate.bytes === undefined ? undefined : new TokenBucket(rate.bytes, rate.bytes * BURST_SECONDS, now);
  }

  /** True if this item (of `text`, with a byte rate) may be passed on; false: dropped (counted). */
  take(text?: string): boolean {
    const now = performance.now();
    this.items.refill(now);
    // Text is measured only for an item within the item rate: at most `items` a second are measured.
    if (this.items.tokens >= 1 && (this.bytes === undefined || this.bytes.tryTake(now, Buffer.byteLength(text ?? '')))) {
      this.items.tokens--;
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
