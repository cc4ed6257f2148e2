/**
 * The glue between Sandbox.spawn and SandboxCgroup, kept here so lib/sandbox only calls three
 * functions: validate the option, create the cgroup (with the rlimits that stand in when degraded),
 * and tie the cgroup's life to the sandbox's.
 */
import { resolveLimits, type LimitsOptions, type ResolvedLimits } from './options';
import type { RlimitName, RlimitValue } from './rlimits';
import { SandboxCgroup, type LimitViolation } from './sandbox-cgroup';

/** Validates `limits` before anything is created. Undefined: no limits, no cgroup. */
export function validateLimits(limits: LimitsOptions | undefined): ResolvedLimits | undefined {
  return limits === undefined ? undefined : resolveLimits(limits);
}

const RLIMIT_NAMES = { RLIMIT_AS: 'as', RLIMIT_NPROC: 'nproc', RLIMIT_CPU: 'cpu' } as const;

/**
 * The caller's rlimits plus those standing in for cgroup limits in degraded mode. Where both name a
 * resource, the lower one wins: degrading must never loosen what the caller asked for.
 */
export function mergeRlimits(
  user: Partial<Record<RlimitName, RlimitValue>> | undefined,
  cg: SandboxCgroup,
): Partial<Record<RlimitName, RlimitValue>> | undefined {
  if (cg.rlimits.length === 0) return user;
  const out: Partial<Record<RlimitName, RlimitValue>> = { ...(user ?? {}) };
  for (const r of cg.rlimits) {
    const name = RLIMIT_NAMES[r.resource];
    const prev = out[name];
    const p = prev === undefined ? undefined : typeof prev === 'number' ? { soft: prev, hard: prev } : prev;
    out[name] = p === undefined ? { soft: r.soft, hard: r.hard } : { soft: Math.min(p.soft, r.soft), hard: Math.min(p.hard, r.hard) };
  }
  return out;
}

/**
 * After the launcher placed and released the child: start the clocks and forward violations.
 * Returns the function to call on the sandbox's exit; it resolves once everything left in the
 * cgroup is dead and the directories are gone, with the first violation (if any).
 */
export function superviseSandbox(cg: SandboxCgroup, pid: number, onViolation: (v: LimitViolation) => void): () => Promise<LimitViolation | undefined> {
  cg.on('violation', onViolation);
  cg.start(pid);
  return async () => {
    cg.recheck();
    const first = cg.violation;
    try {
      await cg.destroy();
    } catch (e) {
      // The sandbox has exited; a cgroup that cannot be removed is the host's problem to see, not a
      // reason to lose the exit result.
      process.emitWarning(`warden: sandbox cgroup teardown: ${(e as Error).message}`, { code: 'ERR_LIMIT_CLEANUP' });
    }
    return first;
  };
}
