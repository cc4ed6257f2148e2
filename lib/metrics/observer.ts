/**
 * PluginObserver: what a host's plugins use and do, for metrics, usage history, early warnings and
 * the dashboard.
 *
 * Nothing here runs per plugin on a timer. Counters of calls, errors and latency are bumped where the
 * host already is (a hook result, a host method call); resource figures are read from the sandboxes'
 * cgroups when asked (a scrape, usage()) and by ONE host-wide sampling timer (unref'd) that fills the
 * bounded history. Reading cgroup files does not wake the plugins' runners.
 */
import { InvalidOptionError } from '../errors';
import type { AuditEvent } from '../audit';
import type { HookResult } from '../hooks';
import type { LimitStats, StatFields } from '../limits';
import type { Stop } from '../limits/events';
import { PluginHistory, TimeRing, type HistorySeries, type HistoryView } from './history';
import { LatencyHistogram } from './latency';
import { TokenBucket } from '../token-bucket';
import { DEFAULT_THRESHOLDS, PRESSURE_CLEAR_SHARE, PRESSURE_EVENTS, watchMemoryThreshold, type Thresholds } from './pressure';
import { registerMetrics, type PromRegistryLike } from './prometheus';
import type { HostUsage, ObservedInstance, ObservedStatus, ObserverSource, PluginUsage, PressureKind } from './types';

export interface ObserverOptions {
  /** History resolution: one sample of every plugin this often. Default 5000 ms; 0 turns history and sampled warnings off. */
  intervalMs?: number;
  /** Samples kept per plugin. Default 120 (10 minutes at 5 s). */
  points?: number;
  thresholds?: Partial<Thresholds>;
}

const DAY_MS = 86_400_000;
const MAX_RECENT = 100_000;

// The cgroup counters read (see counters()): every field is a file read per plugin, a few µs each;
// the event counters (oom kills, refused forks) reach the host through the limits' own watches.
const CPU_FIELDS: StatFields = new Set(['cpuUsageNs', 'cpuThrottledNs']);
const MEMORY_PIDS_FIELDS: StatFields = new Set(['memoryCurrent', 'memoryPeak', 'pidsCurrent']);
const MEMORY_FIELD: StatFields = new Set(['memoryCurrent']);
/** Plugins per turn of the event loop in usageInTurns(). */
const USAGE_BATCH = 100;
/** Reads in a row that may carry an idle sandbox's memory and pids forward before they are read again. */
const MAX_CARRIED_READS = 11;

interface Meter {
  name: string;
  hook: LatencyHistogram;
  /** This interval's hook latencies, for the history's p50/p99. */
  window: LatencyHistogram;
  method: LatencyHistogram;
  calls: number;
  errors: number;
  timeouts: number;
  methodCalls: number;
  methodErrors: number;
  violations: Map<string, number>;
  lastViolation: { time: string; kind: string; message: string } | undefined;
  /** CPU seconds of the instances that ended. */
  cpuBase: number;
  throttledBase: number;
  mibSeconds: number;
  current: { pid: number; inst: ObservedInstance } | undefined;
  memWatch: Stop | undefined;
  prev: { at: number; cpuNs: number; throttledNs: number; calls: number; errors: number } | undefined;
  /** The running instance's last full read of its counters, and how many reads carried it forward since. */
  last: { stats: LimitStats; carried: number } | undefined;
  history: PluginHistory;
  pressure: Set<PressureKind>;
  /**
   * Per kind: the pressure events this plugin may still cause (PRESSURE_EVENTS), and the episodes
   * not told since the last. A kind of its own each, so that episodes of one (memory swinging)
   * do not hold back the first report of another (its error rate).
   */
  pressureTold: Map<PressureKind, { events: TokenBucket; suppressed: number }>;
  throttledStreak: number;
}

export class PluginObserver {
  readonly intervalMs: number;
  readonly points: number;
  readonly thresholds: Thresholds;
  private readonly meters = new Map<string, Meter>();
  private readonly ring: TimeRing;
  private timer: NodeJS.Timeout | undefined;
  private readonly loadStarted = new Map<string, number>();
  /** Load durations in seconds (every plugin; the host-level histogram). */
  readonly loadDurations = new LatencyHistogram();
  loads = 0;
  loadFailures = 0;
  private readonly recentViolations: number[] = [];
  private readonly recentCritical: number[] = [];
  private readonly unsubscribe: () => void;
  private readonly onStatus = (e: ObservedStatus): void => this.status(e);
  private closed = false;
  /** Sampling ticks run, and the cpu time (user + system, ms) they took (for the scale benchmark). */
  readonly cost = { ticks: 0, ms: 0 };

