/**
 * What an untrusted peer may make this side spend, and the two meters that enforce the rates: the
 * peer's allowance of messages and bytes (a token bucket: past it, delivery pauses; held past it
 * for the grace time, a flood) and the bytes we sent that it leaves unread.
 */
import { PEER_LIMITS, type DecodeLimits } from './codec';

/** What an untrusted peer may make this side spend (see PLUGIN_PEER_LIMITS). */
export interface PeerLimits {
  /** Decoding budget of one message. */
  decode: Readonly<DecodeLimits>;
  /** Arguments of one call or notification; more is a protocol violation. */
  maxArgs: number;
  /** The peer's calls served at once; more are answered ERR_CHANNEL_BUSY at once. */
  maxRunning: number;
  /**
   * Messages the peer starts (calls, notifications, cancels, answers to nothing) and their bytes,
   * per second, sustained; a burst of `burstSeconds` of them passes at once. Past that, delivery
   * pauses until the allowance has refilled a little (the peer is throttled).
   */
  messagesPerSecond: number;
  bytesPerSecond: number;
  burstSeconds: number;
  /** Bytes we sent that the peer left unread before delivery pauses (its ring is then not read either). */
  queueBytes: number;
  /** Bytes of the peer's messages set aside while a callSync waits; more is a flood. */
  backlogBytes: number;
  /** Throttled this long without letup, or this long above queueBytes without reading: a `flood` violation. */
  floodGraceMs: number;
}

/**
 * The host's bounds for a plugin. Far above what the channel's own benchmarks and plugins use
 * (answers to the host's calls are not counted: the host chose to make those calls).
 */
export const PLUGIN_PEER_LIMITS: Readonly<PeerLimits> = Object.freeze({
  decode: PEER_LIMITS,
  maxArgs: 256,
  maxRunning: 1024,
  messagesPerSecond: 50_000,
  bytesPerSecond: 256 << 20,
  burstSeconds: 2,
  queueBytes: 8 << 20,
  backlogBytes: 64 << 20,
  floodGraceMs: 2000,
});

/** The peer's allowance of messages and bytes per second. */
export class PeerAllowance {
  private msgTokens: number;
  private byteTokens: number;
  private refilledAt = performance.now();
  private throttledSince = 0;
  private resumeTimer: NodeJS.Timeout | undefined;

  /**
   * @param pause delivery of the peer's messages stops (true) or goes on (false)
   */
  constructor(
    private readonly l: Readonly<PeerLimits>,
    private readonly pause: (paused: boolean) => void,
  ) {
    this.msgTokens = l.messagesPerSecond * l.burstSeconds;
    this.byteTokens = l.bytesPerSecond * l.burstSeconds;
  }

  /** What a flood is, for the violation. */
  get floodMessage(): string {
    const l = this.l;
    return `sent more than ${l.messagesPerSecond} messages or ${l.bytesPerSecond} bytes a second for ${l.floodGraceMs} ms`;
  }

  /**
   * Charges a message the peer started. Over the allowance, delivery pauses until a tenth of a burst
   * has refilled; a peer still over it floodGraceMs after it was first throttled (it never let the
   * allowance refill to half) floods: false.
   */
  charge(bytes: number): boolean {
    const l = this.l;
    const now = performance.now();
    const dt = (now - this.refilledAt) / 1000;
    this.refilledAt = now;
    const maxMsgs = l.messagesPerSecond * l.burstSeconds;
    const maxBytes = l.bytesPerSecond * l.burstSeconds;
    this.msgTokens = Math.min(maxMsgs, this.msgTokens + dt * l.messagesPerSecond) - 1;
    this.byteTokens = Math.min(maxBytes, this.byteTokens + dt * l.bytesPerSecond) - bytes;
    if (this.msgTokens >= 0 && this.byteTokens >= 0) {
      if (this.throttledSince !== 0 && this.msgTokens >= maxMsgs / 2 && this.byteTokens >= maxBytes / 2) this.throttledSince = 0;
      return true;
    }
    if (this.throttledSince === 0) {
      this.throttledSince = now;
    } else if (now - this.throttledSince >= l.floodGraceMs) {
      return false;
    }
    if (this.resumeTimer === undefined) {
      const wait = Math.max((maxMsgs / 10 - this.msgTokens) / l.messagesPerSecond, (maxBytes / 10 - this.byteTokens) / l.bytesPerSecond);
      this.pause(true);
      this.resumeTimer = setTimeout(() => {
        this.resumeTimer = undefined;
        this.pause(false);
      }, Math.ceil(wait * 1000));
      this.resumeTimer.unref();
    }
    return true;
  }

  stop(): void {
    clearTimeout(this.resumeTimer);
  }
}

/**
 * The send queue only grows by sends the ring did not take: past queueBytes the endpoint stops
 * delivering (the peer is throttled); if the peer then reads nothing for floodGraceMs, `flood` is
 * called. Returns the interval watching it (it clears itself once the queue is below the bound),
 * or undefined if the queue is within it.
 */
export function watchUnread(l: Readonly<PeerLimits>, queued: () => number, flood: (message: string) => void, done: () => void): NodeJS.Timeout | undefined {
  if (queued() <= l.queueBytes) return undefined;
  let last = Infinity;
  let since = performance.now();
  const timer = setInterval(() => {
    const q = queued();
    if (q <= l.queueBytes) {
      clearInterval(timer);
      done();
      return;
    }
    const now = performance.now();
    if (q < last) since = now;
    last = q;
    if (now - since >= l.floodGraceMs) {
      flood(`left more than ${l.queueBytes} bytes of answers and messages unread for ${l.floodGraceMs} ms`);
    }
  }, Math.max(10, l.floodGraceMs / 4));
  timer.unref();
  return timer;
}
