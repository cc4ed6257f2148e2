/**
 * Attacks on the bus's memory bounds, with real plugins in real sandboxes: a publisher filling a
 * busy subscriber's channel, a caller sending service arguments far over the payload bound, a
 * callee answering with far more than it. The host's queue to a plugin is bounded by the channel
 * (over it for 2 s is that plugin's `flood` violation): the bus must stay under that bound, so that
 * one plugin cannot get another, honest but busy one, unloaded, nor make the host hold its excess.
 */
import t from 'tap';

import { PluginWorld, until } from './helpers/plugins';
import { sizeOver } from '../lib/bus/size';
import { Encoder } from '../lib/channel/encoder';

/** Blocks its own event loop (a long computation): it reads nothing meanwhile. */
const BUSY = `exports.activate = async (host) => {
  await host.subscribe('big', () => undefined);
  await host.provide('take', () => 'ok');
  return { block: (ms) => { const end = Date.now() + ms; while (Date.now() < end); return 'done'; } };
};`;

const SENDER = `const payload = 'x'.repeat(60 * 1024);
exports.activate = (host) => ({
  flood: async (n) => { let refused = 0; for (let i = 0; i < n; i++) { try { await host.publish('big', payload); } catch (e) { refused++; } } return refused; },
  calls: async (n, bytes) => {
    const arg = Buffer.alloc(bytes, 1);
    const out = await Promise.allSettled(Array.from({ length: n }, () => host.callPlugin('busy', 'take', arg)));
    return out.map((o) => (o.status === 'fulfilled' ? o.value : o.reason.code || o.reason.message));
  },
  big: () => host.callPlugin('huge', 'answer'),
  // Structured values (Map, Set) travel by structured clone: their contents are a payload too.
  map: () => host.publish('big', new Map([['a', 'x'.repeat(60 * 1024)]])),
  set: () => host.publish('big', new Set(['x'.repeat(60 * 1024)])),
});`;

async function world(t: { teardown(fn: () => unknown): void }, bus: Record<string, number> = {}) {
  const w = await PluginWorld.create();
  t.teardown(() => w.cleanup());
  w.writePlugin('busy', { code: BUSY, consumes: ['events:subscribe:big'], provides: ['service:provide:take'] });
  await w.trust('busy', { permissions: ['events:subscribe:big', 'service:provide:take'] });
  w.writePlugin('sender', { code: SENDER, provides: ['events:publish:big'], consumes: ['service:call:busy/take', 'service:call:huge/answer'] });
  await w.trust('sender', { permissions: ['events:publish:big', 'service:call:busy/take', 'service:call:huge/answer'] });
  w.writePlugin('huge', { code: `exports.activate = (host) => host.provide('answer', () => Buffer.alloc(32 << 20, 7));`, provides: ['service:provide:answer'] });
  await w.trust('huge', { permissions: ['service:provide:answer'] });
  await w.publish();
  const host = w.host({ bus });
  t.teardown(() => host.close());
  await host.start();
  return host;
}

t.test("events: a publisher cannot fill a busy subscriber's channel past its bound (the subscriber loses events, not its sandbox)", async (t) => {
  const host = await world(t);
  const busy = host.process('busy')!;
  const blocked = busy.call('block', 3500);
  // 200 events of 60 KiB (the rate's burst, each under the payload bound): 12 MiB for a subscriber reading nothing.
  t.equal(await host.process('sender')!.call('flood', 200), 0, 'every publish accepted');
  t.equal(await blocked, 'done', 'the subscriber finished its work');
  await new Promise((r) => setTimeout(r, 500));
  t.equal(host.info('busy').status, 'active', 'the busy subscriber is still running (no flood violation)');
  t.ok((host.bus.dropped('busy') ?? 0) > 0, `events past the bound were dropped (${host.bus.dropped('busy')})`);
});

t.test('services: arguments over the payload bound are refused; calls waiting on a busy callee are bounded', async (t) => {
  const host = await world(t);
  const sender = host.process('sender')!;
  t.same(await sender.call('calls', 1, 1 << 20), ['ERR_BUS_LIMIT'], 'a 1 MiB argument is over the 64 KiB bound');
  const blocked = host.process('busy')!.call('block', 3500);
  // 300 calls of 60 KiB each (under the bound) to a callee that reads nothing for 3.5 s: 18 MiB.
  const results = (await sender.call('calls', 300, 60 * 1024)) as unknown[];
  await blocked;
  t.ok(results.includes('ERR_BUS_LIMIT'), 'calls past what may wait on the callee are refused');
  t.ok(results.includes('ok'), 'the others are answered');
  await new Promise((r) => setTimeout(r, 500));
  t.equal(host.info('busy').status, 'active', 'the busy callee is still running (no flood violation)');
});

