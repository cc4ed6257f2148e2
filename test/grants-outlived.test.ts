/**
 * Grants do not outlive the trust list that gave them. A running plugin whose entry the list
 * narrows is reloaded under the new entry, and when that load fails (its manifest asks for what is
 * no longer granted) it is unloaded, not left running with its old sandbox and bus rights. An old
 * instance that drains after a reload may do on the bus only what its successor is granted.
 * Real plugins in real sandboxes.
 */
import t from 'tap';

import { pidAlive } from '../lib/pid-alive';
import { PluginWorld, until } from './helpers/plugins';

t.test('a trust list that narrows a running plugin\'s grants: reload under them, or unload', async (t) => {
  const w = await PluginWorld.create();
  t.teardown(() => w.cleanup());
  w.writePlugin('pub', { code: `exports.activate = (host) => ({ pub: () => host.publish('orders', 1) });`, provides: ['events:publish:orders'], permissions: ['net:outbound'] });
  await w.trust('pub', { permissions: ['events:publish:orders', 'net:outbound'] });
  await w.publish();
  const host = w.host({ watch: { debounceMs: 100 } });
  t.teardown(() => host.close());
  await host.start();
  t.equal(host.status('pub'), 'active');
  const pid = host.info('pub').pid;
  // Same version, same files: only the entry's grants change.
  await w.trust('pub', { permissions: [] });
  await w.publish();
  await until(() => host.status('pub') === 'unloaded', 10000, 'the unload');
  t.match(host.info('pub').reason, { kind: 'revoked', message: /trust list entry changed/ }, 'unloaded, naming why');
  t.notOk(pid !== undefined && pidAlive(pid), 'its sandbox (with the host network) is gone');
});

t.test('a grant the list widens does not unload what runs: it is reloaded with it', async (t) => {
  const w = await PluginWorld.create();
  t.teardown(() => w.cleanup());
  w.writePlugin('pub', { code: `exports.activate = (host) => ({ pub: () => host.publish('orders', 1) });`, provides: ['events:publish:orders'] });
  await w.trust('pub', { permissions: ['events:publish:orders'] });
  await w.publish();
  const host = w.host({ watch: { debounceMs: 100 } });
  t.teardown(() => host.close());
  await host.start();
  const pid = host.info('pub').pid;
  await w.trust('pub', { permissions: ['events:publish:orders', 'events:publish:other'] });
  await w.publish();
  await until(() => host.info('pub').pid !== pid && host.status('pub') === 'active', 10000, 'the reload');
  t.equal(await host.process('pub')!.call('pub'), 0, 'still publishing');
});

t.test('an old instance draining after a reload has only the grants of its successor', async (t) => {
  const w = await PluginWorld.create();
  t.teardown(() => w.cleanup());
  // v1 may publish 'orders' and 'audit'; its hook waits, then publishes to both.
  const code = (version: string) => `exports.activate = (host) => {
    host.hook('slow', async () => {
      await new Promise((r) => setTimeout(r, 800));
      const out = {};
      for (const topic of ['orders', 'audit']) {
        try { await host.publish(topic, '${version}'); out[topic] = 'ok'; } catch (e) { out[topic] = e.code || e.message; }
      }
      return out;
    });
  };`;
  w.writePlugin('pub', { code: code('v1'), hooks: ['slow'], provides: ['events:publish:orders', 'events:publish:audit'] });
  await w.trust('pub', { permissions: ['events:publish:orders', 'events:publish:audit'] });
  await w.publish();
  const host = w.host({ hooks: [{ name: 'slow', mode: 'parallel' }], limits: { callTimeout: '10s' } });
  t.teardown(() => host.close());
  await host.start();
  const seen: Array<[string, unknown]> = [];
  host.bus.observe('orders', (topic, _from, payload) => seen.push([topic, payload]));
  host.bus.observe('audit', (topic, _from, payload) => seen.push([topic, payload]));
  const inFlight = host.invoke('slow', []);
  await new Promise((r) => setTimeout(r, 100));
  // v2 no longer publishes 'audit', and the list no longer grants it.
  w.writePlugin('pub', { code: code('v2'), version: '2.0.0', hooks: ['slow'], provides: ['events:publish:orders'] });
  w.untrust('pub');
  await w.trust('pub', { permissions: ['events:publish:orders'] });
  await w.publish();
  await host.refreshTrust();
  await host.reload('pub');
  t.equal(host.info('pub').version, '2.0.0');
  const r = await inFlight;
  t.same(r.values, [{ orders: 'ok', audit: 'ERR_BUS_DENIED' }], 'the draining v1 keeps what v2 is granted, not the rest');
  t.same(seen, [['orders', 'v1']], 'nothing reached the revoked topic');
});
