/**
 * Admission for plugin starts: at most maxConcurrentLoads starts at once (counted on the host side,
 * around the launcher), the time in line does not count against the load timeout, a plugin waiting
 * for its dependency holds no slot, close() refuses the starts still in line and leaves no runner,
 * and start() reports its progress. Neither discovery nor the starts hold the host's event loop for
 * all the plugins at once.
 */
import t, { Test } from 'tap';
import * as fs from 'node:fs';
import * as path from 'node:path';

import { InvalidOptionError } from '../lib/errors';
import { spawnNode } from '../lib/process/spawn-node';
import { Admission } from '../lib/plugins/admission';
import type { LoadProgressEvent, PluginHost, PluginLauncher, PluginStatusEvent } from '../lib/plugins';
import { PluginWorld, until } from './helpers/plugins';
import { countLoopTurns } from './helpers/loop-turns';

const HOOKS = [{ name: 'slow', mode: 'parallel' as const }];

/** A plugin whose activate() takes `ms` (a timer, not cpu: the slot is what is measured). */
const slowCode = (ms: number): string => `
exports.activate = async (h) => {
  await new Promise((r) => setTimeout(r, ${ms}));
  h.hook('slow', () => process.pid);
};`;

async function slowWorld(t: Test, n: number, activateMs: number): Promise<{ w: PluginWorld; names: string[] }> {
  const w = await PluginWorld.create();
  t.teardown(() => w.cleanup());
  const names: string[] = [];
  for (let i = 0; i < n; i++) {
    const name = `slow${i}`;
    names.push(name);
    w.writePlugin(name, { code: slowCode(activateMs), hooks: ['slow'] });
    await w.trust(name);
  }
  await w.publish();
  return { w, names };
}

