// Limits enforced by the kernel through SandboxCgroup, with ordinary processes moved in the way the
// launcher places its child. Real cgroups, no mocks; runs on unified, hybrid and legacy hosts
// (and stand-alone: `node dist/test/limits-cgroup.test.js`).
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { LimitError } from '../lib/errors';
import { SandboxCgroup, hostLayout, listSandboxCgroups } from '../lib/limits';
import { pollStats } from '../lib/limits/events';
import { alive, fdCount, firstLine, gated, nextViolation, sleep, withTimeout } from './limits-helpers';

const MiB = 1024 * 1024;

// Can this host enforce the limits at all? If not, every test skips with the reason.
function unavailable(): string | undefined {
  try {
    const cg = SandboxCgroup.create({ memory: '64M', pids: 16, cpu: 0.5, cpuTime: '1s' });
    void cg.destroy();
    return undefined;
  } catch (e) {
    if (e instanceof LimitError) return `cgroup limits unavailable on this host (${hostLayout().mode}): ${e.message}`;
    throw e;
  }
}
const skip = unavailable();
if (skip !== undefined) t.comment(`SKIP: ${skip}`);
t.comment(`cgroup layout: ${hostLayout().mode}`);

t.test('a memory balloon is OOM-killed and reported as a memory violation', { skip }, async (t) => {
  const cg = SandboxCgroup.create({ memory: '32M' });
  t.same(cg.weaker, [], 'no weaker limits on this host');
  // The string doubles until the shell cannot allocate: far past 32 MiB within a few iterations.
  const g = gated('x=0123456789abcdef; while :; do x="$x$x"; done');
  cg.attach(g.child.pid!);
  cg.start(g.child.pid);
  const violation = nextViolation(cg);
  g.release();
  const v = await violation;
  const exit = await withTimeout(g.exit, 10_000, 'the balloon to die');
  t.equal(v.kind, 'memory');
  t.equal(v.limit, 32 * MiB);
  t.ok(v.observed > 16 * MiB && v.observed <= 32 * MiB + MiB, `observed peak ${v.observed} near the limit`);
  t.equal(exit.signal, 'SIGKILL', 'the balloon was killed');
  const s = cg.stats();
  // The host may kill the sandbox on the OOM notification before the kernel's OOM killer picks a
  // victim, so memory.oom_control / memory.events need not count a kill; the peak tells the story.
  t.ok((s.memory.peak ?? 32 * MiB) >= 16 * MiB, `stats show the peak (${s.memory.peak})`);
  t.ok(s.memory.peak === undefined || s.memory.peak <= 32 * MiB + MiB, 'peak stayed at the limit');
  await cg.destroy();
  t.equal(cg.violation, v, 'first violation kept');
  t.ok(process.memoryUsage().rss > 0, 'the host survived');
});

t.test('a fork bomb stops at pids.max, is reported, and the host stays responsive', { skip }, async (t) => {
  const cg = SandboxCgroup.create({ pids: 32 });
  const g = gated('f() { f & f & wait; }; f');
  cg.attach(g.child.pid!);
  cg.start(g.child.pid);
  const violation = nextViolation(cg);
  g.release();
  const v = await violation;
  t.equal(v.kind, 'pids');
  t.equal(v.limit, 32);
  // Let it hammer the limit for a while, measuring how late our own timers fire meanwhile.
  let worstLag = 0;
  let mostPids = 0;
  for (let i = 0; i < 20; i++) {
    const t0 = Date.now();
    await sleep(10);
    worstLag = Math.max(worstLag, Date.now() - t0 - 10);
    mostPids = Math.max(mostPids, cg.stats().pids.current ?? 0);
  }
  t.ok(mostPids <= 32, `at most ${mostPids} tasks under pids.max 32`);
  t.ok(worstLag < 500, `event loop lag under the bomb: ${worstLag} ms`);
  const t0 = Date.now();
  const r = spawnSync('/bin/sh', ['-c', 'exit 7']);
  t.equal(r.status, 7, `the machine still forks (${Date.now() - t0} ms)`);
  t.ok((cg.stats().pids.maxEvents ?? 1) >= 1, 'pids.events counts refused forks');
  await withTimeout(cg.destroy(), 10_000, 'teardown of the fork bomb');
  await withTimeout(g.exit, 5000, 'the bomb to be gone');
  t.same(listSandboxCgroups(), [], 'its cgroups are removed');
});

t.test('a cpu spinner under cpu 0.5 gets half a core (within 20%)', { skip }, async (t) => {
  const cg = SandboxCgroup.create({ cpu: 0.5 });
  // Two spinners: demand is two cores, so only the limit (not the machine being busy) bounds usage.
  const g = gated('while :; do :; done & while :; do :; done');
  cg.attach(g.child.pid!);
  cg.start(g.child.pid);
  g.release();
  await sleep(300);
  const u0 = cg.stats().cpu.usageNs!;
  const t0 = process.hrtime.bigint();
  await sleep(3000);
  const u1 = cg.stats().cpu.usageNs!;
  const wallNs = Number(process.hrtime.bigint() - t0);
  const cores = (u1 - u0) / wallNs;
  t.ok(cores > 0.4 && cores < 0.6, `used ${cores.toFixed(3)} cores under a 0.5 limit`);
  t.ok((cg.stats().cpu.throttledNs ?? 1) > 0, 'the kernel throttled it');
  await cg.destroy();
  await withTimeout(g.exit, 5000, 'the spinners to die');
});

