/**
 * What the plugin host keeps per discovered plugin (a PluginRecord), its statuses, and the
 * PluginInfo an application reads of it.
 */
import type { PluginInstance } from './instance';
import type { PluginReason } from './reason';
import type { PluginManifest } from './manifest';
import type { Reputation } from '../reputation/score';
import type { TrustLevel } from '../trust/levels';

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
  /** The trust level of the version's entry in the list in force, if it is listed. */
  trust: TrustLevel | undefined;
  /** Score and each signal's contribution (lib/reputation): the audit log's counts and the trust list. */
  reputation: Reputation;
}

export interface PluginRecord {
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

/** A plugin just discovered: idle, nothing queued. */
export function newRecord(manifest: PluginManifest, dir: string): PluginRecord {
  return {
    name: manifest.name, dir, manifest, status: 'idle', reason: undefined, instance: undefined,
    queue: Promise.resolve(), loading: undefined, violationTimes: [], restarts: 0, restartTimer: undefined,
  };
}

/** The version a record runs, or else the one its directory holds. */
export function versionOf(r: PluginRecord): string | undefined {
  return r.instance?.version ?? r.manifest?.version;
}

export function pluginInfo(r: PluginRecord, quarantineWindowMs: number, trust: TrustLevel | undefined, reputation: Reputation): PluginInfo {
  const now = Date.now();
  return {
    name: r.name,
    version: versionOf(r),
    status: r.status,
    reason: r.reason,
    dir: r.dir,
    pid: r.instance?.pid,
    warm: r.instance?.proc.warm === true,
    hooks: r.instance?.hooks.map((h) => h.hook) ?? [],
    recentViolations: r.violationTimes.filter((t) => now - t < quarantineWindowMs).length,
    restarts: r.restarts,
    trust,
    reputation,
  };
}