/** Counts the starts in the launcher (spawn through activate()) and keeps every runner's pid. */
function countingLauncher(): { launcher: PluginLauncher; inFlight: () => number; peak: () => number; launches: () => number; pids: number[] } {
  let inFlight = 0;
  let peak = 0;
  let launches = 0;
  const pids: number[] = [];
  return {
    inFlight: () => inFlight,
    peak: () => peak,
    launches: () => launches,
    pids,
    launcher: async (entry, options) => {
      launches++;
      inFlight++;
      peak = Math.max(peak, inFlight);
      try {
        const proc = await spawnNode(entry, options);
        pids.push(proc.pid);
        return proc;
      } finally {
        inFlight--;
      }
    },
  };
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** This process's direct children, from /proc. */
function children(): number[] {
  const out: number[] = [];
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const m = /^PPid:\s+(\d+)/m.exec(fs.readFileSync(`/proc/${d}/status`, 'utf8'));
      if (m !== null && Number(m[1]) === process.pid) out.push(Number(d));
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

const activeCount = (host: PluginHost): number => host.plugins().filter((p) => p.status === 'active').length;

t.test('Admission: at most max at once, first come first served, close() refuses the line', async (t) => {
  const a = new Admission(2);
  let running = 0;
  let peak = 0;
  const order: number[] = [];
  const job = (i: number) => a.run(`p${i}`, async () => {
    running++;
    peak = Math.max(peak, running);
    order.push(i);
    await new Promise((r) => setTimeout(r, 20));
    running--;
    return i;
  });
  t.same(await Promise.all([0, 1, 2, 3, 4, 5].map(job)), [0, 1, 2, 3, 4, 5]);
  t.equal(peak, 2, 'two at once, never more');
  t.same(order, [0, 1, 2, 3, 4, 5], 'in the order they asked');
  // A failing start gives its slot back.
  await t.rejects(a.run('bad', async () => { throw new Error('boom'); }), /boom/);
  const held = [job(10), job(11)];
  const queued = [job(12), job(13)];
  t.equal(a.queued, 2, 'two in line');
  a.close();
  for (const q of queued) await t.rejects(q, { code: 'ERR_PLUGIN_STATE', message: /waited for its turn/ }, 'a start in line is refused on close');
  t.same(await Promise.all(held), [10, 11], 'the running starts finish');
  await t.rejects(a.run('late', async () => 1), { code: 'ERR_PLUGIN_STATE' }, 'nothing starts after close');
  t.equal(a.queued, 0);
});

t.test('maxConcurrentLoads is checked and named', async (t) => {
  const w = await PluginWorld.create();
  t.teardown(() => w.cleanup());
  t.equal(w.host({ maxConcurrentLoads: 3 }).plugins().length, 0, 'a whole number is accepted');
  for (const bad of [0, -1, 1.5, Number.NaN]) {
    t.throws(() => w.host({ maxConcurrentLoads: bad }), new InvalidOptionError('maxConcurrentLoads', `must be a whole number of at least 1 (plugin starts at once), got ${String(bad)}`), `${bad} is refused`);
  }
});

t.test('8 slow plugins, maxConcurrentLoads 2: never more than 2 starts at once, all load, progress ends at total', async (t) => {
  const { w } = await slowWorld(t, 8, 300);
  const c = countingLauncher();
  const host = w.host({ hooks: HOOKS, maxConcurrentLoads: 2, launcher: c.launcher });
  t.teardown(() => host.close());
  const progress: LoadProgressEvent[] = [];
  host.on('load-progress', (e: LoadProgressEvent) => progress.push(e));
  const t0 = Date.now();
  await host.start();
  const wall = Date.now() - t0;
  t.equal(activeCount(host), 8, 'all 8 loaded');
  t.equal(c.peak(), 2, `at most 2 starts at once (peak ${c.peak()})`);
  // 8 activate()s of 300 ms, 2 at a time: at least 4 rounds.
  t.ok(wall >= 4 * 300, `start() took ${wall} ms, at least 4 rounds of 300 ms`);
  t.equal(progress.length, 8, 'one progress event per settled load');
  t.same(progress.map((p) => p.loaded), [1, 2, 3, 4, 5, 6, 7, 8], 'loaded counts up');
  t.ok(progress.every((p) => p.total === 8 && p.failed === 0));
  t.ok(progress[0]!.queued > 0, `starts waited in line at the first settle (${progress[0]!.queued})`);
  t.same(progress.at(-1), { loaded: 8, failed: 0, total: 8, queued: 0 }, 'the last event: everything settled');
  const r = await host.invoke('slow');
  t.equal(r.values.length, 8, 'all 8 answer');
});

t.test('a load timeout shorter than the time in line: the wait does not count, all load', async (t) => {
  // One at a time: the sixth start waits for five activate()s of 400 ms (2 s at least), longer than
  // the 1.2 s load timeout; each start alone needs 400 ms plus the sandbox.
  const { w } = await slowWorld(t, 6, 400);
  const host = w.host({ hooks: HOOKS, maxConcurrentLoads: 1, loadTimeoutMs: 1200 });
  t.teardown(() => host.close());
  const t0 = Date.now();
  await host.start();
  const wall = Date.now() - t0;
  t.same(host.plugins().filter((p) => p.status !== 'active').map((p) => `${p.name}: ${p.reason?.message}`), [], 'all 6 loaded');
  t.ok(wall > 1200, `start() took ${wall} ms, longer than the load timeout`);
});

t.test('a plugin waiting for its dependency holds no slot (maxConcurrentLoads 1)', async (t) => {
  const w = await PluginWorld.create();
  t.teardown(() => w.cleanup());
  // 'a' sorts first: its preparation asks for 'b' while nothing else runs; with the slot taken
  // before preparation, 'b' would wait behind 'a' for ever.
  w.writePlugin('a', { code: slowCode(50), hooks: ['slow'], dependencies: { b: '^1.0.0' } });
  w.writePlugin('b', { code: slowCode(50), hooks: ['slow'] });
  w.writePlugin('c', { code: slowCode(50), hooks: ['slow'], dependencies: { a: '^1.0.0' } });
  await w.trust('a');
  await w.trust('b');
  await w.trust('c');
  await w.publish();
  const host = w.host({ hooks: HOOKS, maxConcurrentLoads: 1 });
  t.teardown(() => host.close());
  let timer: NodeJS.Timeout | undefined;
  const stuck = new Promise<string>((r) => { timer = setTimeout(() => r('stuck'), 15000); });
  const outcome = await Promise.race([host.start().then(() => 'started'), stuck]);
  clearTimeout(timer);
  t.equal(outcome, 'started', 'start() settles');
  t.same(host.plugins().map((p) => `${p.name}:${p.status}`).sort(), ['a:active', 'b:active', 'c:active']);
});

t.test('close() while starts wait in line: it resolves, the line is dropped, no runner is left', async (t) => {
  const { w } = await slowWorld(t, 6, 500);
  const c = countingLauncher();
  const host = w.host({ hooks: HOOKS, maxConcurrentLoads: 1, launcher: c.launcher });
  const children0 = children();
  const started = host.start();
  await until(() => c.inFlight() === 1, 10000, 'the first start');
  // The count below can see a runner: the sandbox being started is a child of this process.
  await until(() => children().some((p) => !children0.includes(p)), 10000, 'the first sandbox process');
  const t0 = Date.now();
  await host.close();
  const closeMs = Date.now() - t0;
  await started;
  t.equal(c.launches(), 1, 'only the start that had its slot ran; the 5 in line never spawned');
  t.ok(closeMs < 5000, `close() resolved in ${closeMs} ms`);
  t.same(c.pids.filter(alive), [], 'no runner alive');
  t.same(children().filter((p) => !children0.includes(p)), [], 'no child process of the host left');
  t.same(host.plugins().filter((p) => p.status === 'active' || p.status === 'loading').map((p) => p.name), [], 'nothing active or loading');
});

t.test('close() while a reload waits in line: the reload is refused, both plugins are unloaded, no runner left', async (t) => {
  const { w } = await slowWorld(t, 2, 400);
  const c = countingLauncher();
  const host = w.host({ hooks: HOOKS, maxConcurrentLoads: 1, launcher: c.launcher });
  await host.start();
  t.equal(activeCount(host), 2);
  // Settled now (a rejection seen later would count as unhandled).
  const first = host.reload('slow0').catch((e: Error) => e);
  const second = host.reload('slow1').catch((e: Error) => e);
  await until(() => c.launches() === 3 && c.inFlight() === 1, 10000, 'the first reload starting');
  await host.close();
  t.match(await first, { code: 'ERR_PLUGIN_STATE', message: /changed state during the reload/ }, 'the reload that ran is not switched to: the host closed');
  t.match(await second, { code: 'ERR_PLUGIN_STATE', message: /waited for its turn/ }, 'the reload in line is refused');
  t.equal(c.launches(), 3, 'the reload in line never spawned');
  t.same(c.pids.filter(alive), [], 'no runner alive');
  t.same(host.plugins().map((p) => `${p.name}:${p.status}:${p.reason?.kind}`), ['slow0:unloaded:host-shutdown', 'slow1:unloaded:host-shutdown']);
});

t.test('lazy loading from invoke(): the loads it sets off go through the line too, and all answer', async (t) => {
  const { w } = await slowWorld(t, 4, 200);
  const c = countingLauncher();
  const host = w.host({ hooks: HOOKS, maxConcurrentLoads: 1, loading: 'lazy', launcher: c.launcher });
  t.teardown(() => host.close());
  await host.start();
  t.equal(c.launches(), 0, 'nothing loaded at start');
  const r = await host.invoke('slow');
  t.equal(r.values.length, 4, 'all 4 answer the first call');
  t.equal(c.peak(), 1, 'one start at a time');
});

t.test('start() begins one plugin per turn of the event loop, not all of them in one', async (t) => {
  // Each plugin's first steps (manifest, trust check, audit lines, the tree's first reads) are
  // synchronous; begun all in one turn, a host of many plugins stood still for all of them (200:
  // ~0.4 s, measured by bench:scale's event-loop delay). Counted here: the loop turns seen when each
  // plugin entered 'loading'.
  const { w, names } = await slowWorld(t, 12, 0);
  const host = w.host({ hooks: HOOKS });
  t.teardown(() => host.close());
  const turns = countLoopTurns();
  const turnAtLoading = new Map<string, number>();
  host.on('status', (e: PluginStatusEvent) => {
    if (e.status === 'loading' && !turnAtLoading.has(e.plugin)) turnAtLoading.set(e.plugin, turns.count);
  });
  await host.start();
  turns.stop();
  t.equal(turnAtLoading.size, names.length, 'every plugin was seen loading');
  const distinct = new Set(turnAtLoading.values()).size;
  t.equal(distinct, names.length, `each began in a turn of its own (${distinct} distinct turns for ${names.length} plugins)`);
  t.equal(host.plugins().filter((p) => p.status === 'active').length, names.length, 'all loaded');
});

t.test('discovery lets the event loop turn: 80 plugin directories over several turns, each one reported', async (t) => {
  // Discovery reads every directory's manifest (a fraction of a millisecond each); done in one pass,
  // a thousand plugins held the host's loop ~0.2 s (bench:scale, event-loop delay max during start).
  // Broken manifests make each read visible: one 'discovery-error' per directory, in the turn it was read.
  const { w, names } = await slowWorld(t, 1, 0);
  const broken = 80;
  for (let i = 0; i < broken; i++) {
    const dir = path.join(w.pluginsDir, `broken${String(i).padStart(2, '0')}`);
    fs.mkdirSync(dir);
    fs.writeFileSync(path.join(dir, 'warden.json'), '{ "name": ');
  }
  const host = w.host({ hooks: HOOKS, loading: 'lazy' });
  t.teardown(() => host.close());
  const turns = countLoopTurns();
  const turnAtError: number[] = [];
  host.on('discovery-error', () => turnAtError.push(turns.count));
  await host.start();
  turns.stop();
  t.equal(turnAtError.length, broken, 'every broken directory is reported');
  const distinct = new Set(turnAtError).size;
  t.ok(distinct >= broken / 16, `read over ${distinct} turns of the loop (at least ${broken / 16}: 16 directories a turn)`);
  t.same(host.plugins().map((p) => [p.name, p.status]), [[names[0], 'idle']], 'the valid plugin is discovered, not loaded (lazy)');
});
