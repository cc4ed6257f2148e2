/**
 * A rate with a burst: `perSecond` tokens a second, at most `burst` saved up. Every rate the host
 * holds a plugin to is one (the channel's messages, bytes and decoding time, log lines, the bus's
 * publishes, DNS queries). Time is the caller's, in milliseconds, from one clock per bucket.
 */
export class TokenBucket {
  tokens: number;
  private refilledAt: number;

  /** `perSecond` may be Infinity: no bound. */
  constructor(
    readonly perSecond: number,
    readonly burst: number,
    now: number,
  ) {
    this.tokens = burst;
    this.refilledAt = now;
  }

  refill(now: number): void {
    const dt = now - this.refilledAt;
    this.refilledAt = now;
    if (dt > 0) this.tokens = Math.min(this.burst, this.tokens + (dt * this.perSecond) / 1000);
  }

  /** Takes `n` if there are that many: false (nothing taken) if not. */
  tryTake(now: number, n = 1): boolean {
    this.refill(now);
    if (this.tokens < n) return false;
    this.tokens -= n;
    return true;
  }

  /** Takes `n` whatever is left (the bucket may go below zero): false once it is overdrawn. */
  overdraw(now: number, n: number): boolean {
    this.refill(now);
    this.tokens -= n;
    return this.tokens >= 0;
  }

  /** Milliseconds until the bucket is back to `level` tokens (0 if it is there). */
  msUntil(level: number): number {
    return this.tokens >= level ? 0 : ((level - this.tokens) * 1000) / this.perSecond;
  }
}
