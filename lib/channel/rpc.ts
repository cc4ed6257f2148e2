/**
 * RPC over a channel endpoint: calls with ids, results and errors, notifications both ways,
 * cancellation, per-call timeouts. The same class serves the host and the runner in the sandbox.
 *
 * Everything received is untrusted: a message that does not decode closes the channel with a
 * `protocol` violation; results for ids we do not wait for (late answers after a timeout or a
 * cancel) are dropped. With `limits` (the host side of a plugin), nothing the peer sends can throw
 * out of the channel's callback (a handler or listener failing on a message is a `protocol`
 * violation of the peer), and what the peer may cost is bounded: decoding per message, arguments, calls
 * served at once, messages and bytes per second, and what it leaves unread; a peer that stays
 * past a rate or the unread bound for `floodGraceMs` is a `flood` violation. Facing limits, the
 * errors this side answers with carry no stack (see errorToWire).
 */
import { EventEmitter } from 'node:events';

import { DEFAULT_CALL_TIMEOUT_MS } from '../defaults';
import { CallTimeoutError, ChannelError } from '../errors';
import { STATE_BUSY, STATE_HOLD, STATE_PAUSE, type NativeEndpoint } from './addon';
import { Context, MAX_ECHO, abortError, clip, describe, errorToWire, remoteError, type Handler } from './call-context';
import { CallDeadlines } from './call-deadlines';
import { CodecError, HEADER, Kind, UNLIMITED, readU32, type DecodeLimits, type Decoded } from './codec';
import { DecoderState, decode } from './decoder';
import { Encoder } from './encoder';
import { PeerAllowance, watchUnread, type PeerLimits } from './peer-limits';
import type { CallOptions, ChannelViolation, RpcOptions } from './rpc-options';
import { SetAside } from './set-aside';

/** Messages set aside by callSync handled per event-loop turn. */
const BACKLOG_BATCH = 256;
/** Messages readArrived() delivers at most in one go (a turn of the endpoint's own delivery is bounded alike). */
const READ_ARRIVED_MAX = 256;

export type { CallContext, CancelSource, Handler } from './call-context';
export { PLUGIN_PEER_LIMITS, type ChannelLimits, type PeerLimits } from './peer-limits';

export type { CallOptions, ChannelViolation, RpcOptions } from './rpc-options';

interface Pending {
  method: string;
  resolve(v: unknown): void;
  reject(e: unknown): void;
  signal?: AbortSignal;
  onAbort?: () => void;
  /** Forgets the listener on options.cancel. */
  unlink?: () => void;
}

/**
 * Events: 'notification' (event, args), 'violation' (ChannelViolation), 'close' (ChannelError | undefined).
 */
