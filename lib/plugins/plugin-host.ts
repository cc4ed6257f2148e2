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
 * Starts (spawn + handshake) go through admission.ts: a bounded number at once, the rest in line.
 *
 * This file holds the state and the lifecycle (load, reload, unload, each serialized per plugin);
 * the options and their defaults are in host-options.ts, the steps before a plugin takes calls in
 * prepare.ts, violations, restarts and quarantine in supervision.ts, the trust list's expiry in
 * trust-expiry.ts and what a file change sets off in reload-triggers.ts.
 */
import { EventEmitter } from 'node:events';

import { AuditLog, readAuditLog, type AuditSeverity } from '../audit';
import { Bus, HostBus } from '../bus';
import { publishersFirstListed, reputation, ReputationLedger, REPUTATION_EVENTS, signalsFor } from '../reputation';
import type { TrustEntry } from '../trust/document';
import { HookRegistry, type HookDeclaration, type HookHandler, type HookResult, type InvokeOptions, type HandlerOptions } from '../hooks';
import { spawnNode } from '../process/spawn-node';
import { releasePreparedMounts } from '../sandbox/plan';
import type { PluginProcess } from '../process/plugin-process';
import type { VerifiedTrustList } from '../trust/verify';
import type { StartOverEvent } from '../trust/store';
import { RunnerPool } from '../pool';
import { deadHostCgroups } from '../limits';
import { Admission } from './admission';
import { auditEvent, errorFields } from './audit-lines';
import { walkPluginDirs } from './discovery';
import { PluginLoadError, PluginStateError } from './errors';
import type { HostCore } from './host-core';
import { hostSettings, type HostSettings, type PluginHostOptions, type PluginLauncher } from './host-options';
import type { PluginInstance } from './instance';
import type { PluginReason } from './reason';
import { sandboxLimits } from './limits';
import { preparePlugin, startInstance } from './prepare';
import { newRecord, pluginInfo, versionOf, type PluginInfo, type PluginRecord, type PluginStatus, type PluginStatusEvent } from './record';
import { onDirChanged, onTrustChanged } from './reload-triggers';
import { clearRestart, onLateViolation, onViolation, recordReloadViolation, recordViolation, releaseQuarantine } from './supervision';
import { TrustExpiry } from './trust-expiry';
import { PluginWatcher } from './watch';
import { PluginObserver, type HostUsage } from '../metrics';
import { Dashboard } from '../dashboard';
import { observedHost } from './observe';
import { LoadScans } from './load-scan';

export type { PluginHostOptions, PluginLauncher, WarmPoolOptions } from './host-options';
export type { PluginInfo, PluginStatus, PluginStatusEvent } from './record';

/** Plugin directories discovered per turn of the event loop (a manifest read: a fraction of a millisecond). */
const DISCOVERY_BATCH = 16;

/** start()'s progress: how many of the eager loads settled, and how many still wait for their turn. */
export interface LoadProgressEvent {
  loaded: number;
  failed: number;
  total: number;
  /** Starts waiting in line for a slot (maxConcurrentLoads). */
  queued: number;
}

/**
 * Events: 'status' (PluginStatusEvent), 'violation' (plugin, PluginReason: one for each violation
 * line of the audit log, after the status it led to: a running plugin's, a load's, a reload's, the
 * one that quarantines, and a later kind raced in before the kill, not counted again), 'load-progress' (LoadProgressEvent, during start() each time
 * a load settles; the last has loaded + failed = total), 'log' (plugin, level, message), 'logs-dropped'
 * (plugin, count: its lines over the log rate, once a second while it drops), 'event' (plugin, name, ...args)
 * for host.emit() of plugins (DEFAULT_EVENT_RATE a second, a burst of ten seconds' worth), 'events-dropped'
 * (plugin, count: its events over that rate, reported like dropped logs), 'error' is never emitted (failures are statuses and audit events).
 */
