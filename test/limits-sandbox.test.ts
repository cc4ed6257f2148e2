// Limits through Sandbox.spawn: the launcher places the child in its cgroups before it runs, the
// handle reports violations and stats, and teardown leaves nothing. Plus fail-closed and degraded mode.
import t from 'tap';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Sandbox } from '../lib';
import { LimitError } from '../lib/errors';
import { SandboxCgroup, hostLayout, listSandboxCgroups, type CgroupLayout } from '../lib/limits';
import { discoverOwnCgroups } from '../lib/limits/discover';
import { addon, type NativePlan, type NativeSetupError } from '../lib/native';
import { addonFile } from '../lib/native-file';
import { buildPlan } from '../lib/sandbox/plan';
import { alive, firstLine, withTimeout } from './limits-helpers';

function launcherUnavailable(): string | undefined {
  try {
    const sb = Sandbox.spawn({ command: ['/bin/sh', '-c', 'exit 0'], seccomp: 'none', limits: { pids: 8 } });
    void sb.exited;
    return undefined;
  } catch (e) {
    return `Sandbox.spawn with limits fails here: ${(e as Error).message}`;
  }
}
const skip = launcherUnavailable();
if (skip !== undefined) t.comment(`SKIP: ${skip}`);

// The paths, in a /proc/<pid>/cgroup text, of the hierarchies a { memory, pids } sandbox is placed
// in: the cgroup2 one (where there is one) and the v1 memory and pids ones (where they are v1).
function limitedHierarchies(text: string): string[] {
  return text.trim().split('\n').map((l) => l.split(':'))
    .filter(([id, c]) => (id === '0' && c === '') || c!.split(',').some((n) => n === 'memory' || n === 'pids'))
    .map((f) => f.slice(2).join(':'));
}
function expectedHierarchies(): number {
  const layout = hostLayout();
  return (layout.v2 !== undefined ? 1 : 0) + new Set([layout.v1.get('memory'), layout.v1.get('pids')].filter((h) => h !== undefined)).size;
}

t.test('the child is in its cgroup from its first instruction', { skip }, async (t) => {
  const sb = Sandbox.spawn({
    command: ['/bin/sh', '-c', 'cat /proc/self/cgroup'], seccomp: 'none', namespaces: { cgroup: false },
    stdio: ['ignore', 'pipe', 'ignore'], limits: { memory: '64M', pids: 16 },
  });
  const text = await withTimeout(new Promise<string>((resolve) => {
    let out = '';
    sb.stdout!.on('data', (d: Buffer) => { out += d; });
    sb.stdout!.on('end', () => resolve(out));
  }), 5000, 'output');
  const r = await sb.exited;
  t.equal(r.code, 0);
  // Every hierarchy that holds a limit or serves the kill (memory, pids, the cgroup2 one) names
  // the one sandbox cgroup: the v1 ones by the child's own write, the cgroup2 one by clone3.
  const placed = limitedHierarchies(text);
  t.equal(placed.length, expectedHierarchies(), 'the cgroup2 hierarchy and the memory and pids ones are listed');
  const names = new Set(placed.map((p) => /\/(warden\.\d+\.\d+)$/.exec(p)?.[1]));
  t.same([...names], [[...names][0]], 'one cgroup name in each of them');
  t.match([...names][0], new RegExp(`^warden\\.${process.pid}\\.\\d+$`), 'the sandbox cgroup, named after this host');
  t.equal(r.violation, null);
});

t.test('placed before the cgroup namespace is made: inside, each of its hierarchies is the root', { skip }, async (t) => {
  const sb = Sandbox.spawn({
    command: ['/bin/sh', '-c', 'cat /proc/self/cgroup; read x'], seccomp: 'none',
    stdio: ['pipe', 'pipe', 'ignore'], limits: { memory: '64M', pids: 16 },
  });
  const text = await withTimeout(new Promise<string>((resolve) => {
    let out = '';
    sb.stdout!.on('data', (d: Buffer) => { out += d; });
    sb.stdout!.on('end', () => resolve(out));
    setTimeout(() => {
      // Seen from the host meanwhile, the same process is in the sandbox cgroup.
      const host = limitedHierarchies(fs.readFileSync(`/proc/${sb.pid}/cgroup`, 'utf8'));
      t.equal(host.length, expectedHierarchies());
      const sandboxCgroup = new RegExp(`/warden\\.${process.pid}\\.\\d+$`);
      t.ok(host.every((p) => sandboxCgroup.test(p)), `the host sees it in its sandbox cgroup in each (${host.join(' ')})`);
      sb.stdin!.end('x\n');
    }, 100);
  }), 5000, 'output');
  t.equal((await sb.exited).code, 0);
  const inside = limitedHierarchies(text);
  t.equal(inside.length, expectedHierarchies());
  t.ok(inside.every((p) => p === '/'), `each is the root of its cgroup namespace (${inside.join(' ')})`);
});

