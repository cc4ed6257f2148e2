/**
 * PluginHost: what an application embeds. It discovers plugins, verifies them against a signed trust
 * list, checks compatibility and permissions, starts each in its own sandbox with the runner, routes
 * hook calls to them, reloads them when their files or the trust list change, and unloads them the
 * moment they break a limit.
 *
 * load   = discover → verify (trust list: name, version, digest) → compat (host API, dependencies)
 *          → permissions (requested AND granted) → limits → spawn → handshake → hooks registered
 * unload = stop routing → let in-flight calls finish (drainTimeout) → plugin's shutdown
 *          (shutdownTimeout) → stop the sandbox → free everything
 *
 * Every decision goes to the audit log; every status change is a 'status' event with a reason.
 *
 * Trust is enforced for as long as the host runs, not only when a list is read: at the moment the
 * list in force expires (a timer, re-armed in steps since setTimeout cannot wait longer than
 * 2^31-1 ms), the host stops loading and reloading from it, emits 'trust-expired', writes a
 * `critical` audit line and applies `onTrustExpired` to the running plugins. Every load also checks
 * the expiry itself, before it starts and again before the new instance takes calls, so a late
 * timer (a busy loop, a wall clock jump) cannot let one through. A fresh list ends it.
 */
import { checkRange } from '../sandbox/ids';
import { EventEmitter } from 'node:events';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as semver from 'semver';

import { CallTimeoutError, InvalidOptionError, RemoteError } from '../errors';
import { AuditLog, type AuditEventInput, type AuditSeverity } from '../audit';
import { HookRegistry, type HookDeclaration, type HookHandler, type HookResult, type InvokeOptions, type HandlerOptions } from '../hooks';
import type { CallContext, Handler, PeerLimits } from '../channel/rpc';
import { spawnNode, type SpawnNodeOptions } from '../sandbox/node';
import type { NetworkEvent } from '../net/policy';
import { releasePreparedMounts } from '../sandbox/plan';
import type { PluginProcess } from '../runner/host';
import { M_HOOKS, type HookRegistration } from '../runner/protocol';
import type { TrustStore } from '../trust/store';
import type { VerifiedTrustList } from '../trust/verify';
import type { TrustEntry } from '../trust/document';
import { assertCompatible } from '../trust/compat';
import { DigestMismatchError, ExpiredError } from '../trust/errors';
import type { StartOverEvent } from '../trust/store';
import { readPluginTree, type PluginTree, type TreeLimits } from '../trust/tree';
import { RunnerPool } from '../pool';
import { deadHostCgroups } from '../limits';
import { discoverPlugins } from './discovery';
import { PluginError, PluginHookError, PluginLoadError, PluginStateError } from './errors';
import { PluginInstance, type PluginReason } from './instance';
import { effectiveLimits, parsePluginLimits, sandboxLimits, trustEntryLimits, type PluginLimits, type PluginLimitsInput } from './limits';
import { readManifest, type PluginManifest } from './manifest';
import { decidePermissions, permissionToString, sandboxOptionsFor } from './permissions';
import { PluginWatcher } from './watch';

export type PluginStatus = 'idle' | 'loading' | 'active' | 'reloading' | 'unloading' | 'unloaded' | 'failed' | 'quarantined';

export interface PluginStatusEvent {
  plugin: string;
  status: PluginStatus;
  previous: PluginStatus;
  version?: string;
  reason?: PluginReason;
  at: number;
}

export interface PluginInfo {
  name: string;
  version: string | undefined;
  status: PluginStatus;
  reason: PluginReason | undefined;
  dir: string;
  pid: number | undefined;
  /** Started from the warm pool. */
  warm: boolean;
  hooks: string[];
  /** Violations inside the quarantine window. */
  recentViolations: number;
  restarts: number;
}

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
   * in a few ms; the others start cold. See RunnerPool.
   */
  warmPool?: number;
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
  channelLimits?: Partial<PeerLimits>;
}

interface PluginRecord {
  name: string;
  dir: string;
  manifest: PluginManifest | undefined;
  status: PluginStatus;
  reason: PluginReason | undefined;
  instance: PluginInstance | undefined;
  /** Serializes load/reload/unload of this plugin. */
  queue: Promise<unknown>;
  /** The lazy load in progress, shared by concurrent invokes. */
  loading: Promise<void> | undefined;
  violationTimes: number[];
  restarts: number;
  restartTimer: NodeJS.Timeout | undefined;
}

const DEFAULT_LIMITS: PluginLimitsInput = { memory: '256M', pids: 64, callTimeout: '5s' };

function severityOf(kind: string): AuditSeverity {
  return kind === 'seccomp' || kind === 'protocol' || kind === 'flood' ? 'critical' : 'warning';
}

function errorFields(e: unknown): { message: string; code?: string } {
  if (e instanceof Error) return { message: e.message, code: (e as { code?: string }).code };
  return { message: String(e) };
}

/**
 * Events: 'status' (PluginStatusEvent), 'log' (plugin, level, message), 'event' (plugin, name, ...args)
 * for host.emit() of plugins, 'error' is never emitted (failures are statuses and audit events).
 */
