/**
 * What a handler of the peer's calls sees as `this`, and how errors cross the channel: bounded
 * texts both ways, so that neither a hostile error (its getters, its size) nor a hostile method
 * name makes an answer large or throws where the channel cannot catch it.
 */
import { AbortSource, type CancelSource } from '../abort-source';
import { RemoteError } from '../errors';

export interface CallContext {
  /** Aborted when the caller cancels the call or its timeout passes. */
  readonly signal: AbortSignal;
  readonly method: string;
}

export type { CancelSource };

export type Handler = (this: CallContext, ...args: unknown[]) => unknown;

/** The `this` of a handler. Its AbortController is made only if the handler looks at `signal`. */
export class Context extends AbortSource implements CallContext {
  constructor(readonly method: string) {
    super();
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

/**
 * An error as the peer gets it: bounded texts, whatever the error's getters do. `withStack` false
 * (facing an untrusted peer) leaves the stack out: it holds this side's frames and file paths,
 * which tell a plugin where the host's code lives and how it is built, and nothing it needs.
 */
export function errorToWire(e: unknown, withStack = true): Record<string, unknown> {
  try {
    if (e instanceof Error) {
      const code = (e as { code?: unknown }).code;
      return {
        name: clip(e.name, 256),
        message: clip(e.message),
        stack: withStack ? clip(e.stack) : undefined,
        code: typeof code === 'string' ? clip(code, 256) : undefined,
      };
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