export class PluginHost extends EventEmitter {
  readonly registry = new HookRegistry();
  readonly audit: AuditLog;
  private readonly ownsAudit: boolean;
  private readonly settings: HostSettings;
  private readonly opts: PluginHostOptions;
  private readonly records = new Map<string, PluginRecord>();
  private readonly launcher: PluginLauncher;
  private readonly pool: RunnerPool | undefined;
  private readonly admission: Admission;
  private trustList: VerifiedTrustList | undefined;
  private readonly expiry: TrustExpiry;
  /** The view of this host that its parts (preparation, supervision, expiry, triggers) work on. */
  private readonly core: HostCore;
  private readonly onStartOver = (ev: StartOverEvent): void => {
    this.log('critical', 'trust-state-reset', undefined,
      ev.how === 'option'
        ? `no trust state file at ${ev.statePath}: started over (startOver option), version ${ev.version} accepted without rollback protection`
        : `trust state ${ev.statePath} was reset by the operator (${ev.resetAt}: ${ev.reason}); version ${ev.version} accepted without rollback protection`,
      { ...ev });
  };
  private watcher: PluginWatcher | undefined;
  /** Metrics, usage history and early warnings: host.metrics.register(promRegistry), host.usage(). */
  readonly metrics: PluginObserver;
  /** The read-only dashboard; listening only once listen() is called (or the dashboard option). */
  readonly dashboard: Dashboard;
  private closed = false;
  private started = false;
  private readonly scans = new LoadScans();
  /** What the audit log says of each plugin (seeded from the file at start, then fed as events are written). */
  private readonly ledger = new ReputationLedger();
  private reputationIndex: { list: VerifiedTrustList | undefined; entries: Map<string, TrustEntry>; publishers: Map<string, number> } = { list: undefined, entries: new Map(), publishers: new Map() };
  /** The plugins' bus: events, services, shared data, routed and checked here. */
  private readonly busCore: Bus;
  /** The application's side of the bus: publish, observe, call a plugin's service, shared data. */
  readonly bus: HostBus;

  constructor(options: PluginHostOptions) {
    super();
    this.settings = hostSettings(options);
    const o = this.settings.options;
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
    const warm = this.settings.warmPool;
    if (warm !== undefined && o.launcher === undefined) {
      // The pool's ceiling is the host's default limits: a plugin within them is fitted in place.
      const d = sandboxLimits(this.settings.defaultLimits, this.settings.allowDegradedLimits);
      this.pool = new RunnerPool({ size: warm.size, allowExec: warm.allowExec, limits: d, treeLimits: o.treeLimits, stdio: ['ignore', 'ignore', this.settings.pluginStderr], hostIds: o.hostIds });
      const pool = this.pool;
      this.launcher = (entry, options) => pool.start(entry, options);
    } else {
      this.launcher = o.launcher ?? spawnNode;
    }
    this.admission = new Admission(this.settings.maxConcurrentLoads);
    this.busCore = new Bus(o.bus ?? {}, (severity, plugin, reason, details) => {
      const r = plugin === undefined ? undefined : this.records.get(plugin);
      this.log(severity, 'bus', r, reason, details);
    });
    this.bus = new HostBus(this.busCore);
    this.core = {
      settings: this.settings,
      records: this.records,
      registry: this.registry,
      scans: o.scanAtLoad === false ? undefined : this.scans,
      bus: this.busCore,
      isClosed: () => this.closed,
      trustList: () => this.trustList,
      refreshTrust: () => this.refreshTrust(),
      assertNotExpired: (list) => this.expiry.assertNotExpired(list),
      log: (severity, event, r, reason, details) => this.log(severity, event, r, reason, details),
      setStatus: (r, status, reason) => this.setStatus(r, status, reason),
      emit: (event, ...args) => this.emit(event, ...args),
      scan: () => this.scan(),
      enqueue: (r, fn, evenIfClosed) => this.enqueue(r, fn, evenIfClosed),
      ensureLoaded: (r, chain) => this.ensureLoaded(r, chain),
      reload: (name) => this.reload(name),
      doUnload: (r, reason) => this.doUnload(r, reason),
      timeCall: (plugin, fn) => this.metrics.timeCall(plugin, fn),
    };
    this.expiry = new TrustExpiry(this.core);
    this.metrics = new PluginObserver(observedHost(this, (n) => this.records.get(n)?.instance, () => this.pool?.stats()), o.observe);
    this.dashboard = new Dashboard({ usage: () => this.metrics.usage(), history: (n) => this.metrics.history(n), audit: this.audit });
  }

  // ---------------------------------------------------------------- public API