t.test("services: a callee's answer over the payload bound is refused, not forwarded", async (t) => {
  const host = await world(t);
  await t.rejects(host.process('sender')!.call('big') as Promise<unknown>, { code: 'ERR_BUS_LIMIT' });
  await t.rejects(host.bus.call('huge', 'answer'), { code: 'ERR_BUS_LIMIT' }, 'the same bound for the application');
  await until(() => host.info('sender').status === 'active', 1000);
});

t.test('services: a caller cannot get the plugin it calls unloaded by making its answers too large', async (t) => {
  // The callee answers honestly with what it was sent and a little more; arguments just under the
  // bound make every answer just over it. 60 refusals (more than the 50 that make a flood) later,
  // the callee still serves.
  const w = await PluginWorld.create();
  t.teardown(() => w.cleanup());
  w.writePlugin('wrapper', { code: `exports.activate = (host) => host.provide('wrap', (x) => ({ input: x, ok: true }));`, provides: ['service:provide:wrap'] });
  await w.trust('wrapper', { permissions: ['service:provide:wrap'] });
  w.writePlugin('caller', {
    code: `exports.activate = (host) => ({
  push: async (n, bytes) => { const arg = 'x'.repeat(bytes); let refused = 0; for (let i = 0; i < n; i++) { try { await host.callPlugin('wrapper', 'wrap', arg); } catch (e) { if (e.code === 'ERR_BUS_LIMIT') refused++; } } return refused; },
  small: () => host.callPlugin('wrapper', 'wrap', 'hi'),
});`,
    consumes: ['service:call:wrapper/wrap'],
  });
  await w.trust('caller', { permissions: ['service:call:wrapper/wrap'] });
  await w.publish();
  const host = w.host();
  t.teardown(() => host.close());
  await host.start();
  const max = 64 * 1024;
  const p = host.process('caller')!;
  t.equal(await p.call('push', 60, max - 20), 60, 'every answer over the bound was refused');
  t.equal(host.info('wrapper').status, 'active', 'the callee was not unloaded for it');
  t.same(await p.call('small'), { input: 'hi', ok: true }, 'and still serves');
});

t.test('events: a Map or a Set payload counts its contents toward the payload bound', async (t) => {
  const host = await world(t, { maxPayloadBytes: 16 * 1024 });
  await t.rejects(host.process('sender')!.call('map') as Promise<unknown>, { code: 'ERR_BUS_LIMIT' }, 'a Map of 60 KiB');
  await t.rejects(host.process('sender')!.call('set') as Promise<unknown>, { code: 'ERR_BUS_LIMIT' }, 'a Set of 60 KiB');
  t.throws(() => host.bus.publish('big', new Map([['a', 'x'.repeat(60 * 1024)]])), { code: 'ERR_BUS_LIMIT' }, 'from the application too');
});

t.test('shared data: writes are rate-bounded (each rewrites and fsyncs the owner\'s whole file)', async (t) => {
  // With a file adapter, a 20-byte set makes the host serialize, write and fsync up to 1 MiB: at the
  // channel's 50,000 messages a second, one plugin would keep a core and the disk busy.
  const w = await PluginWorld.create();
  t.teardown(() => w.cleanup());
  w.writePlugin('writer', {
    code: `exports.activate = (host) => ({
  fill: async () => { for (let i = 0; i < 14; i++) await host.data.set('writer/fill' + i, 'x'.repeat(60 * 1024)); },
  hammer: async (n) => { const t0 = Date.now(); for (let i = 0; i < n; i++) { try { await host.data.set('writer/n', i); } catch (e) { return { ok: i, code: e.code, ms: Date.now() - t0 }; } } return { ok: n, ms: Date.now() - t0 }; },
});`,
  });
  await w.trust('writer');
  await w.publish();
  const { FileDataAdapter } = await import('../lib/bus');
  const host = w.host({ bus: { dataAdapter: new FileDataAdapter(`${w.root}/bus-data`) } });
  t.teardown(() => host.close());
  await host.start();
  const p = host.process('writer')!;
  await p.call('fill');
  await new Promise((r) => setTimeout(r, 1100));
  const r = (await p.call('hammer', 2000)) as { ok: number; code?: string; ms: number };
  t.equal(r.code, 'ERR_BUS_LIMIT', `refused past the rate (${r.ok} writes accepted in ${r.ms} ms)`);
  // Each write is charged the ~860 KiB namespace plus the largest value: about 4 a second.
  t.ok(r.ok <= ((8 << 20) + (4 << 20) * (r.ms / 1000)) / (860 * 1024) + 1, 'no more than the burst and the rate of bytes rewritten');
});

