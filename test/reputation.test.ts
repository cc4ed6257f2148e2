/**
 * Reputation: the pure score (each signal's contribution, caps, clamp), then real audit logs made by
 * real misbehaving plugins: one that crashes on every call until it is quarantined, one that is
 * killed for memory, and one that behaves. host.plugins() shows the scores; a host started later on
 * the same log remembers the history; `warden audit --summary` reports the same numbers.
 */
import t, { Test } from 'tap';
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';

import { formatReputation, reputation, type ReputationSignals } from '../lib/reputation';
import { PluginWorld, until } from './helpers/plugins';
import { isRoot } from './helpers/sandbox';

const HOOKS = [{ name: 'work', mode: 'parallel' as const, timeout: 5000 }, { name: 'eat', mode: 'parallel' as const, timeout: 10000 }];
const DAY = 86_400_000;

async function world(t: Test): Promise<PluginWorld> {
  const w = await PluginWorld.create();
  t.teardown(() => w.cleanup());
  return w;
}

const clean: ReputationSignals = { crashes: 0, violations: {}, restarts: 0, quarantines: 0 };

function points(r: ReturnType<typeof reputation>, signal: string): number | undefined {
  return r.contributions.find((c) => c.signal === signal)?.points;
}

t.test('the score: a neutral base, each signal shown with its points, caps and a clamp', async (t) => {
  const none = reputation(clean);
  t.equal(none.score, 50, 'nothing known: the base');
  t.equal(none.grade, 'fair');
  t.same(none.contributions.map((c) => c.value), ['unknown', 'unknown', 'unknown', '0', '0', '0', '0', '0'], 'unknown ages say so');

  const old = reputation({ ...clean, trust: 'privileged', publisherAgeMs: 400 * DAY, versionAgeMs: 90 * DAY });
  t.equal(points(old, 'trust level'), 10);
  t.equal(points(old, 'publisher age'), 20, 'capped at +20');
  t.equal(points(old, 'version age'), 10, 'capped at +10');
  t.equal(old.score, 90);
  t.equal(old.grade, 'good');

  const young = reputation({ ...clean, trust: 'standard', publisherAgeMs: 18 * DAY, versionAgeMs: 2 * DAY });
  t.equal(points(young, 'publisher age'), 2);
  t.equal(points(young, 'version age'), 0);
  t.equal(young.score, 57);

  const bad = reputation({ ...clean, trust: 'restricted', crashes: 2, violations: { memory: 1, seccomp: 1, crash: 5 }, restarts: 2, quarantines: 1 });
  t.equal(points(bad, 'crashes'), -10);
  t.equal(points(bad, 'resource violations'), -8);
  t.equal(points(bad, 'escape attempts'), -15);
  t.equal(points(bad, 'restarts'), -4);
  t.equal(points(bad, 'quarantines'), -20);
  t.equal(bad.score, 0, 'clamped at 0 (50 - 57)');
  t.equal(bad.grade, 'poor');

  const many = reputation({ ...clean, crashes: 100 });
  t.equal(points(many, 'crashes'), -25, 'one signal cannot outweigh every other: capped');

  const scanned = reputation({ ...clean, scan: { usedNotRequested: ['sys:exec', 'net:connect'], risky: 3 } });
  t.equal(points(scanned, 'used but not requested'), -20);
  t.equal(points(scanned, 'risky code'), -6);
  t.equal(scanned.contributions.find((c) => c.signal === 'used but not requested')?.value, 'sys:exec, net:connect');
  t.equal(formatReputation(scanned), '24 (poor): used but not requested sys:exec, net:connect -20, risky code 3 -6');
});

