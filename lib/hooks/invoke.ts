/**
 * One invocation of a hook: calls the handlers of a snapshot in the hook's mode, with per-handler
 * timeouts, cancellation and error isolation.
 *
 * invoke() sits in request paths, so the common case stays cheap: a handler that returns a plain value
 * is handled synchronously (no timer, no promise per handler, no AbortController unless it reads
 * `ctx.signal`); timers and abort bookkeeping exist only for handlers that return a promise.
 */
import { performance } from 'node:perf_hooks';
import { AbortSource } from '../abort-source';
import { HookAbortError, HookTimeoutError } from '../errors';
import type { HandlerContext, HandlerOutcome, HookHandler, HookResult, InvokeMode } from './types';

/** A registered handler. Immutable: the registry replaces arrays of entries, never edits them. */
export interface Entry {
  readonly owner: string;
  readonly handler: HookHandler;
  readonly priority: number;
  readonly kind: 'host' | 'plugin';
  /** Registration order among equal priorities. */
  readonly seq: number;
}

type ErrorInfo = NonNullable<HandlerOutcome['error']>;

const MAX_NAME = 256;
const MAX_CODE = 256;
const MAX_MESSAGE = 4 * 1024;
const MAX_STACK = 16 * 1024;

function clip(s: string, max: number): string {
  return s.length > max ? `${s.slice(0, max)}…` : s;
}

/** Reads one property as a bounded string; a throwing getter or a non-string gives undefined. */
function prop(o: object, key: string, max: number): string | undefined {
  try {
    const v = (o as Record<string, unknown>)[key];
    if (typeof v === 'string') return clip(v, max);
    if (typeof v === 'number' && key === 'code') return String(v);
    return undefined;
  } catch {
    return undefined;
  }
}

function describe(e: unknown): string {
  try {
    if (typeof e === 'string') return clip(e, MAX_MESSAGE);
    return clip(String(e), MAX_MESSAGE);
  } catch {
    try {
      return Object.prototype.toString.call(e);
    } catch {
      return '[value that cannot be described]';
    }
  }
}

/**
 * What was thrown, as plain bounded strings. Never throws: getters, toString and proxy traps of a
 * hostile value are each caught.
 */
export function normaliseError(e: unknown): ErrorInfo {
  try {
    if (e !== null && (typeof e === 'object' || typeof e === 'function')) {
      const message = prop(e, 'message', MAX_MESSAGE);
      const name = prop(e, 'name', MAX_NAME);
      if (message !== undefined || name !== undefined) {
        const info: ErrorInfo = { name: name ?? 'Error', message: message ?? '' };
        const code = prop(e, 'code', MAX_CODE);
        if (code !== undefined) info.code = code;
        const stack = prop(e, 'stack', MAX_STACK);
        if (stack !== undefined) info.stack = stack;
        return info;
      }
    }
    return { name: 'NonError', message: `non-error value thrown: ${describe(e)}` };
  } catch {
    return { name: 'NonError', message: 'non-error value thrown: [value that cannot be described]' };
  }
}

/**
 * The handler context. Its `signal` is made on first access (see AbortSource): most handlers never
 * read it, and a plugin's hook call listens through onAbort.
 */
class Context extends AbortSource implements HandlerContext {
  constructor(
    readonly hook: string,
    readonly owner: string,
    readonly timeout: number,
  ) {
    super();
  }
}

function ok(entry: Entry, value: unknown, ms: number): HandlerOutcome {
  return { owner: entry.owner, kind: entry.kind, ok: true, value, timedOut: false, ms };
}

function failed(entry: Entry, e: unknown, ms: number): HandlerOutcome {
  return { owner: entry.owner, kind: entry.kind, ok: false, error: normaliseError(e), timedOut: false, ms };
}

/** `then` of a thenable, or undefined. A throwing `then` getter counts as the handler throwing. */
function thenOf(v: unknown): ((this: unknown, ok: (v: unknown) => void, err: (e: unknown) => void) => unknown) | undefined {
  if (v === null || (typeof v !== 'object' && typeof v !== 'function')) return undefined;
  const then = (v as { then?: unknown }).then;
  return typeof then === 'function' ? (then as never) : undefined;
}

/** Resolution of a running handler when the caller aborted the invocation. */
const ABORTED = Symbol('aborted');
type Settled = HandlerOutcome | typeof ABORTED;

interface Running {
  readonly ctx: Context;
  /** performance.now() past which it has timed out (with a timeout). */
  readonly deadline: number;
  done: boolean;
  readonly resolve: (o: Settled) => void;
  /** Settles it as timed out (with a timeout). */
  expire: (() => void) | undefined;
}

