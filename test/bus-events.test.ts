/**
 * The plugin bus, events: grants decide who publishes and who receives, the host stamps the sender,
 * payloads and rates are bounded, a slow subscriber costs the host a bounded queue, and every
 * refusal is an audit line. Real plugins in real sandboxes.
 */
import t from 'tap';

import { readAuditLog } from '../lib/audit';
import { PluginWorld, until } from './helpers/plugins';

/** A subscriber that reports what it receives (payload and the host's meta) as a host event. */
const SUBSCRIBER = `let result = 'pending';
exports.activate = async (host) => {
  try {
    await host.subscribe('orders', (payload, meta) => host.emit('got', payload, meta));
    result = 'ok';
  } catch (e) {
    result = e.message;
  }
};
exports.subscribed = () => result;`;

/** A publisher whose methods the test calls: an honest publish, and forged ones. */
const PUBLISHER = `exports.activate = (host) => ({
  pub: (payload) => host.publish('orders', payload),
  // Extra arguments and a 'from' in the payload: the host must take neither as the sender.
  forge: () => host.call('$bus:publish', 'orders', { from: 'sub-ok', n: 1 }, 'sub-ok', { from: 'sub-ok' }),
  other: () => host.publish('payments', 1),
  flood: async (n) => { let refused = 0; for (let i = 0; i < n; i++) { try { await host.publish('orders', i); } catch (e) { refused++; } } return refused; },
});`;

async function world(t: { teardown(fn: () => unknown): void }, bus: Record<string, number> = {}) {
  const w = await PluginWorld.create();
  t.teardown(() => w.cleanup());
  w.writePlugin('pub', { code: PUBLISHER, provides: ['events:publish:orders'] });
  w.writePlugin('sub-ok', { code: SUBSCRIBER, consumes: ['events:subscribe:orders'] });
  // Declares nothing and is granted nothing: its subscribe must be refused.
  w.writePlugin('sub-no', { code: SUBSCRIBER });
  await w.trust('pub', { permissions: ['events:publish:orders'] });
  await w.trust('sub-ok', { permissions: ['events:subscribe:orders'] });
  // Granted in the trust list but not declared in the manifest: still nothing (intersection).
  await w.trust('sub-no', { permissions: ['events:subscribe:orders'] });
  await w.publish();
  const host = w.host({ bus });
  t.teardown(() => host.close());
  const events: Array<{ plugin: string; name: string; args: unknown[] }> = [];
  host.on('event', (plugin: string, name: string, ...args: unknown[]) => events.push({ plugin, name, args }));
  await host.start();
  return { w, host, events };
}

t.test('a publisher and two subscribers, one not granted; the sender is stamped by the host', async (t) => {
  const { w, host, events } = await world(t);
  t.equal(await host.process('sub-ok')!.call('subscribed'), 'ok');
  t.match(await host.process('sub-no')!.call('subscribed'), /subscribe to 'orders': not granted \(events:subscribe:orders\)/, 'the ungranted subscribe is refused, naming the grant');
  const seenByHost: unknown[] = [];
  host.bus.observe('orders', (topic, from, payload) => seenByHost.push({ topic, from, payload }));
  t.equal(await host.process('pub')!.call('pub', { id: 1 }), 1, 'handed to one subscriber');
  await until(() => events.some((e) => e.name === 'got'), 5000, 'delivery');
  t.equal(await host.process('pub')!.call('forge'), 1);
  await until(() => events.filter((e) => e.name === 'got').length === 2, 5000, 'the forged one');
  const got = events.filter((e) => e.name === 'got');
  t.same(got.map((e) => e.plugin), ['sub-ok', 'sub-ok'], 'only the granted subscriber received');
  t.same(got[0]!.args, [{ id: 1 }, { topic: 'orders', from: 'pub' }]);
  t.same(got[1]!.args[1], { topic: 'orders', from: 'pub' }, "a 'from' in the message or extra arguments do not change the sender");
  t.same(seenByHost, [{ topic: 'orders', from: 'pub', payload: { id: 1 } }, { topic: 'orders', from: 'pub', payload: { from: 'sub-ok', n: 1 } }], 'the application sees the stamped sender');
  // The application publishes as '$host', which is no plugin's name.
  t.equal(host.bus.publish('orders', 'from the app'), 1);
  await until(() => events.filter((e) => e.name === 'got').length === 3, 5000, 'the host publish');
  t.same(events.filter((e) => e.name === 'got')[2]!.args[1], { topic: 'orders', from: '$host' });
  await t.rejects(host.process('pub')!.call('other') as Promise<unknown>, { message: /ERR_BUS_DENIED|publish to 'payments': not granted \(events:publish:payments\)/ }, 'an ungranted topic is refused');
  const { events: audit } = await readAuditLog(w.auditPath, { event: 'bus' });
  t.ok(audit.some((e) => e.plugin === 'sub-no' && /subscribe to 'orders': not granted/.test(e.reason ?? '')), 'the refused subscribe is audited');
  t.ok(audit.some((e) => e.plugin === 'pub' && /publish to 'payments': not granted/.test(e.reason ?? '')), 'the refused publish is audited');
  // The load's permission line names what was given, bus grants included: a plugin with only bus
  // grants is not "sandbox defaults only"; one granted but not declaring them got nothing.
  const { events: given } = await readAuditLog(w.auditPath, { event: 'permission' });
  t.match(given.find((e) => e.plugin === 'pub')?.reason, /^granted events:publish:orders$/, 'the publisher\'s bus grant is in its permission line');
  t.match(given.find((e) => e.plugin === 'sub-no')?.reason, /sandbox defaults only/, 'an undeclared grant is not given');
});

