/**
 * A plugin process, seen from the host: creates the channel, starts the runner (lib/runner/main.ts)
 * through a spawner (the sandbox launcher, or a plain child process in tests), loads the plugin and
 * returns the handle, PluginProcess.
 */
import { spawn as spawnChild } from 'node:child_process';
import { EventEmitter } from 'node:events';
import * as path from 'node:path';
import type { Readable } from 'node:stream';

import { DEFAULT_CALL_TIMEOUT_MS, DEFAULT_CLOSE_GRACE_MS, DEFAULT_EVENT_RATE, DEFAULT_LOAD_TIMEOUT_MS, DEFAULT_LOG_RATE, DEFAULT_READY_TIMEOUT_MS } from '../defaults';
import { endingViolation, type LimitStats, type StatFields } from '../limits';

import { ChannelError, SandboxViolationError, type ObservedViolation } from '../errors';
import { loadAddon } from '../channel/addon';
import { peerLimits } from '../channel/peer-limits';
import { RpcPeer, type CallOptions, type ChannelLimits, type Handler, type ChannelViolation } from '../channel/rpc';
import { ENV_CHANNEL, M_LOAD, M_WARM, N_GO, N_LOG, N_READY, N_WAKE, RUNNER_FDS, type LoadSetup } from '../runner-protocol';
import { PassRate } from './pass-rate';
import { runnerBundle } from './runner-bundle';

/** The runner's entry file (dist/lib/runner/main.js): started by path, never imported by the host. */
export const RUNNER_ENTRY = path.join(__dirname, '..', 'runner', 'main.js');

/**
 * Node's flags for every runner. `--no-sparkplug`: no baseline (Sparkplug) compiler, so a runner's
 * code runs in the interpreter until it is hot enough for the optimizing compiler. Baseline code is
 * machine code each runner makes for itself; the interpreter's handlers are the same pages of the
 * node binary in every runner. With hundreds of runners on a few cores, each called a few dozen
 * times a second, a runner's own code is cold in the cpu's caches at every call and the shared
 * handlers are not: bench:fanout over 200 plugins, seven interleaved pairs, runner cpu per plugin
 * call 110 us against 135 us with it, calls/s +17%. Code that is hot still reaches the optimizing
 * compiler; code in between (a few hundred calls) runs ~15% slower.
 */
export const RUNNER_NODE_FLAGS: readonly string[] = Object.freeze(['--no-sparkplug']);

export interface RunnerExit {
  code: number | null;
  signal: string | null;
  /** The sandbox's observation (its Violation) when one ended it; read it with exitViolation(). */
  violation?: unknown;
}

/** The violation that ended a runner, when its sandbox observed one (an object with a string kind). */
export function exitViolation(r: RunnerExit | undefined): ObservedViolation | undefined {
  const v = r?.violation as { kind?: unknown } | null | undefined;
  return v !== null && typeof v === 'object' && typeof v.kind === 'string' ? (v as ObservedViolation) : undefined;
}

/** What a spawner must start: `command` with exactly these fds at these numbers, and `env`. */
export interface RunnerSpawnRequest {
  command: string[];
  /** Files outside the package the command reads (the runner bundle): a sandbox binds them read-only. */
  binds?: string[];
  env: Record<string, string>;
  fds: { fd: number; target: number }[];
}

export interface RunnerProcess {
  pid: number;
  exited: Promise<RunnerExit>;
  kill(signal?: NodeJS.Signals | number): void;
  stdout?: Readable | null;
  stderr?: Readable | null;
  on?(event: 'violation', listener: (v: unknown) => void): unknown;
  /** Lowers the cgroup limits of the running sandbox (a pooled runner fitted to its plugin). */
  narrowLimits?(limits: unknown): void;
  /** The sandbox's cgroup counters (null without a cgroup); still answers after the end. */
  stats?(only?: StatFields): LimitStats | null;
}

