// What the VM harness (test/vm) promises the cgroup and namespace tests: a pure cgroup v2 host with
// the controllers available, limits that the kernel enforces, and working namespaces. Run inside
// the VM by `npm run test:vm` (in the root cgroup, then from system.slice/warden-test); skipped with
// the reason on any host that is not pure cgroup v2, such as a hybrid one.
import t, { Test } from 'tap';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { sh } from './helpers/sandbox';

const CG = '/sys/fs/cgroup';
const CGROUP2_SUPER_MAGIC = 0x63677270;

function pureCgroup2Reason(): string | null {
  if (process.platform !== 'linux') return 'not Linux';
  if (process.getuid?.() !== 0) return 'needs root to create cgroups';
  let type: number;
  try {
    type = fs.statfsSync(CG).type;
  } catch (e) {
    return `cannot statfs ${CG}: ${(e as Error).message}`;
  }
  if (type !== CGROUP2_SUPER_MAGIC) return `${CG} is not cgroup2 (statfs type 0x${type.toString(16)}): hybrid or legacy host`;
  const v1 = fs.readFileSync('/proc/mounts', 'utf8').split('\n').filter((l) => l.split(' ')[2] === 'cgroup');
  if (v1.length) return `cgroup v1 hierarchies are mounted too: ${v1.map((l) => l.split(' ')[1]).join(' ')}`;
  return null;
}

const reason = pureCgroup2Reason();
if (reason) {
  t.plan(0, `not a pure cgroup v2 host: ${reason} (run npm run test:vm)`);
} else {
  smoke();
}

function ownCgroup(): string {
  const line = fs.readFileSync('/proc/self/cgroup', 'utf8').split('\n').find((l) => l.startsWith('0::'));
  if (!line) throw new Error('no cgroup2 entry in /proc/self/cgroup');
  return line.slice(3);
}
const read = (cg: string, file: string) => fs.readFileSync(path.join(cg, file), 'utf8');
const write = (cg: string, file: string, value: string) => fs.writeFileSync(path.join(cg, file), value);
const keyed = (text: string, key: string) => Number((new RegExp(`^${key} (\\d+)$`, 'm').exec(text) ?? [])[1] ?? NaN);

/** Run argv in the cgroup dir: a shell puts itself there and execs, so nothing runs outside it. */
function runIn(cg: string, argv: string[]): Promise<{ code: number | null; signal: NodeJS.Signals | null; out: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn('/bin/sh', ['-c', 'echo $$ > "$0/cgroup.procs" && exec "$@"', cg, ...argv], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (out += d));
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ code, signal, out }));
  });
}

function rmCgroup(cg: string): void {
  if (!fs.existsSync(cg)) return;
  try { write(cg, 'cgroup.kill', '1'); } catch { /* no processes or no cgroup.kill */ }
  for (let i = 0; i < 100; i++) {
    try { fs.rmdirSync(cg); return; } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EBUSY') throw e;
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 20);
    }
  }
  fs.rmdirSync(cg);
}

/**
 * A cgroup for limits below our own. In the root cgroup (exempt from "no internal processes") it is
 * a plain child. Below the root, our cgroup holds us, so it may not enable controllers: first move
 * ourselves into a leaf, as a host under systemd must, and undo that afterwards.
 */
function limitCgroup(t: Test, controllers: string[]): string {
  const own = path.join(CG, ownCgroup()).replace(/\/$/, '');
  let undoLeaf = () => {};
  if (own !== CG) {
    if (controllers.includes('memory')) {
      // Only domain controllers (memory, io) are refused; threaded ones (pids, cpu, cpuset) are not.
      const e = tryWrite(own, 'cgroup.subtree_control', '+memory');
      if (e === null) write(own, 'cgroup.subtree_control', '-memory');
      t.equal(e, 'EBUSY', 'our cgroup holds a process, so it cannot enable memory (no internal processes)');
    }
    const leaf = path.join(own, `smoke-${process.pid}-host`);
    fs.mkdirSync(leaf);
    write(leaf, 'cgroup.procs', String(process.pid));
    write(own, 'cgroup.subtree_control', controllers.map((c) => `+${c}`).join(' '));
    undoLeaf = () => {
      write(own, 'cgroup.subtree_control', controllers.map((c) => `-${c}`).join(' '));
      write(own, 'cgroup.procs', String(process.pid));
      fs.rmdirSync(leaf);
    };
  }
  const cg = path.join(own, `smoke-${process.pid}-${controllers.join('-')}`);
  fs.mkdirSync(cg);
  t.teardown(() => {
    rmCgroup(cg);
    undoLeaf();
  });
  for (const c of controllers) t.ok(fs.existsSync(path.join(cg, `${c}.max`)), `${c}.max exists in the new cgroup`);
  return cg;
}
function tryWrite(cg: string, file: string, value: string): string | null {
  try { write(cg, file, value); return null; } catch (e) { return (e as NodeJS.ErrnoException).code ?? String(e); }
}

