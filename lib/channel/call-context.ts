/**
 * What a handler of the peer's calls sees as `this`, and how errors cross the channel: bounded
 * texts both ways, so that neither a hostile error (its getters, its size) nor a hostile method
 * name makes an answer large or throws where the channel cannot catch it.
 */
import { RemoteError } from '../errors';

export interface CallContext {
  /** Aborted when the caller cancels the call or its timeout passes. */
  readonly signal: AbortSignal;
  readonly method: string;
}

/**
 * What cancels a call made on behalf of another call (the bus forwarding a service call): the
 * outer call's Context. Cheaper than an AbortSignal: an AbortController and its listener cost
 * several microseconds per call, paid on every call although almost none is ever cancelled.
 */
export interface CancelSource {
  readonly aborted: boolean;
  /** Calls `fn` once when aborted; returns the function that forgets it. */
  onAbort(fn: () => void): () => void;
}

export type Handler = (this: CallContext, ...args: unknown[]) => unknown;

/** The `this` of a handler. Its AbortController is made only if the handler looks at `signal`. */
export class Context implements CallContext, CancelSource {
  private ac: AbortController | undefined;
  private abortedWith: unknown;
  private isAborted = false;
  private listeners: Array<() => void> | undefined;
  constructor(readonly method: string) {}

  get signal(): AbortSignal {
    if (this.ac === undefined) {
      this.ac = new AbortController();
      if (this.isAborted) this.ac.abort(this.abortedWith);
    }
    return this.ac.signal;
  }

  get aborted(): boolean {
    return this.isAborted;
  }

  onAbort(fn: () => void): () => void {
    const list = (this.listeners ??= []);
    list.push(fn);
    return () => {
      const i = list.indexOf(fn);
      if (i >= 0) list.splice(i, 1);
    };
  }

  abort(reason: unknown): void {
    if (this.isAborted) return;
    this.isAborted = true;
    this.abortedWith = reason;
    this.ac?.abort(reason);
    const list = this.listeners;
    this.listeners = undefined;
    for (const fn of list ?? []) fn();
  }
}

const MAX_ERROR_TEXT = 16 * 1024;
/** Longest piece of the peer's input (a method name) echoed back in an error. */
export const MAX_ECHO = 128;

export function clip(v: unknown, max = MAX_ERROR_TEXT): string | undefined {
  if (typeof v !== 'string') return undefined;
  return v.length > max ? v.slice(0, max) + '…' : v;
}

/** String(v) that never throws (a hostile value's toString may) and is bounded. */
export function describe(v: unknown, max = MAX_ERROR_TEXT): string {
  try {
    return clip(typeof v === 'string' ? v : String(v), max) ?? '';
  } catch {
    return '[a value that cannot be described]';
  }
}

/** An error as the peer gets it: bounded texts, whatever the error's getters do. */
export function errorToWire(e: unknown): Record<string, unknown> {
  try {
    if (e instanceof Error) {
      const code = (e as { code?: unknown }).code;
      return { name: clip(e.name, 256), message: clip(e.message), stack: clip(e.stack), code: typeof code === 'string' ? clip(code, 256) : undefined };
    }
  } catch {
    // a getter threw: described below
  }
  return { name: 'Error', message: `non-error thrown: ${describe(e)}` };
}

/** An error the peer sent as the answer to `method`, its texts bounded. */
export function remoteError(method: string, v: unknown): RemoteError {
  const o = (v !== null && typeof v === 'object' ? v : {}) as Record<string, unknown>;
  return new RemoteError(method, clip(o.name) ?? 'Error', clip(o.message) ?? '', clip(o.stack), clip(o.code));
}

export function abortError(method: string): Error {
  const e = new Error(`call '${method}' was cancelled`);
  e.name = 'AbortError';
  (e as { code?: string }).code = 'ABORT_ERR';
  return e;
}
