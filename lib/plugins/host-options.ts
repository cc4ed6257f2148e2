/**
 * The plugin host's options: what an application passes, how each is checked (an invalid option
 * names its field and what it must be), and the settings the host runs with, every default filled
 * in from lib/defaults.ts.
 */
import * as os from 'node:os';
import * as path from 'node:path';
import * as semver from 'semver';

import {
  DEFAULT_DRAIN_TIMEOUT_MS, DEFAULT_LOAD_TIMEOUT_MS, DEFAULT_LOADS_PER_CORE, DEFAULT_PLUGIN_LIMITS, DEFAULT_QUARANTINE, DEFAULT_RESTART_INITIAL_DELAY_MS,
  DEFAULT_RESTART_MAX_DELAY_MS, DEFAULT_SHUTDOWN_TIMEOUT_MS, DEFAULT_WATCH_DEBOUNCE_MS, MAX_POOL_SIZE,
} from '../defaults';
import { InvalidOptionError } from '../errors';
import type { ObserverOptions } from '../metrics';
import type { DashboardOptions } from '../dashboard';
import type { BusOptions } from '../bus';
import type { AuditLog } from '../audit';
import type { HookDeclaration } from '../hooks';
import type { CallContext, ChannelLimits } from '../channel/rpc';
import { peerLimits } from '../channel/peer-limits';
import type { SpawnNodeOptions } from '../process/spawn-node';
import type { PluginProcess } from '../process/plugin-process';
import type { TrustStore } from '../trust/store';
import type { TreeLimits } from '../trust/tree';
import { checkRange } from '../sandbox/ids';
import { parsePluginLimits, type PluginLimits, type PluginLimitsInput } from './limits';

/** Something that starts a plugin's runner: spawnNode, or a warm pool's start(). */
export type PluginLauncher = (entry: string, options: SpawnNodeOptions) => Promise<PluginProcess & { warm?: boolean }>;

export interface PluginHostOptions {
  /** Directories whose subdirectories are plugins. */
  pluginDirs: readonly string[];
  /** The trust list: a TrustStore (pinned keys, rollback state) and the file it reads. */
  trust: { store: TrustStore; file: string };
  /** This host's API version (exact semver); plugins declare the range they need. */
  hostApiVersion: string;
  /** The hooks plugins may handle. */
  hooks?: readonly HookDeclaration[];
  /** Methods plugins may call with host.call(); `this.plugin` names the caller. */
  methods?: Record<string, (this: CallContext & { plugin: string }, ...args: unknown[]) => unknown>;
  /** Per-plugin configuration, given to the plugin as host.config. */
  config?: Record<string, unknown>;
  /** Audit log: an AuditLog, or a file path (then the host opens and closes it). Default: in memory. */
  audit?: AuditLog | string;
  /**
   * With `audit` as a path: a file where the log's end is recorded after each event (AuditLog's
   * `checkpoint`); keep it where plugins and, ideally, the host's user cannot write, and check the log
   * with `warden audit --verify --checkpoint FILE` to detect a cut tail or a rewrite.
   */
  auditCheckpoint?: string;
  /** Limits for plugins whose trust entry sets none. Default { memory: '256M', pids: 64, callTimeout: '5s' }. */
  limits?: PluginLimitsInput;
  /**
   * Where the host cannot enforce cgroup limits (an unprivileged host without delegation), run with
   * rlimits standing in instead of refusing the load. Default false. `warden doctor` tells which.
   */
  allowDegradedLimits?: boolean;
  /** 'eager' loads everything at start(); 'lazy' loads a plugin on the first call of a hook it handles. Default 'eager'. */
  loading?: 'eager' | 'lazy';
  /** After a violation: 'off' leaves the plugin failed; 'restart' starts it again after a growing delay. */
  restart?: { policy: 'off' | 'restart'; initialDelayMs?: number; maxDelayMs?: number };
  /** This many violations within windowMs quarantine the plugin (no restart, no reload) until release(). Default 3 in 10 min. */
  quarantine?: { violations: number; windowMs: number };
  /** How long unload waits for in-flight calls. Default 5000 ms. */
  drainTimeoutMs?: number;
  /** How long the plugin's shutdown() may take. Default 2000 ms. */
  shutdownTimeoutMs?: number;
  /** How long a plugin may take to load (module + activate). Default 10000 ms. */
  loadTimeoutMs?: number;
  /**
   * How many plugins start (sandbox, runner, module, activate(), hook list) at once; the others
   * wait in line, and the wait does not count against loadTimeoutMs. Default 2 per core
   * (os.availableParallelism()).
   */
  maxConcurrentLoads?: number;
  /**
   * What happens to running plugins when the trust list in force expires (loads and reloads stop
   * either way, until a fresh list is accepted):
   * - 'unload' (default): they are unloaded (status reason 'trust-expired') and loaded again once a
   *   fresh list lists them. Fail closed: an expired list can no longer vouch that they were not revoked.
   * - 'keep-serving': they keep serving, each with a `warning` audit line; choose it when an outage
   *   costs more than running code whose revocation the host may not have seen.
   */
  onTrustExpired?: 'unload' | 'keep-serving';
  /** Reload plugins when their directory or the trust list changes. Default false. */
  watch?: boolean | { debounceMs?: number };
  /**
   * Pre-started sandboxed runners kept ready (0: none, the default). A plugin whose policy a pooled
   * runner can meet (no fs permissions, no net, limits within the host defaults) loads from the pool
   * in a few ms; the others start cold. See RunnerPool. `{ size, allowExec: true }` serves
   * `sys:exec` plugins warm too: its runners stack the exec guard at each load that needs it (0.3 to
   * 0.5 ms more per load) instead of while they warm up.
   */
  warmPool?: number | WarmPoolOptions;
  /**
   * Scan each plugin version at its first load (lib/scan, as `warden scan`) and write the summary
   * to the audit log as a `scan` line: once per directory digest, in a worker thread, beside the
   * load, never refusing it. Default true.
   */
  scanAtLoad?: boolean;
  /** Bounds of a plugin's files (they are read, digested and copied into the sandbox). Default 10000 files, 64 MiB. */
  treeLimits?: TreeLimits;
  /** Starts runners; default: the warm pool's start, or spawnNode. For tests and custom launchers. */
  launcher?: PluginLauncher;
  /** The runner's stderr (the plugin's own console goes to 'log' events). Default 'ignore'. */
  pluginStderr?: 'inherit' | 'ignore';
  /**
   * As root: the range each plugin's sandbox draws a host uid/gid of its own from, for its life
   * (see SpawnOptions.hostIds). Default 2147221504-2147287039.
   */
  hostIds?: { first: number; count: number };
  /**
   * What each plugin may make the host spend through its channel (PLUGIN_PEER_LIMITS, the default:
   * decoding budget per message, arguments, calls at once, rates, unread bytes). Plugins started
   * with other bounds start cold (not from the warm pool).
   */
  channelLimits?: ChannelLimits;
  /** Usage history and soft thresholds (see lib/metrics): sampling interval, points kept, thresholds. */
  observe?: ObserverOptions;
  /** Serve the dashboard from start() (see lib/dashboard); or call host.dashboard.listen() later. */
  dashboard?: DashboardOptions;
  /** The plugins' bus (lib/bus): payload, rate, queue and data bounds, a data adapter (FileDataAdapter). */
  bus?: BusOptions;
}