export class PluginHost extends EventEmitter {
  readonly registry = new HookRegistry();
  readonly audit: AuditLog;
  private readonly ownsAudit: boolean;
  private readonly opts: PluginHostOptions;
  private readonly records = new Map<string, PluginRecord>();
  private readonly defaults: PluginLimits;
  private readonly launcher: PluginLauncher;
  private readonly pool: RunnerPool | undefined;
  private trustList: VerifiedTrustList | undefined;
  /** The list in force has expired (and no fresh one was accepted since). */
  private trustExpired = false;
  private expiryTimer: NodeJS.Timeout | undefined;
  private readonly onStartOver = (ev: StartOverEvent): void => {
    this.log('critical', 'trust-state-reset', undefined,
      ev.how === 'option'
        ? `no trust state file at ${ev.statePath}: started over (startOver option), version ${ev.version} accepted without rollback protection`
        : `trust state ${ev.statePath} was reset by the operator (${ev.resetAt}: ${ev.reason}); version ${ev.version} accepted without rollback protection`,
      { ...ev });
  };
  private watcher: PluginWatcher | undefined;
  private closed = false;
  private started = false;

  constructor(options: PluginHostOptions) {
    super();
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
    this.defaults = parsePluginLimits(o.limits ?? DEFAULT_LIMITS, 'limits');
    this.opts = o;
    for (const h of o.hooks ?? []) this.registry.declare(h);
    // A store that starts over (reset record, startOver option) says so; it is audited at critical.
    if (typeof (o.trust.store as Partial<EventEmitter>).on === 'function') o.trust.store.on('start-over', this.onStartOver);
    if (o.audit instanceof AuditLog) {
      this.audit = o.audit;
      this.ownsAudit = false;
    } else {
      this.audit = new AuditLog({ path: o.audit, checkpoint: o.auditCheckpoint });
      this.ownsAudit = true;
    }
    if (o.hostIds !== undefined) checkRange('hostIds', o.hostIds);
    if (o.warmPool !== undefined && (!Number.isSafeInteger(o.warmPool) || o.warmPool < 0)) throw new InvalidOptionError('warmPool', 'must be a whole number of runners (0: no pool)');
    if (o.warmPool !== undefined && o.warmPool > 0 && o.launcher === undefined) {
      // The pool's ceiling is the host's default limits: a plugin within them is fitted in place.
      const d = sandboxLimits(this.defaults, o.allowDegradedLimits === true);
      this.pool = new RunnerPool({ size: o.warmPool, limits: d, treeLimits: o.treeLimits, stdio: ['ignore', 'ignore', o.pluginStderr ?? 'ignore'], hostIds: o.hostIds });
      const pool = this.pool;
      this.launcher = (entry, options) => pool.start(entry, options);
    } else {
      this.launcher = o.launcher ?? spawnNode;
    }
  }

  // ---------------------------------------------------------------- public API

  /** Reads the trust list, discovers the plugins and (eager) loads them. Resolves when all settled. */
  async start(): Promise<void> {
    if (this.closed) throw new PluginStateError('*', 'the host is closed');
    if (this.started) throw new PluginStateError('*', 'start() was already called');
    this.started = true;
    this.removeLeftoversOfDeadHosts();
    await this.refreshTrust();
    this.scan();
    if (this.opts.watch) {
      const debounceMs = typeof this.opts.watch === 'object' ? this.opts.watch.debounceMs ?? 200 : 200;
      this.watcher = new PluginWatcher(this.opts.pluginDirs, this.opts.trust.file, debounceMs, {
        plugin: (dirName) => this.onDirChanged(dirName),
        trust: () => void this.onTrustChanged(),
      });
    }
    if ((this.opts.loading ?? 'eager') === 'eager') {
      await Promise.all([...this.records.values()].map((r) => this.ensureLoaded(r, []).catch(() => undefined)));
    }
  }

  /** Declares one more hook (host side). */
  declareHook(decl: HookDeclaration): void {
    this.registry.declare(decl);
  }

  /** Registers an in-process handler, mixed with the plugins' by priority. Returns its remover. */
  registerHandler(hook: string, handler: HookHandler, options: HandlerOptions & { owner?: string } = {}): () => void {
    const owner = options.owner ?? 'host';
    return this.registry.register(hook, owner, handler, { priority: options.priority, kind: 'host' });
  }

  /**
   * Calls a hook: every handler per the hook's mode. A lazy host first loads the plugins whose
   * manifest lists the hook. One plugin's error or timeout is in the result, never thrown.
   */
  async invoke(hook: string, args: unknown[] = [], options?: InvokeOptions): Promise<HookResult> {
    if (this.closed) throw new PluginStateError('*', 'the host is closed');
    if (this.opts.loading === 'lazy') {
      const waiting: Promise<void>[] = [];
      for (const r of this.records.values()) {
        if (r.status === 'idle' && r.manifest?.hooks.includes(hook)) waiting.push(this.ensureLoaded(r, []).catch(() => undefined));
        else if (r.loading !== undefined && r.manifest?.hooks.includes(hook)) waiting.push(r.loading.catch(() => undefined));
      }
      if (waiting.length > 0) await Promise.all(waiting);
    }
    return this.registry.invoke(hook, args, options);
  }

