// The seccomp compiler and profiles, checked in the kernel: each program is installed by the attempt
// driver (test/fixtures/attempt.c), which then makes one syscall and reports what the filter did.
import t, { Test } from 'tap';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { InvalidOptionError, resolveSeccompProfile, validateSeccompPolicy } from '../lib/index';
import type { SeccompPolicy } from '../lib/index';
import { SYSCALLS } from '../lib/policy/syscalls';
import { addon, attempt, filterFile, outcome, tmpDir } from './helpers/seccomp';

const SECCOMP_RET_KILL_PROCESS = 0x80000000;
const AUDIT_ARCH_X86_64 = 0xc000003e;

const files = {
  default: filterFile(resolveSeccompProfile('default', { network: false })),
  defaultNet: filterFile(resolveSeccompProfile('default', { network: true })),
  strict: filterFile(resolveSeccompProfile('strict', { network: false })),
  strictNet: filterFile(resolveSeccompProfile('strict', { network: true })),
};
const profiles = { default: files.default, strict: files.strict };

function decode(buf: Buffer): { code: number; jt: number; jf: number; k: number }[] {
  const out = [];
  for (let i = 0; i < buf.length; i += 8) {
    out.push({ code: buf.readUInt16LE(i), jt: buf[i + 2]!, jf: buf[i + 3]!, k: buf.readUInt32LE(i + 4) });
  }
  return out;
}

t.test('syscall table: addon and TypeScript agree on every name', async (t) => {
  const names = Object.keys(SYSCALLS);
  t.ok(names.length > 360, 'full x86_64 table');
  for (const name of names) {
    if (addon.syscallNumber(name) !== SYSCALLS[name] || addon.syscallName(SYSCALLS[name]!) !== name) {
      t.fail(`${name} differs`);
    }
  }
  t.equal(addon.syscallName(165), 'mount');
  t.equal(addon.syscallName(435), 'clone3');
  t.equal(addon.syscallName(100000), null);
});

t.test('program prefix: arch check, then x32 check', async (t) => {
  const prog = decode(addon.compileSeccomp(resolveSeccompProfile('default', { network: false })));
  // ld [4]; jeq AUDIT_ARCH_X86_64; ld [0]; jset 0x40000000
  t.same(prog[0], { code: 0x20, jt: 0, jf: 0, k: 4 }, 'loads seccomp_data.arch first');
  t.equal(prog[1]!.code, 0x15, 'jeq');
  t.equal(prog[1]!.k, AUDIT_ARCH_X86_64);
  const mismatch = prog[2 + prog[1]!.jf]!;
  t.same([mismatch.code, mismatch.k], [0x06, SECCOMP_RET_KILL_PROCESS], 'arch mismatch kills');
  t.same(prog[2], { code: 0x20, jt: 0, jf: 0, k: 0 }, 'then loads nr');
  t.equal(prog[3]!.code, 0x45, 'jset');
  t.equal(prog[3]!.k, 0x40000000, 'x32 bit');
  const x32 = prog[4 + prog[3]!.jt]!;
  t.same([x32.code, x32.k], [0x06, SECCOMP_RET_KILL_PROCESS], 'x32 kills');
});

/**
 * Runs a compiled program on one seccomp_data (nr, arch, args), as the kernel's classic BPF
 * interpreter does, for the instructions the compiler emits; any other instruction throws, so a
 * compiler change shows here instead of passing unchecked.
 */
function runFilter(prog: ReturnType<typeof decode>, nr: number, arch: number, args: bigint[] = []): number {
  const data = Buffer.alloc(64);
  data.writeUInt32LE(nr >>> 0, 0);
  data.writeUInt32LE(arch >>> 0, 4);
  args.forEach((v, i) => data.writeBigUInt64LE(v, 16 + 8 * i));
  let a = 0;
  for (let pc = 0; pc < prog.length; pc++) {
    const { code, jt, jf, k } = prog[pc]!;
    switch (code) {
      case 0x20: a = data.readUInt32LE(k); break; // ld [k]
      case 0x54: a = (a & k) >>> 0; break; // and #k
      case 0x05: pc += k; break; // ja
      case 0x15: pc += a === k ? jt : jf; break; // jeq #k
      case 0x25: pc += a > k ? jt : jf; break; // jgt #k
      case 0x35: pc += a >= k ? jt : jf; break; // jge #k
      case 0x45: pc += (a & k) !== 0 ? jt : jf; break; // jset #k
      case 0x06: return k; // ret #k
      default: throw new Error(`instruction ${pc}: opcode 0x${code.toString(16)} is not interpreted by this test`);
    }
  }
  throw new Error('the program ran off its end');
}

