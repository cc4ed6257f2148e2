/**
 * A freeze attack against a running host: the publisher's updates are withheld and the list in force
 * expires. From that moment the host must not load or reload anything from it, including loads and
 * reloads already under way, must say so (event and critical audit line), and must apply its
 * onTrustExpired policy to what runs. Real short expiries (seconds), real sandboxes, no fake clocks.
 */
import t, { Test } from 'tap';
import * as fs from 'node:fs';
import * as path from 'node:path';

import { readAuditLog } from '../../lib/audit';
import { spawnNode } from '../../lib/process/spawn-node';
import type { PluginHost } from '../../lib/plugins';
import { PluginWorld, until } from '../helpers/plugins';

const HOOKS = [
  { name: 'who', mode: 'first' as const },
  { name: 'pend', mode: 'first' as const },
  { name: 'late', mode: 'first' as const },
];

const hook = (name: string, answer: string) => `exports.activate = (host) => { host.hook('${name}', () => '${answer}'); };`;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Seconds from now until the list expires; long enough for the host to start and load one plugin first. */
const EXPIRES_IN_MS = 8000;

async function expiring(t: Test, policy: 'unload' | 'keep-serving' | undefined): Promise<void> {
  const w = await PluginWorld.create();
  t.teardown(() => w.cleanup());
  w.writePlugin('served', { code: hook('who', 'served v1'), hooks: ['who'] });
  w.writePlugin('pending', { code: hook('pend', 'pending'), hooks: ['pend'] });
  w.writePlugin('later', { code: hook('late', 'later'), hooks: ['late'] });
  for (const n of ['served', 'pending', 'later']) await w.trust(n);
  const doc = await w.publish({ expires: new Date(Date.now() + EXPIRES_IN_MS) });
  const expiresAt = Date.parse(doc.signed.expires);

  // Loads and reloads caught in flight: their sandbox starts only once the list has expired, after
  // they were verified against it.
  let gateServed = false;
  const host: PluginHost = w.host({
    hooks: HOOKS,
    loading: 'lazy',
    ...(policy === undefined ? {} : { onTrustExpired: policy }),
    launcher: async (entry, options) => {
      const name = path.basename(path.dirname(entry));
      if (name === 'pending' || (name === 'served' && gateServed)) {
        while (Date.now() < expiresAt + 300) await sleep(50);
      }
      return spawnNode(entry, options);
    },
  });
  t.teardown(() => host.close());
  const expired: Array<{ version: number; expires: string; policy: string }> = [];
  host.on('trust-expired', (e) => expired.push(e));

  await host.start();
  t.equal((await host.invoke('who')).value, 'served v1', 'before the expiry, a lazy load works');
  const pendingLoad = host.invoke('pend');
  gateServed = true;
  const pendingReload = host.reload('served').then(() => undefined, (e: unknown) => e);
  t.ok(Date.now() < expiresAt, 'the load and the reload were under way before the expiry (else this machine is too slow for the test)');
  t.same(expired, [], 'nothing expired yet');

  await until(() => expired.length > 0, expiresAt - Date.now() + 5000, 'the trust-expired event');
  t.ok(Date.now() >= expiresAt, 'the event comes at the expiry, not before');
  t.same(expired, [{ version: 1, expires: doc.signed.expires, policy: policy ?? 'unload' }]);
  const crit = (await readAuditLog(w.auditPath, { event: 'trust-expired', minSeverity: 'critical' })).events;
  t.equal(crit.length, 1, 'one critical audit line at the expiry');
  t.match(crit[0]!.reason, /trust list version 1 expired at .*no plugin is loaded or reloaded/);

  await pendingLoad;
  t.equal(host.status('pending'), 'failed', 'the lazy load under way was not completed');
  t.equal(host.info('pending').reason?.code, 'ERR_TRUST_EXPIRED');
  const reloadError = await pendingReload;
  t.match(reloadError, { code: 'ERR_PLUGIN_LOAD', stage: 'verify', cause: { code: 'ERR_TRUST_EXPIRED' } }, 'the reload under way was refused');


  if ((policy ?? 'unload') === 'unload') {
    await until(() => host.status('served') === 'unloaded', 10000, 'served unloaded');
    t.equal(host.info('served').reason?.kind, 'trust-expired');
    t.equal((await host.invoke('who')).value, undefined, 'nothing serves on an expired list');
  } else {
    t.equal(host.status('served'), 'active');
    t.equal((await host.invoke('who')).value, 'served v1', 'the running version keeps serving');
    const warn = (await readAuditLog(w.auditPath, { event: 'trust-expired', plugin: 'served' })).events;
    t.equal(warn.length, 1);
    t.equal(warn[0]!.severity, 'warning', 'with a warning');
  }

  t.equal((await host.invoke('late')).value, undefined, 'a lazy load asked after the expiry is refused');
  t.equal(host.info('later').reason?.code, 'ERR_TRUST_EXPIRED');
  await t.rejects(host.reload('served'), { code: 'ERR_PLUGIN_LOAD', stage: 'verify', cause: { code: 'ERR_TRUST_EXPIRED' } }, 'so is a reload asked after it');

  // The publisher is back: a fresh list (with a new version of served) ends the expiry.
  w.writePlugin('served', { code: hook('who', 'served v2'), hooks: ['who'], version: '1.0.1' });
  await w.trust('served');
  await w.publish();
  await host.refreshTrust();
  for (const n of ['pending', 'later']) t.equal(host.status(n), 'idle', `${n}, refused for the expiry, waits for its next call again (lazy)`);
  t.equal((await host.invoke('late')).value, 'later', 'loads work again');
  if ((policy ?? 'unload') === 'unload') t.equal(host.status('served'), 'idle', 'an unloaded plugin waits for its next call too');
  await host.reload('served');
  t.equal((await host.invoke('who')).value, 'served v2', 'and reloads');
}

t.test('the list expires under a running lazy host: unload (the default)', (t) => expiring(t, undefined));
t.test('the list expires under a running lazy host: keep-serving', (t) => expiring(t, 'keep-serving'));

t.test('an expiry beyond what setTimeout can wait (2^31-1 ms) does not fire early', async (t) => {
  const w = await PluginWorld.create();
  t.teardown(() => w.cleanup());
  w.writePlugin('served', { code: hook('who', 'served'), hooks: ['who'] });
  await w.trust('served');
  await w.publish({ expires: new Date(Date.now() + 40 * 86400_000) });
  const warnings: string[] = [];
  const onWarning = (w: Error) => warnings.push(w.name);
  process.on('warning', onWarning);
  t.teardown(() => process.off('warning', onWarning));
  const host = w.host({ hooks: HOOKS });
  t.teardown(() => host.close());
  let expired = 0;
  host.on('trust-expired', () => expired++);
  await host.start();
  await sleep(300);
  t.equal(expired, 0, 'not expired');
  t.equal(host.status('served'), 'active');
  t.notOk(warnings.includes('TimeoutOverflowWarning'), 'no timer overflow');
});

t.test('an expired list is not accepted by a host, and onTrustExpired is checked', async (t) => {
  const w = await PluginWorld.create();
  t.teardown(() => w.cleanup());
  t.throws(() => w.host({ onTrustExpired: 'ignore' as 'unload' }), { code: 'ERR_INVALID_OPTION', field: 'onTrustExpired' });
  await w.publish({ expires: new Date(Date.now() - 1000) });
  const host = w.host({ hooks: HOOKS });
  t.teardown(() => host.close());
  await t.rejects(host.start(), { code: 'ERR_TRUST_EXPIRED' });
  t.ok(fs.existsSync(w.statePath));
});