  /** Loads (or, if it failed, loads again) one discovered plugin. Rejects with the reason on failure. */
  async load(name: string): Promise<void> {
    const r = this.record(name);
    if (r.status === 'quarantined') throw new PluginStateError(name, `${name} is quarantined (${r.reason?.message ?? ''}); release() it first`, 'ERR_PLUGIN_QUARANTINED');
    if (r.status === 'active') return;
    await this.ensureLoaded(r, []);
  }

  /**
   * Reloads a plugin from its directory: the new version is verified and started beside the old
   * one, hooks switch atomically once it is ready, the old one drains and stops. If the new version
   * fails, the old one keeps serving and this rejects with why.
   */
  async reload(name: string): Promise<void> {
    const r = this.record(name);
    return this.enqueue(r, () => this.doReload(r));
  }

  /** Unloads a plugin: stop routing, drain, shutdown, stop the sandbox. */
  async unload(name: string, reason?: string): Promise<void> {
    const r = this.record(name);
    this.clearRestart(r);
    return this.enqueue(r, () => this.doUnload(r, { kind: 'unloaded', message: reason ?? 'unloaded by the host' }));
  }

  /** Lifts a quarantine: the plugin becomes loadable again (loaded now unless the host is lazy). */
  async release(name: string): Promise<void> {
    const r = this.record(name);
    if (r.status !== 'quarantined') return;
    r.violationTimes = [];
    r.restarts = 0;
    this.setStatus(r, this.opts.loading === 'lazy' ? 'idle' : 'unloaded', { kind: 'unloaded', message: 'released from quarantine' });
    this.log('notice', 'quarantine', r, 'released from quarantine by the host');
    if (this.opts.loading !== 'lazy') await this.ensureLoaded(r, []);
  }

  /** Reads the trust list again (after it changed on disk). Plugins no longer listed are unloaded. */
  async refreshTrust(): Promise<VerifiedTrustList> {
    try {
      const list = await this.opts.trust.store.load(this.opts.trust.file);
      const wasExpired = this.trustExpired;
      this.trustList = list;
      this.trustExpired = false;
      this.armExpiry(list);
      this.log('info', 'verify', undefined, `trust list version ${list.version} accepted (expires ${list.document.signed.expires})`, { version: list.version, signers: list.signers, rotated: list.rotated, expires: list.document.signed.expires });
      if (wasExpired) this.restoreAfterExpiry();
      return list;
    } catch (e) {
      this.log('critical', 'verify', undefined, `trust list refused: ${errorFields(e).message}`, { code: errorFields(e).code });
      throw e;
    }
  }

  status(name: string): PluginStatus {
    return this.record(name).status;
  }

  info(name: string): PluginInfo {
    return this.infoOf(this.record(name));
  }

  plugins(): PluginInfo[] {
    return [...this.records.values()].map((r) => this.infoOf(r));
  }

  /** The running process of a plugin (for stats and tests); undefined unless active. */
  process(name: string): (PluginProcess & { warm?: boolean }) | undefined {
    return this.records.get(name)?.instance?.proc;
  }