export type RunnerSpawner = (request: RunnerSpawnRequest) => RunnerProcess | Promise<RunnerProcess>;

export interface RunnerOptions {
  /** Absolute path of the plugin's entry module (CommonJS or ES module). */
  plugin: string;
  /** Given to the plugin as `host.config` (must clone: plain data). */
  config?: unknown;
  /** Methods the plugin may call with `host.call`. */
  handlers?: Record<string, Handler>;
  /** Default per-call timeout in ms (default 30000; 0: none). */
  timeout?: number;
  /** Time to load the plugin (default 10000 ms). */
  loadTimeout?: number;
  /** Bytes per ring direction, a power of two (default 1 MiB). */
  ringSize?: number;
  /** Largest message either way (default 64 MiB); larger ones are streamed through the ring in chunks. */
  maxMessage?: number;
  /** Extra environment for the runner. */
  env?: Record<string, string>;
  /**
   * After sending a call or receiving a message, the host's event loop polls the channel this many
   * microseconds (it keeps running timers and I/O but does not sleep) before sleeping until the
   * runner wakes it, so quick answers cost no wake-up. Default 100; 0 turns polling off. Shrinks
   * to an eighth while answers take longer.
   */
  pollUs?: number;
  /**
   * What the plugin may make the host spend through the channel (decoding, arguments, calls at
   * once, message and decoding-time rates, unread bytes); see PLUGIN_PEER_LIMITS, the default.
   * Fields given here replace the default's (`decode` field by field); each is checked.
   */
  channelLimits?: ChannelLimits;
}

const LOG_LEVELS = new Set(['info', 'warn', 'error', 'debug']);
/** Longest log message passed on (the rest is cut): logs are text for people. */
const MAX_LOG_CHARS = 64 * 1024;

/** Where to cut `s` to at most `n` UTF-16 units without splitting a surrogate pair. */
function clipAt(s: string, n: number): number {
  const c = s.charCodeAt(n - 1);
  return c >= 0xd800 && c <= 0xdbff ? n - 1 : n;
}

/**
 * A plugin running in its own process. Events: 'event' (name, ...args) from `host.emit`,
 * 'log' (level, message), 'logs-dropped' (count: lines over the log rate, DEFAULT_LOG_RATE, reported
 * once a second while it drops), 'events-dropped' (count: events over DEFAULT_EVENT_RATE, reported
 * the same way), 'violation' (ChannelViolation or the sandbox's), 'exit' (RunnerExit).
 */
export class PluginProcess extends EventEmitter {
  /** Methods the plugin exports. */
  methods: string[] = [];
  readonly exited: Promise<RunnerExit>;
  /** Served by a runner from a pool, started before the plugin was asked for. */
  warm = false;
  /** Date.now() when the runner's process was started. */
  readonly launchedAt = Date.now();
  /** The digest of the files the runner was given ('copy' transfer), when it was given them. */
  digest: string | undefined;
  /** Resolves once the runner waits for its plugin (it runs, with node and the runner loaded). */
  readonly ready: Promise<void>;
  /**
   * The syscall a death by SIGSYS means once the plugin is loading: a filter stacked without a
   * listener can only kill, so the host names what it denied (see lib/process/spawn-node.ts, allowExec).
   */
  sigsysMeans: string | undefined;
  private loadSent = false;
  /**
   * What the sandbox or the channel observed since `$load` was sent, as the reason of an end
   * (endingViolation: the first, a `pids` one giving way to one that ends it). A violation before
   * anyone held an instance of this process (while it loaded) is kept here, not lost with the event.
   */
  observed: ObservedViolation | undefined;

