/**
 * The plugin bus, services and shared data: calls routed by the host with the caller's identity,
 * refused without a grant, callee errors carried back, cancellation reaching the callee, a hot
 * reload of the callee under load losing and misrouting nothing; data across owners only as
 * granted, values and quotas bounded, the file adapter persisting. Real plugins in real sandboxes.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import t from 'tap';

import { readAuditLog } from '../lib/audit';
import { FileDataAdapter } from '../lib/bus';
import { PluginWorld, until } from './helpers/plugins';

const callee = (tag: string): string => `let cancelled = 0;
exports.activate = async (host) => {
  // Slow enough that a reload finds calls in flight on the old version.
  await host.provide('echo', async function (id) { await new Promise((r) => setTimeout(r, 5)); return { tag: '${tag}', id, caller: this.caller }; });
  await host.provide('fail', function () { const e = new Error('callee says no'); e.code = 'E_CALLEE'; throw e; });
  await host.provide('hang', function () { return new Promise((resolve) => this.signal.addEventListener('abort', () => { cancelled++; resolve('aborted'); })); });
};
exports.cancelled = () => cancelled;`;

const CALLER = `exports.activate = (host) => ({
  echo: (id) => host.callPlugin('svc', 'echo', id),
  fail: () => host.callPlugin('svc', 'fail'),
  notGranted: () => host.callPlugin('svc', 'hang'),
  cancel: async () => {
    const ac = new AbortController();
    const p = host.callPluginWith({ signal: ac.signal }, 'svc', 'hang').catch((e) => 'caller: ' + e.code);
    setTimeout(() => ac.abort(), 200);
    return p;
  },
  loop: async (n) => { const out = []; for (let i = 0; i < n; i++) { try { out.push(await host.callPlugin('svc', 'echo', i)); } catch (e) { out.push('error: ' + e.message); } } return out; },
});`;

t.test('service calls: identity, grants, errors carried back, cancellation, a hot reload under load', async (t) => {
  const w = await PluginWorld.create();
  t.teardown(() => w.cleanup());
  const SVC = { provides: ['service:provide:echo', 'service:provide:fail', 'service:provide:hang'] };
  const grant = { permissions: SVC.provides };
  // Both versions of the callee listed, so the reload flips between two trusted trees.
  w.writePlugin('svc', { code: callee('v2'), version: '1.0.1', ...SVC });
  await w.trust('svc', grant);
  w.writePlugin('svc', { code: callee('v1'), version: '1.0.0', ...SVC });
  await w.trust('svc', grant);
  w.writePlugin('caller', { code: CALLER, consumes: ['service:call:svc/echo', 'service:call:svc/fail'] });
  await w.trust('caller', { permissions: ['service:call:svc/echo', 'service:call:svc/fail', 'service:call:svc/hang'] });
  w.writePlugin('caller2', { code: CALLER, consumes: ['service:call:svc/echo', 'service:call:svc/fail', 'service:call:svc/hang'] });
  await w.trust('caller2', { permissions: ['service:call:svc/echo', 'service:call:svc/fail', 'service:call:svc/hang'] });
  await w.publish();
  const host = w.host();
  t.teardown(() => host.close());
  await host.start();
  const caller = () => host.process('caller')!;
  t.same(await caller().call('echo', 7), { tag: 'v1', id: 7, caller: 'caller' }, 'answered, with the caller named by the host');
  t.same(await host.bus.call('svc', 'echo', 1), { tag: 'v1', id: 1, caller: '$host' }, 'the application calls as $host');
  await t.rejects(caller().call('fail') as Promise<unknown>, { message: /callee says no/, code: 'E_CALLEE' }, "the callee's error comes back, with its code");
  // Granted by the trust list but not declared by the caller's manifest: refused (intersection).
  await t.rejects(caller().call('notGranted') as Promise<unknown>, { message: /call svc\/hang: not granted \(service:call:svc\/hang\)/ });
  t.equal(await host.process('caller2')!.call('cancel'), 'caller: ABORT_ERR', "the caller's abort ends its call");
  let cancelled: unknown = 0;
  const poll = setInterval(() => void host.process('svc')!.call('cancelled').then((n) => (cancelled = n)), 20);
  await until(() => cancelled === 1, 5000, "the callee's signal to abort").finally(() => clearInterval(poll));
  t.equal(cancelled, 1, "and reaches the callee's this.signal");

  // Under load: callers loop while the callee is reloaded again and again.
  let stop = false;
  const results: unknown[][] = [];
  const loops = [caller(), host.process('caller2')!].map(async (p) => {
    while (!stop) results.push((await p.call('loop', 20)) as unknown[]);
  });
  const pids = new Set<number>();
  for (let i = 0; i < 6; i++) {
    w.writePlugin('svc', { code: callee(i % 2 === 0 ? 'v2' : 'v1'), version: i % 2 === 0 ? '1.0.1' : '1.0.0', ...SVC });
    await host.reload('svc');
    pids.add(host.info('svc').pid!);
  }
  stop = true;
  await Promise.all(loops);
  const flat = results.flat();
  const bad = results.flatMap((batch) => batch.filter((r, i) => typeof r !== 'object' || (r as { id: number }).id !== i));
  t.same(bad, [], `no call lost or misrouted (${flat.length} calls)`);
  t.same([...new Set(flat.map((r) => (r as { tag: string }).tag))].sort(), ['v1', 'v2'], 'both versions answered');
  t.ok(flat.every((r) => ['caller', 'caller2'].includes((r as { caller: string }).caller)), 'every answer names its caller');
  t.equal(pids.size, 6, 'each reload a new sandbox');
  const { events } = await readAuditLog(w.auditPath, { event: 'bus', plugin: 'caller' });
  t.ok(events.some((e) => /call svc\/hang: not granted/.test(e.reason ?? '')), 'the refused call is audited');
  // Unloaded: no call reaches it, and the caller is told so.
  await host.unload('svc');
  await t.rejects(caller().call('echo', 1) as Promise<unknown>, { message: /call svc\/echo: svc is not running/ }, 'a call to an unloaded plugin fails clearly');
});

const DATA = `exports.activate = (host) => ({
  op: (name, ...args) => host.data[name](...args),
});`;

t.test('shared data: own keys, other owners only as granted, bounds, quota, the file adapter', async (t) => {
  const w = await PluginWorld.create();
  t.teardown(() => w.cleanup());
  w.writePlugin('owner', { code: DATA });
  w.writePlugin('reader', { code: DATA, consumes: ['data:read:owner/public/'] });
  w.writePlugin('writer', { code: DATA, consumes: ['data:write:owner/inbox/'] });
  w.writePlugin('stranger', { code: DATA });
  await w.trust('owner');
  await w.trust('reader', { permissions: ['data:read:owner/public/'] });
  await w.trust('writer', { permissions: ['data:write:owner/'] });
  await w.trust('stranger', { permissions: ['data:write:owner/'] });
  await w.publish();
  const dir = path.join(w.root, 'bus-data');
  const host = w.host({ bus: { maxValueBytes: 100, quotaBytes: 200, quotaKeys: 50, dataAdapter: new FileDataAdapter(dir) } });
  t.teardown(() => host.close());
  await host.start();
  const op = (p: string, ...args: unknown[]) => host.process(p)!.call('op', ...args) as Promise<unknown>;
  await op('owner', 'set', 'owner/public/a', { v: 1 });
  await op('owner', 'set', 'owner/secret', 's');
  t.same(await op('owner', 'get', 'owner/public/a'), { v: 1 }, 'own key');
  t.same(await op('reader', 'get', 'owner/public/a'), { v: 1 }, 'granted read');
  t.same(await op('reader', 'list', 'owner/public/'), ['owner/public/a'], 'granted list');
  await t.rejects(op('reader', 'get', 'owner/secret'), { message: /data get 'owner\/secret': not granted/ }, 'outside the granted prefix');
  await t.rejects(op('reader', 'list', 'owner/'), { message: /not granted/ }, 'listing more than granted');
  await t.rejects(op('reader', 'set', 'owner/public/a', 2), { message: /data set 'owner\/public\/a': not granted/ }, 'read does not write');
  await op('writer', 'set', 'owner/inbox/m1', 'hello');
  t.equal(await op('owner', 'get', 'owner/inbox/m1'), 'hello', 'granted write lands in the owner\'s namespace');
  await t.rejects(op('writer', 'set', 'owner/public/a', 'x'), { message: /not granted/ }, 'the manifest asked for inbox/ only: the wider grant is not given');
  await t.rejects(op('stranger', 'get', 'owner/public/a'), { message: /not granted/ }, 'granted in the trust list, not declared: nothing');
  await t.rejects(op('owner', 'set', 'owner/big', 'x'.repeat(200)), { message: /more than 100/ }, 'value bound');
  await op('owner', 'set', 'owner/b1', 'x'.repeat(90));
  await t.rejects(op('owner', 'set', 'owner/b2', 'x'.repeat(90)), { message: /quota of 200/ }, 'quota per owner');
  t.ok(await op('owner', 'delete', 'owner/b1'));
  await op('owner', 'set', 'owner/b2', 'x'.repeat(90));
  await t.rejects(op('owner', 'get', '../../etc/passwd'), { message: /must start with a plugin name/ }, 'no path, only keys');
  const files = fs.readdirSync(dir).sort();
  t.same(files, ['owner.json'], 'one file per owner, no temporary left');
  await host.close();
  const again = new FileDataAdapter(dir).load();
  t.equal(again.get('owner')?.get('inbox/m1'), '"hello"', 'persisted and read back');
  const { events } = await readAuditLog(w.auditPath, { event: 'bus' });
  for (const who of ['reader', 'writer', 'stranger', 'owner']) t.ok(events.some((e) => e.plugin === who && /refused/.test(e.reason ?? '')), `${who}'s refusals audited`);
});