  /** Unloads everything and stops watching. Leaves no process, cgroup or fd of the host's behind. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.watcher?.close();
    if (this.expiryTimer !== undefined) clearTimeout(this.expiryTimer);
    this.expiryTimer = undefined;
    if (typeof (this.opts.trust.store as Partial<EventEmitter>).off === 'function') this.opts.trust.store.off('start-over', this.onStartOver);
    for (const r of this.records.values()) this.clearRestart(r);
    await Promise.all(
      [...this.records.values()].map((r) =>
        this.enqueue(r, () => this.doUnload(r, { kind: 'host-shutdown', message: 'the host is shutting down' }), true).catch(() => undefined),
      ),
    );
    await this.pool?.close();
    releasePreparedMounts();
    if (this.ownsAudit) this.audit.close();
    // The cgroup event watches close their eventfds in libuv close callbacks, which run at the end
    // of this loop turn, after setImmediate: a timer resolves after them, so a caller counting fds
    // after close() sees them gone.
    await new Promise((r) => setTimeout(r, 0));
  }

  // ---------------------------------------------------------------- discovery and load

  private record(name: string): PluginRecord {
    const r = this.records.get(name);
    if (r === undefined) {
      throw new PluginStateError(name, `no plugin named '${name}' was discovered; known: ${[...this.records.keys()].join(', ') || '(none)'}`, 'ERR_PLUGIN_NOT_FOUND');
    }
    return r;
  }

  private scan(): void {
    for (const d of discoverPlugins(this.opts.pluginDirs)) {
      if (d.error !== undefined) {
        this.log('warning', 'refused', undefined, d.error.message, { dir: d.dir, code: d.error.code });
        this.emit('discovery-error', d.error);
        continue;
      }
      const m = d.manifest!;
      const existing = this.records.get(m.name);
      if (existing !== undefined) {
        existing.manifest = m;
        existing.dir = d.dir;
        continue;
      }
      this.records.set(m.name, {
        name: m.name, dir: d.dir, manifest: m, status: 'idle', reason: undefined, instance: undefined,
        queue: Promise.resolve(), loading: undefined, violationTimes: [], restarts: 0, restartTimer: undefined,
      });
    }
  }

  private enqueue<T>(r: PluginRecord, fn: () => Promise<T>, evenIfClosed = false): Promise<T> {
    const run = async (): Promise<T> => {
      if (this.closed && !evenIfClosed) throw new PluginStateError(r.name, 'the host is closed');
      return fn();
    };
    const p = r.queue.then(run, run);
    r.queue = p.catch(() => undefined);
    return p;
  }

  private ensureLoaded(r: PluginRecord, chain: string[]): Promise<void> {
    if (r.status === 'active') return Promise.resolve();
    if (r.loading !== undefined) return r.loading;
    if (r.status === 'quarantined') return Promise.reject(new PluginStateError(r.name, `${r.name} is quarantined`, 'ERR_PLUGIN_QUARANTINED'));
    const p = this.enqueue(r, () => this.doLoad(r, chain)).finally(() => {
      if (r.loading === p) r.loading = undefined;
    });
    r.loading = p;
    return p;
  }

  /** Everything before the spawn: verify, compat, permissions, limits. Throws PluginLoadError. */
  private async prepare(r: PluginRecord, chain: string[]): Promise<{ manifest: PluginManifest; entry: TrustEntry; spawn: SpawnNodeOptions; limits: PluginLimits; permissions: ReturnType<typeof decidePermissions> }> {
    let manifest: PluginManifest;
    try {
      manifest = readManifest(r.dir);
      if (manifest.name !== r.name) throw new PluginError('ERR_PLUGIN_MANIFEST', r.name, `the directory now holds '${manifest.name}'; a plugin cannot change its name`);
    } catch (e) {
      throw new PluginLoadError(r.name, 'discover', e);
    }
    r.manifest = manifest;
    const list = this.trustList;
    if (list === undefined) throw new PluginLoadError(r.name, 'verify', new Error('no trust list has been accepted'));
    let entry: TrustEntry;
    let tree: PluginTree;
    try {
      this.assertNotExpired(list);
      entry = list.entry(manifest.name, manifest.version);
      // The files are read once: digested here and these very bytes copied into the sandbox, so
      // what was verified is what runs, whatever happens to the directory afterwards.
      tree = await readPluginTree(manifest.dir, this.opts.treeLimits);
      if (tree.digest !== entry.digest) throw new DigestMismatchError(manifest.name, manifest.version, entry.digest, tree.digest);
      this.log('info', 'verify', r, `${manifest.name}@${manifest.version} matches trust list version ${list.version} (${entry.trust}, publisher ${entry.publisher})`, { digest: entry.digest });
    } catch (e) {
      this.log('warning', 'verify', r, `${manifest.name}@${manifest.version} refused by the trust list: ${errorFields(e).message}`, { code: errorFields(e).code });
      throw new PluginLoadError(r.name, 'verify', e);
    }
    // Dependencies load first, so that their versions are known to the compatibility check.
    if (chain.includes(r.name)) throw new PluginLoadError(r.name, 'compat', new Error(`dependency cycle: ${[...chain, r.name].join(' → ')}`));
    for (const dep of Object.keys(manifest.dependencies)) {
      if (chain.includes(dep)) throw new PluginLoadError(r.name, 'compat', new Error(`dependency cycle: ${[...chain, r.name, dep].join(' → ')}`));
      const d = this.records.get(dep);
      if (d !== undefined && d.status !== 'active' && d.status !== 'quarantined') {
        await this.ensureLoadedNested(d, [...chain, r.name]).catch(() => undefined);
      }
    }
    try {
      const loaded: Record<string, string> = {};
      for (const x of this.records.values()) if (x.status === 'active' || x.status === 'reloading') loaded[x.name] = x.instance?.version ?? x.manifest?.version ?? '';
      assertCompatible({ name: manifest.name, version: manifest.version, hostApi: manifest.hostApi, dependencies: manifest.dependencies }, { hostApiVersion: this.opts.hostApiVersion, loaded });
    } catch (e) {
      this.log('warning', 'refused', r, errorFields(e).message, { code: errorFields(e).code });
      throw new PluginLoadError(r.name, 'compat', e);
    }
    let permissions: ReturnType<typeof decidePermissions>;
    let limits: PluginLimits;
    try {
      permissions = decidePermissions(manifest.name, manifest.permissions, entry.permissions);
      limits = effectiveLimits(manifest.name, manifest.limits, trustEntryLimits(manifest.name, entry.limits), this.defaults);
    } catch (e) {
      this.log('warning', 'permission', r, errorFields(e).message, { code: errorFields(e).code, requested: manifest.permissions.map(permissionToString), granted: entry.permissions });
      throw new PluginLoadError(r.name, 'permissions', e);
    }
    this.log('info', 'permission', r, permissions.decisions.length === 0 ? 'no permissions requested: sandbox defaults only' : `granted ${permissions.decisions.map((d) => d.permission).join(', ')}`, { decisions: permissions.decisions, limits });
    const sb = sandboxOptionsFor(permissions.effective);
    const spawn: SpawnNodeOptions = {
      pluginDir: manifest.dir,
      pluginFiles: 'copy',
      tree,
      digest: entry.digest,
      binds: sb.binds,
      shareNet: sb.shareNet,
      ...(sb.network !== undefined ? { network: sb.network, onNetwork: (e: NetworkEvent) => this.logNetwork(r, e) } : {}),
      allowExec: sb.allowExec,
      limits: sandboxLimits(limits, this.opts.allowDegradedLimits === true),
      config: this.opts.config?.[manifest.name],
      handlers: this.methodsFor(manifest.name),
      // Per-call timeouts are the hooks' and the plugin's callTimeout; the channel itself waits.
      timeout: 0,
      loadTimeout: this.opts.loadTimeoutMs ?? 10000,
      stdio: ['ignore', 'ignore', this.opts.pluginStderr ?? 'ignore'],
      hostIds: this.opts.hostIds,
      channelLimits: this.opts.channelLimits,
    };
    return { manifest, entry, spawn, limits, permissions };
  }

