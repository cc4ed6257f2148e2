/**
 * Trust levels that mean something: the list's `levels` table gives each level a ceiling of
 * permissions and default limits. Checked through real PluginHost loads: a level's memory limit is
 * enforced by the kernel (a plugin that allocates until it is killed), a grant above the level's
 * ceiling refuses the load with an error naming the level, the permission and what to do, an
 * entry's own limits override its level's, and a list without a table keeps its old meaning.
 */
import t, { Test } from 'tap';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';

import { readAuditLog } from '../lib/audit';
import { RECOMMENDED_LEVELS, parseTrustList, signedBytes, type LevelTable } from '../lib/trust';
import { parsePermission, sandboxOptionsFor } from '../lib/plugins';
import { PluginWorld, until } from './helpers/plugins';
import { rootOnly } from './helpers/sandbox';

const HOOKS = [{ name: 'work', mode: 'parallel' as const, timeout: 10000 }];
const MIB = 1024 * 1024;

async function world(t: Test): Promise<PluginWorld> {
  const w = await PluginWorld.create();
  t.teardown(() => w.cleanup());
  return w;
}

function levels(over: Partial<LevelTable>): LevelTable {
  return { ...structuredClone(RECOMMENDED_LEVELS), ...over };
}

async function limitsOf(w: PluginWorld, plugin: string): Promise<Record<string, number>> {
  const { events } = await readAuditLog(w.auditPath, { plugin, event: 'permission' });
  const ok = events.filter((e) => e.severity === 'info');
  return (ok[ok.length - 1]?.details as { limits: Record<string, number> }).limits;
}

t.test("a level's memory limit is the kernel's: a plugin of that level that allocates is killed at it", async (t) => {
  await rootOnly(t, 'memory limit from the level', 'cgroup limits need root (or delegation)', async () => {
    const w = await world(t);
    w.writePlugin('hog', { code: `const keep = []; exports.activate = (h) => { h.hook('work', () => { for (;;) keep.push(Buffer.alloc(1 << 20, 1)); }); };`, hooks: ['work'] });
    // No limits in the entry: the level's 96 MiB applies (the host default is 256M).
    await w.trust('hog', { trust: 'restricted' });
    await w.publish({ levels: levels({ restricted: { permissions: [], limits: { memory: 96 * MIB, pids: 32 } } }) });
    const host = w.host({ hooks: HOOKS });
    t.teardown(() => host.close());
    await host.start();
    t.equal(host.status('hog'), 'active');
    t.same(await limitsOf(w, 'hog'), { memory: 96 * MIB, pids: 32, callTimeout: 5000 }, "the level's limits, the host's default for what the level leaves out");
    await host.invoke('work', []);
    await until(() => host.status('hog') === 'failed', 20000, 'the hog to be killed');
    const reason = host.info('hog').reason!;
    t.equal(reason.kind, 'memory', reason.message);
    const { events } = await readAuditLog(w.auditPath, { plugin: 'hog', event: 'violation' });
    t.equal(events.length, 1, 'the violation is audited');
    t.match(JSON.stringify(events[0]!.details), String(96 * MIB), 'at the level\'s limit');
  });
});

t.test("an entry's own limits override its level's; a request above the level's default is refused", async (t) => {
  const w = await world(t);
  w.writePlugin('big', { code: `exports.activate = (h) => { h.hook('work', () => 'big'); };`, hooks: ['work'], limits: { memory: '200M' } });
  w.writePlugin('asks', { code: `exports.activate = (h) => { h.hook('work', () => 'asks'); };`, hooks: ['work'], limits: { memory: '200M' } });
  w.writePlugin('plain', { code: `exports.activate = (h) => { h.hook('work', () => 'plain'); };`, hooks: ['work'] });
  await w.trust('big', { trust: 'restricted', limits: { memory: 300 * MIB } });
  await w.trust('asks', { trust: 'restricted' });
  await w.trust('plain', { trust: 'standard' });
  await w.publish({ levels: levels({}) });
  const host = w.host({ hooks: HOOKS, allowDegradedLimits: true });
  t.teardown(() => host.close());
  await host.start();
  t.equal(host.status('big'), 'active', 'the entry allows 300M, so a 200M request loads');
  t.equal((await limitsOf(w, 'big')).memory, 200 * MIB);
  t.equal((await limitsOf(w, 'big')).cpu, 0.25, "what the entry does not name comes from the level (restricted: 250 millicores)");
  t.equal(host.status('asks'), 'failed', "200M is above restricted's 128M");
  t.match(host.info('asks').reason?.message ?? '', /limits\.memory.*only 134217728 is allowed/);
  t.same(await limitsOf(w, 'plain'), { memory: 256 * MIB, pids: 64, cpu: 1, callTimeout: 5000, connectionsPerMinute: 60, maxConnections: 32 }, 'standard: the recommended table');
});

