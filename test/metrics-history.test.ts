/**
 * Usage history: bounded rings filled by one host-wide timer; the sampled soft thresholds; the
 * cgroup reads a sample costs.
 */
import { createHook } from 'node:async_hooks';
import { EventEmitter } from 'node:events';
import * as v8 from 'node:v8';
import * as vm from 'node:vm';
import t from 'tap';

import { AuditLog } from '../lib/audit';
import { statFileReads } from '../lib/limits/cgroupfs';
import { PluginObserver, type ObservedPlugin, type ObserverSource, type PressureEvent } from '../lib/metrics';
import { PluginWorld, until } from './helpers/plugins';
import { countLoopTurns } from './helpers/loop-turns';

const HOOKS = [{ name: 'work', mode: 'parallel' as const, timeout: 3000 }];

/** A host whose plugins and running instance are the test's, with its events and audit log. */
function fakeHost(plugins: ObservedPlugin[], instance: ObserverSource['instance'] = () => undefined): ObserverSource & { ee: EventEmitter } {
  const ee = new EventEmitter();
  return {
    ee, plugins: () => plugins, instance, pool: () => undefined, audit: new AuditLog(),
    on: (e, l) => ee.on(e, l), off: (e, l) => ee.off(e, l), emit: (e, v) => ee.emit(e, v),
  };
}

/** A host of `n` plugins that are known but not running: what the observer keeps for each. */
function quietHost(n: number): ObserverSource {
  return fakeHost(Array.from({ length: n }, (_, i) => ({
    name: `p${i}`, version: '1.0.0', status: 'idle' as const, reason: undefined, pid: undefined, warm: false, hooks: [], restarts: 0, recentViolations: 0,
  })));
}

// A real collection between the measurements, without starting node with --expose-gc.
v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc') as () => void;

t.test('1000 plugins: one timer, and memory bounded by the ring, not by time', async (t) => {
  let timers = 0;
  const hook = createHook({ init: (_id, type) => void (type === 'Timeout' && timers++) }).enable();
  const obs = new PluginObserver(quietHost(1000), { intervalMs: 60_000, points: 120 });
  t.teardown(() => obs.close());
  obs.usage(); // every plugin known to the host gets its meter and rings
  obs.sample();
  gc();
  const base = process.memoryUsage();
  let at = Date.now();
  for (let i = 0; i < 600; i++) obs.sample((at += 5000)); // 50 minutes of samples
  hook.disable();
  t.equal(timers, 1, 'one timer for the whole host, none per plugin or per sample');
  gc();
  const after = process.memoryUsage();
  const grew = after.heapUsed + after.arrayBuffers - (base.heapUsed + base.arrayBuffers);
  t.ok(grew < 1024 * 1024, `600 samples of 1000 plugins grew memory by ${(grew / 1048576).toFixed(2)} MiB (< 1 MiB)`);
  const h = obs.history('p999')!;
  t.equal(h.times.length, 120, 'the history holds the last 120 samples');
  t.equal(h.times[119]! - h.times[0]!, 119 * 5000, 'oldest first, 5 s apart');
  t.ok(h.series.memory.every((v) => v === null), 'no values for a plugin that never ran');
});

t.test('the snapshot a scrape reads is built 100 plugins per turn of the event loop; usage() gives the same', async (t) => {
  const obs = new PluginObserver(quietHost(1000), { intervalMs: 0 });
  t.teardown(() => obs.close());
  const turns = countLoopTurns();
  const inTurns = await obs.usageInTurns();
  turns.stop();
  t.ok(turns.count >= 9, `1000 plugins over ${turns.count} turns (at least 9)`);
  const now = obs.usage();
  t.same({ ...inTurns, at: 0 }, { ...now, at: 0 }, 'the same snapshot as usage()');
  t.equal(inTurns.plugins.length, 1000);
});