  private ensureLoadedNested(r: PluginRecord, chain: string[]): Promise<void> {
    // Called from inside another plugin's queue: must not wait on that queue.
    if (r.status === 'active') return Promise.resolve();
    if (r.loading !== undefined) return r.loading;
    return this.ensureLoaded(r, chain);
  }

  /** Spawns and handshakes a prepared plugin; returns the running instance. */
  private async startInstance(r: PluginRecord, prep: Awaited<ReturnType<PluginHost['prepare']>>): Promise<PluginInstance> {
    let proc: PluginProcess & { warm?: boolean };
    try {
      proc = await this.launcher(prep.manifest.entry, prep.spawn);
    } catch (e) {
      // The plugin's own module or activate() failing (or not answering) is 'init'; the rest is the sandbox's.
      const init = e instanceof RemoteError || e instanceof CallTimeoutError;
      throw new PluginLoadError(r.name, init ? 'init' : 'spawn', e);
    }
    const inst = new PluginInstance(proc, { manifest: prep.manifest, trust: prep.entry, permissions: prep.permissions.effective, limits: prep.limits });
    proc.on('log', (level: string, message: string) => this.emit('log', r.name, level, message));
    proc.on('event', (name: string, ...args: unknown[]) => this.emit('event', r.name, name, ...args));
    try {
      const regs = (await proc.callWith({ timeout: this.opts.loadTimeoutMs ?? 10000 }, M_HOOKS)) as HookRegistration[];
      inst.hooks = this.checkHooks(prep.manifest, regs);
    } catch (e) {
      await inst.stop({ drainMs: 0, shutdownMs: 0, now: true });
      throw e instanceof PluginError ? new PluginLoadError(r.name, 'hooks', e) : new PluginLoadError(r.name, 'handshake', e);
    }
    return inst;
  }

  private checkHooks(m: PluginManifest, regs: unknown): HookRegistration[] {
    if (!Array.isArray(regs) || regs.length > 1000) throw new PluginHookError(m.name, '?', 'the runner answered the hook list with something that is not a list');
    const out: HookRegistration[] = [];
    for (const x of regs as Array<{ hook?: unknown; priority?: unknown }>) {
      const hook = typeof x?.hook === 'string' ? x.hook : '?';
      if (!this.registry.has(hook)) throw new PluginHookError(m.name, hook, `the host declares no such hook (declared: ${this.registry.hooks().map((h) => h.name).join(', ') || 'none'})`);
      if (!m.hooks.includes(hook)) throw new PluginHookError(m.name, hook, 'registered but not listed in the manifest `hooks`; list it there');
      const priority = typeof x.priority === 'number' && Number.isSafeInteger(x.priority) ? x.priority : 0;
      out.push({ hook, priority });
    }
    return out;
  }

  private activate(r: PluginRecord, inst: PluginInstance): void {
    const previous = r.instance;
    r.instance = inst;
    inst.onViolation = (reason) => this.onViolation(r, inst, reason);
    // One synchronous step: an invoke() sees either all old handlers or all new ones.
    this.registry.replaceOwner(r.name, inst.hooks.map((h) => ({ hook: h.hook, handler: inst.hookHandler(h.hook), options: { priority: h.priority, kind: 'plugin' as const } })));
    if (previous !== undefined) {
      previous.retired = true;
      previous.successor = inst;
    }
  }

  private async doLoad(r: PluginRecord, chain: string[]): Promise<void> {
    if (r.status === 'active' || r.status === 'quarantined') return;
    this.setStatus(r, 'loading');
    let inst: PluginInstance;
    try {
      const prep = await this.prepare(r, chain);
      inst = await this.startInstance(r, prep);
      await this.stillTrusted(r, inst);
    } catch (e) {
      const err = e instanceof PluginLoadError ? e : new PluginLoadError(r.name, 'spawn', e);
      const refused = err.stage === 'verify' || err.stage === 'permissions' || err.stage === 'compat';
      const reason: PluginReason = { kind: refused ? 'refused' : 'load-failed', message: err.message, stage: err.stage, code: errorFields(err.cause).code };
      this.log(refused ? 'warning' : 'warning', 'load', r, err.message, { stage: err.stage, code: reason.code });
      this.setStatus(r, 'failed', reason);
      throw err;
    }
    if (this.closed) {
      await inst.stop({ drainMs: 0, shutdownMs: 0, now: true });
      throw new PluginStateError(r.name, 'the host closed while the plugin loaded');
    }
    this.activate(r, inst);
    this.setStatus(r, 'active');
    this.log('info', 'load', r, `loaded ${inst.name}@${inst.version} (pid ${inst.pid}${inst.proc.warm ? ', warm' : ''})`, { hooks: inst.hooks.map((h) => h.hook), warm: inst.proc.warm === true });
  }