t.test('cpu-time: exhausting the budget kills and reports', { skip }, async (t) => {
  const cg = SandboxCgroup.create({ cpuTime: '400ms' });
  const g = gated('while :; do :; done');
  cg.attach(g.child.pid!);
  cg.start(g.child.pid);
  const t0 = Date.now();
  const violation = nextViolation(cg);
  g.release();
  const v = await violation;
  const exit = await withTimeout(g.exit, 5000, 'the spinner to die');
  t.equal(v.kind, 'cpu-time');
  t.equal(v.limit, 400);
  t.ok(v.observed >= 400 && v.observed < 600, `cpu used at the kill: ${v.observed} ms`);
  t.ok(Date.now() - t0 < 5000, 'within a few seconds of wall time');
  t.equal(exit.signal, 'SIGKILL');
  await cg.destroy();
});

t.test('cpu-time: an idle sandbox is not read on a fixed period', { skip }, async (t) => {
  const cg = SandboxCgroup.create({ cpuTime: '2s' });
  const g = gated('sleep 1');
  cg.attach(g.child.pid!);
  cg.start(g.child.pid);
  g.release();
  await g.exit;
  const checks = (cg as unknown as { cpuWatch: { checks: number } }).cpuWatch.checks;
  t.ok(checks <= 3, `${checks} usage reads in 1 s of an idle sandbox with a 2 s budget`);
  await cg.destroy();
  t.equal(cg.violation, undefined);
});

t.test('timeout: the wall-clock limit kills and reports', { skip }, async (t) => {
  const cg = SandboxCgroup.create({ timeout: '300ms' });
  const g = gated('sleep 30');
  cg.attach(g.child.pid!);
  const t0 = Date.now();
  cg.start(g.child.pid);
  g.release();
  const v = await nextViolation(cg);
  const exit = await withTimeout(g.exit, 5000, 'the sleeper to die');
  t.equal(v.kind, 'timeout');
  t.equal(v.limit, 300);
  t.ok(v.observed >= 300 && v.observed < 1000, `killed after ${v.observed} ms`);
  t.ok(Date.now() - t0 < 2000);
  t.equal(exit.signal, 'SIGKILL');
  await cg.destroy();
});

t.test('a double-forked setsid daemon is gone after teardown', { skip }, async (t) => {
  const cg = SandboxCgroup.create({ pids: 16 });
  const g = gated('(setsid sh -c \'echo $$; exec sleep 1000\' &); exit 0');
  cg.attach(g.child.pid!);
  cg.start(g.child.pid);
  g.release();
  const pid = Number(await withTimeout(firstLine(g.child.stdout!), 5000, 'the daemon pid'));
  await g.exit;
  t.ok(alive(pid), `daemon ${pid} outlived its parent`);
  const stat = require('node:fs').readFileSync(`/proc/${pid}/stat`, 'utf8') as string;
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  t.equal(Number(fields[3]), pid, 'it is a session leader (setsid)');
  t.not(Number(fields[1]), g.child.pid, 'it was reparented (double fork)');
  await cg.destroy();
  t.notOk(alive(pid), 'the daemon is dead');
  g.child.stdout!.destroy();
});

t.test('spawn/exit cycles leave no cgroup and no fd behind', { skip }, async (t) => {
  const n = 150;
  let fds = 0;
  let t0 = 0;
  // The first cycles warm up what Node opens once and keeps (its /dev/null for ignored stdio).
  for (let i = -5; i < n; i++) {
    if (i === 0) {
      fds = fdCount();
      t0 = Date.now();
    }
    const cg = SandboxCgroup.create({ memory: '64M', pids: 16, cpu: 1, cpuTime: '5s', timeout: '5s' });
    const g = gated('exit 0');
    cg.attach(g.child.pid!);
    cg.start(g.child.pid);
    g.release();
    await g.exit;
    await cg.destroy();
  }
  t.comment(`${n} cycles in ${Date.now() - t0} ms`);
  await sleep(50); // child_process closes its pipes on the next turns of the loop
  const after = fdCount();
  t.ok(after <= fds, `no fd leaked (${fds} before, ${after} after)`);
  t.same(listSandboxCgroups(), [], 'no sandbox cgroup left');
});

t.test('v1: only sandboxes with a pids limit are polled, and a refusal after a quiet spell is reported', { skip: skip ?? (hostLayout().mode === 'hybrid' || hostLayout().mode === 'legacy' ? undefined : 'no v1 pids controller here') }, async (t) => {
  // Without a pids limit the v1 pids directory is there for stats only: no timer may run for it.
  const plain = SandboxCgroup.create({ memory: '64M' });
  const ticks0 = pollStats.ticks;
  await sleep(60);
  t.equal(pollStats.ticks, ticks0, 'no pids poll for a sandbox without a pids limit');
  await plain.destroy();

  // With one, the poll skips the counters while no pid is allocated anywhere, so the refusal comes
  // after a quiet spell here: the refused fork's own pid must reopen the gate.
  const cg = SandboxCgroup.create({ pids: 4 });
  const g = gated('sleep 0.3; f() { f & f & wait; }; f');
  cg.attach(g.child.pid!);
  cg.start(g.child.pid);
  const violation = nextViolation(cg);
  g.release();
  const v = await violation;
  t.equal(v.kind, 'pids');
  t.ok(pollStats.ticks > ticks0, 'the poll ran');
  await withTimeout(cg.destroy(), 10_000, 'teardown');
  await withTimeout(g.exit, 5000, 'the bomb to be gone');
});

t.test('no leftover cgroups after the suite', async (t) => {
  await sleep(100);
  t.same(listSandboxCgroups(), []);
});
