/** The public API of warden. Everything a host uses is exported from here. */
export { WardenError, InvalidOptionError } from './errors';
export type { SeccompAction, SeccompArgCheck, SeccompRule, SeccompPolicy } from './policy/seccomp';
export { validateSeccompPolicy } from './policy/seccomp';
export type { SeccompProfileName, SeccompProfileOptions } from './policy/profiles';
export { resolveSeccompProfile, SECCOMP_PROFILE_NAMES } from './policy/profiles';