  private async doReload(r: PluginRecord): Promise<void> {
    if (r.status === 'quarantined') throw new PluginStateError(r.name, `${r.name} is quarantined; release() it first`, 'ERR_PLUGIN_QUARANTINED');
    const old = r.instance;
    if (old === undefined || r.status !== 'active') {
      // Nothing serving: a reload is a load.
      if (r.status === 'idle' && this.opts.loading === 'lazy') return;
      return this.doLoad(r, []);
    }
    this.setStatus(r, 'reloading');
    let inst: PluginInstance;
    try {
      const prep = await this.prepare(r, []);
      inst = await this.startInstance(r, prep);
      await this.stillTrusted(r, inst);
    } catch (e) {
      const err = e instanceof PluginLoadError ? e : new PluginLoadError(r.name, 'spawn', e);
      this.log('warning', 'reload', r, `reload failed, ${old.version} keeps serving: ${err.message}`, { stage: err.stage });
      // The old instance may have broken a limit while the new one was being prepared.
      if (r.instance === old && !old.retired) this.setStatus(r, 'active', { kind: 'load-failed', message: `reload failed: ${err.message}`, stage: err.stage });
      throw err;
    }
    if (r.instance !== old || old.retired || this.closed) {
      // The old one failed meanwhile (its violation was handled) or the host closed: the new one is not wanted.
      await inst.stop({ drainMs: 0, shutdownMs: 0, now: true });
      throw new PluginStateError(r.name, 'the plugin changed state during the reload; the new version was stopped');
    }
    this.activate(r, inst);
    this.setStatus(r, 'active', { kind: 'replaced', message: `reloaded: ${old.version} → ${inst.version}` });
    this.log('info', 'reload', r, `reloaded ${old.version} → ${inst.version} (pid ${old.pid} → ${inst.pid})`, { from: old.version, to: inst.version });
    await old.stop({ drainMs: this.opts.drainTimeoutMs ?? 5000, shutdownMs: this.opts.shutdownTimeoutMs ?? 2000 });
  }

  private async doUnload(r: PluginRecord, reason: PluginReason): Promise<void> {
    const inst = r.instance;
    if (inst === undefined) {
      if (r.status !== 'quarantined' && r.status !== 'failed') this.setStatus(r, 'unloaded', reason);
      return;
    }
    this.setStatus(r, 'unloading', reason);
    this.registry.removeOwner(r.name);
    r.instance = undefined;
    inst.retired = true;
    await inst.stop({ drainMs: this.opts.drainTimeoutMs ?? 5000, shutdownMs: this.opts.shutdownTimeoutMs ?? 2000 });
    this.setStatus(r, 'unloaded', reason);
    this.log(reason.kind === 'host-shutdown' || reason.kind === 'unloaded' ? 'info' : 'notice', 'unload', r, reason.message, { kind: reason.kind });
  }

  // ---------------------------------------------------------------- violations

  private onViolation(r: PluginRecord, inst: PluginInstance, reason: PluginReason): void {
    if (r.instance !== inst) return; // an old instance draining after a reload: it is going anyway
    // At once: no more calls, the sandbox killed. In-flight calls fail with the channel.
    this.registry.removeOwner(r.name);
    r.instance = undefined;
    void inst.stop({ drainMs: 0, shutdownMs: 0, now: true });
    const now = Date.now();
    const q = this.opts.quarantine ?? { violations: 3, windowMs: 600_000 };
    r.violationTimes = r.violationTimes.filter((t) => now - t < q.windowMs);
    r.violationTimes.push(now);
    this.log(severityOf(reason.kind), 'violation', r, reason.message, { kind: reason.kind, syscall: reason.syscall, limit: reason.limit, observed: reason.observed, exit: reason.exit, pid: inst.pid });
    if (r.violationTimes.length >= q.violations) {
      this.setStatus(r, 'quarantined', reason);
      this.log('critical', 'quarantine', r, `${r.violationTimes.length} violations within ${q.windowMs} ms: quarantined until released`, { last: reason.kind });
      return;
    }
    this.setStatus(r, 'failed', reason);
    this.emit('violation', r.name, reason);
    if ((this.opts.restart?.policy ?? 'off') === 'restart' && !this.closed) {
      const initial = this.opts.restart?.initialDelayMs ?? 1000;
      const max = this.opts.restart?.maxDelayMs ?? 60_000;
      const delay = Math.min(max, initial * 2 ** Math.min(r.restarts, 30));
      r.restarts++;
      this.log('notice', 'restart', r, `restarting in ${delay} ms (restart ${r.restarts})`, { delayMs: delay });
      r.restartTimer = setTimeout(() => {
        r.restartTimer = undefined;
        if (r.status === 'failed' && !this.closed) this.ensureLoaded(r, []).catch(() => undefined);
      }, delay);
      r.restartTimer.unref();
    }
  }

  private clearRestart(r: PluginRecord): void {
    if (r.restartTimer !== undefined) clearTimeout(r.restartTimer);
    r.restartTimer = undefined;
  }