const AUDIT_ARCH_I386 = 0x40000003;
const SECCOMP_RET_ALLOW = 0x7fff0000;

// i386 getpid through int 0x80 without a filter: 'ok' where the kernel has i386 emulation.
const int80Base = outcome(attempt('-', 'int80', '20'));

t.test('arch: the program kills a syscall of the i386 ABI (int 0x80)', async (t) => {
  // getpid is 20 on i386; 39 is x86_64's getpid, which every profile allows on x86_64.
  for (const name of ['default', 'strict'] as const) {
    const prog = decode(addon.compileSeccomp(resolveSeccompProfile(name, { network: false })));
    t.equal(runFilter(prog, 39, AUDIT_ARCH_X86_64), SECCOMP_RET_ALLOW, `${name}: x86_64 getpid is allowed (the interpreter tells the two apart)`);
    t.equal(runFilter(prog, 20, AUDIT_ARCH_I386), SECCOMP_RET_KILL_PROCESS, `${name}: i386 getpid kills the process`);
    t.equal(runFilter(prog, 39, AUDIT_ARCH_I386), SECCOMP_RET_KILL_PROCESS, `${name}: i386 syscall 39 kills the process`);
  }
  t.ok(int80Base === 'ok' || int80Base === 'SIGSEGV', `without a filter, int 0x80 runs or faults for want of i386 emulation (got ${int80Base})`);
});

t.test('arch: in the kernel, a syscall through int 0x80 dies by SIGSYS', {
  skip: int80Base === 'ok' ? false : `this kernel has no i386 emulation (int 0x80 without a filter: ${int80Base}; CONFIG_IA32_EMULATION off or ia32_emulation=0), so seccomp never sees such a call`,
}, async (t) => {
  for (const [name, file] of Object.entries(profiles)) t.equal(outcome(attempt(file, 'int80', '20')), 'SIGSYS', name);
});

t.test('x32: a syscall number with bit 30 set is killed, even for an allowed syscall', async (t) => {
  for (const [name, file] of Object.entries(profiles)) {
    t.equal(outcome(attempt(file, 'call', String(0x40000000 + 39))), 'SIGSYS', `${name}: x32 getpid`);
    t.equal(outcome(attempt(file, 'call', String(0x40000000 + 165))), 'SIGSYS', `${name}: x32 mount`);
    t.equal(outcome(attempt(file, 'call', 'getpid')), 'ok', `${name}: getpid itself runs`);
  }
});

const DENIED = [
  'mount', 'umount2', 'pivot_root', 'setns', 'unshare', 'ptrace', 'process_vm_readv', 'process_vm_writev', 'bpf',
  'perf_event_open', 'userfaultfd', 'keyctl', 'add_key', 'request_key', 'kexec_load', 'kexec_file_load',
  'init_module', 'finit_module', 'delete_module', 'acct', 'swapon', 'swapoff', 'reboot', 'syslog',
  'open_by_handle_at', 'name_to_handle_at', 'iopl', 'ioperm', 'lookup_dcookie', 'quotactl', 'settimeofday',
  'clock_settime', 'adjtimex', 'clock_adjtime', 'sethostname', 'setdomainname', 'vhangup', 'nfsservctl',
  'fsopen', 'fsconfig', 'fsmount', 'fspick', 'open_tree', 'move_mount', 'mount_setattr', 'modify_ldt', 'kcmp',
  'pidfd_getfd', 'fanotify_init', 'chroot',
];

t.test('denied syscalls are violations reported by name', async (t) => {
  for (const [name, file] of Object.entries(profiles)) {
    for (const sc of DENIED) t.equal(attempt(file, 'call', sc).line, `violation ${sc}`, `${name}: ${sc}`);
  }
});

