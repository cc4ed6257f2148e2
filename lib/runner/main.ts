/**
 * The runner: the Node entry that runs inside a sandbox and hosts one plugin. It attaches to the
 * channel it inherited (RUNNER_FDS), waits for the host to send `$load`, loads the plugin (CommonJS
 * or ES module), and serves its exported functions as methods until the channel closes.
 *
 * A plugin module exports functions (each becomes a method; `this` is a CallContext with an
 * AbortSignal) and may export `activate(host)`, called once before any method, whose returned
 * object's functions are methods too. `host` is the plugin's whole view of the outside:
 * `call(method, ...args)`, `emit(event, ...args)`, `log(...args)` and `config`.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import { format } from 'node:util';
import { EventEmitter } from 'node:events';

import { STATE_SPIN_ONCE, loadAddon } from '../channel/addon';
import { RpcPeer, type Handler } from '../channel/rpc';
import {
  ENV_CHANNEL, HOOK_METHOD_PREFIX, M_BUS_CALL, M_BUS_EVENT, M_BUS_PROVIDE, M_BUS_PUBLISH, M_BUS_SERVE, M_BUS_SUBSCRIBE,
  M_DATA_PREFIX, M_HOOKS, M_LOAD, M_SHUTDOWN, M_WARM, N_GO, N_LOG, N_READY, N_WAKE, RUNNER_FDS, WAKE_SPIN_US,
  type HookRegistration, type LoadSetup, type WireEntry,
} from '../runner-protocol';

export interface HostApi {
  /** Calls a method the host offers. */
  call(method: string, ...args: unknown[]): Promise<unknown>;
  /** Sends an event to the host (the handle's 'event' listeners). */
  emit(event: string, ...args: unknown[]): void;
  /** Logs through the host (util.format semantics). */
  log(...args: unknown[]): void;
  /** Listens to notifications the host sends (PluginProcess.notify). */
  on(event: string, listener: (...args: unknown[]) => void): void;
  /** The plugin's configuration as the host gave it (a frozen copy). */
  readonly config: unknown;
  /**
   * Registers the handler of one of the host's hooks. Only during load (the module's top level or
   * activate()): the host reads the registrations once, when the plugin is ready. Higher priority
   * runs first. The handler gets the hook's arguments; `this.signal` aborts if the host gives up.
   */
  hook(name: string, handler: Handler, options?: { priority?: number }): void;
  /** Called when the plugin is unloaded, before its sandbox stops (time-limited by the host). */
  onShutdown(fn: () => unknown): void;
  /** Publishes on a topic of the bus (needs events:publish:TOPIC); resolves to the number of subscribers reached. */
  publish(topic: string, payload?: unknown): Promise<number>;
  /** Receives the topic's events as (payload, { topic, from }); `from` is stamped by the host (needs events:subscribe:TOPIC). */
  subscribe(topic: string, handler: (payload: unknown, meta: { topic: string; from: string }) => unknown): Promise<void>;
  /** Answers calls of other plugins to `name` (needs service:provide:NAME); `this.caller` names the caller, `this.signal` aborts. */
  provide(name: string, fn: Handler): Promise<void>;
  /** Calls another plugin's service through the host (needs service:call:PLUGIN/NAME). */
  callPlugin(plugin: string, name: string, ...args: unknown[]): Promise<unknown>;
  /** callPlugin with a signal that cancels the call (and the callee's this.signal). */
  callPluginWith(options: { signal?: AbortSignal }, plugin: string, name: string, ...args: unknown[]): Promise<unknown>;
  /** Shared data, keys 'OWNER/key': own keys always, other owners' as granted (data:read/data:write). */
  readonly data: {
    get(key: string): Promise<unknown>;
    set(key: string, value: unknown): Promise<void>;
    delete(key: string): Promise<boolean>;
    list(prefix: string): Promise<string[]>;
  };
}

// Under `module: commonjs`, TypeScript would turn import() into require(), which cannot load ES modules.
const importModule = new Function('specifier', 'return import(specifier)') as (s: string) => Promise<Record<string, unknown>>;

function deepFreeze<T>(v: T): T {
  if (v !== null && typeof v === 'object' && !Object.isFrozen(v)) {
    Object.freeze(v);
    for (const k of Object.keys(v)) deepFreeze((v as Record<string, unknown>)[k]);
  }
  return v;
}

async function loadPlugin(entry: string): Promise<Record<string, unknown>> {
  try {
    return require(entry) as Record<string, unknown>;
  } catch (e) {
    if ((e as { code?: string }).code !== 'ERR_REQUIRE_ESM') throw e;
  }
  return importModule(pathToFileURL(entry).href);
}