  constructor(private readonly source: ObserverSource, options: ObserverOptions = {}) {
    const interval = options.intervalMs ?? 5000;
    const points = options.points ?? 120;
    if (!Number.isSafeInteger(interval) || interval < 0 || (interval > 0 && interval < 100)) throw new InvalidOptionError('observe.intervalMs', 'must be 0 (off) or at least 100 ms');
    if (!Number.isSafeInteger(points) || points < 2 || points > 100_000) throw new InvalidOptionError('observe.points', 'must be a whole number from 2 to 100000');
    this.thresholds = { ...DEFAULT_THRESHOLDS, ...(options.thresholds ?? {}) };
    for (const [k, v] of Object.entries(this.thresholds)) {
      if (typeof v !== 'number' || !(v > 0)) throw new InvalidOptionError(`observe.thresholds.${k}`, 'must be a positive number');
    }
    this.intervalMs = interval;
    this.points = points;
    this.ring = new TimeRing(points);
    this.unsubscribe = source.audit.subscribe((e) => this.audited(e));
    source.on('status', this.onStatus);
    if (interval > 0) {
      this.timer = setInterval(() => this.sample(), interval);
      this.timer.unref();
    }
  }

  // ------------------------------------------------------------ what the host tells

  /** A hook invocation finished: counts and latency of each plugin handler in it. */
  hookResult(r: HookResult): void {
    for (const o of r.outcomes) {
      if (o.kind !== 'plugin') continue;
      const m = this.meter(o.owner);
      m.calls++;
      if (!o.ok) m.errors++;
      if (o.timedOut) m.timeouts++;
      m.hook.observe(o.ms / 1000);
      m.window.observe(o.ms / 1000);
    }
  }

  /** Runs a host method called by `plugin`, timing it (sync or async). */
  timeCall<T>(plugin: string, fn: () => T): T {
    const m = this.meter(plugin);
    const start = performance.now();
    const done = (ok: boolean): void => {
      m.methodCalls++;
      if (!ok) m.methodErrors++;
      m.method.observe((performance.now() - start) / 1000);
    };
    let out: T;
    try {
      out = fn();
    } catch (e) {
      done(false);
      throw e;
    }
    if (out instanceof Promise) {
      out.then(() => done(true), () => done(false));
    } else {
      done(true);
    }
    return out;
  }

  private status(e: ObservedStatus): void {
    if (e.status === 'loading' || e.status === 'reloading') this.loadStarted.set(e.plugin, e.at);
    const began = this.loadStarted.get(e.plugin);
    if (began !== undefined && (e.previous === 'loading' || e.previous === 'reloading') && e.status !== e.previous) {
      this.loadStarted.delete(e.plugin);
      // A reload that failed leaves the old version active, saying so in the reason.
      if (e.status === 'active' && e.reason?.kind !== 'load-failed') {
        this.loads++;
        this.loadDurations.observe((e.at - began) / 1000);
      } else {
        this.loadFailures++;
      }
    }
    // A new instance arms its kernel watch now; one that ended is accounted for now.
    this.track(this.meter(e.plugin));
  }

  private audited(e: AuditEvent): void {
    const now = Date.parse(e.time);
    if (e.severity === 'critical') pushRecent(this.recentCritical, now);
    if (e.event !== 'violation' || e.plugin === undefined) return;
    pushRecent(this.recentViolations, now);
    const m = this.meter(e.plugin);
    const kind = typeof e.details?.kind === 'string' ? e.details.kind : 'unknown';
    m.violations.set(kind, (m.violations.get(kind) ?? 0) + 1);
    m.lastViolation = { time: e.time, kind, message: e.reason ?? '' };
  }

  // ------------------------------------------------------------ instances and resources

  private meter(name: string): Meter {
    let m = this.meters.get(name);
    if (m === undefined) {
      m = {
        name, hook: new LatencyHistogram(), window: new LatencyHistogram(), method: new LatencyHistogram(),
        calls: 0, errors: 0, timeouts: 0, methodCalls: 0, methodErrors: 0, violations: new Map(), lastViolation: undefined,
        cpuBase: 0, throttledBase: 0, mibSeconds: 0, current: undefined, memWatch: undefined, prev: undefined, last: undefined,
        history: new PluginHistory(this.points), pressure: new Set(), throttledStreak: 0,
        pressureTold: new Map(),
      };
      this.meters.set(name, m);
    }
    return m;
  }