t.test("a grant above the level's ceiling refuses the load, naming the level, the permission and what to do", async (t) => {
  const w = await world(t);
  const code = `exports.activate = (h) => { h.hook('work', () => 'ran'); };`;
  w.writePlugin('exec-restricted', { code, hooks: ['work'], permissions: ['sys:exec'] });
  w.writePlugin('exec-standard', { code, hooks: ['work'], permissions: ['sys:exec'] });
  w.writePlugin('exec-privileged', { code, hooks: ['work'], permissions: ['sys:exec'] });
  // Granted but not even requested: the grant alone is above the ceiling.
  w.writePlugin('quiet-restricted', { code, hooks: ['work'] });
  w.writePlugin('net-standard', { code, hooks: ['work'], permissions: ['net:connect:api.example.com:443'] });
  w.writePlugin('cidr-standard', { code, hooks: ['work'], permissions: ['net:connect:10.0.0.0/8'] });
  await w.trust('exec-restricted', { trust: 'restricted', permissions: ['sys:exec'] });
  await w.trust('exec-standard', { trust: 'standard', permissions: ['sys:exec'] });
  await w.trust('exec-privileged', { trust: 'privileged', permissions: ['sys:exec'] });
  await w.trust('quiet-restricted', { trust: 'restricted', permissions: ['fs:read:/usr'] });
  await w.trust('net-standard', { trust: 'standard', permissions: ['net:connect:api.example.com:443'] });
  await w.trust('cidr-standard', { trust: 'standard', permissions: ['net:connect:10.0.0.0/8'] });
  await w.publish({ levels: levels({}) });
  const host = w.host({ hooks: HOOKS, allowDegradedLimits: true });
  t.teardown(() => host.close());
  await host.start();
  for (const [name, level, perm] of [['exec-restricted', 'restricted', 'sys:exec'], ['exec-standard', 'standard', 'sys:exec'], ['quiet-restricted', 'restricted', 'fs:read:/usr'], ['cidr-standard', 'standard', 'net:connect:10.0.0.0/8']] as const) {
    t.equal(host.status(name), 'failed', `${name} refused`);
    const msg = host.info(name).reason?.message ?? '';
    t.match(msg, `is granted ${perm}, above the ceiling of trust level '${level}'`, `${name}: names level and permission`);
    t.match(msg, /give the entry a level whose ceiling covers it \(warden trust add --trust LEVEL --replace\), or remove the grant/, `${name}: says what to do`);
  }
  t.match(host.info('exec-restricted').reason?.message ?? '', /which allows no permissions at all/);
  t.equal(host.status('exec-privileged'), 'active', 'privileged: any permission');
  t.equal(host.status('net-standard'), 'active', 'standard: a name under net:outbound');
  const { events } = await readAuditLog(w.auditPath, { plugin: 'exec-standard', event: 'permission' });
  t.equal(events[0]?.severity, 'warning');
  t.equal(events[0]?.details?.code, 'ERR_PLUGIN_LEVEL_CEILING');
  t.equal(events[0]?.details?.trust, 'standard');
});

t.test('a list without a levels table keeps its meaning and its signed bytes', async (t) => {
  const w = await world(t);
  w.writePlugin('old', { code: `exports.activate = (h) => { h.hook('work', () => 'old'); };`, hooks: ['work'], permissions: ['sys:exec'] });
  await w.trust('old', { trust: 'restricted', permissions: ['sys:exec'] });
  const doc = await w.publish();
  t.equal(doc.signed.levels, undefined);
  t.notMatch(Buffer.from(signedBytes(doc.signed)).toString(), /levels/, 'no table is added to what was signed');
  const host = w.host({ hooks: HOOKS, allowDegradedLimits: true });
  t.teardown(() => host.close());
  await host.start();
  t.equal(host.status('old'), 'active', 'a label only: restricted with sys:exec loads, as before');
  t.same(await limitsOf(w, 'old'), { memory: 256 * MIB, pids: 64, callTimeout: 5000 }, "the host's defaults");
});

t.test('the levels table is checked strictly', async (t) => {
  const w = await world(t);
  const doc = await w.publish({ levels: levels({}) });
  const text = (mut: (s: Record<string, any>) => void): string => {
    const d = structuredClone(doc) as unknown as { signed: Record<string, any> };
    mut(d.signed);
    return JSON.stringify(d);
  };
  t.throws(() => parseTrustList(text((s) => { delete s.levels.standard; })), { code: 'ERR_TRUST_MALFORMED', message: /levels\.standard: missing/ });
  t.throws(() => parseTrustList(text((s) => { s.levels.admin = s.levels.standard; })), { message: /levels\.admin: unknown trust level/ });
  t.throws(() => parseTrustList(text((s) => { s.levels.restricted.limits.memory = -1; })), { message: /levels\.restricted\.limits\.memory: must be an integer >= 0/ });
  t.throws(() => parseTrustList(text((s) => { s.levels.restricted.permissions = 'sys:exec'; })), { message: /levels\.restricted\.permissions: must be an array/ });
  t.throws(() => parseTrustList(text((s) => { s.levels.restricted.extra = 1; })), { message: /levels\.restricted\.extra: unknown field/ });
});

