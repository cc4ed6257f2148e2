/**
 * Types of the hook registry: hooks the host declares, handlers that the host and plugins register,
 * and what one invocation reports per handler.
 */

/**
 * How the handlers of a hook are called, in priority order:
 * - parallel: all started at once with the same args; `values` are their results in handler order.
 * - series: one after another, each with the same args.
 * - waterfall: handler i gets `[value, ...args.slice(1)]`, `value` being the previous handler's result
 *   (`args[0]` for the first). A failed or timed-out handler is skipped: the value passes through
 *   unchanged. A handler that returns `undefined` passes `undefined` on: it is a value like any other.
 * - first: one after another until one returns something other than `undefined` or `null`; that is the
 *   result and the later handlers are not called.
 */
export type InvokeMode = 'parallel' | 'series' | 'waterfall' | 'first';

export interface HookDeclaration {
  /** `^[a-z][a-zA-Z0-9_.:-]{0,127}$`, e.g. `request:before`, `render.page`. */
  name: string;
  mode: InvokeMode;
  /**
   * Milliseconds each handler may take, default 5000; 0 means none. Applies to handlers that return a
   * promise: a synchronous handler cannot be interrupted and is never timed out.
   */
  timeout?: number;
  description?: string;
}

export interface HandlerContext {
  hook: string;
  owner: string;
  /**
   * Aborted when this handler times out or the caller of invoke() cancels. Pass it on (for instance to
   * a plugin call) so the work is cancelled too. Created on first access: a handler that never reads
   * it costs no AbortController.
   */
  signal: AbortSignal;
  /** Whether this handler was aborted (timed out, or the caller cancelled); reads no `signal`. */
  readonly aborted: boolean;
  /**
   * Calls `fn` once when this handler is aborted; returns the function that forgets it. The cheap
   * form of `signal`'s abort event (no AbortController per call): what a plugin's hook call uses.
   */
  onAbort(fn: () => void): () => void;
  /** This handler's timeout in ms (0: none). */
  timeout: number;
}

/**
 * `args` is the caller's array itself in parallel and series modes (not a copy, for speed): handlers
 * must not modify it.
 */
export type HookHandler = (args: unknown[], ctx: HandlerContext) => unknown | Promise<unknown>;

export interface HandlerOptions {
  /** Safe integer; higher runs first. Default 0. Equal priorities run in registration order. */
  priority?: number;
  /** Who the handler belongs to, reported in outcomes. Default 'host'. */
  kind?: 'host' | 'plugin';
}

/** One per handler invoked, in invocation order. */
export interface HandlerOutcome {
  owner: string;
  kind: 'host' | 'plugin';
  ok: boolean;
  /** The handler's result, when ok. */
  value?: unknown;
  /**
   * What the handler threw or rejected with, when not ok, as plain bounded strings (a plugin's error
   * text is untrusted: log it, do not interpret it). A value that is not an Error is described in
   * `message`, with `name` 'NonError'.
   */
  error?: { name: string; message: string; code?: string; stack?: string };
  /** The handler did not settle within its timeout; `error.code` is ERR_HOOK_TIMEOUT. */
  timedOut: boolean;
  /** Wall time from the call to settling (or to the timeout), in milliseconds. */
  ms: number;
}

export interface HookResult {
  hook: string;
  mode: InvokeMode;
  /** waterfall: the final value; first: the first non-empty result (undefined if none); otherwise undefined. */
  value: unknown;
  /** The results of the handlers that succeeded, in handler order (every mode). */
  values: unknown[];
  outcomes: HandlerOutcome[];
  /** The outcomes that failed or timed out. */
  errors: HandlerOutcome[];
}

export interface InvokeOptions {
  /** Per-handler timeout in ms for this call (0: none); overrides the hook's. */
  timeout?: number;
  /** Cancels the invocation: handlers not started are skipped and invoke() rejects with a HookAbortError. */
  signal?: AbortSignal;
}

/** What HookRegistry.handlers() lists, in invocation order. */
export interface HandlerInfo {
  owner: string;
  priority: number;
  kind: 'host' | 'plugin';
}

/** One handler for HookRegistry.replaceOwner(). */
export interface OwnerHandler {
  hook: string;
  handler: HookHandler;
  options?: HandlerOptions;
}
