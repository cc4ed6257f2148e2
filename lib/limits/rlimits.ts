/**
 * Degraded mode: what stands in for each limit when no usable cgroup exists, and how much weaker it is.
 * Only used when the caller passed allowDegraded; the handle lists every entry of `weaker`.
 */
import type { WeakerLimit } from './backend';
import type { ResolvedLimits } from './options';

/** A sandbox's setrlimit names (SpawnOptions.rlimits). */
export type RlimitName =
  | 'as' | 'core' | 'cpu' | 'data' | 'fsize' | 'locks' | 'memlock' | 'msgqueue' | 'nice' | 'nofile'
  | 'nproc' | 'rss' | 'rtprio' | 'rttime' | 'sigpending' | 'stack';

/** A limit: one number for soft = hard, or both. Infinity means unlimited. */
export type RlimitValue = number | { soft: number; hard: number };

export interface RlimitSpec {
  resource: 'RLIMIT_AS' | 'RLIMIT_NPROC' | 'RLIMIT_CPU';
  soft: number;
  hard: number;
}

export function degradedLimits(l: ResolvedLimits, reason: string): { rlimits: RlimitSpec[]; weaker: WeakerLimit[] } {
  const rlimits: RlimitSpec[] = [];
  const weaker: WeakerLimit[] = [];
  if (l.memory !== undefined) {
    const as = l.memory + l.addressSpaceOverhead;
    rlimits.push({ resource: 'RLIMIT_AS', soft: as, hard: as });
    const looser = l.addressSpaceOverhead > 0 ? ` set to memory + ${l.addressSpaceOverhead} bytes of reserved-but-unused address space,` : '';
    weaker.push({ limit: 'memory', reason: `${reason}; RLIMIT_AS${looser} bounds each process's address space (not resident memory, not the sum over processes), and a breach is a failed allocation, not a reported violation`, substitute: 'RLIMIT_AS' });
  }
  if (l.pids !== undefined) {
    rlimits.push({ resource: 'RLIMIT_NPROC', soft: l.pids, hard: l.pids });
    weaker.push({ limit: 'pids', reason: `${reason}; RLIMIT_NPROC counts every process of the sandbox's uid, and a refused fork is not reported`, substitute: 'RLIMIT_NPROC' });
  }
  if (l.cpuTime !== undefined) {
    // SIGXCPU at the soft limit, SIGKILL one second later at the hard one.
    const s = Math.max(1, Math.ceil(l.cpuTime / 1000));
    rlimits.push({ resource: 'RLIMIT_CPU', soft: s, hard: s + 1 });
    weaker.push({ limit: 'cpuTime', reason: `${reason}; RLIMIT_CPU counts each process separately, in whole seconds`, substitute: 'RLIMIT_CPU' });
  }
  if (l.cpu !== undefined) weaker.push({ limit: 'cpu', reason: `${reason}; no rlimit bounds cpu bandwidth`, substitute: 'none' });
  if (l.io.length > 0) weaker.push({ limit: 'io', reason: `${reason}; no rlimit bounds block io`, substitute: 'none' });
  weaker.push({ limit: 'teardown', reason: `${reason}; only the sandbox's own process tree can be killed, a setsid daemon may survive`, substitute: 'none' });
  return { rlimits, weaker };
}
