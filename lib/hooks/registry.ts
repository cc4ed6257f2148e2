/**
 * HookRegistry: hooks the host declares, handlers the host and plugins register.
 *
 * Each hook keeps an immutable, sorted array of handlers; every change builds a new array and swaps
 * it in. invoke() therefore snapshots a hook by reading one reference (no copy), and replaceOwner()
 * swaps the arrays of every hook it touches in one synchronous step: an invocation sees either all of
 * an owner's old handlers or all of its new ones.
 */
import { InvalidOptionError, UnknownHookError } from '../errors';
import { DEFAULT_HOOK_TIMEOUT_MS } from '../defaults';
import { Entry, Invocation } from './invoke';
import type {
  HandlerInfo, HandlerOptions, HookDeclaration, HookHandler, HookResult, InvokeMode, InvokeOptions, OwnerHandler,
} from './types';

export const INVOKE_MODES: readonly InvokeMode[] = Object.freeze(['parallel', 'series', 'waterfall', 'first']);
/** The timeout of a hook that declares none, in ms. */
export const DEFAULT_HOOK_TIMEOUT = DEFAULT_HOOK_TIMEOUT_MS;
/** Largest timeout setTimeout honours (a larger one fires at once). */
export const MAX_HOOK_TIMEOUT = 2 ** 31 - 1;
export const HOOK_NAME = /^[a-z][a-zA-Z0-9_.:-]{0,127}$/;
const MAX_OWNER = 256;
const MAX_DESCRIPTION = 4096;
const DECLARATION_FIELDS = new Set(['name', 'mode', 'timeout', 'description']);
const OPTION_FIELDS = new Set(['priority', 'kind']);
const INVOKE_FIELDS = new Set(['timeout', 'signal']);

interface HookState {
  readonly decl: Readonly<HookDeclaration> & { readonly timeout: number };
  entries: readonly Entry[];
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function show(v: unknown): string {
  try {
    const s = typeof v === 'string' ? `'${v}'` : typeof v === 'object' && v !== null ? 'an object' : String(v);
    return s.length > 80 ? `${s.slice(0, 80)}…` : s;
  } catch {
    return 'a value that cannot be shown';
  }
}

function checkTimeout(field: string, v: unknown): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > MAX_HOOK_TIMEOUT) {
    throw new InvalidOptionError(field, `must be a non-negative integer number of ms (0: none, at most ${MAX_HOOK_TIMEOUT}), got ${show(v)}`);
  }
  return v;
}

function checkOwner(field: string, owner: unknown): string {
  if (typeof owner !== 'string' || owner.length === 0 || owner.length > MAX_OWNER) {
    throw new InvalidOptionError(field, `must be a non-empty string of at most ${MAX_OWNER} characters (a plugin name or 'host'), got ${show(owner)}`);
  }
  return owner;
}

function checkOptions(field: string, options: unknown): { priority: number; kind: 'host' | 'plugin' } {
  if (options === undefined) return { priority: 0, kind: 'host' };
  if (!isObject(options)) throw new InvalidOptionError(field, `must be an object { priority?, kind? }, got ${show(options)}`);
  for (const k of Object.keys(options)) {
    if (!OPTION_FIELDS.has(k)) throw new InvalidOptionError(`${field}.${k}`, 'unknown option; the options are priority and kind');
  }
  const priority = options.priority ?? 0;
  if (typeof priority !== 'number' || !Number.isSafeInteger(priority)) {
    throw new InvalidOptionError(`${field}.priority`, `must be an integer (higher runs first), got ${show(priority)}`);
  }
  const kind = options.kind ?? 'host';
  if (kind !== 'host' && kind !== 'plugin') throw new InvalidOptionError(`${field}.kind`, `must be 'host' or 'plugin', got ${show(kind)}`);
  return { priority, kind };
}

function byOrder(a: Entry, b: Entry): number {
  return b.priority - a.priority || a.seq - b.seq;
}

export class HookRegistry {
  private readonly table = new Map<string, HookState>();
  private seq = 0;
  /**
   * The hooks each owner has handlers on (it may still name one whose handler was unregistered since:
   * harmless, checked where read). replaceOwner, on every plugin load, looks at these hooks only: a
   * host of a thousand plugins each with a hook of its own walked a thousand hooks per load.
   */
  private readonly hooksOf = new Map<string, Set<string>>();