t.test('io_uring and clone3 answer ENOSYS (libuv and glibc fall back)', async (t) => {
  // Without a filter these fail differently (EFAULT/EINVAL), so ENOSYS comes from the filter.
  t.not(outcome(attempt('-', 'call', 'clone3', '0', '0')), 'errno ENOSYS', 'baseline clone3');
  for (const [name, file] of Object.entries(profiles)) {
    for (const sc of ['io_uring_setup', 'io_uring_enter', 'io_uring_register']) {
      t.equal(outcome(attempt(file, 'call', sc, '1', '0')), 'errno ENOSYS', `${name}: ${sc}`);
    }
    t.equal(outcome(attempt(file, 'call', 'clone3', '0', '0')), 'errno ENOSYS', `${name}: clone3`);
  }
});

t.test('clone with any namespace flag is a violation; a plain fork is allowed', async (t) => {
  const flags = { CLONE_NEWNS: 0x20000, CLONE_NEWCGROUP: 0x02000000, CLONE_NEWUTS: 0x04000000, CLONE_NEWIPC: 0x08000000,
    CLONE_NEWUSER: 0x10000000, CLONE_NEWPID: 0x20000000, CLONE_NEWNET: 0x40000000 };
  for (const [name, file] of Object.entries(profiles)) {
    for (const [flag, v] of Object.entries(flags)) {
      t.equal(attempt(file, 'call', 'clone', String(v | 17)).line, 'violation clone', `${name}: ${flag}`);
    }
    t.equal(outcome(attempt(file, 'call', 'clone', '17')), 'ok', `${name}: clone(SIGCHLD)`);
  }
});

t.test('ioctl TIOCSTI/TIOCLINUX are violations, compared on the low 32 bits', async (t) => {
  for (const [name, file] of Object.entries(profiles)) {
    for (const req of ['0x5412', '0xffffffff00005412', '0x100005412', '0x541c', '0xdead00000000541c']) {
      t.equal(attempt(file, 'call', 'ioctl', '0', req, 'buf').line, 'violation ioctl', `${name}: ioctl ${req}`);
    }
    // TIOCGWINSZ goes through; stdin is a pipe, hence ENOTTY from the kernel, not the filter.
    t.equal(outcome(attempt(file, 'call', 'ioctl', '0', '0x5413', 'buf')), 'errno ENOTTY', `${name}: TIOCGWINSZ`);
  }
});

t.test('controls: the same attempts get through without the rules', async (t) => {
  // Proves the attempts above are decided by the filter, not by the kernel or the driver.
  const open = filterFile({ defaultAction: 'allow', rules: [] });
  for (const sc of ['mount', 'ptrace', 'bpf', 'unshare']) t.notMatch(attempt(open, 'call', sc).line, /violation/, sc);
  t.not(attempt(open, 'call', 'clone', String(0x10000000 | 17)).line, 'violation clone', 'clone(CLONE_NEWUSER)');
  t.equal(outcome(attempt(open, 'call', 'socket', '2', '2', '0')), 'ok', 'socket(AF_INET)');
  // A full 64-bit comparison of the ioctl request would let 0xffffffff00005412 through, although
  // the kernel truncates it to TIOCSTI: this is why the profiles compare the low 32 bits.
  const wide = filterFile({ defaultAction: 'allow', rules: [{ syscalls: ['ioctl'], action: 'violation', args: [{ index: 1, op: 'eq', value: 0x5412 }] }] });
  t.equal(attempt(wide, 'call', 'ioctl', '0', '0x5412', 'buf').line, 'violation ioctl');
  t.equal(outcome(attempt(wide, 'call', 'ioctl', '0', '0xffffffff00005412', 'buf')), 'errno ENOTTY', 'slips past a 64-bit compare');
});

t.test('personality: only the values Docker allows', async (t) => {
  for (const [name, file] of Object.entries(profiles)) {
    for (const p of ['0', '8', '0x20000', '0x20008', '0xffffffff', '0xffffffff00000000']) {
      t.equal(outcome(attempt(file, 'call', 'personality', p)), 'ok', `${name}: personality(${p})`);
    }
    for (const p of ['0x40000' /* ADDR_NO_RANDOMIZE */, '0x400000' /* READ_IMPLIES_EXEC */, '0x100040000']) {
      t.equal(attempt(file, 'call', 'personality', p).line, 'violation personality', `${name}: personality(${p})`);
    }
  }
});

