/**
 * `warden audit --summary`: per plugin, what the audit log holds (loads, crashes, violations by
 * kind, restarts, quarantines) and the reputation computed from it (lib/reputation), each signal's
 * contribution shown. With --trust LIST, the list's levels and entry ages join in (read, not
 * verified: this is a report, not a decision).
 */
import type { AuditEvent } from '../audit/format';
import { formatReputation, publishersFirstListed, reputation, ReputationLedger, signalsFor, type Reputation } from '../reputation';
import type { TrustEntry } from '../trust/document';

export interface PluginSummary {
  plugin: string;
  /** The version of its last verify/load event, which the reputation is for. */
  version: string | undefined;
  loads: number;
  crashes: number;
  violations: Record<string, number>;
  restarts: number;
  quarantines: number;
  reputation: Reputation;
}

export function summarize(events: readonly AuditEvent[], entries: readonly TrustEntry[] | undefined, now = Date.now()): PluginSummary[] {
  const ledger = new ReputationLedger();
  const lastVersion = new Map<string, string>();
  for (const e of events) {
    ledger.add(e);
    if (e.plugin !== undefined && e.version !== undefined && (e.event === 'verify' || e.event === 'load')) lastVersion.set(e.plugin, e.version);
  }
  const publishers = publishersFirstListed(entries ?? []);
  return ledger.plugins().sort().map((plugin) => {
    const t = ledger.tally(plugin)!;
    const version = lastVersion.get(plugin);
    const entry = entries?.find((e) => e.name === plugin && e.version === version);
    return {
      plugin, version, loads: t.loads, crashes: t.crashes, violations: { ...t.violations }, restarts: t.restarts, quarantines: t.quarantines,
      reputation: reputation(signalsFor(plugin, version, ledger, entry, publishers, now)),
    };
  });
}

export function summaryText(rows: readonly PluginSummary[], escape: (s: string) => string): string {
  if (rows.length === 0) return 'no plugin events\n';
  return rows.map((r) => {
    const kinds = Object.entries(r.violations).map(([k, n]) => `${escape(k)} ${n}`).join(', ') || 'none';
    return [
      `${escape(r.plugin)}${r.version === undefined ? '' : `@${escape(r.version)}`}`,
      `  loads ${r.loads}, crashes ${r.crashes}, violations ${kinds}, restarts ${r.restarts}, quarantines ${r.quarantines}`,
      `  reputation ${formatReputation(r.reputation)}`,
    ].join('\n');
  }).join('\n') + '\n';
}