t.test('history of a live plugin, and an error-rate warning from the sample', async (t) => {
  const w = await PluginWorld.create();
  t.teardown(() => w.cleanup());
  w.writePlugin('flaky', { code: `let n = 0; exports.activate = (h) => { h.hook('work', () => { if (++n > 3) throw new Error('no'); return n; }); };`, hooks: ['work'] });
  await w.trust('flaky');
  await w.publish();
  const host = w.host({ hooks: HOOKS, observe: { intervalMs: 400, points: 10 } });
  t.teardown(() => host.close());
  const seen: PressureEvent[] = [];
  host.on('pressure', (e: PressureEvent) => seen.push(e));
  await host.start();
  await until(() => (host.metrics.history('flaky')?.times.length ?? 0) >= 2, 5000, 'two samples');
  // 3 good calls, then 12 failing ones, inside one interval.
  for (let i = 0; i < 15; i++) await host.invoke('work');
  await until(() => seen.length > 0, 3000, 'an errors pressure event');
  t.match(seen[0], { plugin: 'flaky', kind: 'errors', source: 'sample' });
  t.ok(seen[0]!.value >= 0.5, `error share ${seen[0]!.value}`);
  t.equal(host.status('flaky'), 'active', 'a warning, not an unload');
  t.equal(host.audit.events({ event: 'pressure', plugin: 'flaky' }).length, 1, 'one warning line for the episode');
  const h = host.metrics.history('flaky')!;
  const calls = h.series.calls.filter((v): v is number => v !== null);
  const errors = h.series.errors.filter((v): v is number => v !== null);
  t.ok(calls.some((v) => v > 0), 'calls per second recorded');
  t.ok(errors.some((v) => v > 0), 'errors per second recorded');
  t.ok(h.series.p99.some((v) => v !== null && v > 0), 'latency p99 recorded');
  await until(() => host.metrics.history('flaky')!.times.length === 10, 6000, 'the ring to fill');
  await new Promise((r) => setTimeout(r, 900));
  t.equal(host.metrics.history('flaky')!.times.length, 10, 'and stay at its size');
  const u = host.usage().plugins[0]!;
  t.equal(u.calls.total, 15);
  t.equal(u.calls.errors, 12);
});

const noCgroup = process.getuid?.() === 0 ? false : 'cgroup counters need cgroup limits: skipped as an unprivileged user (see warden doctor)';
t.test('an idle plugin costs one cgroup read per sample; one that ran is read in full, and what it grew shows', { skip: noCgroup }, async (t) => {
  // 1000 plugins sampled every 5 s read ~4 cgroup files each: most of the host's observation cost.
  // A sandbox whose cpu counter stood still ran nothing, so its memory and pids are carried forward.
  const MiB = 1024 * 1024;
  const w = await PluginWorld.create();
  t.teardown(() => w.cleanup());
  w.writePlugin('grower', {
    code: `const keep = []; exports.activate = (h) => { h.hook('work', (n) => { for (let i = 0; i < n; i++) keep.push(Buffer.alloc(1 << 20, 1)); return keep.length; }); };`,
    hooks: ['work'],
  });
  await w.trust('grower', { limits: { memory: 256 * MiB } });
  await w.publish();
  const host = w.host({ hooks: HOOKS, observe: { intervalMs: 60_000, points: 50 } }); // sampled by hand
  t.teardown(() => host.close());
  await host.start();
  const readsOf = (): number => {
    const r0 = statFileReads.count;
    host.metrics.sample();
    return statFileReads.count - r0;
  };
  const full = readsOf();
  t.ok(full >= 3, `the first sample reads memory, its peak, pids and cpu (${full} reads)`);
  // The runner settles after its start (V8's helper threads compile and collect for a moment).
  let idle = Infinity;
  await until(() => (idle = readsOf()) <= 2, 10_000, 'a sample of the settled plugin that reads cpu only');
  t.ok(idle < full, `an idle sample reads ${idle} file(s), a full one ${full}`);
  const before = host.metrics.history('grower')!.series.memory.at(-1)!;
  t.ok(before > 0, `memory carried forward from the last full read (${(before / MiB).toFixed(1)} MiB)`);

  t.same((await host.invoke('work', [32])).values, [32], 'the plugin holds 32 MiB more');
  const ran = readsOf();
  t.ok(ran >= 3, `after it ran, the sample reads everything again (${ran} reads)`);
  const after = host.metrics.history('grower')!.series.memory.at(-1)!;
  // ≥ 24 of the 32 MiB: the runner's other memory moves meanwhile (its GC frees, the kernel reclaims
  // cache); a figure carried forward from before would show no growth at all.
  t.ok(after - before >= 24 * MiB, `its memory grew by ${((after - before) / MiB).toFixed(1)} MiB in the history (≥ 24 of the 32 allocated)`);
  const now = host.usage().plugins[0]!.memory.bytes!;
  t.ok(now - before >= 24 * MiB, `and in usage() (${((now - before) / MiB).toFixed(1)} MiB)`);

  // Carried figures age out: within 12 idle reads there is a full one.
  await until(() => readsOf() <= 2, 10_000, 'settled again');
  const counts = Array.from({ length: 12 }, () => readsOf());
  t.ok(counts.some((n) => n >= 3), `a full read among 12 idle samples (${counts.join(' ')})`);
  t.ok(counts.filter((n) => n <= 2).length >= 10, 'the others read cpu only');
});

