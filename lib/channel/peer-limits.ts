/**
 * What an untrusted peer may make this side spend, and the two meters that enforce the rates: the
 * peer's allowance of messages, bytes and decoding time (token buckets: past one, delivery pauses;
 * held past it for the grace time, a flood) and the bytes we sent that it leaves unread.
 */
import { InvalidOptionError } from '../errors';
import { TokenBucket } from '../token-bucket';
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
  /**
   * Milliseconds of this side's thread spent decoding the peer's messages, answers to our calls
   * included, per second, sustained (with the same burst). The per-message budget (`decode`) bounds
   * one message; this bounds their sum: messages near that budget at an allowed rate otherwise keep
   * a core busy (structured-clone data of empty ArrayBuffers: ~19 ms per 64 KiB message). Wall
   * time, so on a machine short of cores a peer also pays for waiting; set far above honest use.
   */
  decodeMsPerSecond: number;
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
  decodeMsPerSecond: 200,
  burstSeconds: 2,
  queueBytes: 8 << 20,
  backlogBytes: 64 << 20,
  floodGraceMs: 2000,
});

/** Bounds as an application gives them: any of PeerLimits, `decode` field by field. */
export type ChannelLimits = Partial<Omit<PeerLimits, 'decode'>> & { decode?: Partial<DecodeLimits> };

/**
 * `channelLimits` as given (fields left out take PLUGIN_PEER_LIMITS', `decode` field by field),
 * checked: a missing or non-numeric bound would otherwise compare as NaN and never hold.
 */
export function peerLimits(given: ChannelLimits | undefined, field = 'channelLimits'): Readonly<PeerLimits> {
  if (given === undefined) return PLUGIN_PEER_LIMITS;
  if (given === null || typeof given !== 'object') throw new InvalidOptionError(field, 'must be an object of bounds (see PLUGIN_PEER_LIMITS)');
  const known = new Set(Object.keys(PLUGIN_PEER_LIMITS));
  for (const k of Object.keys(given)) {
    if (!known.has(k)) throw new InvalidOptionError(`${field}.${k}`, `is not a channel bound (known: ${[...known].join(', ')})`);
  }
  const decode = given.decode;
  if (decode !== undefined && (decode === null || typeof decode !== 'object')) throw new InvalidOptionError(`${field}.decode`, 'must be an object of per-message budgets');
  const decodeKnown = new Set(Object.keys(PEER_LIMITS));
  for (const k of Object.keys(decode ?? {})) {
    if (!decodeKnown.has(k)) throw new InvalidOptionError(`${field}.decode.${k}`, `is not a decoding budget (known: ${[...decodeKnown].join(', ')})`);
  }
  const l: PeerLimits = { ...PLUGIN_PEER_LIMITS, ...given, decode: { ...PEER_LIMITS, ...decode } };
  const positive = (name: string, v: unknown, opts: { infinite: boolean; integer: boolean }): void => {
    const ok = typeof v === 'number' && v > 0 && (opts.infinite && v === Infinity ? true : Number.isFinite(v) && (!opts.integer || Number.isSafeInteger(v)));
    if (!ok) throw new InvalidOptionError(`${field}.${name}`, `must be a positive ${opts.integer ? 'whole number' : 'number'}${opts.infinite ? ' (Infinity: no bound)' : ''}, got ${String(v)}`);
  };
  for (const k of Object.keys(PEER_LIMITS) as (keyof DecodeLimits)[]) positive(`decode.${k}`, l.decode[k], { infinite: true, integer: true });
  positive('maxArgs', l.maxArgs, { infinite: true, integer: true });
  positive('maxRunning', l.maxRunning, { infinite: true, integer: true });
  positive('messagesPerSecond', l.messagesPerSecond, { infinite: true, integer: false });
  positive('bytesPerSecond', l.bytesPerSecond, { infinite: true, integer: false });
  positive('decodeMsPerSecond', l.decodeMsPerSecond, { infinite: true, integer: false });
  positive('burstSeconds', l.burstSeconds, { infinite: false, integer: false });
  positive('queueBytes', l.queueBytes, { infinite: true, integer: true });
  positive('backlogBytes', l.backlogBytes, { infinite: true, integer: true });
  positive('floodGraceMs', l.floodGraceMs, { infinite: false, integer: false });
  return Object.freeze(l);
}