  /** Reads the trust list, discovers the plugins and (eager) loads them. Resolves when all settled. */
  async start(): Promise<void> {
    if (this.closed) throw new PluginStateError('*', 'the host is closed');
    if (this.started) throw new PluginStateError('*', 'start() was already called');
    this.started = true;
    await this.seedReputation();
    this.removeLeftoversOfDeadHosts();
    await this.refreshTrust();
    await this.scan();
    if (this.settings.watchDebounceMs !== undefined) {
      this.watcher = new PluginWatcher(this.opts.pluginDirs, this.opts.trust.file, this.settings.watchDebounceMs, {
        plugin: (dirName) => void onDirChanged(this.core, dirName).catch(() => undefined),
        trust: () => void onTrustChanged(this.core),
      });
    }
    if (this.settings.loading === 'eager') await this.loadAll();
    if (this.opts.dashboard !== undefined) await this.dashboard.listen(this.opts.dashboard);
  }

  /** The audit log's history of each plugin, read once; then each event as this host's log writes it. */
  private async seedReputation(): Promise<void> {
    if (this.audit.path !== undefined) {
      const r = await readAuditLog(this.audit.path, { event: [...REPUTATION_EVENTS] }).catch(() => undefined);
      for (const e of r?.events ?? []) this.ledger.add(e);
    }
    this.audit.subscribe((e) => this.ledger.add(e));
  }

  /** start()'s eager loads, with a 'load-progress' event each time one settles. */
  private async loadAll(): Promise<void> {
    const records = [...this.records.values()];
    const progress: LoadProgressEvent = { loaded: 0, failed: 0, total: records.length, queued: 0 };
    const loads: Promise<void>[] = [];
    for (const r of records) {
      loads.push((async () => {
        await this.ensureLoaded(r, []).catch(() => undefined);
        if (r.status === 'active') progress.loaded++;
        else progress.failed++;
        this.emit('load-progress', { ...progress, queued: this.admission.queued });
      })());
      // One plugin's synchronous first steps (manifest, audit lines, the tree's first reads: about
      // a millisecond) per turn of the event loop: started all in one turn, 200 plugins held it
      // ~0.2 s, a thousand about a second, while the application and loaded plugins waited.
      await new Promise<void>((resolve) => setImmediate(resolve));
    }
    await Promise.all(loads);
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
    if (this.settings.loading === 'lazy') {
      const waiting: Promise<void>[] = [];
      for (const r of this.records.values()) {
        if (r.status === 'idle' && r.manifest?.hooks.includes(hook)) waiting.push(this.ensureLoaded(r, []).catch(() => undefined));
        else if (r.loading !== undefined && r.manifest?.hooks.includes(hook)) waiting.push(r.loading.catch(() => undefined));
      }
      if (waiting.length > 0) await Promise.all(waiting);
    }
    const result = await this.registry.invoke(hook, args, options);
    this.metrics.hookResult(result);
    return result;
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
    clearRestart(r);
    return this.enqueue(r, () => this.doUnload(r, { kind: 'unloaded', message: reason ?? 'unloaded by the host' }));
  }

  /** Lifts a quarantine: the plugin becomes loadable again (loaded now unless the host is lazy). */
  async release(name: string): Promise<void> {
    const r = this.record(name);
    if (r.status !== 'quarantined') return;
    releaseQuarantine(this.core, r);
    if (this.settings.loading !== 'lazy') await this.ensureLoaded(r, []);
  }