  // ---------------------------------------------------------------- trust list expiry

  /** The longest delay setTimeout honours; a longer one fires at once (with a warning). */
  private static readonly MAX_TIMER_MS = 2 ** 31 - 1;

  /** Fires expire() at the list's expiry: in steps of at most MAX_TIMER_MS, re-checked each time. */
  private armExpiry(list: VerifiedTrustList): void {
    if (this.expiryTimer !== undefined) clearTimeout(this.expiryTimer);
    this.expiryTimer = undefined;
    if (this.closed) return;
    const left = list.expires.getTime() - Date.now();
    if (left <= 0) {
      this.expire(list);
      return;
    }
    this.expiryTimer = setTimeout(() => {
      this.expiryTimer = undefined;
      // A step of a long wait, or a timer a little early for the wall clock: wait the rest.
      if (this.trustList === list) this.armExpiry(list);
    }, Math.min(left, PluginHost.MAX_TIMER_MS));
    // The expiry alone must not keep the application alive.
    this.expiryTimer.unref();
  }

  /** Throws (ExpiredError) if `list` has expired, handling the expiry first if nothing did yet. */
  private assertNotExpired(list: VerifiedTrustList): void {
    const now = Date.now();
    if (now < list.expires.getTime()) return;
    this.expire(list);
    throw new ExpiredError(list.document.signed.expires, new Date(now).toISOString());
  }

  /** After a new instance started: the list it was verified against may have expired meanwhile. */
  private async stillTrusted(r: PluginRecord, inst: PluginInstance): Promise<void> {
    const list = this.trustList;
    try {
      if (list === undefined) throw new Error('no trust list is in force');
      this.assertNotExpired(list);
    } catch (e) {
      await inst.stop({ drainMs: 0, shutdownMs: 0, now: true });
      this.log('warning', 'verify', r, `${r.name} refused after it started: ${errorFields(e).message}`, { code: errorFields(e).code });
      throw new PluginLoadError(r.name, 'verify', e);
    }
  }

  /** The list in force expired: stop trusting it. Idempotent. */
  private expire(list: VerifiedTrustList): void {
    if (this.trustList !== list || this.trustExpired || this.closed) return;
    this.trustExpired = true;
    const policy = this.opts.onTrustExpired ?? 'unload';
    const expires = list.document.signed.expires;
    const running = [...this.records.values()].filter((r) => r.instance !== undefined);
    this.log('critical', 'trust-expired', undefined,
      `trust list version ${list.version} expired at ${expires}: no plugin is loaded or reloaded until a fresh list is accepted; ` +
        `${running.length} running plugin(s) ${policy === 'unload' ? 'unloaded' : 'keep serving'} (onTrustExpired: ${policy})`,
      { version: list.version, expires, policy, running: running.map((r) => r.name) });
    this.emit('trust-expired', { version: list.version, expires, policy });
    for (const r of running) {
      if (policy === 'keep-serving') {
        this.log('warning', 'trust-expired', r, `keeps serving on expired trust list version ${list.version} (onTrustExpired: keep-serving)`);
        continue;
      }
      this.clearRestart(r);
      this.enqueue(r, () => this.doUnload(r, { kind: 'trust-expired', message: `trust list version ${list.version} expired at ${expires}` })).catch(() => undefined);
    }
  }

  /**
   * A fresh list after an expiry: plugins unloaded for it, or refused because of it, come back
   * (eager) or wait for their next call (lazy).
   */
  private restoreAfterExpiry(): void {
    for (const r of this.records.values()) {
      const unloaded = r.status === 'unloaded' && r.reason?.kind === 'trust-expired';
      const refused = r.status === 'failed' && r.reason?.code === 'ERR_TRUST_EXPIRED';
      if (!unloaded && !refused) continue;
      if (this.opts.loading === 'lazy') this.setStatus(r, 'idle', { kind: 'unloaded', message: 'a fresh trust list was accepted' });
      else this.ensureLoaded(r, []).catch(() => undefined);
    }
  }

  // ---------------------------------------------------------------- hot reload triggers

  private onDirChanged(dirName: string): void {
    if (this.closed) return;
    const known = [...this.records.values()].find((r) => path.basename(r.dir) === dirName);
    if (known === undefined) {
      // A new plugin directory appeared: discover it, load it if eager.
      this.scan();
      const fresh = [...this.records.values()].find((r) => path.basename(r.dir) === dirName);
      if (fresh !== undefined && fresh.status === 'idle' && this.opts.loading !== 'lazy') this.ensureLoaded(fresh, []).catch(() => undefined);
      return;
    }
    if (!fs.existsSync(known.dir)) return; // mid-rename; the next event brings it back
    if (known.status === 'idle') {
      // Not started yet (lazy): only the hooks it says it handles matter until then.
      try {
        known.manifest = readManifest(known.dir);
      } catch {
        // reported when it is loaded
      }
      return;
    }
    if (known.status === 'active' || known.status === 'failed' || known.status === 'unloaded') {
      this.reload(known.name).catch(() => undefined);
    }
  }