/** The options as the host runs with them: checked, every default filled in. */
export interface HostSettings {
  /** The options as given (pluginDirs, trust, methods, config ... are read from here). */
  readonly options: PluginHostOptions;
  /** Limits of plugins whose trust entry sets none. */
  readonly defaultLimits: PluginLimits;
  readonly loading: 'eager' | 'lazy';
  readonly onTrustExpired: 'unload' | 'keep-serving';
  readonly restart: { readonly policy: 'off' | 'restart'; readonly initialDelayMs: number; readonly maxDelayMs: number };
  readonly quarantine: { readonly violations: number; readonly windowMs: number };
  readonly drainTimeoutMs: number;
  readonly shutdownTimeoutMs: number;
  readonly loadTimeoutMs: number;
  readonly maxConcurrentLoads: number;
  /** Debounce of the file watch; undefined: the host does not watch. */
  readonly watchDebounceMs: number | undefined;
  readonly allowDegradedLimits: boolean;
  readonly pluginStderr: 'inherit' | 'ignore';
  /** The warm pool to keep, or undefined (none). */
  readonly warmPool: Required<WarmPoolOptions> | undefined;
}

/** `warmPool` as an object. */
export interface WarmPoolOptions {
  /** Runners kept started (0: no pool). */
  size: number;
  /** Serve `sys:exec` plugins warm too (RunnerPool's allowExec). Default false. */
  allowExec?: boolean;
}

function warmPoolOf(v: PluginHostOptions['warmPool']): Required<WarmPoolOptions> | undefined {
  if (v === undefined) return undefined;
  const o = typeof v === 'number' ? { size: v } : v;
  const field = typeof v === 'number' ? 'warmPool' : 'warmPool.size';
  if (o === null || typeof o !== 'object') throw new InvalidOptionError('warmPool', 'must be a number of runners or { size, allowExec? }');
  if (!Number.isSafeInteger(o.size) || o.size < 0 || o.size > MAX_POOL_SIZE) throw new InvalidOptionError(field, `must be a whole number of runners from 0 (no pool) to ${MAX_POOL_SIZE}, got ${String(o.size)}`);
  if (o.allowExec !== undefined && typeof o.allowExec !== 'boolean') throw new InvalidOptionError('warmPool.allowExec', 'must be true or false');
  return o.size === 0 ? undefined : { size: o.size, allowExec: o.allowExec === true };
}