  /** Reads the trust list again (after it changed on disk). Plugins no longer listed are unloaded. */
  async refreshTrust(): Promise<VerifiedTrustList> {
    try {
      const list = await this.opts.trust.store.load(this.opts.trust.file);
      this.trustList = list;
      const wasExpired = this.expiry.accepted(list);
      this.log('info', 'verify', undefined, `trust list version ${list.version} accepted (expires ${list.document.signed.expires})`, { version: list.version, signers: list.signers, rotated: list.rotated, expires: list.document.signed.expires });
      if (wasExpired) this.expiry.restoreAfterExpiry();
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

  private infoOf(r: PluginRecord): PluginInfo {
    const version = versionOf(r);
    const list = this.trustList;
    if (list !== this.reputationIndex.list) {
      // Once per list: plugins() is sampled by the observer, and must not walk the entries per plugin.
      this.reputationIndex = { list, entries: new Map(list?.entries.map((e) => [`${e.name}@${e.version}`, e]) ?? []), publishers: publishersFirstListed(list?.entries ?? []) };
    }
    const entry = this.reputationIndex.entries.get(`${r.name}@${version ?? ''}`);
    const rep = reputation(signalsFor(r.name, version, this.ledger, entry, this.reputationIndex.publishers));
    return pluginInfo(r, this.settings.quarantine.windowMs, entry?.trust, rep);
  }

  /** A JSON snapshot of every plugin's resources, calls, violations and warnings (see lib/metrics). */
  usage(): HostUsage {
    return this.metrics.usage();
  }

  /** The running process of a plugin (for stats and tests); undefined unless active. */
  process(name: string): (PluginProcess & { warm?: boolean }) | undefined {
    return this.records.get(name)?.instance?.proc;
  }

  /** Unloads everything and stops watching. Leaves no process, cgroup or fd of the host's behind. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    // Starts still in line are refused now: each plugin's unload below waits behind its load.
    this.admission.close();
    this.watcher?.close();
    const scans = this.scans.close();
    this.metrics.close();
    await this.dashboard.close();
    this.expiry.stop();
    if (typeof (this.opts.trust.store as Partial<EventEmitter>).off === 'function') this.opts.trust.store.off('start-over', this.onStartOver);
    for (const r of this.records.values()) clearRestart(r);
    await Promise.all(
      [...this.records.values()].map((r) =>
        this.enqueue(r, () => this.doUnload(r, { kind: 'host-shutdown', message: 'the host is shutting down' }), true).catch(() => undefined),
      ),
    );
    await this.pool?.close();
    await scans;
    releasePreparedMounts();
    if (this.ownsAudit) this.audit.close();
    // The cgroup event watches close their eventfds in libuv close callbacks, which run at the end
    // of this loop turn, after setImmediate: a timer resolves after them, so a caller counting fds
    // after close() sees them gone.
    await new Promise((r) => setTimeout(r, 0));
  }

  // ---------------------------------------------------------------- discovery and lifecycle

  private record(name: string): PluginRecord {
    const r = this.records.get(name);
    if (r === undefined) {
      throw new PluginStateError(name, `no plugin named '${name}' was discovered; known: ${[...this.records.keys()].join(', ') || '(none)'}`, 'ERR_PLUGIN_NOT_FOUND');
    }
    return r;
  }

  /**
   * Discovers the plugin directories (again): new ones become idle records. A manifest read is a
   * fraction of a millisecond, so the event loop turns after every DISCOVERY_BATCH directories: a
   * thousand plugins in one pass held the host's loop ~0.2 s.
   */
  private async scan(): Promise<void> {
    let seen = 0;
    for (const d of walkPluginDirs(this.opts.pluginDirs)) {
      if (++seen % DISCOVERY_BATCH === 0) await new Promise<void>((resolve) => setImmediate(resolve));
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
      this.records.set(m.name, newRecord(m, d.dir));
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

  /** Prepares and starts a new instance; it takes no calls yet. Throws PluginLoadError. */
  private async startVerified(r: PluginRecord, chain: string[]): Promise<PluginInstance> {
    // Preparation loads the dependencies, so it runs before the slot is taken: a plugin waiting for
    // its dependency holds no slot, and the dependency cannot wait behind it.
    const prep = await preparePlugin(this.core, r, chain);
    const inst = await this.admission.run(r.name, () => startInstance(this.core, this.launcher, r, prep));
    await this.expiry.stillTrusted(r, inst);
    return inst;
  }

  /**
   * A violation while it loaded (a bus flood from its first line of code, its process ending during
   * the handshake) reached an instance nobody listened to yet: the load fails with it. Called with no
   * await between it and activate(), which wires the listener.
   */
  private async refuseViolated(inst: PluginInstance, r: PluginRecord): Promise<never> {
    // Read once it has ended: a forbidden syscall may follow the pids violation that got here first.
    const violation = (await inst.stopForViolation())!;
    throw new PluginLoadError(r.name, 'init', new Error(`${violation.kind} violation while it loaded: ${violation.message}`), violation);
  }

  private activate(r: PluginRecord, inst: PluginInstance): void {
    const previous = r.instance;
    r.instance = inst;
    inst.onViolation = (reason) => onViolation(this.core, r, inst, reason);
    inst.onLateViolation = (reason, after, names) => onLateViolation(this.core, r, inst, reason, after, names);
    // One synchronous step: an invoke() sees either all old handlers or all new ones.
    this.registry.replaceOwner(r.name, inst.hooks.map((h) => ({ hook: h.hook, handler: inst.hookHandler(h.hook), options: { priority: h.priority, kind: 'plugin' as const } })));
    // In the same step: bus calls and events now reach the new instance, none the old one.
    if (inst.busMember !== undefined) this.busCore.attach(inst.busMember);
    if (previous !== undefined) {
      previous.retired = true;
      previous.successor = inst;
      if (previous.busMember !== undefined && previous.busMember !== inst.busMember) this.busCore.detach(previous.busMember, inst.busMember);
    }
  }

  private async doLoad(r: PluginRecord, chain: string[]): Promise<void> {
    if (r.status === 'active' || r.status === 'quarantined') return;
    this.setStatus(r, 'loading');
    let inst: PluginInstance;
    try {
      inst = await this.startVerified(r, chain);
      if (inst.violatedWith !== undefined) await this.refuseViolated(inst, r);
    } catch (e) {
      // The host closed while this start waited in line: not a failure of the plugin; close() unloads it.
      if (this.closed && e instanceof PluginStateError) throw e;
      const err = e instanceof PluginLoadError ? e : new PluginLoadError(r.name, 'spawn', e);
      // The trust list, compatibility or permissions said no: 'refused'; anything else failed.
      const refused = err.stage === 'verify' || err.stage === 'permissions' || err.stage === 'compat';
      const reason: PluginReason = { kind: refused ? 'refused' : 'load-failed', message: err.message, stage: err.stage, code: errorFields(err.cause).code };
      this.log('warning', 'load', r, err.message, { stage: err.stage, code: reason.code });
      // A limit or policy broken while it loaded is a violation like any other: audited with its
      // kind, counted toward quarantine, restarted by the policy.
      if (err.violation !== undefined) recordViolation(this.core, r, err.violation, undefined);
      else this.setStatus(r, 'failed', reason);
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
      if (r.status === 'idle' && this.settings.loading === 'lazy') return;
      return this.doLoad(r, []);
    }
    this.setStatus(r, 'reloading');
    let inst: PluginInstance;
    try {
      inst = await this.startVerified(r, []);
      if (inst.violatedWith !== undefined) await this.refuseViolated(inst, r);
    } catch (e) {
      if (this.closed && e instanceof PluginStateError) throw e; // refused in line by close(), which unloads the old one
      const err = e instanceof PluginLoadError ? e : new PluginLoadError(r.name, 'spawn', e);
      this.log('warning', 'reload', r, `reload failed, ${old.version} keeps serving: ${err.message}`, { stage: err.stage });
      // The new version broke a limit: audited and counted; the old one serves on, unless that
      // count quarantines the plugin.
      if (err.violation !== undefined && recordReloadViolation(this.core, r, err.violation, r.manifest?.version)) throw err;
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
    await old.stop({ drainMs: this.settings.drainTimeoutMs, shutdownMs: this.settings.shutdownTimeoutMs });
  }

  private async doUnload(r: PluginRecord, reason: PluginReason): Promise<void> {
    // A load that failed with a violation while this unload waited behind it armed a restart: an
    // unload wants none, whatever came first.
    clearRestart(r);
    const inst = r.instance;
    if (inst === undefined) {
      if (r.status !== 'quarantined' && r.status !== 'failed') this.setStatus(r, 'unloaded', reason);
      return;
    }
    this.setStatus(r, 'unloading', reason);
    this.registry.removeOwner(r.name);
    if (inst.busMember !== undefined) this.busCore.detach(inst.busMember);
    r.instance = undefined;
    inst.retired = true;
    await inst.stop({ drainMs: this.settings.drainTimeoutMs, shutdownMs: this.settings.shutdownTimeoutMs });
    this.setStatus(r, 'unloaded', reason);
    this.log(reason.kind === 'host-shutdown' || reason.kind === 'unloaded' ? 'info' : 'notice', 'unload', r, reason.message, { kind: reason.kind });
  }

  // ---------------------------------------------------------------- status and audit

  private setStatus(r: PluginRecord, status: PluginStatus, reason?: PluginReason): void {
    const previous = r.status;
    r.status = status;
    if (reason !== undefined) r.reason = reason;
    else if (status === 'loading' || status === 'active') r.reason = undefined;
    const ev: PluginStatusEvent = { plugin: r.name, status, previous, version: versionOf(r), reason, at: Date.now() };
    this.emit('status', ev);
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

  private log(severity: AuditSeverity, event: string, r: PluginRecord | undefined, reason: string, details?: Record<string, unknown>): void {
    this.audit.append(auditEvent(severity, event, r, reason, details));
  }
}