  private async onTrustChanged(): Promise<void> {
    if (this.closed) return;
    let list: VerifiedTrustList;
    try {
      list = await this.refreshTrust();
    } catch {
      return; // refused (and audited): the previous list stays in force
    }
    for (const r of this.records.values()) {
      const inst = r.instance;
      if (inst !== undefined) {
        const e = list.entries.find((x) => x.name === inst.name && x.version === inst.version && x.digest === inst.info.trust.digest);
        if (e === undefined) {
          // What runs is no longer trusted: it goes now, whatever the directory holds.
          this.unloadRevoked(r).catch(() => undefined);
        } else if (JSON.stringify(e) !== JSON.stringify(inst.info.trust) || r.manifest?.version !== inst.version) {
          this.reload(r.name).catch(() => undefined);
        }
      } else if (r.status === 'failed' && r.reason?.kind === 'refused') {
        this.ensureLoaded(r, []).catch(() => undefined);
      }
    }
  }

  private async unloadRevoked(r: PluginRecord): Promise<void> {
    // Try the directory's current version first (an update whose list entry replaced the old one).
    try {
      await this.reload(r.name);
      return;
    } catch {
      // not loadable: unload below
    }
    const inst = r.instance;
    if (inst === undefined) return;
    const listed = this.trustList?.entries.some((x) => x.name === inst.name && x.version === inst.version && x.digest === inst.info.trust.digest);
    if (listed) return;
    await this.enqueue(r, () => this.doUnload(r, { kind: 'revoked', message: `${inst.name}@${inst.version} is no longer in the trust list` }));
    this.log('warning', 'unload', r, 'revoked by the trust list');
  }

  // ---------------------------------------------------------------- helpers

  private methodsFor(plugin: string): Record<string, Handler> {
    const out: Record<string, Handler> = {};
    for (const [name, fn] of Object.entries(this.opts.methods ?? {})) {
      out[name] = function (this: CallContext, ...args: unknown[]) {
        // Not a spread copy: `signal` is a getter of the call's context (made on first use), and
        // it must stay the one that the plugin's cancel, a timeout or the channel closing aborts.
        const ctx = this;
        const self = { get signal() { return ctx.signal; }, method: ctx.method, plugin };
        // args is at most the channel's maxArgs long.
        return fn.apply(self, args);
      };
    }
    return out;
  }

  private setStatus(r: PluginRecord, status: PluginStatus, reason?: PluginReason): void {
    const previous = r.status;
    r.status = status;
    if (reason !== undefined) r.reason = reason;
    else if (status === 'loading' || status === 'active') r.reason = undefined;
    const ev: PluginStatusEvent = { plugin: r.name, status, previous, version: r.instance?.version ?? r.manifest?.version, reason, at: Date.now() };
    this.emit('status', ev);
  }

  private infoOf(r: PluginRecord): PluginInfo {
    const q = this.opts.quarantine ?? { violations: 3, windowMs: 600_000 };
    const now = Date.now();
    return {
      name: r.name,
      version: r.instance?.version ?? r.manifest?.version,
      status: r.status,
      reason: r.reason,
      dir: r.dir,
      pid: r.instance?.pid,
      warm: r.instance?.proc.warm === true,
      hooks: r.instance?.hooks.map((h) => h.hook) ?? [],
      recentViolations: r.violationTimes.filter((t) => now - t < q.windowMs).length,
      restarts: r.restarts,
    };
  }

  /**
   * A host that died (SIGKILL, OOM) left its sandbox cgroups behind; its sandboxes died with it
   * (parent-death signal). Removing the empty ones at start is what a restart owes; each is audited.
   */
  private removeLeftoversOfDeadHosts(): void {
    for (const l of deadHostCgroups(true)) {
      if (l.outcome === 'removed') this.log('warning', 'cleanup', undefined, `removed sandbox cgroup ${l.path} of host pid ${l.hostPid}, which is gone`);
      else if (l.outcome !== 'host-alive') this.log('warning', 'cleanup', undefined, `sandbox cgroup ${l.path} of host pid ${l.hostPid} left in place: ${l.outcome}${l.detail === undefined ? '' : ` (${l.detail})`}`);
    }
  }

  /** Each network decision of a plugin's sandbox is a `network` audit line. */
  private logNetwork(r: PluginRecord, e: NetworkEvent): void {
    const where = e.name ?? (e.address === undefined ? '' : e.port === undefined ? e.address : `${e.address}:${e.port}`);
    const what = e.type === 'closed' ? `closed ${where} (${e.bytesOut ?? '?'} bytes out, ${e.bytesIn ?? '?'} in)` : e.type === 'connected' ? `${e.errno === undefined ? 'connected' : `failed (${e.errno})`} ${where}` : `${e.decision} ${e.type} ${where}${e.reason === undefined ? '' : `: ${e.reason}`}`;
    this.log(e.decision === 'refused' ? 'warning' : 'info', 'network', r, what, { ...e });
  }

  private log(severity: AuditSeverity, event: string, r: PluginRecord | undefined, reason: string, details?: Record<string, unknown>): void {
    const e: AuditEventInput = { severity, event, reason };
    if (r !== undefined) {
      e.plugin = r.name;
      const v = r.instance?.version ?? r.manifest?.version;
      if (v !== undefined) e.version = v;
    }
    if (details !== undefined) e.details = JSON.parse(JSON.stringify(details)) as Record<string, unknown>;
    this.audit.append(e);
  }
}