t.test('real misbehaviour in a real audit log: host.plugins(), a later host, and warden audit --summary', async (t) => {
  const w = await world(t);
  w.writePlugin('flaky', { code: `exports.activate = (h) => { h.hook('work', () => process.exit(9)); };`, hooks: ['work'] });
  w.writePlugin('steady', { code: `exports.activate = (h) => { h.hook('work', () => 'ok'); };`, hooks: ['work'] });
  const longAgo = new Date(Date.now() - 120 * DAY).toISOString().replace(/\.\d{3}Z$/, 'Z');
  await w.trust('flaky', { publisher: 'newcomer' });
  await w.trust('steady', { publisher: 'veteran', added: longAgo });
  if (isRoot) {
    w.writePlugin('hog', { code: `const keep = []; exports.activate = (h) => { h.hook('eat', () => { for (;;) keep.push(Buffer.alloc(1 << 20, 1)); }); };`, hooks: ['eat'] });
    await w.trust('hog', { publisher: 'veteran', limits: { memory: 96 * 1024 * 1024 } });
  }
  await w.publish();
  const host = w.host({ hooks: HOOKS, restart: { policy: 'restart', initialDelayMs: 20, maxDelayMs: 200 }, quarantine: { violations: 3, windowMs: 60_000 } });
  t.teardown(() => host.close());
  await host.start();
  t.equal(host.info('flaky').reputation.score, 55, 'before anything happened: base + standard');
  for (let i = 0; i < 3; i++) {
    await until(() => host.status('flaky') === 'active', 10000, 'restart');
    await host.invoke('work', []);
    await until(() => host.status('flaky') !== 'active', 10000, 'crash');
  }
  await until(() => host.status('flaky') === 'quarantined', 5000, 'quarantine');
  if (isRoot) {
    await host.invoke('eat', []);
    await until(() => host.info('hog').restarts === 1, 20000, 'the hog to be killed and restarted');
  }
  const infos = Object.fromEntries(host.plugins().map((p) => [p.name, p]));
  const flaky = infos.flaky!.reputation;
  t.equal(infos.flaky!.trust, 'standard');
  t.equal(points(flaky, 'crashes'), -15, '3 crashes');
  t.equal(points(flaky, 'restarts'), -4, '2 restarts');
  t.equal(points(flaky, 'quarantines'), -20, '1 quarantine');
  t.equal(points(flaky, 'publisher age'), 0, 'the entry has no added time');
  t.equal(flaky.score, 16, `${formatReputation(flaky)}`);
  const steady = infos.steady!.reputation;
  t.equal(points(steady, 'publisher age'), 13, '120 days');
  t.equal(points(steady, 'version age'), 10);
  t.equal(steady.score, 78, formatReputation(steady));
  t.ok(steady.score > flaky.score);
  if (isRoot) t.equal(points(infos.hog!.reputation, 'resource violations'), -8, 'the memory kill');
  else t.pass('the memory violation', { skip: 'needs root: cgroup limits' });
  await host.close();

  // A host started later reads the history from the log.
  const later = w.host({ hooks: HOOKS });
  t.teardown(() => later.close());
  await later.start();
  t.equal(later.info('flaky').reputation.score, 16, 'the crashes, restarts and quarantine are remembered');
  t.equal(later.info('steady').reputation.score, 78);

  const bin = path.join(__dirname, '..', '..', 'bin', 'warden');
  const r = spawnSync(process.execPath, [bin, 'audit', '--file', w.auditPath, '--summary', '--trust', w.trustFile], { encoding: 'utf8' });
  t.equal(r.status, 0, r.stderr);
  t.match(r.stdout, /flaky@1\.0\.0\n {2}loads \d+, crashes 3, violations none, restarts 2, quarantines 1\n {2}reputation 16 \(poor\): trust level standard \+5, crashes 3 -15, restarts 2 -4, quarantines 1 -20/);
  t.match(r.stdout, /steady@1\.0\.0\n.*\n {2}reputation 78 \(good\): trust level standard \+5, publisher age 120 days \+13, version age 120 days \+10/);
  const j = spawnSync(process.execPath, [bin, 'audit', '--file', w.auditPath, '--summary', '--json'], { encoding: 'utf8' });
  const rows = JSON.parse(j.stdout) as Array<{ plugin: string; crashes: number; reputation: { score: number } }>;
  t.equal(rows.find((x) => x.plugin === 'flaky')?.crashes, 3);
  t.equal(rows.find((x) => x.plugin === 'flaky')?.reputation.score, 11, 'without the list: no trust level, so 5 less');
});
