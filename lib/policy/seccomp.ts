/**
 * A seccomp policy as data. The addon compiles it to a BPF program (native/seccomp.cc); this module
 * defines its shape and validates it, naming the offending field, before anything is started.
 *
 * The program the addon builds checks, in order: the architecture (x86_64, else the process is
 * killed), the x32 bit of the syscall number (killed), the rules of the syscall in the order given
 * (the first whose argument checks all hold decides), then `defaultAction`.
 */
import { InvalidOptionError } from '../errors';
import { ERRNOS, SYSCALLS } from './syscalls';

/**
 * What a rule (or the default) does with a syscall.
 * - `'allow'`: the syscall runs.
 * - `'violation'`: the sandbox is killed and the violation is reported with the syscall's name
 *   (SECCOMP_RET_USER_NOTIF, read by the host).
 * - `'kill'`: the sandbox's process dies of SIGSYS at once; nothing names the syscall.
 * - `{ errno }`: the syscall fails with that errno (a name such as `'EPERM'`, or a number 1..4095);
 *   the program goes on. For probes that programs handle (io_uring, clone3, socket families).
 */
export type SeccompAction = 'allow' | 'violation' | 'kill' | { readonly errno: string | number };

/**
 * A comparison on argument `index` (0..5) of the syscall, a 64-bit register.
 * - `eq` / `ne`: `arg == value` / `arg != value`.
 * - `maskedEq`: `(arg & mask) == value`.
 * - `anyBitsSet`: `(arg & mask) != 0` (no `value`).
 * With `low32`, only the low 32 bits of the argument are compared: use it for arguments the kernel
 * declares as 32-bit (`int`, `unsigned int`: ioctl requests, socket families, personality), so that
 * junk in the high half cannot make a denied value look different. Without it both halves are
 * compared. Values above 2^53 must be BigInts.
 */
export interface SeccompArgCheck {
  readonly index: number;
  readonly op: 'eq' | 'ne' | 'maskedEq' | 'anyBitsSet';
  readonly value?: number | bigint;
  readonly mask?: number | bigint;
  readonly low32?: boolean;
}

/** A rule: for each syscall named, when every check holds, do `action`. */
export interface SeccompRule {
  readonly syscalls: readonly string[];
  readonly action: SeccompAction;
  readonly args?: readonly SeccompArgCheck[];
}

/**
 * A whole policy. Rules are tried in order for the syscall being made; the first that matches
 * decides; when none does, `defaultAction` does.
 *
 * `execve` and `sendmsg` must stay allowed whatever their arguments: the launcher installs the
 * filter, then hands the violation listener to the host with sendmsg, then calls execve. A policy
 * that could deny either is refused.
 */
export interface SeccompPolicy {
  readonly defaultAction: SeccompAction;
  readonly rules: readonly SeccompRule[];
}

/** Syscalls the launcher makes after installing the filter. */
export const LAUNCHER_SYSCALLS: readonly string[] = ['sendmsg', 'execve'];

/**
 * The launcher's sendmsg passes exactly MSG_NOSIGNAL (argument 2). A rule that demands a flag bit
 * outside it (anyBitsSet on argument 2, such as MSG_FASTOPEN) can never match that call, so it may
 * deny (see native/seccomp.cc, CannotMatchLauncher).
 */
const LAUNCHER_SENDMSG_FLAGS = 0x4000n;
function cannotMatchLauncherSendmsg(rule: SeccompRule): boolean {
  return (rule.args ?? []).some((a) => a.index === 2 && a.op === 'anyBitsSet' && (BigInt(a.mask ?? 0) & LAUNCHER_SENDMSG_FLAGS) === 0n);
}

const OPS = new Set(['eq', 'ne', 'maskedEq', 'anyBitsSet']);
const U64_MAX = (1n << 64n) - 1n;
const U32_MAX = 0xffffffffn;

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function validateAction(v: unknown, field: string): SeccompAction {
  if (v === 'allow' || v === 'violation' || v === 'kill') return v;
  if (isPlainObject(v)) {
    const e = v.errno;
    if (typeof e === 'string') {
      if (!Object.prototype.hasOwnProperty.call(ERRNOS, e)) {
        throw new InvalidOptionError(`${field}.errno`, `unknown errno name '${e}'; use a Linux name such as 'EPERM'`);
      }
      return { errno: e };
    }
    if (typeof e === 'number') {
      if (!Number.isInteger(e) || e < 1 || e > 4095) {
        throw new InvalidOptionError(`${field}.errno`, 'must be an integer between 1 and 4095');
      }
      return { errno: e };
    }
    throw new InvalidOptionError(`${field}.errno`, "must be an errno name such as 'EPERM' or a number");
  }
  throw new InvalidOptionError(field, "must be 'allow', 'violation', 'kill' or { errno: 'EPERM' }");
}

function toU64(v: unknown, field: string): bigint {
  if (typeof v === 'number') {
    if (!Number.isSafeInteger(v) || v < 0) {
      throw new InvalidOptionError(field, 'must be a non-negative integer (use a BigInt above 2^53)');
    }
    return BigInt(v);
  }
  if (typeof v === 'bigint') {
    if (v < 0n || v > U64_MAX) throw new InvalidOptionError(field, 'must be between 0 and 2^64-1');
    return v;
  }
  throw new InvalidOptionError(field, 'must be a number or a BigInt');
}