  /** Follows the plugin's running instance: the counters of one that ended are added to the totals. */
  private track(m: Meter): ObservedInstance | undefined {
    const inst = this.closed ? undefined : this.source.instance(m.name);
    if (inst?.pid === m.current?.pid) return inst;
    if (m.current !== undefined) {
      const last = m.current.inst.stats(CPU_FIELDS);
      m.cpuBase += (last?.cpu.usageNs ?? 0) / 1e9;
      m.throttledBase += (last?.cpu.throttledNs ?? 0) / 1e9;
      m.memWatch?.();
      m.memWatch = undefined;
      m.prev = undefined;
      m.last = undefined;
      m.throttledStreak = 0;
      m.pressure.clear();
    }
    m.current = inst === undefined ? undefined : { pid: inst.pid, inst };
    const limit = inst?.limits.memory;
    if (inst !== undefined && limit !== undefined && limit > 0) {
      const threshold = Math.floor(limit * this.thresholds.memory);
      m.memWatch = watchMemoryThreshold(
        inst.pid,
        // The edge that changes the episode: up through the threshold, or down through its end.
        () => (m.pressure.has('memory') ? threshold * PRESSURE_CLEAR_SHARE : threshold),
        () => inst.stats(MEMORY_FIELD)?.memory.current,
        (usage) => {
          if (m.current?.inst === inst) this.memoryReading(m, usage, limit, 'kernel', Date.now());
        },
      );
    }
    return inst;
  }

  /**
   * One sample of every plugin seen so far (a plugin gets its meter with its first status event)
   * into the history; the sampled soft thresholds.
   */
  sample(now = Date.now()): void {
    const c0 = process.cpuUsage();
    const slot = this.ring.advance(now);
    for (const m of this.meters.values()) {
      const inst = this.track(m);
      if (inst === undefined) {
        m.history.write(slot, undefined);
        m.window.reset();
        continue;
      }
      m.history.write(slot, this.sampleOne(m, inst, this.counters(m, inst), now));
      m.window.reset();
    }
    this.cost.ticks++;
    const c = process.cpuUsage(c0);
    this.cost.ms += (c.user + c.system) / 1000;
  }

  /**
   * The sandbox's counters with as few cgroup reads as the answer needs (a host samples every plugin
   * every few seconds, and a thousand plugins made it thousands of reads): cpu first. When cpu has not
   * moved since the last read, nothing in the sandbox ran, so nothing in it grew its memory, forked
   * or exited: memory, its peak and pids are carried forward from that read. Memory can still move
   * under an idle sandbox (the kernel reclaims its cache; a page of the ring it shares with the host,
   * swapped out and touched by the host, is charged back to it), so after MAX_CARRIED_READS reads in
   * a row everything is read again: a carried figure is never more than that many reads old. The
   * limits themselves are the kernel's and do not depend on any of this.
   */
  private counters(m: Meter, inst: ObservedInstance): LimitStats | null {
    const cpu = inst.stats(CPU_FIELDS);
    if (cpu === null) return null;
    const last = m.last;
    if (last !== undefined && last.carried < MAX_CARRIED_READS && cpu.cpu.usageNs !== undefined && cpu.cpu.usageNs === last.stats.cpu.usageNs) {
      last.carried++;
      return { ...last.stats, cpu: cpu.cpu, at: cpu.at };
    }
    const rest = inst.stats(MEMORY_PIDS_FIELDS);
    const stats = rest === null ? cpu : { ...rest, cpu: cpu.cpu };
    m.last = { stats, carried: 0 };
    return stats;
  }

