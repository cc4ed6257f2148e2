/**
 * What the observer needs of a plugin host, as plain shapes: metrics sit beside plugins/ and are
 * used by it, never using it, so the host hands them this view (lib/plugins/observe.ts builds it).
 */
import type { AuditEvent, AuditEventInput, AuditFilter } from '../audit';
import type { LimitStats, StatFields } from '../limits';

export interface ObservedInstance {
  pid: number;
  version: string;
  /** Date.now() when this instance started. */
  startedAt: number;
  publisher: string;
  trust: string;
  permissions: string[];
  limits: { memory?: number; pids?: number; cpu?: number; cpuTime?: number; callTimeout?: number };
  /** The sandbox's cgroup counters, null without a cgroup; still answers after the sandbox ended. */
  stats(only?: StatFields): LimitStats | null;
}

export interface ObservedPlugin {
  name: string;
  version: string | undefined;
  status: string;
  reason: { kind: string; message: string } | undefined;
  pid: number | undefined;
  warm: boolean;
  hooks: string[];
  restarts: number;
  recentViolations: number;
}

export interface ObservedStatus {
  plugin: string;
  status: string;
  previous: string;
  reason?: { kind: string };
  at: number;
}

export interface ObserverSource {
  plugins(): ObservedPlugin[];
  instance(name: string): ObservedInstance | undefined;
  pool(): { idle: number; starting: number; warm: number; cold: number } | undefined;
  audit: {
    subscribe(listener: (e: AuditEvent) => void): () => void;
    append(e: AuditEventInput): AuditEvent;
    events(filter?: AuditFilter): AuditEvent[];
  };
  on(event: 'status', listener: (e: ObservedStatus) => void): unknown;
  off(event: 'status', listener: (e: ObservedStatus) => void): unknown;
  emit(event: 'pressure', e: PressureEvent): boolean;
}

export type PressureKind = 'memory' | 'cpu-throttled' | 'errors';

/** A soft threshold crossed: nothing is enforced, the operator is told before a limit is hit. */
export interface PressureEvent {
  plugin: string;
  kind: PressureKind;
  /** What was seen: bytes (memory), the throttled share of wall time (cpu), the error share of calls. */
  value: number;
  /** The threshold crossed, in the same unit. */
  threshold: number;
  /** memory: the limit in bytes. */
  limit?: number;
  /** 'kernel': a cgroup notification (v1 memory threshold); 'sample': the history's periodic read. */
  source: 'kernel' | 'sample';
  message: string;
  at: number;
  /** Episodes of this plugin (any kind) not told since its last event: over PRESSURE_EVENTS' rate. */
  suppressed?: number;
}

export interface PluginUsage {
  name: string;
  version: string | undefined;
  status: string;
  reason: string | undefined;
  pid: number | undefined;
  warm: boolean;
  hooks: string[];
  restarts: number;
  publisher: string | undefined;
  trust: string | undefined;
  permissions: string[];
  /** Seconds since the running instance started; undefined when none runs. */
  uptimeSeconds: number | undefined;
  cpu: { seconds: number; throttledSeconds: number; cores: number | undefined; limitCores: number | undefined };
  memory: { bytes: number | undefined; peakBytes: number | undefined; limitBytes: number | undefined; mibSeconds: number };
  pids: { current: number | undefined; limit: number | undefined };
  /** Hook calls into the plugin. p50/p99 over the last history interval, ms. */
  calls: { total: number; errors: number; timeouts: number; p50Ms: number | undefined; p99Ms: number | undefined };
  /** The plugin's calls of host methods. */
  hostCalls: { total: number; errors: number };
  violations: Record<string, number>;
  lastViolation: { time: string; kind: string; message: string } | undefined;
  pressure: PressureKind[];
}

export interface HostUsage {
  at: number;
  plugins: PluginUsage[];
  host: {
    sandboxes: number;
    byStatus: Record<string, number>;
    pool: { idle: number; starting: number; warm: number; cold: number } | undefined;
    loads: number;
    loadFailures: number;
    /** Violations and critical audit events of the last 24 hours. */
    violations24h: number;
    critical24h: number;
  };
}