const SETUP_FIELDS = new Set(['env', 'filters', 'tree', 'awaitGo']);

/** Everything `$load` asks for before the plugin's code runs; throws (and nothing is loaded) on any doubt. */
function prepare(setup: unknown, restrictSelf: (program: Buffer) => void): void {
  if (setup === undefined || setup === null) return;
  if (typeof setup !== 'object') throw new TypeError('$load setup must be an object');
  for (const k of Object.keys(setup)) if (!SETUP_FIELDS.has(k)) throw new TypeError(`$load setup: unknown field '${k}' (host and runner differ in version?)`);
  const s = setup as LoadSetup;
  if (s.awaitGo !== undefined && s.awaitGo !== true) throw new TypeError('$load setup: awaitGo must be true when given');
  if (s.env !== undefined) {
    for (const [k, v] of Object.entries(s.env)) process.env[k] = String(v);
  }
  // Filters before anything of the plugin exists in the sandbox.
  for (const f of s.filters ?? []) restrictSelf(Buffer.from(f.buffer, f.byteOffset, f.byteLength));
  if (s.tree !== undefined) writeTree(s.tree.root, s.tree.entries);
}

function writeTree(root: string, entries: WireEntry[]): void {
  if (!path.isAbsolute(root) || path.normalize(root) !== root) throw new TypeError(`$load tree root '${root}' is not a normalized absolute path`);
  fs.mkdirSync(root, { recursive: true });
  if (fs.readdirSync(root).length > 0) throw new Error(`${root} is not empty: a runner loads one plugin`);
  for (const e of entries) {
    const rel = e[1];
    if (typeof rel !== 'string' || rel === '' || rel.includes('\0') || rel.split('/').some((c) => c === '' || c === '.' || c === '..')) {
      throw new TypeError(`$load tree: bad path ${JSON.stringify(rel)}`);
    }
    const abs = path.join(root, rel);
    if (e[0] === 'd') fs.mkdirSync(abs, { mode: 0o755 });
    else if (e[0] === 'f') fs.writeFileSync(abs, e[3], { mode: e[2] === 0o755 ? 0o755 : 0o644, flag: 'wx' });
    else if (e[0] === 'l') fs.symlinkSync(e[2], abs);
    else throw new TypeError(`$load tree: unknown entry kind ${JSON.stringify(e[0])}`);
  }
}

function methodsOf(o: unknown, into: Map<string, Handler>): void {
  if (o === null || (typeof o !== 'object' && typeof o !== 'function')) return;
  for (const [k, v] of Object.entries(o as Record<string, unknown>)) {
    if (typeof v === 'function' && k !== 'activate' && k !== 'default' && !k.startsWith('$')) into.set(k, v as Handler);
  }
}