export class RpcPeer extends EventEmitter {
  private readonly enc: Encoder;
  private readonly dec = new DecoderState();
  private readonly rx: Buffer;
  private readonly pending = new Map<number, Pending>();
  private readonly running = new Map<number, Context>();
  private readonly handlers = new Map<string, Handler>();
  /** Messages set aside while a callSync waited (see drainBacklog). */
  private readonly backlog = new SetAside();
  /** Why delivery from the endpoint is paused: the allowance, or a backlog still to handle first. */
  private allowancePaused = false;
  private backlogPaused = false;
  private drainScheduled = false;
  /** The channel's end (closed, exited, broken framing), arrived behind set-aside messages. */
  private endBehindBacklog: { m: number | null; detail?: string } | undefined;
  private nextId = 1;
  /** The ids went round once: every id may have been issued. */
  private wrapped = false;
  private closedWith: ChannelError | null = null;
  private timeout: number;
  private readonly keepAlive: boolean;
  /** Read by the endpoint: see NativeEndpoint.state. */
  private readonly state: Int32Array;
  /** Per-call timeouts: one timer per distinct timeout, not one per call. */
  private readonly deadlines: CallDeadlines;
  private readonly limits: Readonly<PeerLimits> | undefined;
  private readonly decodeLimits: Readonly<DecodeLimits>;
  /** With limits: the peer's allowance of messages, bytes and decoding time per second. */
  private readonly allowance: PeerAllowance | undefined;
  private queueTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly ep: NativeEndpoint,
    options: RpcOptions = {},
  ) {
    super();
    this.timeout = options.timeout ?? 0;
    this.keepAlive = options.keepAlive ?? false;
    // Facing limits (an untrusted peer), Errors in values go without their stacks, as answers do.
    this.enc = new Encoder(ep.txBuffer, options.limits === undefined);
    this.rx = ep.rxBuffer;
    const l = options.limits;
    this.limits = l;
    this.decodeLimits = l?.decode ?? UNLIMITED;
    this.deadlines = new CallDeadlines(this.pending, (id, timeout) => {
      this.readArrived();
      const p = this.pending.get(id);
      if (p !== undefined) this.giveUp(id, new CallTimeoutError(p.method, timeout));
    });
    this.allowance = l === undefined ? undefined : new PeerAllowance(l, (paused) => {
      this.allowancePaused = paused;
      this.applyPause();
      if (!paused && !this.backlog.empty) this.scheduleDrain();
    });
    ep.start((m, detail) => this.onEvent(m, detail), {
      spinUs: options.spinUs ?? 0,
      idleSpinUs: options.idleSpinUs ?? 0,
      budget: options.budget ?? 256,
      // Bounded decoding makes each message short; this bounds a turn of many.
      turnUs: l !== undefined ? 10_000 : 0,
      pauseBytes: l?.queueBytes ?? 0,
    });
    this.state = ep.state;
    this.state[STATE_HOLD] = this.keepAlive ? 1 : 0;
    ep.updateRef();
  }

  /** Changes the default per-call timeout (ms, 0: none) for calls made from now on. */
  setDefaultTimeout(ms: number): void {
    if (!Number.isFinite(ms) || ms < 0) throw new RangeError('timeout must be a number of ms ≥ 0');
    this.timeout = ms;
  }

  get closed(): boolean {
    return this.closedWith !== null;
  }

  /** Registers a method the peer may call. `this` inside is a CallContext. */
  handle(method: string, fn: Handler): this {
    this.handlers.set(method, fn);
    return this;
  }

  call(method: string, args: unknown[] = [], options: CallOptions = {}): Promise<unknown> {
    if (this.closedWith) return Promise.reject(this.closedWith);
    const signal = options.signal;
    const cancel = options.cancel;
    if (signal?.aborted || cancel?.aborted) return Promise.reject(abortError(method));
    const id = this.takeId();
    return new Promise((resolve, reject) => {
      const p: Pending = { method, resolve, reject };
      const timeout = options.timeout ?? this.timeout;
      if (signal) {
        p.signal = signal;
        p.onAbort = () => this.giveUp(id, abortError(method));
        signal.addEventListener('abort', p.onAbort, { once: true });
      }
      if (cancel) p.unlink = cancel.onAbort(() => this.giveUp(id, abortError(method)));
      this.pending.set(id, p);
      if (timeout > 0) this.deadlines.add(id, timeout);
      // Applied by the send below, in the same crossing.
      this.state[STATE_HOLD] = this.pending.size + (this.keepAlive ? 1 : 0);
      try {
        this.write(Kind.Call, id, method, args);
      } catch (e) {
        this.settle(id);
        reject(e);
      }
    });
  }

  /**
   * BLOCKING: sends the call and waits for its answer on a futex, without returning to the event
   * loop. The lowest latency there is; use it only where blocking the thread is acceptable.
   * Calls and notifications that arrive meanwhile are handled after it returns.
   */
  callSync(method: string, args: unknown[] = [], options: { timeout?: number; spinUs?: number } = {}): unknown {
    if (this.closedWith) throw this.closedWith;
    const timeout = options.timeout ?? (this.timeout || DEFAULT_CALL_TIMEOUT_MS);
    const spinUs = options.spinUs ?? 100;
    const id = this.takeId();
    const len = this.enc.encode(Kind.Call, id, method, args);
    let m: number | Buffer | undefined | null;
    const deadline = performance.now() + timeout;
    try {
      // Send, spin for the answer and receive it, in one crossing into native code.
      m = this.ep.call(len, this.enc.parts, timeout, spinUs);
    } catch (e) {
      throw this.nativeError(e);
    }
    this.enc.sent();
    for (;;) {
      if (m === undefined) {
        this.sendQuiet(Kind.Cancel, id, undefined, undefined);
        throw new CallTimeoutError(method, timeout);
      }
      if (m === null) throw this.fail(new ChannelError('ERR_CHANNEL_CLOSED', 'the peer closed the channel', 'peer closed'));
      const msg = typeof m === 'number' ? this.rx : m;
      const length = typeof m === 'number' ? m : m.length;
      // Only our answer is decoded now, by its header: the rest is decoded once, when it is handled.
      if (length >= HEADER && (msg[0] === Kind.Result || msg[0] === Kind.Error) && readU32(msg, 1) === id) {
        const d = this.decodeCharged(msg, length, typeof m === 'number', 0);
        if (d === undefined) throw this.closedWith!;
        if (!this.backlog.empty) this.scheduleDrain();
        if (d.kind === Kind.Result) return d.value;
        throw remoteError(method, d.value);
      }
      // Not ours (a call or notification from the peer, or a late answer): handled after we return.
      this.setAside(typeof m === 'number' ? Buffer.from(this.rx.subarray(0, m)) : m);
      if (this.limits !== undefined && this.backlog.bytes > this.limits.backlogBytes) {
        throw this.violation(`sent more than ${this.limits.backlogBytes} bytes while a blocking call waited for its answer`, 'flood');
      }
      const left = deadline - performance.now();
      try {
        m = left > 0 ? this.ep.recvWait(left, spinUs) : undefined;
      } catch (e) {
        throw this.nativeError(e);
      }
    }
  }

  /** One-way message to the peer. */
  notify(event: string, args: unknown[] = []): void {
    if (this.closedWith) throw this.closedWith;
    this.write(Kind.Notify, 0, event, args);
  }

  /** Closes the channel: every pending call is rejected with `reason` (ERR_CHANNEL_CLOSED by default). */
  close(reason?: ChannelError): void {
    this.fail(reason ?? new ChannelError('ERR_CHANNEL_CLOSED', 'the channel was closed', 'closed'));
  }

  private takeId(): number {
    const id = this.nextId;
    if (id >= 0xffffffff) {
      this.nextId = 1;
      this.wrapped = true;
    } else {
      this.nextId = id + 1;
    }
    return id;
  }

  private write(kind: Kind, id: number, name: string | undefined, value: unknown): void {
    const len = this.enc.encode(kind, id, name, value);
    let inRing: boolean;
    try {
      // A message the ring cannot take yet is queued natively (the envelope copied out of txBuffer).
      inRing = this.ep.send(len, this.enc.parts);
    } catch (e) {
      throw this.nativeError(e);
    }
    this.enc.sent();
    if (!inRing && this.limits !== undefined && this.queueTimer === undefined) {
      this.queueTimer = watchUnread(this.limits, () => (this.closedWith ? 0 : this.ep.queuedBytes), (m) => this.violation(m, 'flood'), () => {
        this.queueTimer = undefined;
      });
    }
  }

  /** Charges an answer to no call of ours as a message the peer started (see PeerAllowance). False once it was called a flood. */
  private charge(bytes: number): boolean {
    if (this.allowance!.charge(1, bytes, 0)) return true;
    this.violation(this.allowance!.floodMessage, 'flood');
    return false;
  }

  private sendQuiet(kind: Kind, id: number, name: string | undefined, value: unknown): void {
    if (this.closedWith) return;
    try {
      this.write(kind, id, name, value);
    } catch {
      // The channel is failing; the close path reports it.
    }
  }

  private nativeError(e: unknown): Error {
    const code = (e as { code?: unknown }).code;
    const message = (e as Error).message;
    if (code === 'ERR_CHANNEL_PROTOCOL') return this.violation(message);
    if (code === 'ERR_CHANNEL_CLOSED') {
      return this.fail(new ChannelError('ERR_CHANNEL_CLOSED', message, message.includes('exited') ? 'peer exited' : 'closed'));
    }
    if (code === 'ERR_CALL_TIMEOUT') return new ChannelError('ERR_CALL_TIMEOUT', message);
    if (typeof code === 'string' && code.startsWith('ERR_CHANNEL')) return new ChannelError(code, message);
    return e as Error;
  }

  private violation(message: string, kind: ChannelViolation['kind'] = 'protocol'): ChannelError {
    const err = new ChannelError(kind === 'flood' ? 'ERR_CHANNEL_FLOOD' : 'ERR_CHANNEL_PROTOCOL', `closed the channel: ${message}`, kind);
    if (!this.closedWith) {
      // Closed first: a listener must not find the channel still open, nor stop the close by throwing.
      const v: ChannelViolation = { kind, message };
      const out = this.fail(err);
      try {
        this.emit('violation', v);
      } catch {
        // The listener's own failure; the channel is closed either way.
      }
      return out;
    }
    return this.fail(err);
  }

  private fail(err: ChannelError): ChannelError {
    if (this.closedWith) return this.closedWith;
    this.closedWith = err;
    for (const id of [...this.pending.keys()]) this.giveUp(id, err, false);
    this.deadlines.clear();
    this.allowance?.stop();
    clearInterval(this.queueTimer);
    this.backlog.clear();
    for (const c of this.running.values()) c.abort(err);
    this.running.clear();
    this.ep.close();
    this.emit('close', err.reason === 'closed' ? undefined : err);
    return err;
  }

  private settle(id: number): Pending | undefined {
    const p = this.pending.get(id);
    if (!p) return undefined;
    this.pending.delete(id);
    if (p.signal && p.onAbort) p.signal.removeEventListener('abort', p.onAbort);
    p.unlink?.();
    this.state[STATE_HOLD] = this.pending.size + (this.keepAlive ? 1 : 0);
    return p;
  }

  private giveUp(id: number, err: unknown, tellPeer = true): void {
    const p = this.settle(id);
    if (!p) return;
    if (tellPeer) this.sendQuiet(Kind.Cancel, id, undefined, undefined);
    p.reject(err);
  }

  /**
   * Delivers what the ring already holds, before a deadline is judged. The event loop runs its
   * timers before it reads the rings: when the host was starved of cpu (a parallel hook over a
   * thousand plugins wakes a thousand runners on two cores), an answer can sit in the ring while
   * the deadline of its call fires, and the plugin was called a timeout. Bounded like a turn of
   * the endpoint (`budget` messages); a paused (throttled) peer is not read.
   */
  private readArrived(): void {
    for (let i = 0; i < READ_ARRIVED_MAX && !this.closedWith && this.state[STATE_PAUSE] === 0; i++) {
      let m: number | Buffer | undefined | null;
      try {
        m = this.ep.recv();
      } catch (e) {
        this.nativeError(e);
        return;
      }
      if (m === undefined) return;
      this.onEvent(m);
    }
  }

  /**
   * Keeps a message to handle after what is already set aside. Until they are all handled, the
   * endpoint delivers nothing (the ring keeps the rest, in order).
   */
  private setAside(m: Buffer): void {
    this.backlog.push(m);
    if (!this.backlogPaused) {
      this.backlogPaused = true;
      this.applyPause();
    }
  }

  private applyPause(): void {
    const paused = this.allowancePaused || this.backlogPaused;
    this.state[STATE_PAUSE] = paused ? 1 : 0;
    if (!paused && !this.closedWith) this.ep.resume();
  }

  private scheduleDrain(): void {
    if (this.drainScheduled) return;
    this.drainScheduled = true;
    setImmediate(() => {
      this.drainScheduled = false;
      this.drainBacklog();
    });
  }

  /**
   * Handles what was set aside, in order, at most BACKLOG_BATCH messages a turn (the event loop
   * runs between batches) and not while the allowance holds the peer back.
   */
  private drainBacklog(): void {
    try {
      for (let n = 0; n < BACKLOG_BATCH && !this.backlog.empty && !this.closedWith && !this.allowancePaused; n++) {
        this.dispatch(this.backlog.take());
      }
    } catch (e) {
      this.handlerFailed(e);
    }
    if (this.closedWith) return;
    if (!this.backlog.empty) {
      if (!this.allowancePaused) this.scheduleDrain();
      return;
    }
    this.backlogPaused = false;
    const end = this.endBehindBacklog;
    this.endBehindBacklog = undefined;
    if (end !== undefined) this.onEvent(end.m, end.detail);
    else this.applyPause();
  }

  /**
   * A handler or listener threw on the peer's message. Facing an untrusted peer (limits) that is
   * the peer's violation; the runner rethrows: its plugin's own failure ends it as a crash, with
   * the stack on its stderr.
   */
  private handlerFailed(e: unknown): void {
    if (this.limits === undefined) throw e;
    this.violation(`handling its message failed: ${describe(e, 1024)}`);
  }

  /**
   * From the endpoint, once per message: a length in rxBuffer, a Buffer, null (the peer closed
   * the channel), -1 (the peer exited; what it wrote before has been delivered) or -2 (the peer
   * broke the framing; `detail` says how).
   */
  private onEvent(m: number | Buffer | null, detail?: string): void {
    if (this.closedWith) return;
    // Facing an untrusted peer, nothing thrown while handling its message leaves here: the native
    // caller would end the process.
    try {
      if (!this.backlog.empty) {
        // Delivered before the pause took effect: it goes after what is set aside.
        if (typeof m === 'number' && m >= 0) {
          this.setAside(Buffer.from(this.rx.subarray(0, m)));
          this.scheduleDrain();
          return;
        }
        if (m !== null && typeof m !== 'number') {
          this.setAside(m);
          this.scheduleDrain();
          return;
        }
        // The end: after what the peer sent before it.
        this.endBehindBacklog = { m, detail };
        this.scheduleDrain();
        return;
      }
      if (typeof m === 'number') {
        if (m >= 0) this.dispatch(this.rx, m, true);
        else if (m === -1) this.fail(new ChannelError('ERR_CHANNEL_CLOSED', 'the peer exited', 'peer exited'));
        else this.violation(detail ?? 'malformed frame');
      } else if (m === null) {
        this.fail(new ChannelError('ERR_CHANNEL_CLOSED', 'the peer closed the channel', 'peer closed'));
      } else {
        this.dispatch(m);
      }
    } catch (e) {
      this.handlerFailed(e);
    }
  }

  /**
   * Decodes a message; facing limits, charges the peer the time it took (and `started` messages,
   * with their bytes: 1 for what the peer started, 0 for an answer to our call, whose count and
   * bytes are ours to choose). Undefined once the message was a violation (the channel is closed).
   * Every message is timed (two clock reads, ~0.1 us): what a small one costs depends on more than
   * its budget shows (an object of 25 keys never seen before: ~60 us in 250 bytes).
   */
  private decodeCharged(m: Buffer, length: number, reused: boolean, started: 0 | 1): Decoded | undefined {
    const a = this.allowance;
    const t0 = a === undefined ? 0 : performance.now();
    let d: Decoded;
    try {
      d = decode(m, length, reused, this.dec, this.decodeLimits);
    } catch (e) {
      this.violation(e instanceof CodecError ? e.message : `undecodable message: ${describe(e, 1024)}`);
      return undefined;
    }
    if (a === undefined) return d;
    const t1 = performance.now();
    if (!a.charge(started, started * length, t1 - t0, t1)) {
      this.violation(a.floodMessage, 'flood');
      return undefined;
    }
    return d;
  }

  private dispatch(m: Buffer, length = m.length, reused = false): void {
    // What the peer starts is charged as a message; an answer to our call only for its decoding.
    const started = m.length >= HEADER && m[0] !== Kind.Result && m[0] !== Kind.Error ? 1 : 0;
    const d = this.decodeCharged(m, length, reused, started);
    if (d === undefined) return;
    const l = this.limits;
    switch (d.kind) {
      case Kind.Result:
      case Kind.Error: {
        const p = this.settle(d.id);
        if (!p) {
          if (l !== undefined) {
            // An answer to a call never made is a lie; a late one (the call timed out or was
            // cancelled) or a repeated one is dropped, and the peer pays for it like for a call.
            if (d.id === 0 || (d.id >= this.nextId && !this.wrapped)) {
              this.violation(`an answer to call ${d.id}, which was never made`);
              return;
            }
            this.charge(length);
          }
          return;
        }
        if (d.kind === Kind.Result) p.resolve(d.value);
        else p.reject(remoteError(p.method, d.value));
        return;
      }
      case Kind.Call:
        if (!Array.isArray(d.value)) {
          this.violation('call arguments are not an array');
          return;
        }
        if (l !== undefined) {
          if (d.value.length > l.maxArgs) {
            this.violation(`a call with ${d.value.length} arguments (at most ${l.maxArgs})`);
            return;
          }
          if (this.running.size >= l.maxRunning) {
            const e = new Error(`too many calls in flight (at most ${l.maxRunning}); wait for answers before calling more`);
            (e as { code?: string }).code = 'ERR_CHANNEL_BUSY';
            this.reply(d.id, Kind.Error, this.errorOut(e));
            return;
          }
        }
        this.serve(d.id, d.name, d.value);
        return;
      case Kind.Notify:
        if (!Array.isArray(d.value)) {
          this.violation('notification arguments are not an array');
          return;
        }
        if (l !== undefined) {
          if (d.value.length > l.maxArgs) {
            this.violation(`a notification with ${d.value.length} arguments (at most ${l.maxArgs})`);
            return;
          }
        }
        this.emit('notification', d.name, d.value);
        return;
      case Kind.Cancel:
        this.running.get(d.id)?.abort(abortError('call'));
        return;
    }
  }

  private serve(id: number, method: string, args: unknown[]): void {
    const fn = this.handlers.get(method);
    if (!fn) {
      // The name is the peer's: echoed clipped, so an answer is never much larger than a call. No
      // Error is made: its stack (this side's frames and file paths) tells the peer nothing it
      // needs, and capturing and formatting one for each call of a missing method was most of what
      // a peer calling one in a loop cost this side.
      this.reply(id, Kind.Error, { name: 'Error', message: `no method '${clip(method, MAX_ECHO)}'`, code: 'ERR_METHOD_NOT_FOUND' });
      return;
    }
    const ctx = new Context(method);
    let r: unknown;
    try {
      r = fn.apply(ctx, args);
    } catch (e) {
      this.reply(id, Kind.Error, this.errorOut(e));
      return;
    }
    if (r === null || typeof r !== 'object' || typeof (r as { then?: unknown }).then !== 'function') {
      this.reply(id, Kind.Result, r);
      return;
    }
    this.running.set(id, ctx);
    this.state[STATE_BUSY]++;
    (r as PromiseLike<unknown>).then(
      (v) => {
        this.state[STATE_BUSY]--;
        if (this.running.delete(id)) this.reply(id, Kind.Result, v);
      },
      (e) => {
        this.state[STATE_BUSY]--;
        if (this.running.delete(id)) this.reply(id, Kind.Error, this.errorOut(e));
      },
    );
  }

  /** An error of ours as the peer gets it: without our stack when the peer is untrusted (limits). */
  private errorOut(e: unknown): Record<string, unknown> {
    return errorToWire(e, this.limits === undefined);
  }

  private reply(id: number, kind: Kind, value: unknown): void {
    if (this.closedWith) return;
    try {
      this.write(kind, id, undefined, value);
    } catch (e) {
      if (this.closedWith) return;
      // The value did not encode (a function, too large...): the caller gets that as the error.
      this.sendQuiet(Kind.Error, id, undefined, this.errorOut(e));
    }
  }
}