t.test('socket families: AF_UNIX only without network', async (t) => {
  for (const [name, file] of Object.entries(profiles)) {
    t.equal(outcome(attempt(file, 'call', 'socket', '1', '1', '0')), 'ok', `${name}: AF_UNIX`);
    t.equal(outcome(attempt(file, 'call', 'socketpair', '1', '1', '0', 'buf')), 'ok', `${name}: socketpair AF_UNIX`);
    for (const [fam, v] of [['AF_INET', '2'], ['AF_INET6', '10'], ['AF_NETLINK', '16'], ['AF_PACKET', '17'],
      ['AF_VSOCK', '40'], ['AF_INET with high bits', '0x100000002']]) {
      t.equal(outcome(attempt(file, 'call', 'socket', v!, '2', '0')), 'errno EAFNOSUPPORT', `${name}: ${fam}`);
    }
    t.equal(outcome(attempt(file, 'call', 'socketpair', '2', '1', '0', 'buf')), 'errno EAFNOSUPPORT', `${name}: socketpair AF_INET`);
  }
});

t.test('socket families with network: AF_UNIX, AF_INET, AF_INET6, NETLINK_ROUTE', async (t) => {
  for (const [name, file] of Object.entries({ default: files.defaultNet, strict: files.strictNet })) {
    t.equal(outcome(attempt(file, 'call', 'socket', '2', '2', '0')), 'ok', `${name}: AF_INET`);
    t.equal(outcome(attempt(file, 'call', 'socket', '10', '2', '0')), 'ok', `${name}: AF_INET6`);
    t.equal(outcome(attempt(file, 'call', 'socket', '16', '3', '0')), 'ok', `${name}: AF_NETLINK/NETLINK_ROUTE`);
    t.equal(outcome(attempt(file, 'call', 'socket', '16', '3', '9')), 'errno EAFNOSUPPORT', `${name}: NETLINK_AUDIT`);
    t.equal(outcome(attempt(file, 'call', 'socket', '17', '3', '0')), 'errno EAFNOSUPPORT', `${name}: AF_PACKET`);
    t.equal(outcome(attempt(file, 'call', 'socket', '40', '1', '0')), 'errno EAFNOSUPPORT', `${name}: AF_VSOCK`);
  }
});

t.test('strict: anything not listed is a violation', async (t) => {
  for (const sc of ['shmget', 'msgget', 'mbind', 'sync', 'ioprio_set', 'mknod']) {
    t.equal(attempt(files.strict, 'call', sc).line, `violation ${sc}`, sc);
  }
  t.equal(outcome(attempt(files.default, 'call', 'sync')), 'ok', 'default allows sync');
});

const NODE_SCRIPT = `
const fs = require('fs'), crypto = require('crypto'), path = require('path'), os = require('os');
const { Worker } = require('worker_threads');
const dir = process.argv[1];
(async () => {
  fs.writeFileSync(path.join(dir, 'a'), 'x');
  await fs.promises.readFile(path.join(dir, 'a'));
  fs.readdirSync(dir); fs.statSync(dir); fs.rmSync(path.join(dir, 'a'));
  await new Promise((r) => setTimeout(r, 10));
  await new Promise((r) => crypto.pbkdf2('a', 'b', 1000, 32, 'sha256', r));
  crypto.randomBytes(8); os.cpus(); os.freemem();
  const w = new Worker('require("worker_threads").parentPort.postMessage(6 * 7)', { eval: true });
  const v = await new Promise((r) => w.once('message', r));
  await w.terminate();
  await new Promise((r) => require('zlib').gzip('abc', r));
  console.log('node ok ' + v);
})();`;

t.test('strict and default are enough for Node.js (fs, timers, crypto, workers, zlib)', async (t) => {
  const dir = fs.mkdtempSync(path.join(tmpDir(), 'node-'));
  for (const [name, file] of Object.entries(profiles)) {
    const r = attempt(file, 'exec', process.execPath, '-e', NODE_SCRIPT, dir);
    t.equal(r.status, 0, `${name}: exit 0 ${r.stderr}`);
    t.match(r.stdout, /node ok 42/, name);
  }
});

