/**
 * The view of a PluginHost that lib/metrics observes (its ObserverSource): the plugins, each running
 * instance as plain data with its cgroup counters, the pool, the audit log and the host's events.
 */
import type { ObservedInstance, ObserverSource } from '../metrics';
import type { AuditLog } from '../audit';
import type { PluginInfo } from './record';
import type { PluginInstance } from './instance';
import { permissionToString } from './permissions';

export function observedHost(
  host: {
    plugins(): PluginInfo[];
    readonly audit: AuditLog;
    on(event: string, listener: (...args: any[]) => void): unknown;
    off(event: string, listener: (...args: any[]) => void): unknown;
    emit(event: string, ...args: unknown[]): boolean;
  },
  instanceOf: (name: string) => PluginInstance | undefined,
  pool: () => { idle: number; starting: number; warm: number; cold: number } | undefined,
): ObserverSource {
  const views = new WeakMap<PluginInstance, ObservedInstance>();
  return {
    plugins: () => host.plugins(),
    instance: (name) => {
      const inst = instanceOf(name);
      if (inst === undefined) return undefined;
      // Asked on every sample and scrape: one view per instance.
      let view = views.get(inst);
      if (view === undefined) views.set(inst, (view = observedInstance(inst)));
      return view;
    },
    pool,
    audit: host.audit,
    on: (event, listener) => host.on(event, listener),
    off: (event, listener) => host.off(event, listener),
    emit: (event, e) => host.emit(event, e),
  };
}

function observedInstance(inst: PluginInstance): ObservedInstance {
  // The runner's sandbox (cold or pooled): its stats() reads the cgroup's counters.
  const proc = inst.proc.process;
  return {
    pid: inst.pid,
    version: inst.version,
    startedAt: inst.startedAt,
    publisher: inst.info.trust.publisher,
    trust: inst.info.trust.trust,
    permissions: inst.info.permissions.map(permissionToString),
    limits: inst.info.limits,
    stats: (only) => (typeof proc.stats === 'function' ? proc.stats(only) : null),
  };
}