/** Checks the options (InvalidOptionError names the field) and fills in the defaults. */
export function hostSettings(options: PluginHostOptions): HostSettings {
  const o = options ?? ({} as PluginHostOptions);
  if (!Array.isArray(o.pluginDirs) || o.pluginDirs.length === 0 || o.pluginDirs.some((d) => typeof d !== 'string' || !path.isAbsolute(d))) {
    throw new InvalidOptionError('pluginDirs', 'must be a non-empty array of absolute directory paths');
  }
  if (o.trust === undefined || typeof o.trust.file !== 'string' || typeof o.trust.store?.load !== 'function') {
    throw new InvalidOptionError('trust', 'must be { store: TrustStore, file: string }');
  }
  if (typeof o.hostApiVersion !== 'string' || semver.valid(o.hostApiVersion) !== o.hostApiVersion) {
    throw new InvalidOptionError('hostApiVersion', 'must be an exact semver version like 1.0.0');
  }
  if (o.loading !== undefined && o.loading !== 'eager' && o.loading !== 'lazy') throw new InvalidOptionError('loading', "must be 'eager' or 'lazy'");
  if (o.onTrustExpired !== undefined && o.onTrustExpired !== 'unload' && o.onTrustExpired !== 'keep-serving') {
    throw new InvalidOptionError('onTrustExpired', "must be 'unload' or 'keep-serving'");
  }
  if (o.restart !== undefined && o.restart.policy !== 'off' && o.restart.policy !== 'restart') throw new InvalidOptionError('restart.policy', "must be 'off' or 'restart'");
  for (const [f, v] of [
    ['drainTimeoutMs', o.drainTimeoutMs], ['shutdownTimeoutMs', o.shutdownTimeoutMs], ['loadTimeoutMs', o.loadTimeoutMs],
    ['restart.initialDelayMs', o.restart?.initialDelayMs], ['restart.maxDelayMs', o.restart?.maxDelayMs],
    ['quarantine.windowMs', o.quarantine?.windowMs], ['quarantine.violations', o.quarantine?.violations],
  ] as const) {
    if (v !== undefined && (!Number.isSafeInteger(v) || v < 0)) throw new InvalidOptionError(f, `must be a non-negative integer, got ${String(v)}`);
  }
  if (o.quarantine !== undefined && o.quarantine.violations < 1) throw new InvalidOptionError('quarantine.violations', 'must be at least 1');
  const defaultLimits = parsePluginLimits(o.limits ?? DEFAULT_PLUGIN_LIMITS, 'limits');
  if (o.hostIds !== undefined) checkRange('hostIds', o.hostIds);
  peerLimits(o.channelLimits);
  if (o.maxConcurrentLoads !== undefined && (!Number.isSafeInteger(o.maxConcurrentLoads) || o.maxConcurrentLoads < 1)) {
    throw new InvalidOptionError('maxConcurrentLoads', `must be a whole number of at least 1 (plugin starts at once), got ${String(o.maxConcurrentLoads)}`);
  }
  if (o.scanAtLoad !== undefined && typeof o.scanAtLoad !== 'boolean') throw new InvalidOptionError('scanAtLoad', 'must be true or false');
  const warmPool = warmPoolOf(o.warmPool);
  return {
    options: o,
    defaultLimits,
    loading: o.loading ?? 'eager',
    onTrustExpired: o.onTrustExpired ?? 'unload',
    restart: {
      policy: o.restart?.policy ?? 'off',
      initialDelayMs: o.restart?.initialDelayMs ?? DEFAULT_RESTART_INITIAL_DELAY_MS,
      maxDelayMs: o.restart?.maxDelayMs ?? DEFAULT_RESTART_MAX_DELAY_MS,
    },
    quarantine: o.quarantine ?? DEFAULT_QUARANTINE,
    drainTimeoutMs: o.drainTimeoutMs ?? DEFAULT_DRAIN_TIMEOUT_MS,
    shutdownTimeoutMs: o.shutdownTimeoutMs ?? DEFAULT_SHUTDOWN_TIMEOUT_MS,
    loadTimeoutMs: o.loadTimeoutMs ?? DEFAULT_LOAD_TIMEOUT_MS,
    maxConcurrentLoads: o.maxConcurrentLoads ?? DEFAULT_LOADS_PER_CORE * os.availableParallelism(),
    watchDebounceMs: !o.watch ? undefined : typeof o.watch === 'object' ? o.watch.debounceMs ?? DEFAULT_WATCH_DEBOUNCE_MS : DEFAULT_WATCH_DEBOUNCE_MS,
    allowDegradedLimits: o.allowDegradedLimits === true,
    pluginStderr: o.pluginStderr ?? 'ignore',
    warmPool,
  };
}