/** This process's cpu time so far, all threads, in ms. */
function cpuMs(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
}

/** The peer's allowance of messages, bytes and decoding time per second. */
export class PeerAllowance {
  private readonly messages: TokenBucket;
  private readonly bytes: TokenBucket;
  private readonly decodeMs: TokenBucket;
  private throttledSince = 0;
  /** The process's cpu time (ms) when it was first throttled. */
  private cpuAtThrottle = 0;
  private resumeTimer: NodeJS.Timeout | undefined;
  /** What held the peer back last: named by the flood's message. */
  private over = '';

  /**
   * @param pause delivery of the peer's messages stops (true) or goes on (false)
   */
  constructor(
    private readonly l: Readonly<PeerLimits>,
    private readonly pause: (paused: boolean) => void,
  ) {
    const now = performance.now();
    this.messages = new TokenBucket(l.messagesPerSecond, l.messagesPerSecond * l.burstSeconds, now);
    this.bytes = new TokenBucket(l.bytesPerSecond, l.bytesPerSecond * l.burstSeconds, now);
    this.decodeMs = new TokenBucket(l.decodeMsPerSecond, l.decodeMsPerSecond * l.burstSeconds, now);
  }

  /** What a flood is, for the violation. */
  get floodMessage(): string {
    const l = this.l;
    if (this.over === 'decode') return `made the host spend more than ${l.decodeMsPerSecond} ms a second decoding its messages for ${l.floodGraceMs} ms`;
    return `sent more than ${l.messagesPerSecond} messages or ${l.bytesPerSecond} bytes a second for ${l.floodGraceMs} ms`;
  }

  /**
   * Charges what the peer made us spend: `messages` it started (0 for an answer to our call), their
   * `bytes`, and `decodeMs` of decoding. Over the allowance, delivery pauses until a tenth of a
   * burst has refilled; a peer still over it floodGraceMs after it was first throttled (it never
   * let the allowance refill to half) floods: false. `now`: performance.now(), if the caller has it.
   */
  charge(messages: number, bytes: number, decodeMs: number, now = performance.now()): boolean {
    const m = this.messages.overdraw(now, messages);
    const b = this.bytes.overdraw(now, bytes);
    const d = this.decodeMs.overdraw(now, decodeMs);
    if (m && b && d) {
      if (this.throttledSince !== 0 && this.allHalfFull()) this.throttledSince = 0;
      return true;
    }
    this.over = m && b ? 'decode' : 'rate';
    if (this.throttledSince === 0) {
      this.throttledSince = now;
      this.cpuAtThrottle = cpuMs();
    } else if (now - this.throttledSince >= this.l.floodGraceMs) {
      // Decoding is timed by the wall clock: on a host short of cores it includes waiting for one,
      // and an honest peer would be called a flood for the host's own load. A flood of decoding
      // needs the host to have really spent the allowance's worth of cpu meanwhile (all its threads
      // count: generous to the verdict); if not, the grace starts over and the peer stays throttled.
      if (this.over === 'rate' || cpuMs() - this.cpuAtThrottle >= (this.l.decodeMsPerSecond * (now - this.throttledSince)) / 1000) return false;
      this.throttledSince = now;
      this.cpuAtThrottle = cpuMs();
    }
    if (this.resumeTimer === undefined) {
      // Until a tenth of a burst is back in each.
      const wait = Math.max(...[this.messages, this.bytes, this.decodeMs].map((k) => k.msUntil(k.burst / 10))) / 1000;
      this.pause(true);
      this.resumeTimer = setTimeout(() => {
        this.resumeTimer = undefined;
        this.pause(false);
      }, Math.ceil(wait * 1000));
      this.resumeTimer.unref();
    }
    return true;
  }

  private allHalfFull(): boolean {
    return this.messages.tokens >= this.messages.burst / 2 && this.bytes.tokens >= this.bytes.burst / 2 && this.decodeMs.tokens >= this.decodeMs.burst / 2;
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
