/**
 * Seccomp rules a sandbox gets under a network policy, placed before its profile's rules (the first
 * match wins):
 * - connect and listen go to the host (SECCOMP_RET_USER_NOTIF; the host decides, see
 *   native/net_intercept.h) instead of running in the sandbox;
 * - MSG_FASTOPEN on sendto, sendmsg and sendmmsg fails with EOPNOTSUPP: it connects a TCP socket
 *   to the message's address without a connect call. The launcher's own sendmsg passes
 *   MSG_NOSIGNAL only, so this rule can never match it.
 * Everything else needs no rule: the sandbox's network namespace has nothing but its loopback, so a
 * datagram sent to any other address (sendto, sendmsg with an address, a raw socket) goes nowhere.
 */
import type { SeccompRule } from '../policy/seccomp';

const MSG_FASTOPEN = 0x20000000;

export const EGRESS_RULES: readonly SeccompRule[] = [
  { syscalls: ['connect', 'listen'], action: 'violation' },
  { syscalls: ['sendto', 'sendmmsg'], action: { errno: 'EOPNOTSUPP' }, args: [{ index: 3, op: 'anyBitsSet', mask: MSG_FASTOPEN, low32: true }] },
  { syscalls: ['sendmsg'], action: { errno: 'EOPNOTSUPP' }, args: [{ index: 2, op: 'anyBitsSet', mask: MSG_FASTOPEN, low32: true }] },
];
