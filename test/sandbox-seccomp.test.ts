/**
 * Each seccomp rule, attempted from inside a real sandbox by a small C program. Violations must come
 * back from the launcher by name, and the attempted syscall must not have run.
 */
import t from 'tap';
import * as path from 'node:path';
import { Sandbox } from '../lib/sandbox/sandbox';
import type { Violation } from '../lib/sandbox/types';
import type { NetworkOptions } from '../lib/net/policy';
import { attemptPath } from './helpers/seccomp';

interface Outcome {
  line: string;
  code: number | null;
  signal: string | null;
  violation: Violation | null;
}

async function attemptInside(profile: string, args: string[], extra: { shareNet?: boolean; network?: NetworkOptions } = {}): Promise<Outcome> {
  const bin = attemptPath();
  const sb = Sandbox.spawn({
    command: ['/opt/attempt', '-', 'call', ...args],
    binds: [{ source: bin, target: '/opt/attempt' }],
    seccomp: profile,
    ...extra,
  });
  let out = '';
  const drained = new Promise((resolve) => sb.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d)).on('end', resolve));
  // exited may come before the pipe is drained.
  const [r] = await Promise.all([sb.exited, drained]);
  return { line: out.trim(), code: r.code, signal: r.signal, violation: r.violation };
}

t.test('under a network policy (a host thread receives the notifications), a denied syscall is still a violation', async (t) => {
  // No traffic: the policy only makes the listener's notifications go through the network thread.
  const o = await attemptInside('default', ['mount', 'str:none', 'str:/tmp', 'str:tmpfs', '0', '0'], { network: { allow: ['198.51.100.1'], dnsServers: ['198.51.100.53'] } });
  t.equal(o.violation?.kind, 'seccomp', 'a seccomp violation');
  t.equal(o.violation?.syscall, 'mount', 'reported by name');
  t.equal(o.signal, 'SIGKILL', 'the sandbox was killed');
});

const CLONE_NEW = { CLONE_NEWNS: 0x20000, CLONE_NEWUSER: 0x10000000, CLONE_NEWPID: 0x20000000, CLONE_NEWNET: 0x40000000 };

