/**
 * What the audit log says about each plugin, tallied for its reputation: crashes, violations by
 * kind, restarts, quarantines, and when each version was first verified. Fed with events, from a
 * log file read once (warden audit --summary, a host's start) and then as they are written (a
 * running host subscribes to its own log). Bounded: at most MAX_PLUGINS plugins and MAX_VERSIONS
 * versions each are kept (names in a log may come from hostile manifests).
 */
import type { AuditEvent } from '../audit/format';
import type { TrustEntry } from '../trust/document';
import type { ReputationSignals } from './score';

/** The audit events a ledger tallies (a filter for reading a log). */
export const REPUTATION_EVENTS = ['violation', 'restart', 'quarantine', 'verify', 'load', 'scan'] as const;

const MAX_PLUGINS = 10_000;
const MAX_VERSIONS = 64;
const MAX_KINDS = 32;

export interface PluginTally {
  crashes: number;
  violations: Record<string, number>;
  restarts: number;
  quarantines: number;
  loads: number;
  /** version → ms of its first `verify` (or `load`) event. */
  firstSeen: Record<string, number>;
  /** version → its latest capability scan at load (the `scan` audit line's summary). */
  scans: Record<string, { usedNotRequested: string[]; risky: number }>;
}

export class ReputationLedger {
  private readonly tallies = new Map<string, PluginTally>();

  /** Tallies one audit event; events without a plugin, or beyond the bounds, are ignored. */
  add(e: Pick<AuditEvent, 'event' | 'plugin' | 'version' | 'time' | 'details' | 'severity'>): void {
    if (e.plugin === undefined) return;
    let t = this.tallies.get(e.plugin);
    if (t === undefined) {
      if (this.tallies.size >= MAX_PLUGINS) return;
      t = { crashes: 0, violations: {}, restarts: 0, quarantines: 0, loads: 0, firstSeen: Object.create(null) as Record<string, number>, scans: Object.create(null) as PluginTally['scans'] };
      this.tallies.set(e.plugin, t);
    }
    switch (e.event) {
      case 'violation': {
        const kind = typeof e.details?.kind === 'string' ? e.details.kind : 'unknown';
        if (kind === 'crash') t.crashes++;
        else if (kind in t.violations || Object.keys(t.violations).length < MAX_KINDS) t.violations[kind] = (t.violations[kind] ?? 0) + 1;
        break;
      }
      case 'restart': t.restarts++; break;
      // `quarantine` is also written at notice when released; only the critical line is one.
      case 'quarantine': if (e.severity === 'critical') t.quarantines++; break;
      case 'load': if (e.severity === 'info') t.loads++; break;
      case 'scan': {
        const scan = scanOf(e.details);
        if (scan !== undefined && e.version !== undefined && (e.version in t.scans || Object.keys(t.scans).length < MAX_VERSIONS)) t.scans[e.version] = scan;
        break;
      }
      default: break;
    }
    if ((e.event === 'verify' || e.event === 'load') && e.severity === 'info' && e.version !== undefined && !(e.version in t.firstSeen)) {
      const at = Date.parse(e.time);
      if (!Number.isNaN(at) && Object.keys(t.firstSeen).length < MAX_VERSIONS) t.firstSeen[e.version] = at;
    }
  }

  tally(plugin: string): PluginTally | undefined {
    return this.tallies.get(plugin);
  }

  plugins(): string[] {
    return [...this.tallies.keys()];
  }
}

/** A `scan` line's details as the score reads them; undefined when they do not have that shape (a log is input). */
function scanOf(d: Record<string, unknown> | undefined): { usedNotRequested: string[]; risky: number } | undefined {
  if (d === undefined || !Array.isArray(d.usedNotRequested) || !Number.isSafeInteger(d.risky) || (d.risky as number) < 0) return undefined;
  const used = d.usedNotRequested.filter((x): x is string => typeof x === 'string').slice(0, 16);
  return { usedNotRequested: used, risky: d.risky as number };
}

/** Each publisher's first `added` time among these entries (entries without one are skipped). */
export function publishersFirstListed(entries: readonly TrustEntry[]): Map<string, number> {
  const out = new Map<string, number>();
  for (const e of entries) {
    if (e.added === undefined) continue;
    const at = Date.parse(e.added);
    const was = out.get(e.publisher);
    if (was === undefined || at < was) out.set(e.publisher, at);
  }
  return out;
}

/**
 * The signals for one plugin version: the ledger's counts, its trust entry's level and ages (the
 * entry's `added`, else the version's first verification in the log; the publisher's first listed
 * entry, from publishersFirstListed of the list's entries).
 */
export function signalsFor(plugin: string, version: string | undefined, ledger: ReputationLedger, entry: TrustEntry | undefined, publishers: ReadonlyMap<string, number>, now = Date.now()): ReputationSignals {
  const t = ledger.tally(plugin);
  const listed = entry?.added === undefined ? undefined : Date.parse(entry.added);
  const since = listed ?? (version === undefined ? undefined : t?.firstSeen[version]);
  const publisherSince = entry === undefined ? undefined : publishers.get(entry.publisher);
  return {
    trust: entry?.trust,
    publisherAgeMs: publisherSince === undefined ? undefined : now - publisherSince,
    versionAgeMs: since === undefined ? undefined : now - since,
    crashes: t?.crashes ?? 0,
    violations: { ...(t?.violations ?? {}) },
    restarts: t?.restarts ?? 0,
    quarantines: t?.quarantines ?? 0,
    ...(version !== undefined && t?.scans[version] !== undefined ? { scan: t.scans[version] } : {}),
  };
}