/** The state of one invoke() call. */
export class Invocation {
  private running: Set<Running> | undefined = undefined;
  /**
   * Handlers waited on with a timeout, in the order they started (so by deadline: one invocation
   * has one timeout), behind one timer for the invocation rather than one per handler: a parallel
   * hook over hundreds of plugins armed and cleared a timer for each.
   */
  private timed: Running[] | undefined = undefined;
  private timedHead = 0;
  private timedLive = 0;
  private timer: NodeJS.Timeout | undefined = undefined;
  private listening = false;
  private aborted = false;
  private onAbortCallback: (() => void) | undefined = undefined;

  constructor(
    readonly hook: string,
    readonly mode: InvokeMode,
    readonly entries: readonly Entry[],
    readonly args: unknown[],
    readonly timeout: number,
    readonly signal: AbortSignal | undefined,
  ) {}

  /** Runs the invocation. Resolves with the result, rejects only when the caller's signal aborts. */
  run(): Promise<HookResult> {
    if (this.signal?.aborted) return Promise.reject(this.abortError());
    let r: HookResult | Promise<HookResult>;
    try {
      r = this.mode === 'parallel' ? this.parallel() : this.sequential(0, this.mode === 'waterfall' ? this.args[0] : undefined, []);
    } catch (e) {
      this.stopListening();
      return Promise.reject(e);
    }
    return r instanceof Promise ? r : Promise.resolve(r);
  }

  private abortError(): HookAbortError {
    return new HookAbortError(this.hook, this.signal?.reason);
  }

  /** Calls one handler. A plain value or a synchronous throw gives an outcome at once. */
  private call(entry: Entry, args: unknown[]): HandlerOutcome | Promise<Settled> {
    const ctx = new Context(this.hook, entry.owner, this.timeout);
    const t0 = performance.now();
    let r: unknown;
    let then;
    try {
      const fn = entry.handler;
      r = fn(args, ctx);
      then = thenOf(r);
    } catch (e) {
      return failed(entry, e, performance.now() - t0);
    }
    if (then === undefined) return ok(entry, r, performance.now() - t0);
    return this.wait(entry, ctx, r, then, t0);
  }

  private wait(entry: Entry, ctx: Context, thenable: unknown, then: NonNullable<ReturnType<typeof thenOf>>, t0: number): Promise<Settled> {
    return new Promise<Settled>((resolve) => {
      const run: Running = { ctx, deadline: t0 + this.timeout, done: false, resolve, expire: undefined };
      const finish = (o: HandlerOutcome): void => {
        if (run.done) return; // a late result after a timeout or an abort is ignored
        run.done = true;
        if (run.expire !== undefined) this.untime();
        this.running?.delete(run);
        resolve(o);
      };
      if (this.timeout > 0) {
        run.expire = (): void => {
          if (run.done) return;
          const err = new HookTimeoutError(this.hook, entry.owner, this.timeout);
          ctx.abort(err);
          const o = failed(entry, err, performance.now() - t0);
          o.timedOut = true;
          finish(o);
        };
        this.time(run);
      }
      if (this.signal !== undefined) {
        (this.running ??= new Set()).add(run);
        this.listen();
      }
      try {
        then.call(
          thenable,
          (v: unknown) => finish(ok(entry, v, performance.now() - t0)),
          (e: unknown) => finish(failed(entry, e, performance.now() - t0)),
        );
      } catch (e) {
        finish(failed(entry, e, performance.now() - t0));
      }
    });
  }

  private time(run: Running): void {
    (this.timed ??= []).push(run);
    this.timedLive++;
    if (this.timer === undefined) this.timer = setTimeout(this.onTimer, this.timeout);
  }

  /** One handler waited on with a timeout settled; the last one takes the timer with it. */
  private untime(): void {
    if (--this.timedLive > 0 || this.timer === undefined) return;
    clearTimeout(this.timer);
    this.timer = undefined;
  }

  // The verdict waits for this turn's I/O: the event loop runs timers before it reads what arrived,
  // and a host starved of cpu (a parallel hook waking a thousand plugins on two cores) would
  // otherwise time out answers that are already there. Still unanswered after that turn is a timeout.
  private readonly onTimer = (): void => {
    this.timer = undefined;
    setImmediate(this.expireDue);
  };

  private readonly expireDue = (): void => {
    const q = this.timed;
    if (q === undefined) return;
    const now = performance.now();
    while (this.timedHead < q.length) {
      const run = q[this.timedHead]!;
      // A timer fires on the event loop's clock, which may lag performance.now() by up to a
      // millisecond: that close counts as due.
      if (!run.done && run.deadline - now > 1) break;
      this.timedHead++;
      run.expire!();
    }
    if (this.timedHead === q.length) {
      q.length = 0;
      this.timedHead = 0;
    } else if (this.timer === undefined) {
      this.timer = setTimeout(this.onTimer, Math.max(1, q[this.timedHead]!.deadline - now));
    }
  };

