/**
 * Why a plugin stopped or was refused, and how an observed violation (the sandbox's or the
 * channel's) becomes one. Types and one pure function: the instance, the host's supervision and its
 * load errors all speak it.
 */
import type { ObservedViolation } from '../errors';

/** Why a plugin stopped or was refused: a violation kind, or what the host decided. */
export type PluginReasonKind =
  | 'memory' | 'pids' | 'cpu-time' | 'timeout' | 'seccomp' | 'protocol' | 'flood' | 'network' | 'crash'
  | 'refused' | 'revoked' | 'unloaded' | 'replaced' | 'load-failed' | 'host-shutdown' | 'trust-expired';

export interface PluginReason {
  kind: PluginReasonKind;
  message: string;
  /** seccomp: the syscall. */
  syscall?: string;
  limit?: number | string;
  observed?: number | string;
  /** crash: how the runner ended. */
  exit?: { code: number | null; signal: string | null };
  /** load-failed / refused: the stage and error code. */
  stage?: string;
  code?: string;
}

/**
 * `flood`: the plugin sent faster than its channel allows, or left the host's answers unread, past
 * the grace time. `network`: it kept trying destinations its network policy refuses.
 */
export const VIOLATION_KINDS: readonly PluginReasonKind[] = ['memory', 'pids', 'cpu-time', 'timeout', 'seccomp', 'protocol', 'flood', 'network', 'crash'];

/** The reason the host gives for an observed violation (an unknown kind is a protocol violation). */
export function violationReason(v: ObservedViolation): PluginReason {
  const kind = (VIOLATION_KINDS as readonly string[]).includes(String(v?.kind)) ? (v.kind as PluginReasonKind) : 'protocol';
  const what =
    kind === 'seccomp' ? `forbidden syscall ${v.syscall ?? '?'}`
    : kind === 'protocol' ? `broke the channel protocol: ${v.message ?? ''}`
    : kind === 'flood' ? `flooded the channel: ${v.message ?? ''}`
    : kind === 'network' ? `broke its network policy: ${String(v.observed ?? '')}`
    : `exceeded its ${kind} limit`;
  return { kind, message: what, syscall: v.syscall, limit: v.limit, observed: v.observed };
}