  constructor(
    private readonly rpc: RpcPeer,
    readonly process: RunnerProcess,
  ) {
    super();
    let isReady: () => void = () => undefined;
    this.ready = new Promise((resolve) => {
      isReady = resolve;
    });
    const logRate = new PassRate((n) => this.emit('logs-dropped', n), { items: DEFAULT_LOG_RATE.lines, bytes: DEFAULT_LOG_RATE.bytes });
    const eventRate = new PassRate((n) => this.emit('events-dropped', n), { items: DEFAULT_EVENT_RATE });
    // What the plugin sends is checked, never coerced: String() of a value of its making may throw.
    // Anything thrown here (a listener's failure too) is the plugin's protocol violation (RpcPeer).
    rpc.on('notification', (name: string, args: unknown[]) => {
      if (name === N_LOG) {
        const [level, message] = args;
        if (args.length !== 2 || typeof level !== 'string' || !LOG_LEVELS.has(level) || typeof message !== 'string') {
          throw new TypeError(`${N_LOG} takes a level (${[...LOG_LEVELS].join(', ')}) and a message string`);
        }
        const line = message.length > MAX_LOG_CHARS ? `${message.slice(0, clipAt(message, MAX_LOG_CHARS))}…` : message;
        if (logRate.take(line)) this.emit('log', level, line);
      } else if (name === N_READY) {
        isReady();
      } else if (!name.startsWith('$')) {
        // args.length is bounded by the channel's maxArgs.
        if (eventRate.take()) this.emit('event', name, ...args);
      }
    });
    rpc.on('violation', (v: ChannelViolation) => {
      // A peer that breaks the protocol is hostile: stop it now, not when it feels like exiting.
      this.process.kill('SIGKILL');
      this.violated(v);
    });
    const reportsViolations = typeof process.on === 'function';
    process.on?.('violation', (v) => this.violated(v as ObservedViolation));
    this.exited = process.exited.then((r) => {
      const held = exitViolation(r);
      // A launcher of its own that reports violations only in the exit: they are the plugin's too.
      if (!reportsViolations && held !== undefined) this.violated(held);
      // Told even after another violation (a timeout whose kill had not landed yet): a forbidden
      // syscall is never hidden behind a milder label; endingViolation picks the end's.
      if (this.loadSent && this.sigsysMeans !== undefined && r.signal === 'SIGSYS' && held?.kind !== 'seccomp') {
        const v = { kind: 'seccomp', at: Date.now(), syscall: this.sigsysMeans };
        r = { ...r, violation: endingViolation(held, v) };
        this.violated(v);
      }
      logRate.flush();
      eventRate.flush();
      const how = r.signal ? `signal ${r.signal}` : `code ${r.code}`;
      rpc.close(new ChannelError('ERR_CHANNEL_CLOSED', `the plugin process exited (${how}) before answering`, 'peer exited'));
      this.emit('exit', r);
      return r;
    });
  }

  private violated(v: ObservedViolation): void {
    // Kept from $load on: a pooled runner's violation while it waited for a plugin is not the
    // plugin's (load() and the instance read only this, never the exit's own violation).
    if (this.loadSent) this.observed = endingViolation(this.observed, v);
    this.emit('violation', v);
  }

  /** Registers methods the plugin may call with `host.call` (before the plugin is loaded). */
  setHandlers(handlers: Record<string, Handler>): void {
    for (const [name, fn] of Object.entries(handlers)) this.rpc.handle(name, fn);
  }

  /** The default per-call timeout in ms (0: none). */
  setTimeout(ms: number): void {
    this.rpc.setDefaultTimeout(ms);
  }

  /**
   * A pooled runner, before it is handed out: runs the channel's and the load's code paths once, and
   * stacks `filters` (seccomp programs) for good.
   */
  async warmUp(timeout = DEFAULT_READY_TIMEOUT_MS, filters?: Uint8Array[]): Promise<void> {
    if ((await this.rpc.call(M_WARM, filters === undefined ? [] : [filters], { timeout })) !== true) {
      throw new ChannelError('ERR_CHANNEL_PROTOCOL', `${M_WARM} did not answer true`, 'protocol');
    }
  }