t.test('re-entrancy: a service that calls back its caller\'s service answers (no deadlock); __proto__ keys are plain keys', async (t) => {
  const w = await PluginWorld.create();
  t.teardown(() => w.cleanup());
  w.writePlugin('ra', {
    code: `exports.activate = async (host) => {
  await host.provide('leaf', function () { return 'leaf for ' + this.caller; });
  return { go: () => host.callPlugin('rb', 'pong'), proto: async () => { await host.data.set('ra/__proto__', { polluted: 1 }); await host.data.set('ra/constructor', 2); return [await host.data.get('ra/__proto__'), await host.data.list('ra/'), ({}).polluted]; } };
};`,
    provides: ['service:provide:leaf'], consumes: ['service:call:rb/pong'],
  });
  await w.trust('ra', { permissions: ['service:provide:leaf', 'service:call:rb/pong'] });
  w.writePlugin('rb', { code: `exports.activate = (host) => host.provide('pong', () => host.callPlugin('ra', 'leaf'));`, provides: ['service:provide:pong'], consumes: ['service:call:ra/leaf'] });
  await w.trust('rb', { permissions: ['service:provide:pong', 'service:call:ra/leaf'] });
  await w.publish();
  const { FileDataAdapter } = await import('../lib/bus');
  const dir = `${w.root}/bus-data`;
  const host = w.host({ bus: { callTimeoutMs: 3000, dataAdapter: new FileDataAdapter(dir) } });
  t.teardown(() => host.close());
  await host.start();
  const started = Date.now();
  t.equal(await host.process('ra')!.call('go'), 'leaf for rb', 'ra → rb → ra answered');
  t.ok(Date.now() - started < 2000, 'well before the call timeout');
  t.same(await host.process('ra')!.call('proto'), [{ polluted: 1 }, ['ra/__proto__', 'ra/constructor'], undefined], 'stored and listed as keys, the plugin\'s prototypes untouched');
  t.equal(({} as { polluted?: unknown }).polluted, undefined, "the host's prototypes untouched");
  await host.close();
  t.same(new FileDataAdapter(dir).load().get('ra')?.get('__proto__'), '{"polluted":1}', 'and read back from the file as a key');
});

t.test('shared data: a small value of shared references is refused by size, not written out as JSON', async (t) => {
  // 2^40 arrays as JSON in a message of a few hundred bytes: a class instance travels by structured
  // clone, which keeps shared references. A plugin needs no grant to write its own keys.
  const w = await PluginWorld.create();
  t.teardown(() => w.cleanup());
  w.writePlugin('bomber', {
    code: `class Box {}
exports.activate = (host) => ({
  bomb: async () => {
    let d = [];
    for (let i = 0; i < 40; i++) d = [d, d];
    const b = new Box();
    b.v = d;
    try { await host.data.set('bomber/k', b); return 'stored'; } catch (e) { return e.code; }
  },
  small: async () => { await host.data.set('bomber/s', { n: [1, 2, 3] }); return host.data.get('bomber/s'); },
});`,
  });
  await w.trust('bomber');
  await w.publish();
  const host = w.host();
  t.teardown(() => host.close());
  await host.start();
  const p = host.process('bomber')!;
  const started = Date.now();
  t.equal(await p.call('bomb'), 'ERR_BUS_QUOTA', 'refused as over the value size');
  t.ok(Date.now() - started < 5000, `answered in ${Date.now() - started} ms (the stringify of 2^40 arrays never ends)`);
  t.same(await p.call('small'), { n: [1, 2, 3] }, 'an ordinary value is still stored');
});