function validateArg(v: unknown, field: string): SeccompArgCheck {
  if (!isPlainObject(v)) throw new InvalidOptionError(field, 'must be an object { index, op, value?, mask?, low32? }');
  const { index, op, value, mask, low32 } = v;
  if (typeof index !== 'number' || !Number.isInteger(index) || index < 0 || index > 5) {
    throw new InvalidOptionError(`${field}.index`, 'must be an integer 0..5 (syscalls have six arguments)');
  }
  if (typeof op !== 'string' || !OPS.has(op)) {
    throw new InvalidOptionError(`${field}.op`, "must be 'eq', 'ne', 'maskedEq' or 'anyBitsSet'");
  }
  if (low32 !== undefined && typeof low32 !== 'boolean') {
    throw new InvalidOptionError(`${field}.low32`, 'must be a boolean');
  }
  const width = low32 ? U32_MAX : U64_MAX;
  const out: { index: number; op: SeccompArgCheck['op']; value?: number | bigint; mask?: number | bigint; low32?: boolean } = {
    index,
    op: op as SeccompArgCheck['op'],
  };
  if (low32 !== undefined) out.low32 = low32;
  const needsValue = op !== 'anyBitsSet';
  const needsMask = op === 'maskedEq' || op === 'anyBitsSet';
  let val = 0n;
  let msk = U64_MAX;
  if (needsValue) {
    if (value === undefined) throw new InvalidOptionError(`${field}.value`, `required for op '${op}'`);
    val = toU64(value, `${field}.value`);
    out.value = value as number | bigint;
  } else if (value !== undefined) {
    throw new InvalidOptionError(`${field}.value`, "not used by op 'anyBitsSet' (put the bits in mask)");
  }
  if (needsMask) {
    if (mask === undefined) throw new InvalidOptionError(`${field}.mask`, `required for op '${op}'`);
    msk = toU64(mask, `${field}.mask`);
    out.mask = mask as number | bigint;
    if ((msk & width) === 0n) throw new InvalidOptionError(`${field}.mask`, 'empty mask; the check could never hold');
  } else if (mask !== undefined) {
    throw new InvalidOptionError(`${field}.mask`, "only for ops 'maskedEq' and 'anyBitsSet'");
  }
  if (needsValue && (val & ~(msk & width)) !== 0n) {
    throw new InvalidOptionError(
      `${field}.value`,
      low32 ? 'above 32 bits (or outside the mask) with low32 set; the check could never hold'
        : 'has bits outside the mask; the check could never hold',
    );
  }
  return out;
}

/**
 * Validates `value` as a seccomp policy and returns a copy (later changes to `value` do not affect
 * it). Throws InvalidOptionError naming the field (`seccomp.rules[3].syscalls[1]`).
 */
export function validateSeccompPolicy(value: unknown, field = 'seccomp'): SeccompPolicy {
  if (!isPlainObject(value)) throw new InvalidOptionError(field, 'must be an object { defaultAction, rules }');
  const defaultAction = validateAction(value.defaultAction, `${field}.defaultAction`);
  const rulesIn = value.rules === undefined ? [] : value.rules;
  if (!Array.isArray(rulesIn)) throw new InvalidOptionError(`${field}.rules`, 'must be an array');
  const rules: SeccompRule[] = rulesIn.map((r: unknown, i: number) => {
    const rf = `${field}.rules[${i}]`;
    if (!isPlainObject(r)) throw new InvalidOptionError(rf, 'must be an object { syscalls, action, args? }');
    if (!Array.isArray(r.syscalls) || r.syscalls.length === 0) {
      throw new InvalidOptionError(`${rf}.syscalls`, 'must be a non-empty array of syscall names');
    }
    const syscalls = r.syscalls.map((s: unknown, j: number) => {
      if (typeof s !== 'string' || !Object.prototype.hasOwnProperty.call(SYSCALLS, s)) {
        throw new InvalidOptionError(`${rf}.syscalls[${j}]`, `unknown x86_64 syscall ${JSON.stringify(s)}`);
      }
      return s;
    });
    const action = validateAction(r.action, `${rf}.action`);
    if (r.args !== undefined && !Array.isArray(r.args)) throw new InvalidOptionError(`${rf}.args`, 'must be an array');
    const rule: { syscalls: string[]; action: SeccompAction; args?: SeccompArgCheck[] } = { syscalls, action };
    if (r.args !== undefined) rule.args = (r.args as unknown[]).map((a, j) => validateArg(a, `${rf}.args[${j}]`));
    return rule;
  });
  // Mirrors CompileSeccomp: walk the rules as the program would for each launcher syscall.
  for (const name of LAUNCHER_SYSCALLS) {
    let decided = false;
    for (let i = 0; i < rules.length && !decided; i++) {
      const j = rules[i]!.syscalls.indexOf(name);
      if (j < 0) continue;
      if (rules[i]!.action !== 'allow' && name === 'sendmsg' && cannotMatchLauncherSendmsg(rules[i]!)) continue;
      if (rules[i]!.action !== 'allow') {
        throw new InvalidOptionError(
          `${field}.rules[${i}].syscalls[${j}]`,
          `${name} must stay allowed: the launcher calls sendmsg and execve after installing the filter`,
        );
      }
      decided = (rules[i]!.args ?? []).length === 0;
    }
    if (!decided && defaultAction !== 'allow') {
      throw new InvalidOptionError(
        `${field}.rules`,
        `${name} must be allowed explicitly (the default action denies it): the launcher calls sendmsg and execve after installing the filter`,
      );
    }
  }
  return { defaultAction, rules };
}
