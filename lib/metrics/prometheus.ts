/**
 * Prometheus metrics through prom-client, an optional peer dependency: nothing here requires it.
 * The caller hands in its prom-client Registry; each family is registered as an object with a name
 * and an async get(), the contract the Registry holds its own Gauge and Counter to (it calls get()
 * on every scrape, for the text format and for getMetricsAsJSON alike). So every value is computed
 * at scrape time from the sandboxes' cgroups and the observer's counters, with no timer and no
 * copy kept in prom-client; histograms are served from the observer's fixed buckets, which
 * prom-client's Histogram (one observe() per value) could not take over.
 *
 * Names follow cAdvisor's container_* series; the only label is `plugin` (plus `kind` for
 * violations, the info labels, and `le` for histogram buckets): no pid, no request.
 */
import { InvalidOptionError } from '../errors';
import { LATENCY_BUCKETS, type LatencyHistogram } from './latency';
import type { HostUsage } from './types';

type Labels = Readonly<Record<string, string | number>>;
interface Value {
  value: number;
  labels: Labels;
  sharedLabels: Labels;
  metricName?: string;
}

/**
 * Every value carries this one object as its sharedLabels: prom-client caches the formatting of a
 * sharedLabels object by identity, and gives a value without one a fresh {} that it formats and
 * inserts into a WeakMap, per line: with a thousand plugins (29,000 lines) that and its garbage
 * were a third of a scrape.
 */
const NO_SHARED: Labels = Object.freeze({});
interface Family {
  name: string;
  help: string;
  type: 'gauge' | 'counter' | 'histogram';
  aggregator: 'sum';
  get(): Promise<{ name: string; help: string; type: string; aggregator: 'sum'; values: Value[] }>;
  reset(): void;
}

/** The part of prom-client's Registry this uses. */
export interface PromRegistryLike {
  registerMetric(metric: never): void;
}

export const METRIC_NAMES = [
  'warden_plugin_cpu_seconds_total', 'warden_plugin_cpu_throttled_seconds_total', 'warden_plugin_memory_working_set_bytes',
  'warden_plugin_memory_limit_bytes', 'warden_plugin_memory_mib_seconds_total', 'warden_plugin_pids', 'warden_plugin_restarts_total',
  'warden_plugin_violations_total', 'warden_plugin_up', 'warden_plugin_info', 'warden_plugin_start_time_seconds', 'warden_plugin_calls_total',
  'warden_plugin_call_errors_total', 'warden_plugin_hook_duration_seconds', 'warden_plugin_host_calls_total', 'warden_plugin_host_call_errors_total',
  'warden_plugin_host_call_duration_seconds', 'warden_plugin_pressure', 'warden_host_sandboxes', 'warden_host_plugins',
  'warden_host_warm_pool_idle', 'warden_host_plugin_loads_total', 'warden_host_plugin_load_failures_total', 'warden_host_plugin_load_duration_seconds',
] as const;

/** What the series are read from at scrape time: the observer (observer.ts), seen only through this. */
export interface MetricsSource {
  /** The usage snapshot, built over a few turns of the event loop. */
  usageInTurns(): Promise<HostUsage>;
  latencies(): Array<{ plugin: string; hook: LatencyHistogram; method: LatencyHistogram }>;
  readonly loads: number;
  readonly loadFailures: number;
  readonly loadDurations: LatencyHistogram;
}