t.test('a load declaring an ungranted bus grant is refused, naming it; bad grant strings name the field', async (t) => {
  const w = await PluginWorld.create();
  t.teardown(() => w.cleanup());
  w.writePlugin('greedy', { code: 'exports.x = () => 1;', consumes: ['service:call:pub/lookup', 'data:read:pub/'] });
  await w.trust('greedy', { permissions: ['service:call:pub/lookup', 'data:read:pub/public/'] });
  w.writePlugin('typo', { code: 'exports.x = () => 1;', consumes: ['events:subscribe:*'] });
  await w.trust('typo');
  w.writePlugin('wrongside', { code: 'exports.x = () => 1;', provides: ['events:subscribe:orders'] });
  await w.trust('wrongside', { permissions: ['events:subscribe:orders'] });
  await w.publish();
  const host = w.host();
  t.teardown(() => host.close());
  await host.start();
  t.equal(host.info('greedy').status, 'failed');
  t.match(host.info('greedy').reason, { kind: 'refused', message: /requests data:read:pub\/, which the trust list does not grant/ }, 'a narrower data grant does not cover the whole namespace');
  const { events: refused } = await readAuditLog(w.auditPath, { event: 'refused' });
  t.ok(refused.some((e) => /consumes\[0\].*not a topic/.test(e.reason ?? '')), 'a wildcard topic is refused at discovery, naming the field');
  t.ok(refused.some((e) => /provides\[0\].*events:subscribe belongs in `consumes`/.test(e.reason ?? '')), 'a grant on the wrong side names the field');
  const { events } = await readAuditLog(w.auditPath, { plugin: 'greedy', event: 'permission' });
  t.ok(events.some((e) => /data:read:pub\//.test(e.reason ?? '')), 'the refusal is audited');
});

t.test('a payload over the bound is refused; a flood past the rate is the publisher\'s violation', async (t) => {
  const { w, host } = await world(t, { maxPayloadBytes: 1000, publishPerSecond: 20, publishBurst: 10, maxRefusals: 5 });
  await t.rejects(host.process('pub')!.call('pub', 'x'.repeat(2000)) as Promise<unknown>, { message: /payload over 1000 bytes/ });
  const refused = await host.process('pub')!.call('flood', 100).catch((e: Error) => e);
  await until(() => host.info('pub').status !== 'active', 5000, 'the violation');
  t.match(host.info('pub').reason, { kind: 'flood', message: /refused on the bus more than 5 times/ }, 'the flood is a violation of the publisher');
  t.ok(refused instanceof Error || typeof refused === 'number', 'the flooding call ended');
  t.equal(host.info('sub-ok').status, 'active', 'the subscriber is untouched');
  const { events } = await readAuditLog(w.auditPath, { plugin: 'pub' });
  t.ok(events.filter((e) => e.event === 'bus' && /over the rate/.test(e.reason ?? '')).length >= 1, 'rate refusals audited');
  t.ok(events.some((e) => e.event === 'violation' && /refused on the bus/.test(e.reason ?? '')), 'the violation audited');
});

t.test('a slow subscriber: events beyond its bound are dropped and counted, the host holds a bounded queue', async (t) => {
  const w = await PluginWorld.create();
  t.teardown(() => w.cleanup());
  w.writePlugin('slow', { code: `exports.activate = (host) => host.subscribe('orders', () => new Promise(() => {}));`, consumes: ['events:subscribe:orders'] });
  await w.trust('slow', { permissions: ['events:subscribe:orders'] });
  await w.publish();
  const host = w.host({ bus: { maxPendingPerSubscriber: 8 } });
  t.teardown(() => host.close());
  await host.start();
  let handed = 0;
  for (let i = 0; i < 200; i++) handed += host.bus.publish('orders', i);
  t.equal(handed, 8, 'only the bound is handed to it');
  t.equal(host.bus.dropped('slow'), 192, 'the rest dropped and counted');
  t.equal(host.info('slow').status, 'active', 'being slow is not a violation');
  const { events } = await readAuditLog(w.auditPath, { plugin: 'slow', event: 'bus' });
  t.ok(events.some((e) => /dropping events for a slow subscriber/.test(e.reason ?? '')), 'the drop is audited (once per burst)');
});