function smoke(): void {
  t.test('/sys/fs/cgroup is cgroup2 and alone', async (t) => {
    t.equal(fs.statfsSync(CG).type, CGROUP2_SUPER_MAGIC);
    const mounts = fs.readFileSync('/proc/mounts', 'utf8').split('\n').filter((l) => /^\S+ \S+ cgroup2? /.test(l));
    t.same(mounts.map((l) => l.split(' ').slice(1, 3).join(' ')), [`${CG} cgroup2`], 'one cgroup mount, the v2 one');
    const lines = fs.readFileSync('/proc/self/cgroup', 'utf8').trim().split('\n');
    t.equal(lines.length, 1, `one line in /proc/self/cgroup: ${lines.join(' | ')}`);
    t.match(lines[0], /^0::\//);
    t.comment(`test process cgroup: ${ownCgroup()}`);
  });

  t.test('memory, pids and cpu are available to our cgroup', async (t) => {
    const own = path.join(CG, ownCgroup());
    const rootControllers = read(CG, 'cgroup.controllers').trim().split(/\s+/);
    const ours = read(own, 'cgroup.controllers').trim().split(/\s+/);
    t.comment(`root: ${rootControllers.join(' ')}; ours (${ownCgroup()}): ${ours.join(' ')}`);
    for (const c of ['memory', 'pids', 'cpu']) {
      t.ok(rootControllers.includes(c), `${c} in the root's cgroup.controllers`);
      t.ok(ours.includes(c), `${c} in our cgroup's cgroup.controllers`);
    }
  });

  t.test('an allocation beyond memory.max is OOM-killed', async (t) => {
    const cg = limitCgroup(t, ['memory']);
    write(cg, 'memory.max', String(96 << 20));
    if (fs.existsSync(path.join(cg, 'memory.swap.max'))) write(cg, 'memory.swap.max', '0');
    const balloon = 'const a = []; for (let i = 0; i < 256; i++) a.push(Buffer.alloc(8 << 20, 1)); console.log("survived")';
    const r = await runIn(cg, [process.execPath, '-e', balloon]);
    t.equal(r.signal, 'SIGKILL', `the balloon is killed (code ${r.code}, output ${JSON.stringify(r.out.slice(0, 200))})`);
    t.notMatch(r.out, /survived/);
    const events = read(cg, 'memory.events');
    t.ok(keyed(events, 'oom_kill') >= 1, `memory.events counts the OOM kill: ${events.replace(/\n/g, ', ')}`);
    t.ok(Number(read(cg, 'memory.peak').trim()) <= 96 << 20, 'memory.peak stayed within memory.max');
  });

  t.test('a fork beyond pids.max is refused', async (t) => {
    const cg = limitCgroup(t, ['pids']);
    write(cg, 'pids.max', '4');
    const r = await runIn(cg, ['/bin/sh', '-c', 'for i in 1 2 3 4 5 6 7 8; do sleep 1 & done; wait']);
    t.ok(keyed(read(cg, 'pids.events'), 'max') >= 1, `pids.events counts refused forks (sh said ${JSON.stringify(r.out.slice(0, 120))})`);
  });

  // busybox's unshare (the VM's) has no cgroup namespace option; the sandbox tests cover that one.
  t.test('user, pid, mount, net, ipc and uts namespaces work', async (t) => {
    const r = await runIn(path.join(CG, ownCgroup()), [
      'unshare', '-U', '-r', '-p', '-f', '-m', '-u', '-i', '-n', '--mount-proc',
      '/bin/sh', '-c', 'echo "pid=$$ uid=$(id -u)"; hostname ns-smoke && echo "host=$(hostname)"; cat /proc/net/dev',
    ]);
    t.equal(r.code, 0, `unshare ran: ${JSON.stringify(r.out)}`);
    t.match(r.out, /pid=1 uid=0/, 'pid 1 and root inside the new pid and user namespaces');
    t.match(r.out, /host=ns-smoke/, 'own hostname in the uts namespace');
    const ifaces = [...r.out.matchAll(/^\s*([\w.-]+):/gm)].map((m) => m[1]);
    t.same(ifaces, ['lo'], 'a fresh network namespace: loopback only');
  });

  t.test('the addon runs a sandbox in the VM: pid 1 of its own pid namespace, loopback only', async (t) => {
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error('the sandbox did not finish within 30 s')), 30_000);
    });
    const r = await Promise.race([sh('echo "pid=$$"; cat /proc/net/dev', { seccomp: 'none' }), deadline]).finally(() => clearTimeout(timer));
    t.equal(r.code, 0, `the sandbox ran: ${JSON.stringify(r.stderr)}`);
    t.match(r.stdout, /^pid=1$/m, 'pid 1 inside');
    const ifaces = [...r.stdout.matchAll(/^\s*([\w.-]+):/gm)].map((m) => m[1]);
    t.same(ifaces, ['lo'], 'its own network namespace: loopback only');
  });
}