t.test('warden trust: init writes the recommended table, add refuses a grant above the level, level edits it', async (t) => {
  const w = await world(t);
  const bin = path.join(__dirname, '..', '..', 'bin', 'warden');
  const run = (...args: string[]) => spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', cwd: w.root });
  const keyDir = path.join(w.root, 'keys');
  let r = spawnSync(process.execPath, [bin, 'keygen', 'ops', '--dir', keyDir], { encoding: 'utf8' });
  t.equal(r.status, 0, r.stderr);
  const list = path.join(w.root, 'list.json');
  r = run('trust', 'init', list, '--key', path.join(keyDir, 'ops.pub'));
  t.equal(r.status, 0, r.stderr);
  const doc = parseTrustList(fs.readFileSync(list));
  t.same(doc.signed.levels, RECOMMENDED_LEVELS);
  t.match(Object.values(doc.signed.keys.keys)[0]?.added ?? '', /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/, 'the key is stamped');
  const dir = w.writePlugin('p', { code: "exports.x = 1;\nexports.get = (u) => require('https').get(u);" });
  r = run('trust', 'add', list, dir, '--publisher', 'acme', '--permission', 'net:outbound');
  t.equal(r.status, 1);
  t.match(r.stderr, /p is granted net:outbound, above the ceiling of trust level 'restricted'.*\[ERR_PLUGIN_LEVEL_CEILING\]/);
  r = run('trust', 'add', list, dir, '--publisher', 'acme', '--trust', 'standard', '--permission', 'net:outbound', '--limit', 'connectionsPerMinute=5');
  t.equal(r.status, 0, r.stderr);
  const e = parseTrustList(fs.readFileSync(list)).signed.entries[0]!;
  t.equal(e.limits.connectionsPerMinute, 5);
  t.match(e.added ?? '', /^\d{4}-/, 'the entry is stamped');
  r = run('trust', 'level', list, 'standard', '--permission', 'fs:read:/srv');
  t.equal(r.status, 1, 'narrowing a level below an entry of it is refused');
  t.match(r.stderr, /p is granted net:outbound, above the ceiling of trust level 'standard'/);
  r = run('trust', 'level', list, 'restricted', '--permission', 'fs:read:/srv', '--limit', 'memory=1048576');
  t.equal(r.status, 0, r.stderr);
  t.same(parseTrustList(fs.readFileSync(list)).signed.levels?.restricted, { permissions: ['fs:read:/srv'], limits: { memory: 1048576 } });
  r = run('trust', 'show', list);
  t.match(r.stdout, /restricted {2}ceiling=fs:read:\/srv {2}limits=memory=1048576/);
  const firstAdded = Object.values(parseTrustList(fs.readFileSync(list)).signed.keys.keys)[0]!.added;
  r = spawnSync(process.execPath, [bin, 'keygen', 'next', '--dir', keyDir], { encoding: 'utf8' });
  t.equal(r.status, 0, r.stderr);
  await new Promise((res) => setTimeout(res, 1100));
  r = run('trust', 'keys', list, '--key', path.join(keyDir, 'ops.pub'), '--key', path.join(keyDir, 'next.pub'));
  t.equal(r.status, 0, r.stderr);
  const declared = Object.values(parseTrustList(fs.readFileSync(list)).signed.keys.keys);
  t.equal(declared.find((k) => k.name === 'ops')?.added, firstAdded, 'a key declared before keeps its time');
  t.not(declared.find((k) => k.name === 'next')?.added, firstAdded, 'a new key is stamped now');
  const legacy = path.join(w.root, 'legacy.json');
  r = run('trust', 'init', legacy, '--key', path.join(keyDir, 'ops.pub'), '--no-levels');
  t.equal(r.status, 0, r.stderr);
  t.equal(parseTrustList(fs.readFileSync(legacy)).signed.levels, undefined, '--no-levels: labels only');
  t.match(run('trust', 'show', legacy).stdout, /levels {3}\(no table: labels only/);
});

t.test("a level's network budget becomes the plugin's network policy", async (t) => {
  const eff = [parsePermission('net:connect:api.example.com:443')];
  t.same(sandboxOptionsFor(eff, { connectionsPerMinute: 60, maxConnections: 32 }).network, { allow: ['api.example.com:443'], outbound: false, connectionsPerMinute: 60, maxConnections: 32 });
  t.same(sandboxOptionsFor(eff, { connectionsPerMinute: 0 }).network, { allow: ['api.example.com:443'], outbound: false }, '0 leaves the policy default');
  t.equal(sandboxOptionsFor([], { connectionsPerMinute: 60 }).network, undefined, 'no network permission: no policy, whatever the budget');
});