  private sampleOne(m: Meter, inst: ObservedInstance, s: LimitStats | null, now: number): Record<HistorySeries, number> {
    const cpuNs = s?.cpu.usageNs ?? 0;
    const throttledNs = s?.cpu.throttledNs ?? 0;
    const mem = s?.memory.current;
    const limit = s?.memory.limit ?? inst.limits.memory;
    const prev = m.prev;
    const dt = prev === undefined ? 0 : (now - prev.at) / 1000;
    if (mem !== undefined && dt > 0) m.mibSeconds += (mem / 1048576) * dt;
    const out: Record<HistorySeries, number> = {
      cpu: dt > 0 ? (cpuNs - prev!.cpuNs) / 1e9 / dt : NaN,
      memory: mem ?? NaN,
      memoryLimit: limit ?? NaN,
      pids: s?.pids.current ?? NaN,
      calls: dt > 0 ? (m.calls - prev!.calls) / dt : NaN,
      errors: dt > 0 ? (m.errors - prev!.errors) / dt : NaN,
      p50: m.window.quantile(0.5) * 1000,
      p99: m.window.quantile(0.99) * 1000,
    };
    // Memory: the kernel's notification where there is one, and this read.
    if (mem !== undefined && limit !== undefined && limit > 0) this.memoryReading(m, mem, limit, 'sample', now);
    if (dt > 0) {
      const throttled = (throttledNs - prev!.throttledNs) / 1e9 / dt;
      m.throttledStreak = throttled >= this.thresholds.cpuThrottled ? m.throttledStreak + 1 : 0;
      if (m.throttledStreak >= this.thresholds.cpuThrottledSamples) this.raise(m, 'cpu-throttled', throttled, this.thresholds.cpuThrottled, 'sample', now);
      else if (m.throttledStreak === 0) m.pressure.delete('cpu-throttled');
      const calls = m.calls - prev!.calls;
      const rate = calls > 0 ? (m.errors - prev!.errors) / calls : 0;
      if (calls >= this.thresholds.errorMinCalls && rate >= this.thresholds.errorRate) this.raise(m, 'errors', rate, this.thresholds.errorRate, 'sample', now);
      else if (rate < this.thresholds.errorRate / 2) m.pressure.delete('errors');
    }
    m.prev = { at: now, cpuNs, throttledNs, calls: m.calls, errors: m.errors };
    return out;
  }

  /**
   * One reading of a plugin's memory, from the kernel's notice or the sample: the one rule for both.
   * An episode starts at the threshold and ends under PRESSURE_CLEAR_SHARE of it.
   */
  private memoryReading(m: Meter, usage: number, limit: number, source: 'kernel' | 'sample', now: number): void {
    const threshold = Math.floor(limit * this.thresholds.memory);
    if (usage >= threshold) this.raise(m, 'memory', usage, threshold, source, now, limit);
    else if (usage < threshold * PRESSURE_CLEAR_SHARE) m.pressure.delete('memory');
  }

  /**
   * A soft threshold crossed: once per episode, a 'pressure' event and a `warning` audit line, as
   * many as the plugin's PRESSURE_EVENTS bucket of this kind allows. The episode is counted (usage().pressure,
   * the gauge) either way; one not told is counted into the next event's `suppressed`.
   */
  private raise(m: Meter, kind: PressureKind, value: number, threshold: number, source: 'kernel' | 'sample', now: number, limit?: number): void {
    if (m.pressure.has(kind) || this.closed) return;
    m.pressure.add(kind);
    let told = m.pressureTold.get(kind);
    if (told === undefined) {
      told = { events: new TokenBucket(PRESSURE_EVENTS.perMinute / 60, PRESSURE_EVENTS.burst, now), suppressed: 0 };
      m.pressureTold.set(kind, told);
    }
    if (!told.events.tryTake(now)) {
      told.suppressed++;
      return;
    }
    const suppressed = told.suppressed;
    told.suppressed = 0;
    const message =
      kind === 'memory' ? `memory at ${mib(value)} of its ${mib(limit!)} limit (warning at ${Math.round(this.thresholds.memory * 100)}%)`
      : kind === 'cpu-throttled' ? `cpu throttled ${Math.round(value * 100)}% of the time for ${this.thresholds.cpuThrottledSamples} samples in a row`
      : `${Math.round(value * 100)}% of its hook calls failed in the last ${this.intervalMs} ms`;
    const text = suppressed > 0 ? `${message}; ${suppressed} earlier episode${suppressed === 1 ? '' : 's'} not reported (at most ${PRESSURE_EVENTS.perMinute} a minute after ${PRESSURE_EVENTS.burst})` : message;
    const ev = { plugin: m.name, kind, value, threshold, ...(limit !== undefined ? { limit } : {}), source, message: text, at: now, ...(suppressed > 0 ? { suppressed } : {}) };
    const version = m.current?.inst.version;
    this.source.audit.append({ severity: 'warning', event: 'pressure', plugin: m.name, ...(version !== undefined ? { version } : {}), reason: text, details: { kind, value, threshold, limit, source, ...(suppressed > 0 ? { suppressed } : {}) } });
    this.source.emit('pressure', ev);
  }

  // ------------------------------------------------------------ what is asked

  /**
   * Adds the host's series to a prom-client Registry (see ./prometheus). prom-client is an optional
   * peer dependency: a host that never calls this never loads it.
   */
  register(registry: PromRegistryLike): void {
    registerMetrics(registry, this);
  }