  private listen(): void {
    if (this.listening || this.signal === undefined) return;
    this.listening = true;
    this.signal.addEventListener('abort', this.onAbort);
  }

  private stopListening(): void {
    if (!this.listening) return;
    this.listening = false;
    this.signal!.removeEventListener('abort', this.onAbort);
  }

  private readonly onAbort = (): void => {
    if (this.aborted) return;
    this.aborted = true;
    this.stopListening();
    const reason = this.signal?.reason;
    if (this.running !== undefined) {
      for (const run of this.running) {
        run.done = true;
        if (run.expire !== undefined) this.untime();
        run.ctx.abort(reason);
        run.resolve(ABORTED);
      }
      this.running.clear();
    }
    this.onAbortCallback?.();
  };

  private result(outcomes: HandlerOutcome[], value: unknown): HookResult {
    this.stopListening();
    const values: unknown[] = [];
    const errors: HandlerOutcome[] = [];
    for (let i = 0; i < outcomes.length; i++) {
      const o = outcomes[i];
      if (o.ok) values.push(o.value);
      else errors.push(o);
    }
    return { hook: this.hook, mode: this.mode, value, values, outcomes, errors };
  }

  private parallel(): HookResult | Promise<HookResult> {
    const entries = this.entries;
    const outcomes: HandlerOutcome[] = new Array(entries.length);
    let pending = 0;
    let settle: ((r: HookResult) => void) | undefined;
    let fail: ((e: unknown) => void) | undefined;
    let promise: Promise<HookResult> | undefined;
    for (let i = 0; i < entries.length; i++) {
      if (this.signal?.aborted) {
        // A handler aborted the caller's signal while we were starting them.
        this.onAbort();
        if (promise !== undefined) return promise;
        throw this.abortError();
      }
      const o = this.call(entries[i], this.args);
      if (!(o instanceof Promise)) {
        outcomes[i] = o;
        continue;
      }
      if (promise === undefined) {
        promise = new Promise<HookResult>((resolve, reject) => {
          settle = resolve;
          fail = reject;
        });
        this.onAbortCallback = () => fail!(this.abortError());
      }
      pending++;
      o.then((s) => {
        if (s === ABORTED || this.aborted) return;
        outcomes[i] = s;
        if (--pending === 0) settle!(this.result(outcomes, undefined));
      });
    }
    if (promise === undefined) return this.result(outcomes, undefined);
    if (this.signal?.aborted) this.onAbort();
    return promise;
  }

  /** series, waterfall and first: one handler after another, synchronously while handlers return plain values. */
  private sequential(start: number, value: unknown, outcomes: HandlerOutcome[]): HookResult | Promise<HookResult> {
    const entries = this.entries;
    for (let i = start; i < entries.length; i++) {
      if (this.signal?.aborted) throw this.abortError();
      const o = this.call(entries[i], this.argsFor(value));
      if (o instanceof Promise) return this.sequentialAsync(o, i, value, outcomes);
      outcomes.push(o);
      if (o.ok) {
        if (this.mode === 'waterfall') value = o.value;
        else if (this.mode === 'first' && o.value !== undefined && o.value !== null) return this.result(outcomes, o.value);
      }
    }
    return this.result(outcomes, this.mode === 'series' ? undefined : value);
  }

  private async sequentialAsync(first: Promise<Settled>, index: number, value: unknown, outcomes: HandlerOutcome[]): Promise<HookResult> {
    let pending: HandlerOutcome | Promise<Settled> = first;
    for (let i = index; ; ) {
      const o: Settled = pending instanceof Promise ? await pending : pending;
      if (o === ABORTED || this.aborted) throw this.abortError();
      outcomes.push(o);
      if (o.ok) {
        if (this.mode === 'waterfall') value = o.value;
        else if (this.mode === 'first' && o.value !== undefined && o.value !== null) return this.result(outcomes, o.value);
      }
      if (++i >= this.entries.length) break;
      if (this.signal?.aborted) {
        this.onAbort();
        throw this.abortError();
      }
      pending = this.call(this.entries[i], this.argsFor(value));
    }
    return this.result(outcomes, this.mode === 'series' ? undefined : value);
  }

  private argsFor(value: unknown): unknown[] {
    if (this.mode !== 'waterfall') return this.args;
    const a = this.args.length === 0 ? [undefined] : this.args.slice();
    a[0] = value;
    return a;
  }
}