  /**
   * Tells a pooled runner a plugin is on the way (`$wake`), so the `$load` soon after finds it
   * awake. A hint only: a runner whose channel closed meanwhile is found out by the load, not here.
   */
  wake(): void {
    if (this.loadSent) return;
    try {
      this.rpc.notify(N_WAKE, []);
    } catch {
      // closed: the start goes on, and takes or refuses this runner as it would have
    }
  }

  /**
   * After a `load()` whose setup has `awaitGo`, once the sandbox is fitted (limits lowered): the
   * runner may run the plugin's code. Never sent otherwise, so a runner that could not be fitted
   * (killed instead) never runs any.
   */
  go(): void {
    try {
      this.rpc.notify(N_GO, []);
    } catch {
      // Closed, or the message could not be sent: a runner that cannot get its `$go` must not wait
      // for it until the load's timeout. Its pending load fails with the channel's error.
      this.process.kill('SIGKILL');
    }
  }

  /**
   * Sends `$load` and waits for the plugin's methods. On failure the runner is killed (it is never
   * given a second plugin) and the error is rethrown.
   */
  async load(plugin: string, config: unknown, setup: LoadSetup | undefined, loadTimeout = DEFAULT_LOAD_TIMEOUT_MS): Promise<string[]> {
    if (this.loadSent) throw new Error('this runner was already given a plugin; runners are never reused');
    this.loadSent = true;
    const args: unknown[] = setup === undefined ? [plugin, config] : [plugin, config, setup];
    try {
      const methods = await this.rpc.call(M_LOAD, args, { timeout: loadTimeout });
      if (!Array.isArray(methods) || methods.length > 4096 || !methods.every((m) => typeof m === 'string' && m.length <= 256)) {
        throw new ChannelError('ERR_CHANNEL_PROTOCOL', `${M_LOAD} answered with something that is not a list of method names`, 'protocol');
      }
      this.methods = methods as string[];
    } catch (e) {
      this.process.kill('SIGKILL');
      // Once it has exited, `observed` holds all the sandbox saw (it reports each violation as it
      // happens, the SIGSYS reading included): ended by the sandbox (a limit, a forbidden syscall,
      // the network policy) or cut off by the channel (garbage, a flood) while it loaded, say so,
      // rather than only that the channel closed. Not the exit's own violation: for a pooled runner
      // that may be one from before its plugin came.
      await this.exited.catch(() => undefined);
      if (this.observed !== undefined) throw new SandboxViolationError(this.observed, 'the plugin loaded', e);
      throw e;
    }
    return this.methods;
  }

  get pid(): number {
    return this.process.pid;
  }

  call(method: string, ...args: unknown[]): Promise<unknown> {
    return this.rpc.call(method, args);
  }

  /** call() with a timeout or an AbortSignal of its own. */
  callWith(options: CallOptions, method: string, ...args: unknown[]): Promise<unknown> {
    return this.rpc.call(method, args, options);
  }

  /** BLOCKING: waits for the answer without returning to the event loop (see RpcPeer.callSync). */
  callSync(method: string, ...args: unknown[]): unknown {
    return this.rpc.callSync(method, args);
  }

  /** Sends an event to the plugin (its `host.on(event, ...)` listeners). */
  notify(event: string, ...args: unknown[]): void {
    this.rpc.notify(event, args);
  }

  /** Closes the channel (the runner exits), then kills the process if it lingers. */
  async close(graceMs = DEFAULT_CLOSE_GRACE_MS): Promise<RunnerExit> {
    this.rpc.close();
    const t = setTimeout(() => this.process.kill('SIGKILL'), graceMs);
    try {
      return await this.exited;
    } finally {
      clearTimeout(t);
    }
  }

  kill(signal: NodeJS.Signals | number = 'SIGKILL'): void {
    this.process.kill(signal);
  }
}

