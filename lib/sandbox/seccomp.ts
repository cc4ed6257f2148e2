/**
 * The seccomp program of a spawn. Profiles are data (lib/policy); the addon compiles them, once per
 * (profile, network) pair, so spawning does not pay for compilation.
 */
import { InvalidOptionError } from '../errors';

export function compiledSeccomp(choice: SpawnSeccomp, network: boolean): Buffer | null {
  if (choice === 'none') return null;
  throw new InvalidOptionError('seccomp', `profile ${JSON.stringify(choice ?? 'default')} is not available yet; use 'none'`);
}

type SpawnSeccomp = string | object | undefined;
