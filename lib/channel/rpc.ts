/**
 * RPC over a channel endpoint: calls with ids, results and errors, notifications both ways,
 * cancellation, per-call timeouts. The same class serves the host and the runner in the sandbox.
 *
 * Everything received is untrusted: a message that does not decode closes the channel with a
 * `protocol` violation; results for ids we do not wait for (late answers after a timeout or a
 * cancel) are dropped.
 */
import { EventEmitter } from 'node:events';

import { CallTimeoutError, ChannelError, RemoteError } from '../errors';
import { STATE_BUSY, STATE_HOLD, type NativeEndpoint } from './addon';
import { CodecError, DecoderState, Encoder, Kind, decode, type Decoded } from './codec';

export interface CallContext {
  /** Aborted when the caller cancels the call or its timeout passes. */
  readonly signal: AbortSignal;
  readonly method: string;
}

export type Handler = (this: CallContext, ...args: unknown[]) => unknown;

export interface CallOptions {
  /** Milliseconds; 0 means none. Defaults to the peer's `timeout`. */
  timeout?: number;
  signal?: AbortSignal;
}

export interface RpcOptions {
  /** Default per-call timeout in ms (0: none). */
  timeout?: number;
  /**
   * After each message, spin (blocking this thread) up to this many microseconds for the next one
   * before going back to the event loop. Used by the runner (its CPU, its cgroup); the host leaves
   * it 0 so its event loop is never blocked.
   */
  spinUs?: number;
  /**
   * After a send or a received message, keep the event loop polling the ring (it keeps running
   * timers and I/O, but does not sleep) up to this many microseconds before sleeping on the
   * eventfd, so a quick answer costs no wake-up. Shrinks (to an eighth) while answers are slow.
   */
  idleSpinUs?: number;
  /** Messages handled per event-loop turn, so a flooding peer cannot starve timers and I/O. */
  budget?: number;
  /** Keep the process alive while the channel is open (the runner). Otherwise only while calls are pending. */
  keepAlive?: boolean;
}

export interface Violation {
  kind: 'protocol';
  message: string;
}

/** The `this` of a handler. Its AbortController is made only if the handler looks at `signal`. */
class Context implements CallContext {
  private ac: AbortController | undefined;
  private abortedWith: unknown;
  private aborted = false;
  constructor(readonly method: string) {}

  get signal(): AbortSignal {
    if (this.ac === undefined) {
      this.ac = new AbortController();
      if (this.aborted) this.ac.abort(this.abortedWith);
    }
    return this.ac.signal;
  }

  abort(reason: unknown): void {
    if (this.ac !== undefined) {
      this.ac.abort(reason);
    } else if (!this.aborted) {
      this.aborted = true;
      this.abortedWith = reason;
    }
  }
}

interface Pending {
  method: string;
  resolve(v: unknown): void;
  reject(e: unknown): void;
  signal?: AbortSignal;
  onAbort?: () => void;
}

/** Deadlines of the calls made with one timeout, oldest first (see RpcPeer.expiries). */
interface Expiry {
  ids: number[];
  at: number[];
  head: number;
  timer: NodeJS.Timeout | undefined;
}

const MAX_ERROR_TEXT = 16 * 1024;

function clip(v: unknown): string | undefined {
  if (typeof v !== 'string') return undefined;
  return v.length > MAX_ERROR_TEXT ? v.slice(0, MAX_ERROR_TEXT) + '…' : v;
}

function errorToWire(e: unknown): Record<string, unknown> {
  if (e instanceof Error) {
    const code = (e as { code?: unknown }).code;
    return { name: e.name, message: e.message, stack: e.stack, code: typeof code === 'string' ? code : undefined };
  }
  return { name: 'Error', message: `non-error thrown: ${String(e)}` };
}

function abortError(method: string): Error {
  const e = new Error(`call '${method}' was cancelled`);
  e.name = 'AbortError';
  (e as { code?: string }).code = 'ABORT_ERR';
  return e;
}

/**
 * Events: 'notification' (event, args), 'violation' (Violation), 'close' (ChannelError | undefined).
 */