function main(): void {
  let opts: { ringSize?: number; maxMessage?: number };
  try {
    opts = JSON.parse(process.env[ENV_CHANNEL] ?? '') as typeof opts;
  } catch {
    process.stderr.write(`warden runner: ${ENV_CHANNEL} is missing; the runner is started by the host, not by hand\n`);
    process.exit(64);
  }
  delete process.env[ENV_CHANNEL];
  const { ChannelEndpoint, reuseLargeAllocations, restrictSelf } = loadAddon();
  reuseLargeAllocations();
  const ep = new ChannelEndpoint({
    side: 'sandbox',
    ringSize: opts.ringSize,
    maxMessage: opts.maxMessage,
    memfd: RUNNER_FDS.memfd,
    ownEfd: RUNNER_FDS.ownEfd,
    peerEfd: RUNNER_FDS.peerEfd,
  });
  // A 50 us spin after each burst took async round trips from ~105 us to ~16 us on the 2-vCPU
  // bench machine, but made blocking callSync slower (~180 us against ~28 us without): there the
  // spinning runner competes with the spinning host. WARDEN_RUNNER_SPIN_US overrides it.
  const spinUs = Number(process.env.WARDEN_RUNNER_SPIN_US ?? 50) || 0;
  const rpc = new RpcPeer(ep, { spinUs, keepAlive: true });
  rpc.on('close', () => process.exit(0));

  const fromHost = new EventEmitter();
  let loaded = false;
  // `$go`: the host lowered the limits (LoadSetup.awaitGo). Once; a `$go` before any `$load`
  // asked for it only resolves this early, which the host never does.
  let go: () => void = () => undefined;
  const gone = new Promise<void>((resolve) => {
    go = resolve;
  });
  rpc.on('notification', (name: string, args: unknown[]) => {
    if (!name.startsWith('$')) fromHost.emit(name, ...args);
    // A runner told not to spin (WARDEN_RUNNER_SPIN_US=0) does not spin for a $wake either.
    else if (name === N_WAKE && !loaded && spinUs > 0) ep.state[STATE_SPIN_ONCE] = WAKE_SPIN_US;
    else if (name === N_GO) go();
  });
  const host: HostApi = {
    on: (event, listener) => {
      fromHost.on(event, listener);
    },
    call: (method, ...args) => rpc.call(method, args),
    emit: (event, ...args) => {
      if (typeof event !== 'string' || event.startsWith('$')) throw new TypeError('event names are strings not starting with $');
      rpc.notify(event, args);
    },
    log: (...args) => rpc.notify(N_LOG, ['info', format(...args)]),
    config: undefined,
    hook: (name, handler, options) => {
      if (hooksRead) throw new Error('host.hook() is only allowed while the plugin loads');
      if (typeof name !== 'string' || name.length === 0 || name.length > 128) throw new TypeError('host.hook: the hook name must be a non-empty string');
      if (typeof handler !== 'function') throw new TypeError(`host.hook('${name}'): the handler must be a function`);
      const priority = options?.priority ?? 0;
      if (!Number.isSafeInteger(priority)) throw new TypeError(`host.hook('${name}'): priority must be an integer`);
      if (hooks.some((h) => h.hook === name)) throw new Error(`host.hook('${name}'): already registered`);
      hooks.push({ hook: name, priority });
      rpc.handle(HOOK_METHOD_PREFIX + name, handler);
    },
    onShutdown: (fn) => {
      if (typeof fn !== 'function') throw new TypeError('host.onShutdown needs a function');
      shutdownFns.push(fn);
    },
    publish: (topic, payload) => rpc.call(M_BUS_PUBLISH, [topic, payload]) as Promise<number>,
    subscribe: async (topic, handler) => {
      if (typeof handler !== 'function') throw new TypeError(`host.subscribe('${String(topic)}'): the handler must be a function`);
      // Registered before the host hears of it: an event may arrive right after the host's answer.
      const list = subscriptions.get(topic) ?? [];
      list.push(handler);
      subscriptions.set(topic, list);
      try {
        await rpc.call(M_BUS_SUBSCRIBE, [topic]);
      } catch (e) {
        list.splice(list.indexOf(handler), 1);
        throw e;
      }
    },
    provide: (name, fn) => {
      if (typeof fn !== 'function') return Promise.reject(new TypeError(`host.provide('${String(name)}'): the service must be a function`));
      // Registered before the host hears of it: a call may arrive right after the host's answer.
      services.set(name, fn);
      return (rpc.call(M_BUS_PROVIDE, [name]) as Promise<void>).catch((e: unknown) => {
        services.delete(name);
        throw e;
      });
    },
    callPlugin: (plugin, name, ...args) => rpc.call(M_BUS_CALL, [plugin, name, args]),
    callPluginWith: (options, plugin, name, ...args) => rpc.call(M_BUS_CALL, [plugin, name, args], { signal: options?.signal }),
    data: Object.freeze({
      get: (key: string) => rpc.call(M_DATA_PREFIX + 'get', [key]),
      set: (key: string, value: unknown) => rpc.call(M_DATA_PREFIX + 'set', [key, value]) as Promise<void>,
      delete: (key: string) => rpc.call(M_DATA_PREFIX + 'delete', [key]) as Promise<boolean>,
      list: (prefix: string) => rpc.call(M_DATA_PREFIX + 'list', [prefix]) as Promise<string[]>,
    }),
  };
  const hooks: HookRegistration[] = [];
  const subscriptions = new Map<string, Array<(payload: unknown, meta: { topic: string; from: string }) => unknown>>();
  const services = new Map<string, Handler>();
  rpc.handle(M_BUS_EVENT, async (topic: unknown, from: unknown, payload: unknown) => {
    const meta = Object.freeze({ topic: String(topic), from: String(from) });
    for (const fn of subscriptions.get(meta.topic) ?? []) await fn(payload, meta);
  });
  rpc.handle(M_BUS_SERVE, function (this: { signal: AbortSignal }, caller: unknown, name: unknown, args: unknown) {
    const fn = services.get(String(name));
    if (fn === undefined) throw new Error(`no service '${String(name)}' here`);
    const ctx = this;
    return fn.apply({ get signal() { return ctx.signal; }, caller: String(caller), method: String(name) } as never, Array.isArray(args) ? args : []);
  } as Handler);
  const shutdownFns: Array<() => unknown> = [];
  let hooksRead = false;
  rpc.handle(M_HOOKS, () => {
    hooksRead = true;
    return hooks;
  });
  rpc.handle(M_SHUTDOWN, async () => {
    for (const fn of shutdownFns) await fn();
  });

  const load = async function (entry: unknown, config: unknown, setup: unknown) {
    if (loaded) throw new Error('a plugin is already loaded');
    if (typeof entry !== 'string' || !path.isAbsolute(entry)) throw new TypeError('$load needs an absolute path');
    // Never a second try: a runner that failed half-way through setup is not reused either.
    loaded = true;
    prepare(setup, restrictSelf);
    // The files are written; the plugin's code runs once the host has fitted the limits.
    if ((setup as LoadSetup | undefined)?.awaitGo === true) await gone;
    Object.defineProperty(host, 'config', { value: deepFreeze(config), enumerable: true });
    const mod = await loadPlugin(entry);
    const methods = new Map<string, Handler>();
    const ns = mod.default !== undefined && mod.default !== null && typeof mod.default === 'object' ? mod.default : mod;
    methodsOf(ns, methods);
    if (ns !== mod) methodsOf(mod, methods);
    const activate = (mod.activate ?? (ns as Record<string, unknown>).activate) as ((h: HostApi) => unknown) | undefined;
    if (typeof activate === 'function') methodsOf(await activate(host), methods);
    const shutdown = (mod.shutdown ?? (ns as Record<string, unknown>).shutdown) as (() => unknown) | undefined;
    if (typeof shutdown === 'function') shutdownFns.push(shutdown);
    methods.delete('shutdown');
    for (const [name, fn] of methods) rpc.handle(name, fn);
    return [...methods.keys()];
  };
  rpc.handle(M_LOAD, load as Handler);

  // A pooled runner waits with its load path already run once (V8 compiles functions on first use,
  // and this runner runs without Sparkplug): the channel's receive path by this very call, the tree
  // writing on a scratch directory, a require() from it, which runs the module loader's paths for
  // a new directory (resolution, the package.json scope, compiling a file) before a plugin's does,
  // and the load handler's own steps (methodsOf, deepFreeze, the handler itself).
  // The pool's exec guard is stacked here, before any plugin exists, like a load's filters. Both
  // together: warm p50 0.3 to 0.8 ms lower (bench:load; interleaved batches).
  rpc.handle(M_WARM, (filters: unknown) => {
    if (loaded) return false;
    if (filters !== undefined && (!Array.isArray(filters) || !filters.every((f) => f instanceof Uint8Array))) throw new TypeError('$warm: filters must be a list of byte arrays');
    const scratch = path.join('/tmp', `.warden-warm-${process.pid}`);
    try {
      prepare(
        {
          env: {},
          filters: (filters as Uint8Array[] | undefined) ?? [],
          tree: {
            root: scratch,
            entries: [
              ['d', 'd'],
              ['f', 'package.json', 0o644, Buffer.from('{}')],
              // Not written as a require of a literal './g': the runner bundle (process/runner-bundle.ts)
              // reads such calls in this file as its own modules, and failed on this one.
              ['f', 'd/f.js', 0o644, Buffer.from(`exports.g = require(${JSON.stringify('./g')});\n`)],
              ['f', 'd/g.js', 0o644, Buffer.from('module.exports = 1;\n')],
              ['l', 'l', 'd'],
            ],
          },
        },
        restrictSelf,
      );
      // createRequire: node's own require (this file may run bundled, where `require` is the bundle's);
      // loaded here, since only a pooled runner's warm-up uses it.
      const { createRequire } = require('node:module') as typeof import('node:module');
      const warmRequire = createRequire(path.join(scratch, 'warm.js'));
      methodsOf(warmRequire('./d/f.js'), new Map());
      deepFreeze({ config: {} });
      // V8 compiles a function on its first call: this one compiles the load handler, which refuses
      // an entry that is not a string before it changes anything (~0.15 ms of a warm start here,
      // in the runner's half of the plugin's first answer).
      load(undefined, undefined, undefined).catch(() => undefined);
      for (const k of Object.keys(warmRequire.cache)) if (k.startsWith(scratch + path.sep)) delete warmRequire.cache[k];
    } finally {
      fs.rmSync(scratch, { recursive: true, force: true });
    }
    return true;
  });

  // The plugin's console goes to the host too, so a sandbox needs no stdout to be debuggable.
  for (const level of ['log', 'info', 'warn', 'error', 'debug'] as const) {
    console[level] = (...args: unknown[]) => {
      if (!rpc.closed) rpc.notify(N_LOG, [level === 'log' ? 'info' : level, format(...args)]);
    };
  }
  process.on('uncaughtException', (e) => {
    process.stderr.write(`warden runner: plugin crashed: ${(e as Error)?.stack ?? String(e)}\n`);
    process.exit(70);
  });
  // The host may send `$load` before this (a cold start does); a pool waits for it.
  rpc.notify(N_READY, []);
}

main();