  /** Declares a hook. A duplicate name or a bad field throws an InvalidOptionError naming the field. */
  declare(decl: HookDeclaration): void {
    if (!isObject(decl)) throw new InvalidOptionError('hooks', `a declaration must be an object { name, mode, timeout?, description? }, got ${show(decl)}`);
    for (const k of Object.keys(decl)) {
      if (!DECLARATION_FIELDS.has(k)) throw new InvalidOptionError(`hooks.${k}`, 'unknown field; the fields are name, mode, timeout and description');
    }
    const { name, mode, timeout, description } = decl;
    if (typeof name !== 'string' || !HOOK_NAME.test(name)) {
      throw new InvalidOptionError('hooks.name', `must match ${HOOK_NAME} (a lowercase letter, then letters, digits, _ . : -), got ${show(name)}`);
    }
    if (this.table.has(name)) throw new InvalidOptionError('hooks.name', `hook '${name}' is already declared`);
    if (!INVOKE_MODES.includes(mode)) {
      throw new InvalidOptionError('hooks.mode', `must be one of ${INVOKE_MODES.join(', ')} (hook '${name}'), got ${show(mode)}`);
    }
    const t = timeout === undefined ? DEFAULT_HOOK_TIMEOUT : checkTimeout('hooks.timeout', timeout);
    if (description !== undefined && (typeof description !== 'string' || description.length > MAX_DESCRIPTION)) {
      throw new InvalidOptionError('hooks.description', `must be a string of at most ${MAX_DESCRIPTION} characters (hook '${name}')`);
    }
    const stored = Object.freeze(description === undefined ? { name, mode, timeout: t } : { name, mode, timeout: t, description });
    this.table.set(name, { decl: stored, entries: [] });
  }

  has(name: string): boolean {
    return this.table.has(name);
  }

  /** The declaration as stored (frozen), with `timeout` filled in. */
  declaration(name: string): HookDeclaration | undefined {
    return this.table.get(name)?.decl;
  }

  /** Every declaration, in declaration order. */
  hooks(): HookDeclaration[] {
    return Array.from(this.table.values(), (s) => s.decl);
  }

  private state(hook: string): HookState {
    const s = typeof hook === 'string' ? this.table.get(hook) : undefined;
    if (s === undefined) throw new UnknownHookError(String(hook), Array.from(this.table.keys()));
    return s;
  }

  /**
   * Registers `handler` for `hook` on behalf of `owner`. Returns a function that unregisters exactly
   * this handler (a no-op once it is gone, e.g. after replaceOwner). An undeclared hook throws an
   * UnknownHookError listing the declared ones.
   */
  register(hook: string, owner: string, handler: HookHandler, options?: HandlerOptions): () => void {
    checkOwner('owner', owner);
    if (typeof handler !== 'function') throw new InvalidOptionError('handler', `must be a function (args, ctx) => value, got ${show(handler)}`);
    const { priority, kind } = checkOptions('options', options);
    const s = this.state(hook);
    const entry: Entry = { owner, handler, priority, kind, seq: ++this.seq };
    s.entries = insert(s.entries, entry);
    let hooks = this.hooksOf.get(owner);
    if (hooks === undefined) this.hooksOf.set(owner, (hooks = new Set()));
    hooks.add(hook);
    return () => {
      const cur = this.table.get(hook);
      if (cur !== undefined && cur.entries.includes(entry)) cur.entries = cur.entries.filter((e) => e !== entry);
    };
  }