export class RpcPeer extends EventEmitter {
  private readonly enc: Encoder;
  private readonly dec = new DecoderState();
  private readonly rx: Buffer;
  private readonly pending = new Map<number, Pending>();
  private readonly running = new Map<number, Context>();
  private readonly handlers = new Map<string, Handler>();
  private readonly backlog: Buffer[] = [];
  private nextId = 1;
  private closedWith: ChannelError | null = null;
  private timeout: number;
  private readonly keepAlive: boolean;
  /** Read by the endpoint: see NativeEndpoint.state. */
  private readonly state: Int32Array;
  /**
   * Calls with the same timeout expire in the order they were made: their deadlines wait in one
   * FIFO per timeout, watched by one timer, instead of a timer each (setTimeout + clearTimeout cost
   * about as much as the rest of a call). Entries of settled calls are dropped lazily.
   */
  private readonly expiries = new Map<number, Expiry>();

  constructor(
    private readonly ep: NativeEndpoint,
    options: RpcOptions = {},
  ) {
    super();
    this.timeout = options.timeout ?? 0;
    this.keepAlive = options.keepAlive ?? false;
    this.enc = new Encoder(ep.txBuffer);
    this.rx = ep.rxBuffer;
    ep.start((m, detail) => this.onEvent(m, detail), {
      spinUs: options.spinUs ?? 0,
      idleSpinUs: options.idleSpinUs ?? 0,
      budget: options.budget ?? 256,
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
    if (signal?.aborted) return Promise.reject(abortError(method));
    const id = this.takeId();
    return new Promise((resolve, reject) => {
      const p: Pending = { method, resolve, reject };
      const timeout = options.timeout ?? this.timeout;
      if (signal) {
        p.signal = signal;
        p.onAbort = () => this.giveUp(id, abortError(method));
        signal.addEventListener('abort', p.onAbort, { once: true });
      }
      this.pending.set(id, p);
      if (timeout > 0) this.expireLater(id, timeout);
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
    const timeout = options.timeout ?? (this.timeout || 30000);
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
      let d: Decoded;
      try {
        d = typeof m === 'number' ? decode(this.rx, m, true, this.dec) : decode(m, m.length, false, this.dec);
      } catch (e) {
        throw this.violation((e as Error).message);
      }
      if (d.id === id && (d.kind === Kind.Result || d.kind === Kind.Error)) {
        if (this.backlog.length > 0) setImmediate(() => this.drainBacklog());
        if (d.kind === Kind.Result) return d.value;
        throw this.remoteError(method, d.value);
      }
      // Not ours (a call or notification from the peer, or a late answer): handled after we return.
      this.backlog.push(typeof m === 'number' ? Buffer.from(this.rx.subarray(0, m)) : m);
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

  private expireLater(id: number, timeout: number): void {
    let q = this.expiries.get(timeout);
    if (q === undefined) {
      q = { ids: [], at: [], head: 0, timer: undefined };
      this.expiries.set(timeout, q);
    }
    while (q.head < q.ids.length && !this.pending.has(q.ids[q.head])) q.head++;
    if (q.head === q.ids.length) {
      q.ids.length = 0;
      q.at.length = 0;
      q.head = 0;
    } else if (q.ids.length - q.head > 2 * this.pending.size + 64) {
      // A long call at the head keeps many settled ones behind it: keep only the pending.
      const ids: number[] = [];
      const at: number[] = [];
      for (let i = q.head; i < q.ids.length; i++) {
        if (this.pending.has(q.ids[i])) {
          ids.push(q.ids[i]);
          at.push(q.at[i]);
        }
      }
      q.ids = ids;
      q.at = at;
      q.head = 0;
    }
    q.ids.push(id);
    q.at.push(performance.now() + timeout);
    if (q.timer === undefined) this.armExpiry(timeout, q);
  }

  private armExpiry(timeout: number, q: Expiry): void {
    const delay = Math.max(0, q.at[q.head] - performance.now());
    // Unreferenced: the pending calls themselves keep the loop alive.
    q.timer = setTimeout(() => this.expire(timeout, q), Math.ceil(delay));
    q.timer.unref();
  }

  private expire(timeout: number, q: Expiry): void {
    q.timer = undefined;
    const now = performance.now();
    while (q.head < q.ids.length) {
      const id = q.ids[q.head];
      const p = this.pending.get(id);
      if (p !== undefined && q.at[q.head] > now) {
        this.armExpiry(timeout, q);
        return;
      }
      q.head++;
      if (p !== undefined) this.giveUp(id, new CallTimeoutError(p.method, timeout));
    }
    if (this.expiries.get(timeout) === q) this.expiries.delete(timeout);
  }

  private takeId(): number {
    const id = this.nextId;
    this.nextId = id >= 0xffffffff ? 1 : id + 1;
    return id;
  }

  private write(kind: Kind, id: number, name: string | undefined, value: unknown): void {
    const len = this.enc.encode(kind, id, name, value);
    try {
      // A message the ring cannot take yet is queued natively (the envelope copied out of txBuffer).
      this.ep.send(len, this.enc.parts);
    } catch (e) {
      throw this.nativeError(e);
    }
    this.enc.sent();
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

  private violation(message: string): ChannelError {
    const err = new ChannelError('ERR_CHANNEL_PROTOCOL', `closed the channel: ${message}`, 'protocol');
    if (!this.closedWith) this.emit('violation', { kind: 'protocol', message } satisfies Violation);
    return this.fail(err);
  }

  private fail(err: ChannelError): ChannelError {
    if (this.closedWith) return this.closedWith;
    this.closedWith = err;
    for (const id of [...this.pending.keys()]) this.giveUp(id, err, false);
    for (const q of this.expiries.values()) clearTimeout(q.timer);
    this.expiries.clear();
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
    this.state[STATE_HOLD] = this.pending.size + (this.keepAlive ? 1 : 0);
    return p;
  }

  private giveUp(id: number, err: unknown, tellPeer = true): void {
    const p = this.settle(id);
    if (!p) return;
    if (tellPeer) this.sendQuiet(Kind.Cancel, id, undefined, undefined);
    p.reject(err);
  }

  private remoteError(method: string, v: unknown): RemoteError {
    const o = (v !== null && typeof v === 'object' ? v : {}) as Record<string, unknown>;
    return new RemoteError(method, clip(o.name) ?? 'Error', clip(o.message) ?? '', clip(o.stack), clip(o.code));
  }

  private drainBacklog(): void {
    while (this.backlog.length > 0 && !this.closedWith) this.dispatch(this.backlog.shift()!);
  }

  /**
   * From the endpoint, once per message: a length in rxBuffer, a Buffer, null (the peer closed
   * the channel), -1 (the peer exited; what it wrote before has been delivered) or -2 (the peer
   * broke the framing; `detail` says how).
   */
  private onEvent(m: number | Buffer | null, detail?: string): void {
    if (this.closedWith) return;
    if (this.backlog.length > 0) this.drainBacklog();
    if (typeof m === 'number') {
      if (m >= 0) this.dispatch(this.rx, m, true);
      else if (m === -1) this.fail(new ChannelError('ERR_CHANNEL_CLOSED', 'the peer exited', 'peer exited'));
      else this.violation(detail ?? 'malformed frame');
    } else if (m === null) {
      this.fail(new ChannelError('ERR_CHANNEL_CLOSED', 'the peer closed the channel', 'peer closed'));
    } else {
      this.dispatch(m);
    }
  }

  private dispatch(m: Buffer, length = m.length, reused = false): void {
    let d: Decoded;
    try {
      d = decode(m, length, reused, this.dec);
    } catch (e) {
      this.violation(e instanceof CodecError ? e.message : String(e));
      return;
    }
    switch (d.kind) {
      case Kind.Result:
      case Kind.Error: {
        const p = this.settle(d.id);
        if (!p) return; // late answer to a call we gave up on
        if (d.kind === Kind.Result) p.resolve(d.value);
        else p.reject(this.remoteError(p.method, d.value));
        return;
      }
      case Kind.Call:
        if (!Array.isArray(d.value)) {
          this.violation('call arguments are not an array');
          return;
        }
        this.serve(d.id, d.name, d.value);
        return;
      case Kind.Notify:
        if (!Array.isArray(d.value)) {
          this.violation('notification arguments are not an array');
          return;
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
      const e = new Error(`no method '${method}'`);
      (e as { code?: string }).code = 'ERR_METHOD_NOT_FOUND';
      this.reply(id, Kind.Error, errorToWire(e));
      return;
    }
    const ctx = new Context(method);
    let r: unknown;
    try {
      r = fn.apply(ctx, args);
    } catch (e) {
      this.reply(id, Kind.Error, errorToWire(e));
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
        if (this.running.delete(id)) this.reply(id, Kind.Error, errorToWire(e));
      },
    );
  }

  private reply(id: number, kind: Kind, value: unknown): void {
    if (this.closedWith) return;
    try {
      this.write(kind, id, undefined, value);
    } catch (e) {
      if (this.closedWith) return;
      // The value did not encode (a function, too large...): the caller gets that as the error.
      this.sendQuiet(Kind.Error, id, undefined, errorToWire(e));
    }
  }
}