/** Creates the channel, spawns the runner with `spawner`, loads the plugin. */
export async function startRunner(spawner: RunnerSpawner, options: RunnerOptions, setup?: LoadSetup): Promise<PluginProcess> {
  if (!path.isAbsolute(options.plugin)) throw new TypeError('plugin must be an absolute path');
  const handle = await launchRunner(spawner, options);
  await handle.load(options.plugin, options.config, setup, options.loadTimeout ?? DEFAULT_LOAD_TIMEOUT_MS);
  return handle;
}

/** Creates the channel and spawns the runner, which then waits for its plugin (`handle.load`). */
export async function launchRunner(spawner: RunnerSpawner, options: Omit<RunnerOptions, 'plugin' | 'config' | 'loadTimeout'>): Promise<PluginProcess> {
  // Checked before anything is started: a bad bound is the caller's error, not a leaked runner.
  const limits = peerLimits(options.channelLimits);
  const { ChannelEndpoint, setBatchScheduling } = loadAddon();
  const ep = new ChannelEndpoint({ ringSize: options.ringSize, maxMessage: options.maxMessage });
  const f = ep.childFds();
  let proc: RunnerProcess;
  try {
    const bundle = runnerBundle(RUNNER_ENTRY);
    proc = await spawner({
      command: [process.execPath, ...RUNNER_NODE_FLAGS, bundle ?? RUNNER_ENTRY],
      binds: bundle === null ? [] : [bundle],
      env: { ...options.env, [ENV_CHANNEL]: JSON.stringify({ ringSize: f.ringSize, maxMessage: f.maxMessage }) },
      fds: [
        { fd: f.memfd, target: RUNNER_FDS.memfd },
        { fd: f.sandboxEfd, target: RUNNER_FDS.ownEfd },
        { fd: f.hostEfd, target: RUNNER_FDS.peerEfd },
        { fd: f.aliveWrite, target: RUNNER_FDS.alive },
      ],
    });
    // Its wake-ups must not preempt the host's thread (native/runner_scheduling.cc). A host that may
    // not set this gets the error: the runner would work without it, slower when the cores are
    // busy, and nothing would say why. The pid is our child and not reaped yet: the spawners here
    // resolve in the turn that adopts the launched process (only promise jobs run between that
    // and this line), and an exit is reaped by the exit watcher on a later turn of the event loop.
    try {
      setBatchScheduling(proc.pid);
    } catch (e) {
      proc.kill('SIGKILL');
      throw e;
    }
  } catch (e) {
    ep.close();
    throw e;
  } finally {
    // Only the sandbox may hold the alive pipe's write end, or its death would go unnoticed.
    ep.releaseChildFds();
  }
  const rpc = new RpcPeer(ep, {
    timeout: options.timeout ?? DEFAULT_CALL_TIMEOUT_MS,
    idleSpinUs: options.pollUs ?? 100,
    limits,
  });
  for (const [name, fn] of Object.entries(options.handlers ?? {})) rpc.handle(name, fn);
  return new PluginProcess(rpc, proc);
}

/**
 * Spawner for an ordinary, UNSANDBOXED child process. For tests and benchmarks of the channel
 * only: a plugin started this way has every right its host has.
 */
export const unsandboxedSpawner: RunnerSpawner = (req) => {
  const max = Math.max(2, ...req.fds.map((f) => f.target));
  const stdio: (number | 'pipe' | 'ignore' | 'inherit')[] = ['ignore', 'inherit', 'inherit'];
  for (let i = 3; i <= max; i++) stdio.push('ignore');
  for (const f of req.fds) stdio[f.target] = f.fd;
  const child = spawnChild(req.command[0], req.command.slice(1), { env: { ...process.env, ...req.env }, stdio });
  const exited = new Promise<RunnerExit>((resolve) => {
    child.on('exit', (code, signal) => resolve({ code, signal }));
    child.on('error', () => resolve({ code: null, signal: null }));
  });
  return {
    pid: child.pid ?? -1,
    exited,
    kill: (s) => {
      child.kill(s);
    },
  };
};
