/**
 * Usage history: bounded rings filled by one host-wide timer; the sampled soft thresholds.
 */
import { createHook } from 'node:async_hooks';
import { EventEmitter } from 'node:events';
import * as v8 from 'node:v8';
import * as vm from 'node:vm';
import t from 'tap';

import { AuditLog } from '../lib/audit';
import { PluginObserver, type ObservedPlugin, type ObserverSource, type PressureEvent } from '../lib/metrics';
import { PluginWorld, until } from './helpers/plugins';

const HOOKS = [{ name: 'work', mode: 'parallel' as const, timeout: 3000 }];

/** A host of `n` plugins that are known but not running: what the observer keeps for each. */
function quietHost(n: number): ObserverSource {
  const ee = new EventEmitter();
  const plugins: ObservedPlugin[] = Array.from({ length: n }, (_, i) => ({
    name: `p${i}`, version: '1.0.0', status: 'idle', reason: undefined, pid: undefined, warm: false, hooks: [], restarts: 0, recentViolations: 0,
  }));
  return {
    plugins: () => plugins, instance: () => undefined, pool: () => undefined, audit: new AuditLog(),
    on: (e, l) => ee.on(e, l), off: (e, l) => ee.off(e, l), emit: (e, v) => ee.emit(e, v),
  };
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