  /**
   * Atomically replaces every handler of `owner`, on every hook, with `handlers` (an empty array
   * removes the owner). Used by hot reload: an invocation sees all old or all new handlers of the
   * owner, never a mix; invocations already running keep their snapshot. Everything is validated
   * first: on an error nothing changes.
   *
   * The k-th new handler of the owner on a hook takes the place of its k-th old one there (in
   * registration order) among handlers of equal priority, so reloading a plugin does not move it
   * behind plugins registered after it.
   */
  replaceOwner(owner: string, handlers: OwnerHandler[]): void {
    checkOwner('owner', owner);
    if (!Array.isArray(handlers)) throw new InvalidOptionError('handlers', `must be an array of { hook, handler, options? }, got ${show(handlers)}`);
    const byHook = new Map<string, Array<{ handler: HookHandler; priority: number; kind: 'host' | 'plugin' }>>();
    handlers.forEach((h, i) => {
      if (!isObject(h)) throw new InvalidOptionError(`handlers[${i}]`, `must be an object { hook, handler, options? }, got ${show(h)}`);
      if (typeof h.handler !== 'function') throw new InvalidOptionError(`handlers[${i}].handler`, `must be a function, got ${show(h.handler)}`);
      const o = checkOptions(`handlers[${i}].options`, h.options);
      this.state(h.hook);
      let list = byHook.get(h.hook);
      if (list === undefined) byHook.set(h.hook, (list = []));
      list.push({ handler: h.handler, priority: o.priority, kind: o.kind });
    });
    const updates: Array<[HookState, readonly Entry[]]> = [];
    for (const name of new Set([...(this.hooksOf.get(owner) ?? []), ...byHook.keys()])) {
      const s = this.state(name);
      const added = byHook.get(name);
      const old = s.entries.filter((e) => e.owner === owner);
      if (old.length === 0 && added === undefined) continue;
      const seqs = old.map((e) => e.seq).sort((a, b) => a - b);
      const kept = old.length === 0 ? s.entries.slice() : s.entries.filter((e) => e.owner !== owner);
      if (added !== undefined) {
        added.forEach((h, k) => kept.push({ owner, handler: h.handler, priority: h.priority, kind: h.kind, seq: k < seqs.length ? seqs[k] : ++this.seq }));
        kept.sort(byOrder);
      }
      updates.push([s, kept]);
    }
    for (const [s, entries] of updates) s.entries = entries;
    if (byHook.size === 0) this.hooksOf.delete(owner);
    else this.hooksOf.set(owner, new Set(byHook.keys()));
  }

  /** Removes every handler of `owner` on every hook. */
  removeOwner(owner: string): void {
    this.replaceOwner(owner, []);
  }

  /** The handlers of `hook` in invocation order. An undeclared hook throws an UnknownHookError. */
  handlers(hook: string): HandlerInfo[] {
    return this.state(hook).entries.map((e) => ({ owner: e.owner, priority: e.priority, kind: e.kind }));
  }

  /** The owners that have at least one handler, in no particular order. */
  owners(): string[] {
    const set = new Set<string>();
    for (const s of this.table.values()) for (const e of s.entries) set.add(e.owner);
    return Array.from(set);
  }

  /**
   * Calls the handlers of `hook` (a snapshot taken now) in the hook's mode. Resolves with one outcome
   * per handler called; a handler's throw, rejection or timeout never rejects it. Rejects only for an
   * undeclared hook (UnknownHookError), bad arguments (InvalidOptionError) or when `options.signal`
   * is or becomes aborted (HookAbortError).
   */
  invoke(hook: string, args: unknown[], options?: InvokeOptions): Promise<HookResult> {
    const s = typeof hook === 'string' ? this.table.get(hook) : undefined;
    if (s === undefined) return Promise.reject(new UnknownHookError(String(hook), Array.from(this.table.keys())));
    if (!Array.isArray(args)) return Promise.reject(new InvalidOptionError('args', `must be an array of arguments, got ${show(args)}`));
    let timeout = s.decl.timeout;
    let signal: AbortSignal | undefined;
    if (options !== undefined) {
      try {
        if (!isObject(options)) throw new InvalidOptionError('invoke', `options must be an object { timeout?, signal? }, got ${show(options)}`);
        for (const k in options) {
          if (!INVOKE_FIELDS.has(k)) throw new InvalidOptionError(`invoke.${k}`, 'unknown option; the options are timeout and signal');
        }
        if (options.timeout !== undefined) timeout = checkTimeout('invoke.timeout', options.timeout);
        if (options.signal !== undefined) {
          if (!(options.signal instanceof AbortSignal)) throw new InvalidOptionError('invoke.signal', `must be an AbortSignal, got ${show(options.signal)}`);
          signal = options.signal;
        }
      } catch (e) {
        return Promise.reject(e);
      }
    }
    const entries = s.entries;
    const inv = new Invocation(hook, s.decl.mode, entries, args, timeout, signal);
    // Through run() even with no handler: an already aborted signal rejects as it would otherwise.
    return inv.run();
  }
}

function insert(entries: readonly Entry[], entry: Entry): Entry[] {
  let i = entries.length;
  while (i > 0 && byOrder(entries[i - 1], entry) > 0) i--;
  const next = entries.slice();
  next.splice(i, 0, entry);
  return next;
}
