// The shared v1 pids poll with many sandboxes (lib/limits/events.ts): while pids move everywhere, as
// they do while a thousand plugins start, reading every sandbox's refusal counter every 10 ms made
// the host's cpu grow with the number of sandboxes. The sweeps now have a budget; a refusal is still
// reported. Real cgroups, a real fork bomb, real pid movement (a shell starting programs).
import t from 'tap';
import { spawn } from 'node:child_process';
import { SandboxCgroup, hostLayout } from '../lib/limits';
import { LimitError } from '../lib/errors';
import { pollStats } from '../lib/limits/events';
import { gated, nextViolation, sleep, withTimeout } from './limits-helpers';

const SANDBOXES = 1000;

function unavailable(): string | undefined {
  const mode = hostLayout().mode;
  if (mode !== 'hybrid' && mode !== 'legacy') return `no v1 pids controller on this host (${mode}): the poll exists only for v1`;
  try {
    void SandboxCgroup.create({ pids: 8 }).destroy();
  } catch (e) {
    if (e instanceof LimitError) return `cgroup limits unavailable on this host: ${e.message}`;
    throw e;
  }
  return undefined;
}
const skip = unavailable();

t.test(`${SANDBOXES} sandboxes with a pids limit: the counter sweeps stay within their budget while pids move, and a refusal is reported`, { skip }, async (t) => {
  const cgs: SandboxCgroup[] = [];
  t.teardown(async () => {
    await Promise.all(cgs.map((cg) => cg.destroy().catch(() => undefined)));
  });
  for (let i = 0; i < SANDBOXES; i++) cgs.push(SandboxCgroup.create({ pids: 8 }));

  // Another process creates tasks all the time, outside every sandbox: the last pid never rests.
  const mover = spawn('/bin/sh', ['-c', 'while :; do /bin/true; done'], { stdio: 'ignore' });
  t.teardown(() => {
    mover.kill('SIGKILL');
  });
  await sleep(200);

  const before = { ...pollStats };
  const cpu0 = process.cpuUsage();
  const wall0 = performance.now();
  await sleep(2000);
  const wall = performance.now() - wall0;
  const cpu = process.cpuUsage(cpu0);
  const cpuMs = (cpu.user + cpu.system) / 1000;
  const sweeps = pollStats.sweeps - before.sweeps;
  const sweepMs = pollStats.sweepMs - before.sweepMs;
  t.comment(`${SANDBOXES} counters, pids moving: ${pollStats.ticks - before.ticks} ticks, ${sweeps} sweeps (${(sweepMs / Math.max(sweeps, 1)).toFixed(2)} ms each), host cpu ${cpuMs.toFixed(0)} ms in ${wall.toFixed(0)} ms`);
  t.ok(sweeps >= 2, `the counters were still read (${sweeps} sweeps)`);
  // Budget: sweeps ≤ 1/10 of a core; the ticks themselves (one small read each) and the test's own
  // timers add a little. Without the budget every 10 ms tick read every counter: 48% here.
  t.ok(cpuMs / wall <= 0.2, `host cpu ${(100 * cpuMs / wall).toFixed(1)}% of one core (≤ 20%)`);

  // A fork bomb in one of them, while the others are swept too: its refusal is reported.
  const cg = cgs[0]!;
  const g = gated('f() { f & f & wait; }; f');
  cg.attach(g.child.pid!);
  cg.start(g.child.pid);
  const violation = nextViolation(cg, 10_000);
  const t0 = performance.now();
  g.release();
  const v = await violation;
  t.equal(v.kind, 'pids', 'the refusal is reported as a pids violation');
  t.comment(`reported ${(performance.now() - t0).toFixed(0)} ms after the bomb was released; longest owed sweep ${pollStats.maxOwedMs.toFixed(0)} ms`);
  await withTimeout(g.exit, 10_000, 'the bomb to be gone');
});