t.test('shared data: the quota counts bytes, not UTF-16 units (three-byte characters are not a third of their size)', async (t) => {
  const { DataStore } = await import('../lib/bus');
  const store = new DataStore({ maxValueBytes: 64 * 1024, quotaBytes: 1 << 20, quotaKeys: 1000 });
  const euros = '€'.repeat(21_000); // 63,000 bytes of UTF-8, 21,000 units
  let stored = 0;
  t.throws(() => {
    for (let i = 0; i < 50; i++) {
      store.set('o', `k${i}`, euros);
      stored++;
    }
  }, { code: 'ERR_BUS_QUOTA' });
  t.ok(store.usage('o') <= 1 << 20, `usage within the quota (${store.usage('o')} bytes)`);
  t.ok(stored * 63_000 <= 1 << 20, `at most 1 MiB of UTF-8 held (${stored} values of 63,000 bytes)`);
});

t.test('a payload counts at least what it takes on the channel', async (t) => {
  // The bus keeps a subscriber's pending bytes under its channel's queue bound by this count.
  // Before: 49,000 empty Buffers counted 2 bytes and took ~245 KB on the wire; 200 such publishes
  // overfilled an honest, briefly busy subscriber's queue (18 MiB) and got it unloaded for a flood.
  const encoded = (v: unknown): number => {
    const enc = new Encoder();
    const len = enc.encode(2, 1, undefined, v);
    const parts = enc.parts ?? [];
    return (len === -1 ? 0 : len) + parts.reduce((n, p) => n + p.byteLength, 0);
  };
  const shapes: Array<[string, unknown]> = [
    ['empty Buffers', Array.from({ length: 9000 }, () => Buffer.alloc(0))],
    ['empty strings', Array.from({ length: 9000 }, () => '')],
    ['empty arrays', Array.from({ length: 9000 }, () => [])],
    ['empty objects', Array.from({ length: 9000 }, () => ({}))],
    ['numbers', Array.from({ length: 9000 }, (_, i) => i + 0.5)],
    ['small ints', Array.from({ length: 9000 }, (_, i) => i)],
    ['one-letter keys', Object.fromEntries(Array.from({ length: 9000 }, (_, i) => [`k${i}`, null]))],
  ];
  for (const [what, v] of shapes) {
    const counted = sizeOver(v, Number.MAX_SAFE_INTEGER);
    const wire = encoded(v) - encoded(null); // the value's own bytes, without the message's envelope
    t.ok(counted >= wire, `${what}: counted ${counted} bytes, the channel takes ${wire}`);
  }
});

t.test('refusals while the plugin loads: audit lines bounded, and the flood fails the load', async (t) => {
  // The bus handlers answer from the plugin's first line of code, before the host has the instance
  // to blame. Before: every refusal was an audit line and none was a violation (3,000 lines here, and
  // at the channel's rate about half a million in the 10 s a load may take), and a plugin that kept
  // refusals coming through the load's handshake was activated with its violation lost.
  const w = await PluginWorld.create();
  t.teardown(() => w.cleanup());
  w.writePlugin('noisy', { code: `exports.activate = async (host) => { for (let i = 0; i < 3000; i++) { try { await host.publish('nope', 1); } catch {} } };` });
  await w.trust('noisy');
  w.writePlugin('lingering', { code: `exports.activate = (host) => { void (async () => { for (let i = 0; i < 200000; i++) { try { await host.publish('nope', 1); } catch {} } })(); };`, hooks: ['work'] });
  await w.trust('lingering');
  await w.publish();
  const host = w.host({ hooks: [{ name: 'work', mode: 'parallel' }] });
  t.teardown(() => host.close());
  await host.start().catch(() => undefined);
  t.equal(host.info('noisy').status, 'failed', 'the load failed');
  t.match(host.info('noisy').reason, { kind: 'flood', message: /refused on the bus more than 50 times/ }, 'a flood violation');
  t.match(host.audit.events({ plugin: 'noisy', event: 'violation' }), [{ severity: 'critical', details: { kind: 'flood' } }], 'audited as a violation');
  t.match(host.audit.events({ plugin: 'noisy', event: 'load' }), [{ severity: 'warning', reason: /flood violation while it loaded/ }], 'and as the load\'s failure');
  await until(() => host.info('lingering').status !== 'active' && host.info('lingering').status !== 'loading', 10000, 'the lingering flood to end its plugin');
  t.equal(host.info('lingering').status, 'failed', 'a flood that lasts past the load ends the plugin too');
  for (const name of ['noisy', 'lingering']) {
    const lines = host.audit.events({ plugin: name, event: 'bus' }).length;
    t.ok(lines >= 50 && lines <= 51, `${name}: ${lines} bus audit lines (the 50 refusals allowed, and the one over)`);
  }
});
