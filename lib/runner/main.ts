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
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import { format } from 'node:util';
import { EventEmitter } from 'node:events';

import { loadAddon } from '../channel/addon';
import { RpcPeer, type Handler } from '../channel/rpc';
import { ENV_CHANNEL, M_LOAD, N_LOG, RUNNER_FDS } from './protocol';

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
  const { ChannelEndpoint, reuseLargeAllocations } = loadAddon();
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
  const rpc = new RpcPeer(ep, { spinUs: Number(process.env.WARDEN_RUNNER_SPIN_US ?? 50) || 0, keepAlive: true });
  rpc.on('close', () => process.exit(0));

  const fromHost = new EventEmitter();
  rpc.on('notification', (name: string, args: unknown[]) => {
    if (!name.startsWith('$')) fromHost.emit(name, ...args);
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
  };

  let loaded = false;
  rpc.handle(M_LOAD, async function (entry: unknown, config: unknown) {
    if (loaded) throw new Error('a plugin is already loaded');
    if (typeof entry !== 'string' || !path.isAbsolute(entry)) throw new TypeError('$load needs an absolute path');
    loaded = true;
    Object.defineProperty(host, 'config', { value: deepFreeze(config), enumerable: true });
    const mod = await loadPlugin(entry);
    const methods = new Map<string, Handler>();
    const ns = mod.default !== undefined && mod.default !== null && typeof mod.default === 'object' ? mod.default : mod;
    methodsOf(ns, methods);
    if (ns !== mod) methodsOf(mod, methods);
    const activate = (mod.activate ?? (ns as Record<string, unknown>).activate) as ((h: HostApi) => unknown) | undefined;
    if (typeof activate === 'function') methodsOf(await activate(host), methods);
    for (const [name, fn] of methods) rpc.handle(name, fn);
    return [...methods.keys()];
  } as Handler);

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
}

main();