t.test('strict is enough for ordinary dynamically linked programs', async (t) => {
  const dir = fs.mkdtempSync(path.join(tmpDir(), 'sh-'));
  const script = `cd ${dir} && echo hello > f && cat f | tr a-z A-Z && ls -la . >/dev/null && ` +
    'x=$(date +%s) && test -n "$x" && mkdir d && mv f d/g && rm -r d && for i in 1 2 3; do echo $i; done | wc -l';
  const r = attempt(files.strict, 'exec', '/bin/sh', '-c', script);
  t.equal(r.status, 0, r.stderr);
  t.equal(r.stdout, 'HELLO\n3\n');
  const ls = attempt(files.strict, 'exec', '/bin/ls', '/');
  t.equal(ls.status, 0, ls.stderr);
  t.match(ls.stdout, /\betc\b/);
  const cat = attempt(files.strict, 'exec', '/bin/cat', '/etc/hostname');
  t.equal(cat.status, 0, cat.stderr);
  const bad = attempt(files.strict, 'exec', process.execPath, '-e', 'require("child_process").execSync("true"); process.setuid && 0; require("fs").writeFileSync("/dev/null", ""); process.kill(process.pid, 0); require("os").setPriority(0); console.log("no violation")');
  t.equal(bad.status, 0, `node with child_process under strict: ${bad.stderr}`);
});

t.test('argument checks: 64-bit comparisons check both halves; low32 only the low one', async (t) => {
  const E = { errno: 'E2BIG' };
  const file = filterFile({
    defaultAction: 'allow',
    rules: [
      { syscalls: ['getpid'], action: E, args: [{ index: 0, op: 'eq', value: 0x100000005 }] },
      { syscalls: ['getppid'], action: E, args: [{ index: 1, op: 'ne', value: 7 }] },
      { syscalls: ['gettid'], action: E, args: [{ index: 5, op: 'maskedEq', mask: 0xff00000000, value: 0x1200000000 }] },
      { syscalls: ['getuid'], action: E, args: [{ index: 2, op: 'anyBitsSet', mask: 1n << 63n }] },
      { syscalls: ['getgid'], action: E, args: [{ index: 3, op: 'eq', value: 5, low32: true }] },
      { syscalls: ['getegid'], action: E, args: [{ index: 0, op: 'eq', value: 1 }, { index: 1, op: 'eq', value: 2 }] },
      { syscalls: ['geteuid'], action: 'kill' },
    ],
  });
  const cases: [string[], string][] = [
    [['getpid', '0x100000005'], 'errno E2BIG'], [['getpid', '5'], 'ok'], [['getpid', '0x200000005'], 'ok'],
    [['getppid', '0', '7'], 'ok'], [['getppid', '0', '0x100000007'], 'errno E2BIG'], [['getppid', '0', '8'], 'errno E2BIG'],
    [['gettid', '0', '0', '0', '0', '0', '0x7712ffffffff'], 'errno E2BIG'], [['gettid', '0', '0', '0', '0', '0', '0x7713ffffffff'], 'ok'],
    [['getuid', '0', '0', '0x8000000000000000'], 'errno E2BIG'], [['getuid', '0', '0', '0x7fffffffffffffff'], 'ok'],
    [['getgid', '0', '0', '0', '0xabcdef0000000005'], 'errno E2BIG'], [['getgid', '0', '0', '0', '6'], 'ok'],
    [['getegid', '1', '2'], 'errno E2BIG'], [['getegid', '1', '3'], 'ok'], [['getegid', '0', '2'], 'ok'],
    [['geteuid'], 'SIGSYS'],
  ];
  for (const [args, want] of cases) t.equal(outcome(attempt(file, 'call', ...args)), want, args.join(' '));
});

