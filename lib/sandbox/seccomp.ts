/**
 * The seccomp program of a spawn. Profiles are data (lib/policy); the addon compiles them. Named
 * profiles are compiled once per (profile, network) pair, so spawning does not pay for compilation.
 */
import { InvalidOptionError } from '../errors';
import { addon } from '../native';
import { resolveSeccompProfile } from '../policy/profiles';
import type { SeccompPolicy } from '../policy/seccomp';
import { EGRESS_RULES } from '../net/seccomp';

const cache = new Map<string, Buffer | null>();

export function compiledSeccomp(choice: string | object | undefined, network: boolean, egress = false): Buffer | null {
  const profile = choice ?? 'default';
  const key = typeof profile === 'string' ? `${profile}/${network}/${egress}` : null;
  if (key !== null && cache.has(key)) return cache.get(key)!;
  if (typeof profile !== 'string' && (profile === null || typeof profile !== 'object')) {
    throw new InvalidOptionError('seccomp', "must be a profile name ('default', 'strict', 'none') or a policy object");
  }
  let policy = resolveSeccompProfile(profile as Parameters<typeof resolveSeccompProfile>[0], { network });
  if (egress) {
    // The network policy is enforced by the listener of this filter: no filter, no egress at all.
    if (policy === null) throw new InvalidOptionError('seccomp', "'none' cannot be combined with a network policy: connect is intercepted through the seccomp filter");
    policy = { defaultAction: policy.defaultAction, rules: [...EGRESS_RULES, ...policy.rules] };
  }
  const program = policy === null ? null : (addon().compileSeccomp as (p: unknown) => Buffer)(policy);
  if (key !== null) cache.set(key, program);
  return program;
}

const stackedCache = new Map<SeccompPolicy, Buffer>();

/** A program for a process to stack on its own filters (see RestrictSelf in native/seccomp.h). */
export function compiledStacked(policy: SeccompPolicy): Buffer {
  let program = stackedCache.get(policy);
  if (program === undefined) {
    program = (addon().compileSeccomp as (p: unknown, o: unknown) => Buffer)(policy, { stacked: true });
    stackedCache.set(policy, program);
  }
  return program;
}