export function registerMetrics(registry: PromRegistryLike, observer: MetricsSource): void {
  if (registry === null || typeof registry !== 'object' || typeof (registry as { registerMetric?: unknown }).registerMetric !== 'function') {
    throw new InvalidOptionError('registry', "must be a prom-client Registry (require('prom-client').register or new Registry())");
  }
  // One snapshot per scrape (the Registry calls every family's get() in the same turn), built over
  // turns of the event loop. prom-client formats a family as soon as its get() resolves, so each
  // family is then handed its values in a turn of its own: a thousand plugins make ~29,000 lines,
  // which held the host's thread ~0.1 s and more when built and formatted in one piece.
  // The label objects of each plugin are made once and kept while the plugin is in the snapshots
  // (frozen: they are handed out again in every scrape).
  let scrape: { chain: Promise<HostUsage> } | undefined;
  let labels = new Map<string, PluginLabels>();
  let previous = labels;
  const inTurn = (): Promise<HostUsage> => {
    if (scrape === undefined) {
      const current = {
        chain: observer.usageInTurns().then((u) => {
          previous = labels;
          labels = new Map();
          return u;
        }),
      };
      scrape = current;
      setImmediate(() => {
        if (scrape === current) scrape = undefined;
      });
    }
    const mine = scrape.chain.then((u) => new Promise<HostUsage>((resolve) => setImmediate(() => resolve(u))));
    scrape.chain = mine;
    return mine;
  };
  const labelsOf = (plugin: string): PluginLabels => {
    let l = labels.get(plugin);
    if (l === undefined) {
      l = previous.get(plugin) ?? pluginLabels(plugin);
      labels.set(plugin, l);
    }
    return l;
  };
  const fam = (name: (typeof METRIC_NAMES)[number], help: string, type: Family['type'], values: (u: HostUsage) => Value[]): void => {
    const f: Family = {
      name, help, type, aggregator: 'sum',
      get: async () => {
        const u = await inTurn();
        return { name, help, type, aggregator: 'sum', values: values(u) };
      },
      reset: () => undefined, // computed on each scrape: there is nothing stored to reset
    };
    registry.registerMetric(f as never);
  };
  const per = (pick: (p: HostUsage['plugins'][number]) => number | undefined): ((u: HostUsage) => Value[]) => (u) =>
    u.plugins.flatMap((p) => {
      const v = pick(p);
      return v === undefined || !Number.isFinite(v) ? [] : [{ value: v, labels: labelsOf(p.name).plugin, sharedLabels: NO_SHARED }];
    });

  fam('warden_plugin_cpu_seconds_total', 'CPU time used by the plugin\'s sandboxes (all its instances), seconds', 'counter', per((p) => p.cpu.seconds));
  fam('warden_plugin_cpu_throttled_seconds_total', 'Time the plugin\'s sandbox was throttled by its cpu limit, seconds', 'counter', per((p) => p.cpu.throttledSeconds));
  fam('warden_plugin_memory_working_set_bytes', 'Memory the plugin\'s sandbox cgroup uses now, bytes', 'gauge', per((p) => p.memory.bytes));
  fam('warden_plugin_memory_limit_bytes', 'The plugin\'s memory limit, bytes', 'gauge', per((p) => (p.pid === undefined ? undefined : p.memory.limitBytes)));
  fam('warden_plugin_memory_mib_seconds_total', 'Memory held over time, MiB-seconds (cost accounting, sampled each history interval)', 'counter', per((p) => p.memory.mibSeconds));
  fam('warden_plugin_pids', 'Processes and threads in the plugin\'s sandbox', 'gauge', per((p) => p.pids.current));
  fam('warden_plugin_restarts_total', 'Restarts of the plugin after a violation', 'counter', per((p) => p.restarts));
  fam('warden_plugin_violations_total', 'Violations of the plugin, by kind', 'counter', (u) =>
    u.plugins.flatMap((p) => Object.entries(p.violations).map(([kind, n]) => ({ value: n, labels: { plugin: p.name, kind }, sharedLabels: NO_SHARED }))));
  fam('warden_plugin_up', '1 while the plugin is active', 'gauge', per((p) => (p.status === 'active' ? 1 : 0)));
  fam('warden_plugin_info', 'The plugin\'s version, publisher and trust level (value 1)', 'gauge', (u) =>
    u.plugins.map((p) => ({ value: 1, labels: { plugin: p.name, version: p.version ?? '', publisher: p.publisher ?? '', trust: p.trust ?? '' }, sharedLabels: NO_SHARED })));
  fam('warden_plugin_start_time_seconds', 'When the running instance started, seconds since the epoch', 'gauge', (u) =>
    u.plugins.flatMap((p) => (p.uptimeSeconds === undefined ? [] : [{ value: u.at / 1000 - p.uptimeSeconds, labels: labelsOf(p.name).plugin, sharedLabels: NO_SHARED }])));
  fam('warden_plugin_calls_total', 'Hook calls into the plugin', 'counter', per((p) => p.calls.total));
  fam('warden_plugin_call_errors_total', 'Hook calls into the plugin that failed or timed out', 'counter', per((p) => p.calls.errors));
  fam('warden_plugin_host_calls_total', 'Calls of host methods made by the plugin', 'counter', per((p) => p.hostCalls.total));
  fam('warden_plugin_host_call_errors_total', 'Calls of host methods made by the plugin that failed', 'counter', per((p) => p.hostCalls.errors));
  fam('warden_plugin_pressure', 'Soft thresholds crossed now (memory, cpu-throttled, errors), one series per kind crossed', 'gauge', (u) =>
    u.plugins.flatMap((p) => p.pressure.map((kind) => ({ value: 1, labels: { plugin: p.name, kind }, sharedLabels: NO_SHARED }))));
  const hist = (name: 'warden_plugin_hook_duration_seconds' | 'warden_plugin_host_call_duration_seconds', help: string, pick: 'hook' | 'method'): void =>
    // A plugin with no call yet has no series (most plugins never call a host method).
    fam(name, help, 'histogram', () =>
      observer.latencies().flatMap((l) => (l[pick].count === 0 ? [] : histogramValues(name, l[pick], labelsOf(l.plugin)))));
  hist('warden_plugin_hook_duration_seconds', 'Hook call duration into the plugin, seconds', 'hook');
  hist('warden_plugin_host_call_duration_seconds', 'Host method call duration for the plugin, seconds', 'method');

  const host = (value: number, l: Labels = NO_SHARED): Value => ({ value, labels: l, sharedLabels: NO_SHARED });
  fam('warden_host_sandboxes', 'Running plugin sandboxes', 'gauge', (u) => [host(u.host.sandboxes)]);
  fam('warden_host_plugins', 'Plugins known to the host, by status', 'gauge', (u) =>
    Object.entries(u.host.byStatus).map(([status, n]) => host(n, { status })));
  fam('warden_host_warm_pool_idle', 'Warm runners ready in the pool', 'gauge', (u) =>
    u.host.pool === undefined ? [] : [host(u.host.pool.idle)]);
  fam('warden_host_plugin_loads_total', 'Plugin loads and reloads that succeeded', 'counter', () => [host(observer.loads)]);
  fam('warden_host_plugin_load_failures_total', 'Plugin loads and reloads that failed', 'counter', () => [host(observer.loadFailures)]);
  fam('warden_host_plugin_load_duration_seconds', 'Plugin load duration (verify, spawn, handshake), seconds', 'histogram', () =>
    histogramValues('warden_host_plugin_load_duration_seconds', observer.loadDurations, HOST_LABELS));
}

/** A plugin's label objects: `{ plugin }`, and the same with each bucket's `le`. */
interface PluginLabels {
  plugin: Labels;
  buckets: readonly Labels[];
}

function pluginLabels(plugin: string): PluginLabels {
  return { plugin: Object.freeze({ plugin }), buckets: bucketLabels({ plugin }) };
}

function bucketLabels(base: Labels): readonly Labels[] {
  return Object.freeze([...LATENCY_BUCKETS, '+Inf' as const].map((le) => Object.freeze({ ...base, le })));
}

const HOST_LABELS: PluginLabels = { plugin: NO_SHARED, buckets: bucketLabels({}) };

function histogramValues(name: string, h: LatencyHistogram, labels: PluginLabels): Value[] {
  const bucket = `${name}_bucket`;
  const out: Value[] = h.cumulative().map((v, i) => ({ value: v, labels: labels.buckets[i]!, sharedLabels: NO_SHARED, metricName: bucket }));
  out.push({ value: h.sum, labels: labels.plugin, sharedLabels: NO_SHARED, metricName: `${name}_sum` });
  out.push({ value: h.count, labels: labels.plugin, sharedLabels: NO_SHARED, metricName: `${name}_count` });
  return out;
}