  /** A JSON snapshot of every plugin's usage and the host's counts. Reads the cgroups now. */
  usage(): HostUsage {
    const steps = this.usageSteps();
    for (;;) {
      const r = steps.next();
      if (r.done === true) return r.value;
    }
  }

  /**
   * The same snapshot, built USAGE_BATCH plugins per turn of the event loop: what a metrics scrape
   * reads (a thousand plugins held the host's thread ~40 ms for it in one piece).
   */
  async usageInTurns(): Promise<HostUsage> {
    const steps = this.usageSteps();
    for (;;) {
      const r = steps.next();
      if (r.done === true) return r.value;
      await new Promise<void>((resolve) => setImmediate(resolve));
    }
  }

  /** Builds usage(), pausing (a yield) after every USAGE_BATCH plugins. */
  private *usageSteps(): Generator<void, HostUsage> {
    const now = Date.now();
    const plugins: PluginUsage[] = [];
    const byStatus: Record<string, number> = {};
    let sandboxes = 0;
    let done = 0;
    for (const p of this.source.plugins()) {
      if (done > 0 && done % USAGE_BATCH === 0) yield;
      done++;
      byStatus[p.status] = (byStatus[p.status] ?? 0) + 1;
      const m = this.meter(p.name);
      const inst = this.track(m);
      if (inst !== undefined) sandboxes++;
      const s = inst === undefined ? null : this.counters(m, inst);
      plugins.push({
        name: p.name, version: p.version, status: p.status, reason: p.reason?.message, pid: p.pid, warm: p.warm, hooks: p.hooks, restarts: p.restarts,
        publisher: inst?.publisher, trust: inst?.trust, permissions: inst?.permissions ?? [],
        uptimeSeconds: inst === undefined ? undefined : (now - inst.startedAt) / 1000,
        cpu: {
          seconds: m.cpuBase + (s?.cpu.usageNs ?? 0) / 1e9,
          throttledSeconds: m.throttledBase + (s?.cpu.throttledNs ?? 0) / 1e9,
          cores: finite(m.history.last(this.ring, 'cpu')),
          limitCores: s?.cpu.limitCores ?? inst?.limits.cpu,
        },
        memory: { bytes: s?.memory.current, peakBytes: s?.memory.peak, limitBytes: s?.memory.limit ?? inst?.limits.memory, mibSeconds: m.mibSeconds },
        pids: { current: s?.pids.current, limit: s?.pids.limit ?? inst?.limits.pids },
        calls: { total: m.calls, errors: m.errors, timeouts: m.timeouts, p50Ms: finite(m.history.last(this.ring, 'p50')), p99Ms: finite(m.history.last(this.ring, 'p99')) },
        hostCalls: { total: m.methodCalls, errors: m.methodErrors },
        violations: Object.fromEntries(m.violations),
        lastViolation: m.lastViolation,
        pressure: [...m.pressure],
      });
    }
    return {
      at: now,
      plugins,
      host: {
        sandboxes, byStatus, pool: this.source.pool(), loads: this.loads, loadFailures: this.loadFailures,
        violations24h: countSince(this.recentViolations, now - DAY_MS), critical24h: countSince(this.recentCritical, now - DAY_MS),
      },
    };
  }

  /** The bounded history of one plugin (undefined for a name never seen). */
  history(plugin: string): HistoryView | undefined {
    const m = this.meters.get(plugin);
    return m === undefined ? undefined : m.history.view(this.ring, this.intervalMs);
  }

  /** Latency histograms per plugin, for the Prometheus adapter. */
  latencies(): Array<{ plugin: string; hook: LatencyHistogram; method: LatencyHistogram }> {
    return [...this.meters.values()].map((m) => ({ plugin: m.name, hook: m.hook, method: m.method }));
  }

  /** Stops the timer and the kernel watches. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
    this.unsubscribe();
    this.source.off('status', this.onStatus);
    for (const m of this.meters.values()) {
      m.memWatch?.();
      m.memWatch = undefined;
    }
  }
}

function finite(v: number): number | undefined {
  return Number.isFinite(v) ? v : undefined;
}

function mib(bytes: number): string {
  return `${(bytes / 1048576).toFixed(1)} MiB`;
}

function pushRecent(list: number[], t: number): void {
  list.push(t);
  if (list.length > MAX_RECENT) list.splice(0, list.length - MAX_RECENT);
}

function countSince(list: number[], since: number): number {
  while (list.length > 0 && list[0]! < since) list.shift();
  return list.length;
}