const ownCpuset = (() => {
  const layout = hostLayout();
  return layout.v1.has('cpuset') ? discoverOwnCgroups(layout).v1.get('cpuset') : undefined;
})();
t.test('a child that cannot move itself into a v1 cgroup stops before execve, naming the file', {
  skip: ownCpuset === undefined ? 'no cgroup v1 cpuset hierarchy on this host (an empty cpuset is the refusal this test uses)' : false,
}, async (t) => {
  // An empty cpuset cgroup (no cpus, no mems) refuses every task with ENOSPC: a real kernel refusal
  // of the child's own tasks write, driven through the launcher directly.
  const own = ownCpuset!;
  const dir = path.join(own, `warden-test.${process.pid}.empty-cpuset`);
  fs.mkdirSync(dir);
  t.teardown(() => fs.rmdirSync(dir));
  t.equal(fs.readFileSync(path.join(dir, 'cpuset.cpus'), 'utf8').trim(), '', 'the cpuset is empty');
  const built = buildPlan({ command: ['/bin/true'] });
  const plan = { ...built.plan, fds: [], seccomp: null, cgroupDir: '', cgroupTasks: [path.join(dir, 'tasks')] } as NativePlan;
  let err: NativeSetupError | undefined;
  try {
    new (addon().SandboxProcess)(plan, () => {}, () => {});
  } catch (e) {
    err = e as NativeSetupError;
  }
  t.ok(err, 'the launch fails');
  t.equal(err?.code, 'ERR_SANDBOX_SETUP');
  t.equal(err?.stage, 'cgroup-place');
  t.equal(err?.errno, os.constants.errno.ENOSPC, 'the kernel\'s ENOSPC');
  t.equal(err?.detail, path.join(dir, 'tasks'), 'the file is named');
  t.equal(fs.readFileSync(path.join(dir, 'tasks'), 'utf8'), '', 'nothing is left in it');
});

t.test('the child is created in its cgroup2 directory (clone3 CLONE_INTO_CGROUP) and moves itself into the v1 ones', { skip }, async (t) => {
  // A real sandbox, held running; the kernel's own membership files must hold its pid in every
  // directory its SandboxCgroup names. The cgroup2 one is not among the files the child writes
  // itself into, so only the clone can have put it there.
  const sb = Sandbox.spawn({
    command: ['/bin/sh', '-c', 'echo ready; read x'], seccomp: 'none', namespaces: { cgroup: false },
    stdio: ['pipe', 'pipe', 'ignore'], limits: { memory: '64M', pids: 16 },
  });
  t.teardown(() => { if (sb.exitResult === null) sb.kill(); });
  await withTimeout(new Promise<void>((resolve, reject) => {
    sb.stdout!.once('data', () => resolve());
    sb.stdout!.once('end', () => reject(new Error('the sandbox ended before it printed ready')));
  }), 5000, 'the sandbox to run');
  const cg = (sb as unknown as { cgroup: SandboxCgroup | undefined }).cgroup;
  if (cg === undefined) throw new Error('a sandbox spawned with limits has no SandboxCgroup');
  const holds = (file: string) => fs.readFileSync(file, 'utf8').split('\n').includes(String(sb.pid));
  const v2 = cg.backend?.v2Dir;
  const v1Dirs = cg.procsFiles.filter((f) => v2 === undefined || !f.startsWith(`${v2}/`)).map((f) => path.dirname(f));
  t.same(cg.tasksFiles, v1Dirs.map((d) => `${d}/tasks`), 'each v1 hierarchy: its tasks file, which the child writes itself into');
  for (const f of cg.tasksFiles) t.ok(holds(f), `the kernel lists pid ${sb.pid} in ${f}`);
  const own = fs.readFileSync(`/proc/${sb.pid}/cgroup`, 'utf8');
  if (v2 === undefined) {
    t.equal(cg.cloneIntoDir, undefined, 'no cgroup2 directory');
  } else {
    t.equal(cg.cloneIntoDir, v2);
    t.notOk(cg.tasksFiles.some((f) => f.startsWith(`${v2}/`)), 'the cgroup2 directory is not among them');
    t.ok(holds(path.join(v2, 'cgroup.procs')), `the kernel lists pid ${sb.pid} in ${v2}/cgroup.procs`);
    const line = own.split('\n').find((l) => l.startsWith('0::')) ?? '';
    t.equal(path.basename(line.slice(3)), path.basename(v2), `its /proc/<pid>/cgroup names the sandbox's cgroup2 directory (${line})`);
  }
  sb.stdin!.end('x\n');
  t.equal((await withTimeout(sb.exited, 5000, 'exit')).code, 0);
});