t.test('a plugin starting and ending memory episodes at will: one episode per swing, events bounded, the rest counted', async (t) => {
  // A running instance whose cgroup reads are the test's (the kernel side is in metrics.test.ts).
  // Its pid cannot exist (above the kernel's pid_max), so no kernel watch is armed.
  const limit = 100 * 1048576;
  let memory = 0;
  let cpuNs = 0; // moves at each read: a busy plugin, whose memory the sample reads every time
  const inst = {
    pid: 4_194_305, version: '1.0.0', startedAt: Date.now(), publisher: 'test', trust: 'trusted', permissions: [], limits: { memory: limit },
    stats: () => ({ memory: { current: memory, limit }, cpu: { usageNs: (cpuNs += 1000), throttledNs: 0 }, pids: { current: 1 }, at: Date.now() }),
  };
  const source = fakeHost(
    [{ name: 'swinger', version: '1.0.0', status: 'active', reason: undefined, pid: inst.pid, warm: false, hooks: [], restarts: 0, recentViolations: 0 }],
    () => inst,
  );
  const { ee, audit } = source;
  const obs = new PluginObserver(source, { intervalMs: 0 });
  t.teardown(() => obs.close());
  obs.usage(); // the plugin gets its meter
  const seen: PressureEvent[] = [];
  ee.on('pressure', (e: PressureEvent) => seen.push(e));
  const threshold = Math.floor(limit * 0.8);
  const sampleAt = (bytes: number, at: number) => {
    memory = bytes;
    obs.sample(at);
  };
  let at = Date.now();
  // Dips that stay above 90% of the threshold end no episode.
  for (let i = 0; i < 10; i++) {
    sampleAt(threshold + 4096, (at += 1000));
    sampleAt(threshold - 4096, (at += 1000));
  }
  t.equal(seen.length, 1, 'hovering at the threshold is one episode (was one per crossing)');
  // Swings through the whole band: an episode each, but the events stop after the burst.
  for (let i = 0; i < 20; i++) {
    sampleAt(threshold * 0.85, (at += 100));
    sampleAt(threshold * 1.05, (at += 100));
  }
  t.equal(seen.length, 3, 'three events in all: the burst');
  t.equal(audit.events({ event: 'pressure', plugin: 'swinger' }).length, 3, 'and three audit lines');
  t.same(obs.usage().plugins[0]!.pressure, ['memory'], 'the state is still true');
  // A minute later the next episode is told, with the count of those that were not.
  sampleAt(threshold * 0.85, (at += 60_000));
  sampleAt(threshold * 1.05, (at += 100));
  t.equal(seen.length, 4);
  t.equal(seen[3]!.suppressed, 18, 'the 18 episodes not told are counted');
  t.match(seen[3]!.message, /18 earlier episodes not reported/);
  t.match(audit.events({ event: 'pressure', plugin: 'swinger' })[3]!.details, { suppressed: 18 });
  // Memory's events are spent; the first error-rate episode is told at once all the same.
  obs.hookResult({ outcomes: Array.from({ length: 20 }, () => ({ kind: 'plugin', owner: 'swinger', ok: false, ms: 1 })) } as never);
  sampleAt(threshold * 1.05, (at += 100));
  t.equal(seen.length, 5, 'an errors episode while memory has no events left');
  t.match(seen[4], { kind: 'errors' });
  t.notOk('suppressed' in seen[4]!, 'nothing of memory rides on it');
});