t.test('long programs: jumps beyond 255 instructions go through trampolines', async (t) => {
  // A rule with a 64-bit check for every syscall but the two under test: well over 255 instructions
  // between the dispatch and the far rules.
  const others = Object.keys(SYSCALLS).filter((s) => !['getpid', 'gettid', 'execve', 'sendmsg'].includes(s));
  const policy = {
    defaultAction: 'allow',
    rules: [
      { syscalls: ['getpid'], action: { errno: 'E2BIG' }, args: [{ index: 0, op: 'eq', value: 0x1234567890 }] },
      { syscalls: others, action: { errno: 'EPERM' }, args: [{ index: 0, op: 'eq', value: 0x1234567890 }] },
      { syscalls: ['gettid'], action: { errno: 'E2BIG' }, args: [{ index: 0, op: 'eq', value: 0x1234567890 }] },
    ],
  };
  const prog = decode(addon.compileSeccomp(policy));
  t.ok(prog.length > 1000, `${prog.length} instructions`);
  t.ok(prog.some((i) => i.code === 0x05 && i.k > 255), 'uses BPF_JA trampolines');
  const file = filterFile(policy);
  t.equal(outcome(attempt(file, 'call', 'getpid', '0x1234567890')), 'errno E2BIG');
  t.equal(outcome(attempt(file, 'call', 'getpid', '0x34567890')), 'ok');
  t.equal(outcome(attempt(file, 'call', 'gettid', '0x1234567890')), 'errno E2BIG');
  t.equal(outcome(attempt(file, 'call', 'getppid', '0x1234567890')), 'errno EPERM');
  t.equal(outcome(attempt(file, 'call', 'getppid', '0x1234567891')), 'ok');
  const dflt = filterFile({ defaultAction: { errno: 'EACCES' }, rules: [{ syscalls: ['execve', 'sendmsg'], action: 'allow' }] });
  t.equal(outcome(attempt(dflt, 'call', 'getpid')), 'errno EACCES', 'errno default action');
});

t.test('needsListener says whether the program can return USER_NOTIF', async (t) => {
  t.equal(addon.compileSeccomp(resolveSeccompProfile('default', { network: false })).needsListener, true);
  t.equal(addon.compileSeccomp({ defaultAction: 'allow', rules: [{ syscalls: ['mount'], action: { errno: 'EPERM' } }] }).needsListener, false);
});

function caught(fn: () => unknown): { code?: string; field?: string; message?: string } | undefined {
  try {
    fn();
  } catch (e) {
    return e as { code?: string; field?: string; message?: string };
  }
  return undefined;
}

function invalid(t: Test, policy: unknown, field: string, message: RegExp): void {
  // The TypeScript validation and the addon both refuse, naming the same field.
  const ts = caught(() => validateSeccompPolicy(policy));
  t.ok(ts instanceof InvalidOptionError, `ts refuses: ${field}`);
  t.equal(ts?.field, field, 'ts names the field');
  t.match(ts?.message, message);
  const native = caught(() => addon.compileSeccomp(policy));
  t.equal(native?.code, 'ERR_INVALID_OPTION', `addon refuses: ${field}`);
  t.equal(native?.field, field, `addon names the field (${native?.message})`);
}