t.test('where the host answers clone3 with ENOSYS (as container runtimes\' seccomp does), the child is still placed before it runs', { skip }, async (t) => {
  // A second host process, under a filter that fails clone3 with ENOSYS, spawns a sandbox that
  // prints its cgroups. It gets a cgroup of its own first (cgroup v2 gives no controllers to the
  // children of a cgroup that holds other processes, such as this test's).
  const { spawn } = await import('node:child_process');
  const holder = SandboxCgroup.create({ pids: 256 });
  const script = `
    process.stdin.once('data', () => {
      const bpf = Buffer.alloc(32);
      const ins = (i, code, jt, jf, k) => { bpf.writeUInt16LE(code, i * 8); bpf[i * 8 + 2] = jt; bpf[i * 8 + 3] = jf; bpf.writeUInt32LE(k >>> 0, i * 8 + 4); };
      ins(0, 0x20, 0, 0, 0);               // A = syscall number
      ins(1, 0x15, 0, 1, 435);             // clone3?
      ins(2, 0x06, 0, 0, 0x00050000 | 38); // ERRNO(ENOSYS)
      ins(3, 0x06, 0, 0, 0x7fff0000);      // ALLOW
      require(process.argv[2]).restrictSelf(bpf);
      const sb = require(process.argv[1]).Sandbox.spawn({ command: ['/bin/cat', '/proc/self/cgroup'], seccomp: 'none',
        namespaces: { cgroup: false }, stdio: ['ignore', 'inherit', 'inherit'], limits: { memory: '64M', pids: 16 } });
      sb.exited.then((r) => process.exit(r.code ?? 99));
    });`;
  const child = spawn(process.execPath, ['-e', script, path.join(__dirname, '..', 'lib'), addonFile()], { stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '', err = '';
  child.stdout!.on('data', (d: Buffer) => { out += d; });
  child.stderr!.on('data', (d: Buffer) => { err += d; });
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  holder.attach(child.pid!);
  child.stdin!.end('go\n');
  const code = await withTimeout(exited, 20_000, 'the second host');
  // What the second host made in its cgroup (on cgroup v2, the leaf it moved itself into).
  for (const dir of holder.backend?.dirs ?? []) {
    for (const e of fs.readdirSync(dir, { withFileTypes: true })) if (e.isDirectory()) fs.rmdirSync(path.join(dir, e.name));
  }
  await holder.destroy();
  t.equal(code, 0, err);
  const lines = out.trim().split('\n');
  const placed = (re: RegExp) => lines.find((l) => re.test(l)) ?? '';
  t.match(placed(/^0::/), new RegExp(`warden\\.${child.pid}\\.\\d+`), 'in its cgroup2 directory');
  if (hostLayout().v1.has('memory')) t.match(placed(/:memory:/), new RegExp(`warden\\.${child.pid}\\.\\d+`), 'and in its v1 memory cgroup');
});

t.test('memory balloon: violation event, exited result, stats', { skip }, async (t) => {
  const sb = Sandbox.spawn({
    command: ['/bin/sh', '-c', 'x=0123456789abcdef; while :; do x="$x$x"; done'], seccomp: 'none', limits: { memory: '32M' },
  });
  const events: unknown[] = [];
  sb.on('violation', (v) => events.push(v));
  const r = await withTimeout(sb.exited, 10_000, 'exit');
  t.equal(r.signal, 'SIGKILL');
  t.equal(r.violation?.kind, 'memory');
  t.equal(r.violation?.limit, 32 * 1024 * 1024);
  t.same(events[0], r.violation, 'the same violation was emitted');
  t.ok((sb.stats()?.memory.peak ?? 32 * 1024 * 1024) > 16 * 1024 * 1024, 'stats after exit keep the last counters');
});

t.test('timeout and cpu-time through the handle', { skip }, async (t) => {
  const a = Sandbox.spawn({ command: ['/bin/sh', '-c', 'sleep 30'], seccomp: 'none', limits: { timeout: '250ms' } });
  const b = Sandbox.spawn({ command: ['/bin/sh', '-c', 'while :; do :; done'], seccomp: 'none', limits: { cpuTime: '300ms' } });
  const [ra, rb] = await withTimeout(Promise.all([a.exited, b.exited]), 10_000, 'both to end');
  t.equal(ra.violation?.kind, 'timeout');
  t.equal(rb.violation?.kind, 'cpu-time');
  t.ok(Number(rb.violation?.observed) >= 300);
});

t.test('a setsid daemon outside any pid namespace dies with the sandbox', { skip }, async (t) => {
  const sb = Sandbox.spawn({
    // The first process lingers so the daemon can report its pid; the exit then triggers teardown.
    command: ['/bin/sh', '-c', '(setsid sh -c \'echo $$; exec sleep 1000\' &); sleep 0.5; exit 0'],
    seccomp: 'none', namespaces: { pid: false }, stdio: ['ignore', 'pipe', 'ignore'], limits: { pids: 16 },
  });
  const pid = Number(await withTimeout(firstLine(sb.stdout!), 5000, 'the daemon pid'));
  t.ok(pid > 0 && alive(pid), `daemon ${pid} runs`);
  const r = await withTimeout(sb.exited, 5000, 'exit');
  t.equal(r.code, 0);
  t.notOk(alive(pid), 'when exited resolves the daemon is dead');
  sb.stdout!.destroy();
});

t.test('many sandboxes with limits leave no cgroup behind', { skip }, async (t) => {
  const t0 = Date.now();
  for (let i = 0; i < 50; i++) {
    const sb = Sandbox.spawn({ command: ['/bin/sh', '-c', 'exit 0'], seccomp: 'none', limits: { memory: '64M', pids: 16, timeout: '5s' } });
    await sb.exited;
  }
  t.comment(`50 sandboxes in ${Date.now() - t0} ms`);
  t.same(listSandboxCgroups(), []);
});

// A host without the controllers: the layout is given explicitly, so this runs everywhere.
const bare: CgroupLayout = { mode: 'legacy', v1: new Map() };

t.test('fail closed: a limit the host cannot enforce is an error naming it', async (t) => {
  t.throws(() => SandboxCgroup.create({ memory: '64M' }, { layout: bare, own: { v1: new Map() } }), LimitError);
  try {
    SandboxCgroup.create({ pids: 8 }, { layout: bare, own: { v1: new Map() } });
  } catch (e) {
    t.equal((e as LimitError).code, 'ERR_LIMIT_UNAVAILABLE');
    t.equal((e as LimitError).limit, 'pids');
    t.match((e as Error).message, /Delegate=yes/, 'says how to delegate');
    t.match((e as Error).message, /allowDegraded/, 'names the way out');
  }
});

t.test('degraded: rlimits stand in and the handle says which limits are weaker', async (t) => {
  const cg = SandboxCgroup.create({ memory: '64M', pids: 8, cpu: 0.5, cpuTime: '2s', allowDegraded: true }, { layout: bare, own: { v1: new Map() } });
  t.same(cg.procsFiles, []);
  t.same(cg.rlimits.map((r) => r.resource).sort(), ['RLIMIT_AS', 'RLIMIT_CPU', 'RLIMIT_NPROC']);
  t.same(cg.weaker.map((w) => w.limit).sort(), ['cpu', 'cpuTime', 'memory', 'pids', 'teardown']);
  await cg.destroy();
});

t.test('allowDegraded on a capable host changes nothing', { skip }, async (t) => {
  // On this host the cgroup exists, so nothing is weaker.
  const sb = Sandbox.spawn({ command: ['/bin/sh', '-c', 'exit 3'], seccomp: 'none', limits: { memory: '64M', allowDegraded: true } });
  const r = await sb.exited;
  t.equal(r.code, 3);
  t.same(sb.weakerLimits.filter((w) => w.limit !== 'swap'), []);
});

t.test('no leftover cgroups', async (t) => {
  t.same(listSandboxCgroups(), []);
  t.comment(`layout ${hostLayout().mode}`);
  t.ok(fs.existsSync('/proc/self/cgroup'));
});