for (const profile of ['default', 'strict']) {
  t.test(`${profile}: denied syscalls are violations reported by name`, async (t) => {
    const denied: Array<[string, string[]]> = [
      ['mount', ['mount', 'str:none', 'str:/tmp', 'str:tmpfs', '0', '0']],
      ['unshare', ['unshare', String(CLONE_NEW.CLONE_NEWUSER)]],
      ['setns', ['setns', '0', '0']],
      ['ptrace', ['ptrace', '16', '1', '0', '0']],
      ['bpf', ['bpf', '0', 'buf', '64']],
      ['perf_event_open', ['perf_event_open', 'buf', '0', '-1', '-1', '0']],
      ['userfaultfd', ['userfaultfd', '0']],
      ['keyctl', ['keyctl', '0', '0']],
      ['pivot_root', ['pivot_root', 'str:/', 'str:/']],
      ['process_vm_readv', ['process_vm_readv', '1', '0', '0', '0', '0', '0']],
    ];
    for (const [name, args] of denied) {
      const o = await attemptInside(profile, args);
      t.equal(o.violation?.kind, 'seccomp', `${name}: a seccomp violation`);
      t.equal(o.violation?.syscall, name, `${name}: reported by name`);
      t.equal(o.signal, 'SIGKILL', `${name}: the sandbox was killed`);
      t.notMatch(o.line, /^ok/, `${name}: the syscall never returned success`);
    }
  });

  t.test(`${profile}: clone with namespace flags is a violation, a plain fork is not`, async (t) => {
    for (const [flag, value] of Object.entries(CLONE_NEW)) {
      const o = await attemptInside(profile, ['clone', String(value | 17), '0', '0', '0', '0']);
      t.equal(o.violation?.syscall, 'clone', `clone(${flag})`);
    }
    const fork = await attemptInside(profile, ['clone', '17', '0', '0', '0', '0']);
    t.equal(fork.violation, null);
    t.match(fork.line, /^ok/);
  });

  t.test(`${profile}: clone3 and io_uring answer ENOSYS (glibc and libuv fall back)`, async (t) => {
    for (const args of [['clone3', 'buf', '88'], ['io_uring_setup', '8', 'buf'], ['io_uring_enter', '0', '0', '0', '0', '0', '0'], ['io_uring_register', '0', '0', '0', '0']]) {
      const o = await attemptInside(profile, args);
      t.equal(o.line, 'errno ENOSYS', `${args[0]}`);
      t.equal(o.violation, null);
    }
  });

  t.test(`${profile}: TIOCSTI and TIOCLINUX denied on the low 32 bits of the request`, async (t) => {
    for (const req of ['0x5412', '0xffffffff00005412', '0x100005412', '0x541c', '0xdead00000000541c']) {
      const o = await attemptInside(profile, ['ioctl', '0', req, 'buf']);
      t.equal(o.violation?.syscall, 'ioctl', `ioctl request ${req}`);
    }
    const benign = await attemptInside(profile, ['ioctl', '0', '0x5401', 'buf']); // TCGETS: ENOTTY on /dev/null
    t.equal(benign.violation, null);
    t.equal(benign.line, 'errno ENOTTY');
  });

  t.test(`${profile}: personality restricted`, async (t) => {
    t.equal((await attemptInside(profile, ['personality', '0xffffffff'])).violation, null, 'query allowed');
    t.equal((await attemptInside(profile, ['personality', '0x0400000'])).violation?.syscall, 'personality', 'READ_IMPLIES_EXEC denied');
  });

  t.test(`${profile}: socket families limited by the network setting`, async (t) => {
    t.match((await attemptInside(profile, ['socket', '1', '1', '0'])).line, /^ok/, 'AF_UNIX allowed');
    t.equal((await attemptInside(profile, ['socket', '2', '1', '0'])).line, 'errno EAFNOSUPPORT', 'AF_INET refused without network');
    t.equal((await attemptInside(profile, ['socket', '16', '3', '0'])).line, 'errno EAFNOSUPPORT', 'AF_NETLINK refused without network');
    t.equal((await attemptInside(profile, ['socket', '17', '3', '0'])).line, 'errno EAFNOSUPPORT', 'AF_PACKET refused');
    t.match((await attemptInside(profile, ['socket', '2', '1', '0'], { shareNet: true })).line, /^ok/, 'AF_INET allowed with the host network');
    t.equal((await attemptInside(profile, ['socket', '17', '3', '0'], { shareNet: true })).line, 'errno EAFNOSUPPORT', 'AF_PACKET refused with network too');
  });

  t.test(`${profile}: the x32 ABI and foreign architectures are killed`, async (t) => {
    const x32 = await attemptInside(profile, ['0x40000027']); // getpid | __X32_SYSCALL_BIT
    t.equal(x32.signal, 'SIGSYS');
    t.equal(x32.line, '');
  });
}

t.test('strict: a syscall outside the allow-list is a violation; Node runs under strict', async (t) => {
  const o = await attemptInside('strict', ['syslog', '3', 'buf', '16']);
  t.equal(o.violation?.syscall, 'syslog');
  const node = process.execPath;
  const sb = Sandbox.spawn({
    command: [node, '-e', 'require("fs").readdirSync("/"); setTimeout(() => console.log(require("crypto").createHash("sha256").update("x").digest("hex").slice(0, 8)), 5)'],
    binds: [{ source: path.dirname(node), target: path.dirname(node) }],
    seccomp: 'strict',
  });
  let out = '';
  let err = '';
  const drained = [
    new Promise((resolve) => sb.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d)).on('end', resolve)),
    new Promise((resolve) => sb.stderr!.setEncoding('utf8').on('data', (d: string) => (err += d)).on('end', resolve)),
  ];
  const [r] = await Promise.all([sb.exited, ...drained]);
  t.equal(r.violation, null, `no violation (${err})`);
  t.equal(r.code, 0);
  t.equal(out.trim(), '2d711642');
});