t.test('invalid policies name the field', async (t) => {
  const ok = { syscalls: ['read'], action: 'allow' };
  invalid(t, { defaultAction: 'allow', rules: [ok, ok, ok, { syscalls: ['read', 'frobnicate'], action: 'allow' }] },
    'seccomp.rules[3].syscalls[1]', /unknown x86_64 syscall/);
  invalid(t, { defaultAction: 'deny', rules: [] }, 'seccomp.defaultAction', /must be/);
  invalid(t, { defaultAction: 'allow', rules: [{ syscalls: ['read'], action: 'trap' }] }, 'seccomp.rules[0].action', /must be/);
  invalid(t, { defaultAction: 'allow', rules: [{ syscalls: ['read'], action: { errno: 'ENOPE' } }] }, 'seccomp.rules[0].action.errno', /unknown errno/);
  invalid(t, { defaultAction: 'allow', rules: [{ syscalls: ['read'], action: { errno: 5000 } }] }, 'seccomp.rules[0].action.errno', /between 1 and 4095/);
  invalid(t, { defaultAction: 'allow', rules: [{ syscalls: ['read'], action: 'allow', args: [{ index: 6, op: 'eq', value: 1 }] }] }, 'seccomp.rules[0].args[0].index', /0\.\.5/);
  invalid(t, { defaultAction: 'allow', rules: [{ syscalls: ['read'], action: 'allow', args: [{ index: 0, op: 'lt', value: 1 }] }] }, 'seccomp.rules[0].args[0].op', /eq/);
  invalid(t, { defaultAction: 'allow', rules: [{ syscalls: ['read'], action: 'allow', args: [{ index: 0, op: 'eq', value: -1 }] }] }, 'seccomp.rules[0].args[0].value', /non-negative/);
  invalid(t, { defaultAction: 'allow', rules: [{ syscalls: ['read'], action: 'allow', args: [{ index: 0, op: 'eq', value: 1n << 64n }] }] }, 'seccomp.rules[0].args[0].value', /2\^64/);
  invalid(t, { defaultAction: 'allow', rules: [{ syscalls: ['read'], action: 'allow', args: [{ index: 0, op: 'eq', value: 0x100000000, low32: true }] }] }, 'seccomp.rules[0].args[0].value', /32 bits/);
  invalid(t, { defaultAction: 'allow', rules: [{ syscalls: ['read'], action: 'allow', args: [{ index: 0, op: 'maskedEq', mask: 0xf0, value: 0x1 }] }] }, 'seccomp.rules[0].args[0].value', /outside the mask/);
  invalid(t, { defaultAction: 'allow', rules: [{ syscalls: ['read'], action: 'allow', args: [{ index: 0, op: 'anyBitsSet' }] }] }, 'seccomp.rules[0].args[0].mask', /required/);
  invalid(t, { defaultAction: 'allow', rules: [{ syscalls: [], action: 'allow' }] }, 'seccomp.rules[0].syscalls', /syscall/);
  invalid(t, { defaultAction: 'allow', rules: 'read' }, 'seccomp.rules', /array/);
  invalid(t, null, 'seccomp', /object/);
});

t.test('execve and sendmsg must stay allowed (the launcher needs them after installing)', async (t) => {
  invalid(t, { defaultAction: 'allow', rules: [{ syscalls: ['getpid', 'execve'], action: 'violation' }] }, 'seccomp.rules[0].syscalls[1]', /execve must stay allowed/);
  invalid(t, { defaultAction: 'allow', rules: [{ syscalls: ['sendmsg'], action: { errno: 'EPERM' }, args: [{ index: 2, op: 'eq', value: 0 }] }] }, 'seccomp.rules[0].syscalls[0]', /sendmsg must stay allowed/);
  invalid(t, { defaultAction: 'violation', rules: [{ syscalls: ['execve'], action: 'allow' }] }, 'seccomp.rules', /sendmsg must be allowed/);
  invalid(t, { defaultAction: 'violation', rules: [{ syscalls: ['execve', 'sendmsg'], action: 'allow', args: [{ index: 0, op: 'ne', value: 0 }] }] }, 'seccomp.rules', /must be allowed/);
  // Conditional allow followed by an unconditional allow is fine.
  t.doesNotThrow(() => addon.compileSeccomp({ defaultAction: 'kill', rules: [
    { syscalls: ['execve', 'sendmsg'], action: 'allow', args: [{ index: 0, op: 'ne', value: 0 }] },
    { syscalls: ['execve', 'sendmsg'], action: 'allow' }] }));
});

t.test('resolveSeccompProfile', async (t) => {
  t.equal(resolveSeccompProfile('none', { network: false }), null);
  t.equal(caught(() => resolveSeccompProfile('lax' as 'none', { network: false }))?.field, 'seccomp');
  const custom: SeccompPolicy = { defaultAction: 'allow', rules: [{ syscalls: ['mount'], action: 'violation' }] };
  t.same(resolveSeccompProfile(custom, { network: false }), custom);
  t.equal(caught(() => resolveSeccompProfile({ defaultAction: 'allow', rules: [{ syscalls: ['nope'], action: 'allow' }] },
    { network: false }))?.field, 'seccomp.rules[0].syscalls[0]');
  for (const network of [false, true]) {
    for (const name of ['default', 'strict'] as const) {
      const p = resolveSeccompProfile(name, { network })!;
      t.same(validateSeccompPolicy(p), p, `${name} (network ${network}) passes its own validation`);
    }
  }
});
