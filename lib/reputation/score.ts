/**
 * A plugin's reputation: a score from 0 to 100 computed from signals the host already has, with
 * each signal's contribution shown, so that an operator can see why and disagree. Pure: the same
 * signals give the same score. Where the signals come from: ledger.ts (the audit log) and the trust
 * list (signalsFromTrust). It is advice for a person or a policy to act on; it enforces nothing.
 *
 * The weights, from a neutral 50:
 *   trust level            privileged +10, standard +5, restricted 0 (what the list's signers said)
 *   publisher age          +1 per 9 days since the publisher's first listed entry, at most +20
 *   version age            +1 per 3 days since this version was listed (or first seen), at most +10
 *   crashes                -5 each, at most -25
 *   resource violations    -8 each (memory, pids, cpu-time, timeout), at most -32
 *   escape attempts        -15 each (seccomp, protocol, flood, network), at most -45
 *   restarts               -2 each, at most -10
 *   quarantines            -20 each, at most -40
 *   scan (optional)        -10 per capability used but not requested, at most -30;
 *                          -2 per risky finding (eval, dynamic require, native addon, install script), at most -10
 * An unknown age counts 0 and says so. The result is clamped to 0..100.
 */
import type { TrustLevel } from '../trust/levels';

export interface ReputationSignals {
  trust?: TrustLevel;
  /** ms since the publisher's first entry in the list; undefined: unknown. */
  publisherAgeMs?: number;
  /** ms since this version was listed (or first seen by the host); undefined: unknown. */
  versionAgeMs?: number;
  crashes: number;
  /** Violations by kind other than `crash`. */
  violations: Record<string, number>;
  restarts: number;
  quarantines: number;
  /** A capability scan's summary, when one was made. */
  scan?: { usedNotRequested: readonly string[]; risky: number };
}

export interface Contribution {
  signal: string;
  /** The signal's value as shown, e.g. "42 days", "3", "standard". */
  value: string;
  points: number;
}

export interface Reputation {
  score: number;
  /** good ≥ 70, fair ≥ 40, poor below. */
  grade: 'good' | 'fair' | 'poor';
  base: number;
  contributions: Contribution[];
}

const BASE = 50;
const DAY = 86_400_000;
const LEVEL_POINTS: Record<TrustLevel, number> = { privileged: 10, standard: 5, restricted: 0 };
const RESOURCE = ['memory', 'pids', 'cpu-time', 'timeout'];

function capped(n: number, each: number, cap: number): number {
  return Math.max(-cap, -n * each);
}

function age(ms: number | undefined, perPoint: number, cap: number): { value: string; points: number } {
  if (ms === undefined) return { value: 'unknown', points: 0 };
  const days = Math.max(0, ms) / DAY;
  return { value: `${Math.floor(days)} days`, points: Math.min(cap, Math.floor(days / perPoint)) };
}

export function reputation(s: ReputationSignals): Reputation {
  const c: Contribution[] = [];
  c.push({ signal: 'trust level', value: s.trust ?? 'unknown', points: s.trust === undefined ? 0 : LEVEL_POINTS[s.trust] });
  c.push({ signal: 'publisher age', ...age(s.publisherAgeMs, 9, 20) });
  c.push({ signal: 'version age', ...age(s.versionAgeMs, 3, 10) });
  c.push({ signal: 'crashes', value: String(s.crashes), points: capped(s.crashes, 5, 25) });
  let resource = 0;
  let escapes = 0;
  for (const [kind, n] of Object.entries(s.violations)) {
    if (kind === 'crash') continue;
    if (RESOURCE.includes(kind)) resource += n;
    else escapes += n;
  }
  c.push({ signal: 'resource violations', value: String(resource), points: capped(resource, 8, 32) });
  c.push({ signal: 'escape attempts', value: String(escapes), points: capped(escapes, 15, 45) });
  c.push({ signal: 'restarts', value: String(s.restarts), points: capped(s.restarts, 2, 10) });
  c.push({ signal: 'quarantines', value: String(s.quarantines), points: capped(s.quarantines, 20, 40) });
  if (s.scan !== undefined) {
    c.push({ signal: 'used but not requested', value: s.scan.usedNotRequested.join(', ') || 'none', points: capped(s.scan.usedNotRequested.length, 10, 30) });
    c.push({ signal: 'risky code', value: String(s.scan.risky), points: capped(s.scan.risky, 2, 10) });
  }
  // -0 reads badly in a table.
  for (const x of c) if (Object.is(x.points, -0)) x.points = 0;
  const score = Math.max(0, Math.min(100, BASE + c.reduce((a, x) => a + x.points, 0)));
  return { score, grade: score >= 70 ? 'good' : score >= 40 ? 'fair' : 'poor', base: BASE, contributions: c };
}

/** One line: "62 (fair): trust level standard +5, version age 12 days +4, crashes 1 -5". Zero contributions are left out. */
export function formatReputation(r: Reputation): string {
  const parts = r.contributions.filter((x) => x.points !== 0).map((x) => `${x.signal} ${x.value} ${x.points > 0 ? '+' : ''}${x.points}`);
  return `${r.score} (${r.grade})${parts.length > 0 ? `: ${parts.join(', ')}` : ''}`;
}
