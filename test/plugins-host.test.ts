/**
 * The plugin host end to end, with real sandboxes: trust, permissions, hooks, lifecycle, violations,
 * quarantine, hot reload, audit, shutdown.
 */
import t, { Test } from 'tap';
import * as fs from 'node:fs';
import * as path from 'node:path';

import { readAuditLog } from '../lib/audit';
import { InvalidOptionError } from '../lib/errors';
import { listSandboxCgroups } from '../lib/limits';
import { spawnNode } from '../lib/process/spawn-node';
import { DEFAULT_HOST_ID_RANGE } from '../lib/sandbox/ids';
import type { PluginLauncher, PluginStatusEvent } from '../lib/plugins';
import { PluginWorld, until } from './helpers/plugins';
import { rootOnly } from './helpers/sandbox';
import { childProcesses } from './helpers/scale';

const HOOKS = [
  { name: 'greet', mode: 'parallel' as const },
  { name: 'steps', mode: 'series' as const },
  { name: 'transform', mode: 'waterfall' as const },
  { name: 'pick', mode: 'first' as const },
  { name: 'work', mode: 'parallel' as const, timeout: 3000 },
];

async function world(t: Test): Promise<PluginWorld> {
  const w = await PluginWorld.create();
  t.teardown(() => w.cleanup());
  return w;
}

function countingLauncher(): { launcher: PluginLauncher; started: string[] } {
  const started: string[] = [];
  return {
    started,
    launcher: async (entry, options) => {
      started.push(path.basename(path.dirname(entry)));
      return spawnNode(entry, options);
    },
  };
}

const GOOD = `
exports.activate = (host) => {
  host.hook('greet', (name) => 'hello ' + name + ' from good');
  host.hook('transform', (s) => s + '+good', { priority: 5 });
  host.hook('pick', () => undefined);
  host.hook('steps', (x) => 'good saw ' + x);
  return { whoami: () => ({ uid: process.getuid(), pid: process.pid }) };
};
`;

t.test('a trusted plugin is loaded and its hooks run in every mode, mixed with host handlers', async (t) => {
  const w = await world(t);
  w.writePlugin('good', { code: GOOD, hooks: ['greet', 'transform', 'pick', 'steps'] });
  w.writePlugin('other', {
    code: `exports.activate = (host) => {
      host.hook('greet', () => { throw Object.assign(new Error('other refuses'), { code: 'E_OTHER' }); });
      host.hook('transform', (s) => s + '+other', { priority: 1 });
      host.hook('pick', () => 'other picked', { priority: -1 });
    };`,
    hooks: ['greet', 'transform', 'pick'],
  });
  await w.trust('good');
  await w.trust('other');
  await w.publish();
  const host = w.host({ hooks: HOOKS });
  t.teardown(() => host.close());
  const statuses: PluginStatusEvent[] = [];
  host.on('status', (e: PluginStatusEvent) => statuses.push(e));
  await host.start();
  t.equal(host.status('good'), 'active');
  t.equal(host.status('other'), 'active');
  t.ok(statuses.some((e) => e.plugin === 'good' && e.previous === 'loading' && e.status === 'active'), 'status events: loading → active');

  host.registerHandler('transform', (args) => `${String(args[0])}+host`, { priority: 10 });
  host.registerHandler('pick', () => 'host picked', { priority: -1 });

  const g = await host.invoke('greet', ['ann']);
  t.same(g.values, ['hello ann from good'], 'parallel: the good plugin answers');
  t.equal(g.errors.length, 1, "the other plugin's error is in the result, not thrown");
  t.equal(g.errors[0]!.owner, 'other');
  t.equal(g.errors[0]!.error?.code, 'E_OTHER');
  t.equal(host.status('other'), 'active', 'a plugin throwing from a hook is not a violation');

  const tr = await host.invoke('transform', ['x']);
  t.equal(tr.value, 'x+host+good+other', 'waterfall runs by priority: host 10, good 5, other 1');
  const p = await host.invoke('pick', []);
  t.equal(p.value, 'other picked', 'first: the first non-empty result wins (good returned undefined)');
  t.same(p.outcomes.map((o) => o.owner), ['good', 'other'], 'first: later handlers are not called');
  const s = await host.invoke('steps', [3]);
  t.same(s.values, ['good saw 3']);

  const proc = host.process('good')!;
  const who = (await proc.call('whoami')) as { uid: number; pid: number };
  t.equal(who.pid, 1, 'the plugin runs as pid 1 of its own sandbox');
  rootOnly(t, 'nobody inside, and a host uid of its own per plugin from the host id range', 'unprivileged, every sandbox maps to the caller', () => {
    t.equal(who.uid, 65534, 'nobody inside');
    const hostUid = (pid: number) => Number(/^Uid:\s+(\d+)/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))![1]);
    const ids = [hostUid(proc.pid), hostUid(host.process('other')!.pid)];
    t.not(ids[0], ids[1], `each plugin has a host uid of its own (${ids.join(', ')})`);
    t.ok(ids.every((id) => id >= DEFAULT_HOST_ID_RANGE.first && id < DEFAULT_HOST_ID_RANGE.first + DEFAULT_HOST_ID_RANGE.count), 'from the host id range');
  });
});

t.test('a plugin not in the trust list is never started; a modified one neither', async (t) => {
  const w = await world(t);
  w.writePlugin('listed', { code: GOOD, hooks: ['greet', 'transform', 'pick', 'steps'] });
  w.writePlugin('stranger', { code: GOOD, hooks: ['greet', 'transform', 'pick', 'steps'] });
  w.writePlugin('tampered', { code: GOOD, hooks: ['greet', 'transform', 'pick', 'steps'] });
  await w.trust('listed');
  await w.trust('tampered');
  await w.publish();
  fs.appendFileSync(path.join(w.pluginsDir, 'tampered', 'index.js'), '\n// a change after signing\n');
  const { launcher, started } = countingLauncher();
  const host = w.host({ hooks: HOOKS, launcher });
  t.teardown(() => host.close());
  await host.start();
  t.same(started, ['listed'], 'only the listed, unmodified plugin was spawned');
  t.equal(host.status('stranger'), 'failed');
  t.equal(host.info('stranger').reason?.kind, 'refused');
  t.equal(host.info('stranger').reason?.code, 'ERR_TRUST_NOT_LISTED');
  t.equal(host.info('tampered').reason?.code, 'ERR_TRUST_DIGEST_MISMATCH');
  await t.rejects(host.load('stranger'), { code: 'ERR_PLUGIN_LOAD', stage: 'verify' });
  t.same(started, ['listed'], 'asking again does not start it either');
  const { events } = await readAuditLog(w.auditPath, { plugin: 'stranger' });
  t.ok(events.some((e) => e.event === 'verify' && e.severity === 'warning'), 'the refusal is audited');
});

t.test('permissions: requested and not granted is refused by name; granted ones become binds', async (t) => {
  const w = await world(t);
  const data = path.join(w.root, 'data');
  fs.mkdirSync(data, { mode: 0o755 });
  fs.writeFileSync(path.join(data, 'report.txt'), 'quarterly numbers', { mode: 0o644 });
  const reader = `exports.activate = (host) => { host.hook('greet', (p) => require('fs').readFileSync(p, 'utf8')); };`;
  w.writePlugin('reader', { code: reader, hooks: ['greet'], permissions: [`fs:read:${data}`] });
  w.writePlugin('greedy', { code: reader, hooks: ['greet'], permissions: [`fs:read:${data}`, 'net:outbound'] });
  w.writePlugin('nosy', { code: reader, hooks: ['greet'] });
  await w.trust('reader', { permissions: [`fs:read:${w.root}`] });
  await w.trust('greedy', { permissions: [`fs:read:${data}`] });
  await w.trust('nosy', { permissions: [`fs:read:${data}`] });
  await w.publish();
  const { launcher, started } = countingLauncher();
  const host = w.host({ hooks: HOOKS, launcher });
  t.teardown(() => host.close());
  await host.start();
  t.equal(host.status('greedy'), 'failed');
  t.match(host.info('greedy').reason?.message, /net:outbound/, 'the refusal names the permission');
  t.equal(host.info('greedy').reason?.stage, 'permissions');
  t.notOk(started.includes('greedy'), 'the refused plugin was never started');

  const r = await host.invoke('greet', [path.join(data, 'report.txt')]);
  const byOwner = Object.fromEntries(r.outcomes.map((o) => [o.owner, o]));
  t.equal(byOwner.reader?.value, 'quarterly numbers', 'the requested (and granted) path is readable');
  t.equal(byOwner.nosy?.ok, false, 'granted but not requested: not visible');
  t.equal(byOwner.nosy?.error?.code, 'ENOENT');
  const r2 = await host.invoke('greet', [path.join(w.root, 'audit.jsonl')]);
  t.equal(r2.outcomes.find((o) => o.owner === 'reader')?.error?.code, 'ENOENT', 'a grant wider than the request does not widen the view');
  const { events } = await readAuditLog(w.auditPath, { event: 'permission' });
  t.ok(events.some((e) => e.plugin === 'greedy' && /net:outbound/.test(e.reason ?? '')), 'permission decisions are audited');
  t.ok(events.some((e) => e.plugin === 'reader' && e.severity === 'info'));
});

t.test('each violation unloads the plugin at once with its reason', async (t) => {
  const w = await world(t);
  const asRoot = process.getuid?.() === 0;
  const plugins: Record<string, { code: string; limits?: Record<string, string | number>; permissions?: string[]; expect: string }> = {
    crasher: { code: `exports.activate = (h) => { h.hook('work', () => { setTimeout(() => process.exit(3), 5); return 'bye'; }); };`, expect: 'crash' },
    sleeper: { code: `exports.activate = (h) => { h.hook('work', () => new Promise(() => {})); };`, limits: { callTimeout: '300ms' }, expect: 'timeout' },
    scribbler: {
      // Overwrites the whole shared mapping (found in its own /proc/self/maps) through /proc/self/mem:
      // garbage where the host reads its frames is a protocol violation.
      code: `exports.activate = (h) => { h.hook('work', () => {
        const fs = require('fs');
        const line = fs.readFileSync('/proc/self/maps', 'utf8').split('\\n').find((l) => l.includes('warden-channel'));
        const [start, end] = line.split(' ')[0].split('-').map((x) => parseInt(x, 16));
        const fd = fs.openSync('/proc/self/mem', 'r+');
        const junk = Buffer.alloc(end - start, 0xff);
        fs.writeSync(fd, junk, 0, junk.length, start);
        return 'scribbled';
      }); };`,
      expect: 'protocol',
    },
    escaper: {
      code: `exports.activate = (h) => { h.hook('work', () => require('child_process').execFileSync('unshare', ['-U', 'true']).toString()); };`,
      permissions: ['sys:exec'],
      expect: 'seccomp',
    },
    spinner: { code: `exports.activate = (h) => { h.hook('work', () => { const end = Date.now() + 20000; while (Date.now() < end); }); };`, limits: { cpuTime: '500ms' }, expect: 'cpu-time' },
  };
  if (asRoot) {
    plugins.hog = {
      code: `const keep = []; exports.activate = (h) => { h.hook('work', () => { for (;;) keep.push(Buffer.alloc(1 << 20, 1)); }); };`,
      limits: { memory: '96M' },
      expect: 'memory',
    };
    plugins.forker = {
      code: `const { Worker } = require('worker_threads'); const ws = []; exports.activate = (h) => { h.hook('work', async () => { for (let i = 0; i < 64; i++) ws.push(new Worker('setInterval(() => {}, 1000)', { eval: true })); await new Promise((r) => setTimeout(r, 5000)); }); };`,
      limits: { pids: 24 },
      expect: 'pids',
    };
  } else {
    t.pass('memory and pids violations', { skip: 'needs root: they need cgroup limits, which an unprivileged host lacks (see warden doctor)' });
  }
  for (const [name, p] of Object.entries(plugins)) {
    w.writePlugin(name, { code: p.code, hooks: ['work'], limits: p.limits, permissions: p.permissions });
    await w.trust(name, { permissions: p.permissions, limits: { memory: 512 * 1024 * 1024, pids: 64, callTimeout: 3000 } });
  }
  await w.publish();
  const host = w.host({ hooks: HOOKS });
  t.teardown(() => host.close());
  await host.start();
  for (const name of Object.keys(plugins)) t.equal(host.status(name), 'active', `${name} loaded`);
  const pids = Object.fromEntries(Object.keys(plugins).map((n) => [n, host.info(n).pid!]));
  const r = await host.invoke('work', []);
  t.equal(r.outcomes.length, Object.keys(plugins).length);
  for (const [name, p] of Object.entries(plugins)) {
    await until(() => host.status(name) === 'failed', 15000, `${name} to be unloaded`);
    const info = host.info(name);
    t.equal(info.reason?.kind, p.expect, `${name}: ${info.reason?.message}`);
    t.equal(info.pid, undefined, `${name} has no process any more`);
    await until(() => !alive(pids[name]!), 5000, `${name}'s sandbox to be reaped`).catch(() => undefined);
    t.notOk(alive(pids[name]!), `${name}'s sandbox is gone`);
  }
  t.equal(host.info('escaper').reason?.syscall, 'unshare', 'the seccomp reason names the syscall');
  const after = await host.invoke('work', []);
  t.equal(after.outcomes.length, 0, 'unloaded plugins get no more calls');
  const { events } = await readAuditLog(w.auditPath, { event: 'violation' });
  t.same(new Set(events.map((e) => e.plugin)), new Set(Object.keys(plugins)), 'every violation is audited');
  t.ok(events.filter((e) => e.plugin === 'escaper' || e.plugin === 'scribbler').every((e) => e.severity === 'critical'), 'escape attempts are critical');
});

t.test('restart with backoff, then quarantine after repeated violations; release lifts it', async (t) => {
  const w = await world(t);
  w.writePlugin('flaky', { code: `exports.activate = (h) => { h.hook('work', () => process.exit(9)); };`, hooks: ['work'] });
  await w.trust('flaky');
  await w.publish();
  const host = w.host({ hooks: HOOKS, restart: { policy: 'restart', initialDelayMs: 20, maxDelayMs: 200 }, quarantine: { violations: 3, windowMs: 60_000 } });
  t.teardown(() => host.close());
  await host.start();
  const pids = new Set<number>();
  for (let i = 0; i < 3; i++) {
    await until(() => host.status('flaky') === 'active', 10000, 'restart');
    pids.add(host.info('flaky').pid!);
    await host.invoke('work', []);
    await until(() => host.status('flaky') !== 'active', 10000, 'crash');
  }
  t.equal(pids.size, 3, 'restarted twice, each time in a fresh sandbox');
  await until(() => host.status('flaky') === 'quarantined', 5000, 'quarantine');
  t.equal(host.info('flaky').restarts, 2);
  await new Promise((r) => setTimeout(r, 300));
  t.equal(host.status('flaky'), 'quarantined', 'no restart out of quarantine');
  await t.rejects(host.load('flaky'), { code: 'ERR_PLUGIN_QUARANTINED' });
  const { events } = await readAuditLog(w.auditPath, { plugin: 'flaky', event: 'quarantine' });
  t.equal(events.length, 1);
  t.equal(events[0]!.severity, 'critical');
  await host.release('flaky');
  t.equal(host.status('flaky'), 'active', 'released: loaded again');
});

t.test('hot reload under continuous calls: 20 reloads lose or fail no call', async (t) => {
  const w = await world(t);
  const code = (v: number): string => `exports.activate = (h) => { h.hook('greet', async (x) => { await new Promise((r) => setTimeout(r, 2)); return 'v${v}:' + x; }); };`;
  // Both versions are listed, so each reload is verified against the list.
  w.writePlugin('live', { code: code(1), version: '1.0.0', hooks: ['greet'] });
  await w.trust('live');
  w.writePlugin('live', { code: code(2), version: '1.0.1', hooks: ['greet'] });
  await w.trust('live');
  w.writePlugin('live', { code: code(1), version: '1.0.0', hooks: ['greet'] });
  await w.publish();
  const host = w.host({ hooks: HOOKS });
  t.teardown(() => host.close());
  await host.start();
  let stop = false;
  let calls = 0;
  const failures: unknown[] = [];
  const seen = new Set<string>();
  const callers = Array.from({ length: 4 }, async () => {
    while (!stop) {
      const r = await host.invoke('greet', [calls]);
      calls++;
      if (r.errors.length > 0 || r.values.length !== 1) failures.push(r.errors[0]?.error ?? r);
      else seen.add(String(r.values[0]).split(':')[0]!);
    }
  });
  const pids = new Set<number>([host.info('live').pid!]);
  for (let i = 0; i < 20; i++) {
    w.writePlugin('live', { code: code(i % 2 === 0 ? 2 : 1), version: i % 2 === 0 ? '1.0.1' : '1.0.0', hooks: ['greet'] });
    await host.reload('live');
    pids.add(host.info('live').pid!);
  }
  stop = true;
  await Promise.all(callers);
  t.same(failures, [], `no call failed (${calls} calls)`);
  t.ok(calls > 40, `calls kept flowing (${calls})`);
  t.equal(pids.size, 21, 'each reload started a new sandbox');
  t.same([...seen].sort(), ['v1', 'v2'], 'both versions served');
  t.equal(host.info('live').version, '1.0.0');
  for (const pid of [...pids].slice(0, -1)) t.throws(() => process.kill(pid, 0), { code: 'ESRCH' }, 'old versions were stopped');
});

t.test('a failed new version leaves the old one serving', async (t) => {
  const w = await world(t);
  w.writePlugin('steady', { code: `exports.activate = (h) => { h.hook('greet', () => 'old'); };`, hooks: ['greet'] });
  await w.trust('steady');
  await w.publish();
  const host = w.host({ hooks: HOOKS });
  t.teardown(() => host.close());
  await host.start();
  const pid = host.info('steady').pid;
  w.writePlugin('steady', { code: `exports.activate = (h) => { h.hook('greet', () => 'new, unsigned'); };`, version: '1.1.0', hooks: ['greet'] });
  await t.rejects(host.reload('steady'), { code: 'ERR_PLUGIN_LOAD', stage: 'verify' });
  t.equal(host.status('steady'), 'active');
  t.equal(host.info('steady').pid, pid);
  t.same((await host.invoke('greet', [])).values, ['old']);
  w.writePlugin('steady', { code: `exports.activate = (h) => { throw new Error('broken init'); };`, version: '1.2.0', hooks: ['greet'] });
  await w.trust('steady');
  await w.publish();
  await host.refreshTrust();
  await t.rejects(host.reload('steady'), { code: 'ERR_PLUGIN_LOAD', stage: 'init', message: /broken init/ }, 'a signed version whose init throws');
  t.same((await host.invoke('greet', [])).values, ['old'], 'still the old one');
});

t.test('watching: a changed directory and trust list reload the plugin; a revoked one is unloaded', async (t) => {
  const w = await world(t);
  w.writePlugin('watched', { code: `exports.activate = (h) => { h.hook('greet', () => 'one'); };`, hooks: ['greet'] });
  await w.trust('watched');
  await w.publish();
  const host = w.host({ hooks: HOOKS, watch: { debounceMs: 100 } });
  t.teardown(() => host.close());
  await host.start();
  t.same((await host.invoke('greet', [])).values, ['one']);
  // The usual update order: new files, then the list that vouches for them.
  w.writePlugin('watched', { code: `exports.activate = (h) => { h.hook('greet', () => 'two'); };`, version: '2.0.0', hooks: ['greet'] });
  await new Promise((r) => setTimeout(r, 500));
  t.same((await host.invoke('greet', [])).values, ['one'], 'unsigned new files: the old version keeps serving');
  await w.trust('watched');
  await w.publish();
  await until(() => host.info('watched').version === '2.0.0' && host.status('watched') === 'active', 10000, 'the reload');
  t.same((await host.invoke('greet', [])).values, ['two']);
  w.untrust('watched');
  await w.publish();
  await until(() => host.status('watched') === 'unloaded', 10000, 'revocation');
  t.equal(host.info('watched').reason?.kind, 'revoked');
  t.same((await host.invoke('greet', [])).values, []);
});

t.test('lazy loading starts a plugin on the first call of its hook; dependencies load first', async (t) => {
  const w = await world(t);
  w.writePlugin('base', { code: `exports.activate = (h) => { h.hook('steps', () => 'base'); };`, hooks: ['steps'], version: '1.4.0' });
  w.writePlugin('addon', { code: `exports.activate = (h) => { h.hook('greet', () => 'addon'); };`, hooks: ['greet'], dependencies: { base: '^1.2.0' } });
  w.writePlugin('orphan', { code: `exports.activate = (h) => { h.hook('pick', () => 'orphan'); };`, hooks: ['pick'], dependencies: { missing: '^1.0.0' } });
  w.writePlugin('toonew', { code: `exports.activate = (h) => { h.hook('pick', () => 'new'); };`, hooks: ['pick'], hostApi: '^2.0.0' });
  for (const n of ['base', 'addon', 'orphan', 'toonew']) await w.trust(n);
  await w.publish();
  const { launcher, started } = countingLauncher();
  const host = w.host({ hooks: HOOKS, launcher, loading: 'lazy' });
  t.teardown(() => host.close());
  await host.start();
  t.same(started, [], 'lazy: nothing started at start()');
  t.equal(host.status('addon'), 'idle');
  t.same((await host.invoke('greet', [])).values, ['addon']);
  t.same(started, ['base', 'addon'], 'the dependency started first');
  const p = await host.invoke('pick', []);
  t.equal(p.value, undefined);
  t.equal(host.info('orphan').reason?.code, 'ERR_COMPAT_MISSING_DEPENDENCY');
  t.equal(host.info('toonew').reason?.code, 'ERR_COMPAT_HOST_RANGE');
  t.notOk(started.includes('orphan') || started.includes('toonew'), 'incompatible plugins never start');
});

t.test('unload drains in-flight calls and calls the plugin shutdown; host methods know the caller', async (t) => {
  const w = await world(t);
  w.writePlugin('polite', {
    code: `
      exports.activate = (h) => {
        h.hook('work', async () => { await new Promise((r) => setTimeout(r, 300)); return 'finished'; });
        h.hook('greet', async () => 'host says ' + (await h.call('whoCalls')));
        h.onShutdown(async () => { await h.call('bye'); });
      };`,
    hooks: ['work', 'greet'],
  });
  await w.trust('polite');
  await w.publish();
  const byes: string[] = [];
  const host = w.host({
    hooks: HOOKS,
    methods: {
      whoCalls(this: { plugin: string }) {
        return this.plugin;
      },
      bye(this: { plugin: string }) {
        byes.push(this.plugin);
      },
    },
  });
  t.teardown(() => host.close());
  await host.start();
  t.same((await host.invoke('greet', [])).values, ['host says polite']);
  const inflight = host.invoke('work', []);
  await new Promise((r) => setTimeout(r, 50));
  await host.unload('polite');
  const r = await inflight;
  t.same(r.values, ['finished'], 'the in-flight call finished before the sandbox stopped');
  t.same(byes, ['polite'], "the plugin's shutdown ran");
  t.equal(host.status('polite'), 'unloaded');
});

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/**
 * The fds this process holds, but the module files it is loading: tap's process instrumentation
 * imports modules (uuid's, from node_modules) asynchronously when a child is spawned, at a moment
 * of its own, and their fds are open while they load. The host never opens a file there.
 */
function hostFds(): string[] {
  const out: string[] = [];
  for (const fd of fs.readdirSync('/proc/self/fd')) {
    let target = '?';
    try {
      target = fs.readlinkSync(`/proc/self/fd/${fd}`);
    } catch {
      continue; // the directory's own fd, closed already
    }
    if (!target.includes(`${path.sep}node_modules${path.sep}`)) out.push(target);
  }
  return out;
}

function fdCount(): number {
  return hostFds().length;
}

const children = (): number[] => childProcesses().map((c) => c.pid);

t.test('host shutdown unloads everything and leaves no process or fd behind', async (t) => {
  const w = await world(t);
  for (const n of ['a', 'b', 'c']) {
    w.writePlugin(n, { code: `exports.activate = (h) => { h.hook('greet', () => '${n}'); };`, hooks: ['greet'], limits: { memory: '64M' } });
    await w.trust(n);
  }
  await w.publish();
  // libuv opens one inotify fd per event loop on the first fs.watch and keeps it for the process's
  // life: open it before counting, so the count is about what the host holds.
  fs.watch(w.root).close();
  const fds = fdCount();
  const kids = children().length;
  const cgroups = listSandboxCgroups().length;
  const host = w.host({ hooks: HOOKS, watch: true, allowDegradedLimits: process.getuid?.() !== 0 });
  await host.start();
  t.equal((await host.invoke('greet', [])).values.length, 3);
  t.ok(children().length >= kids + 3, 'three sandboxes running');
  rootOnly(t, 'each in its own cgroup', 'an unprivileged host runs them without cgroups', () => t.ok(listSandboxCgroups().length >= cgroups + 3, 'each in its own cgroup (one per controller hierarchy)'));
  await host.close();
  for (const n of ['a', 'b', 'c']) t.equal(host.status(n), 'unloaded');
  await until(() => children().length === kids, 5000, 'children to be reaped');
  t.equal(children().length, kids, 'no sandbox left');
  const left = hostFds();
  t.equal(left.length, fds, `no fd left${left.length > fds ? `: ${left.join(', ')}` : ''}`);
  t.equal(listSandboxCgroups().length, cgroups, 'no cgroup left');
  await t.rejects(host.invoke('greet', []), { code: 'ERR_PLUGIN_STATE' });
});

t.test('bad host options name the field', async (t) => {
  const w = await world(t);
  t.throws(() => w.host({ pluginDirs: ['relative'] }), { code: 'ERR_INVALID_OPTION', field: 'pluginDirs' });
  t.throws(() => w.host({ hostApiVersion: 'one' }), { code: 'ERR_INVALID_OPTION', field: 'hostApiVersion' });
  t.throws(() => w.host({ loading: 'sometimes' as 'lazy' }), { code: 'ERR_INVALID_OPTION', field: 'loading' });
  t.throws(() => w.host({ quarantine: { violations: 0, windowMs: 10 } }), { code: 'ERR_INVALID_OPTION', field: 'quarantine.violations' });
  t.throws(() => w.host({ limits: { memory: 'a lot' } }), { code: 'ERR_INVALID_OPTION', field: 'limits.memory' });
  t.throws(() => w.host({ hooks: [{ name: 'x', mode: 'sometimes' as 'first' }] }), { code: 'ERR_INVALID_OPTION' });
});

t.test('a warm pool serves plugins whose policy it can meet; the others start cold, correctly', async (t) => {
  const w = await world(t);
  const data = path.join(w.root, 'data');
  fs.mkdirSync(data, { mode: 0o755 });
  fs.writeFileSync(path.join(data, 'x.txt'), 'bound', { mode: 0o644 });
  const code = `exports.activate = (h) => { h.hook('greet', (p) => p ? require('fs').readFileSync(p, 'utf8') : __dirname); };`;
  w.writePlugin('plain', { code, hooks: ['greet'] });
  w.writePlugin('reader', { code, hooks: ['greet'], permissions: [`fs:read:${data}`] });
  await w.trust('plain');
  await w.trust('reader', { permissions: [`fs:read:${data}`] });
  await w.publish();
  const host = w.host({ hooks: HOOKS, warmPool: 2, allowDegradedLimits: process.getuid?.() !== 0, loading: 'lazy' });
  t.teardown(() => host.close());
  await host.start();
  // Give the pool time to have runners ready, as a long-running host would.
  await until(() => {
    const s = (host as unknown as { pool: { stats(): { idle: number } } }).pool.stats();
    return s.idle >= 2;
  }, 30000, 'the pool to fill');
  const r = await host.invoke('greet', []);
  t.equal(host.info('plain').warm, true, 'a plain plugin is served warm');
  t.equal(host.info('reader').warm, false, 'a plugin with its own binds starts cold');
  t.same(r.values, ['/plugin', '/plugin'], 'both run from the copy of their verified files');
  const r2 = await host.invoke('greet', [path.join(data, 'x.txt')]);
  t.same(r2.outcomes.map((o) => [o.owner, o.ok ? o.value : o.error?.code]).sort(), [['plain', 'ENOENT'], ['reader', 'bound']]);
});

t.test('warmPool { size, allowExec: true } serves sys:exec plugins warm; a plain warmPool starts them cold', async (t) => {
  const w = await world(t);
  // The runner's own node binary is in the sandbox: running it proves the exec was allowed.
  const execer = `exports.activate = (h) => { h.hook('greet', () => require('child_process').execFileSync(process.execPath, ['-e', 'process.stdout.write("ran")']).toString()); };`;
  const plain = `exports.activate = (h) => { h.hook('greet', (go) => { if (!go) return 'loaded'; try { require('child_process').execFileSync(process.execPath, ['-e', '0']); return 'ran'; } catch (e) { return 'refused'; } }); };`;
  w.writePlugin('execer', { code: execer, hooks: ['greet'], permissions: ['sys:exec'] });
  w.writePlugin('plain', { code: plain, hooks: ['greet'] });
  await w.trust('execer', { permissions: ['sys:exec'] });
  await w.trust('plain');
  await w.publish();
  const degraded = process.getuid?.() !== 0;
  const filled = (h: unknown) => until(() => (h as { pool: { stats(): { idle: number } } }).pool.stats().idle >= 2, 30000, 'the pool to fill');
  for (const [warmPool, execerWarm] of [[2, false], [{ size: 2 }, false], [{ size: 2, allowExec: true }, true]] as const) {
    const host = w.host({ hooks: HOOKS, warmPool, allowDegradedLimits: degraded, loading: 'lazy' });
    t.teardown(() => host.close());
    await host.start();
    await filled(host);
    await host.invoke('greet', []); // loads both (lazy), from the filled pool where it can
    const what = JSON.stringify(warmPool);
    t.equal(host.info('execer').warm, execerWarm, `${what}: the sys:exec plugin is ${execerWarm ? 'served warm' : 'started cold'}`);
    t.equal(host.info('plain').warm, true, `${what}: the plain plugin is served warm`);
    const r = await host.invoke('greet', [true]);
    const by = Object.fromEntries(r.outcomes.map((o) => [o.owner, o.ok ? o.value : o.error?.code]));
    t.equal(by.execer, 'ran', `${what}: the sys:exec plugin started a program`);
    // A plain plugin's execve kills its sandbox (seccomp): its call fails, whichever pool served it.
    t.not(by.plain, 'ran', `${what}: the plain plugin could not`);
    await until(() => host.status('plain') !== 'active', 10000, 'the plain plugin to be unloaded');
    t.equal(host.info('plain').reason?.kind, 'seccomp', `${what}: the plain plugin broke the exec guard`);
    await host.close();
  }
  for (const [bad, field] of [
    [-1, 'warmPool'], [1.5, 'warmPool'], ['2', 'warmPool'], [{ size: -1 }, 'warmPool.size'], [{}, 'warmPool.size'],
    [{ size: 1, allowExec: 'yes' }, 'warmPool.allowExec'], [null, 'warmPool'],
    // Past the pool's bound: named as the host's field (was the pool's own 'size', at start()).
    [1025, 'warmPool'], [{ size: 5000 }, 'warmPool.size'],
  ] as const) {
    let err: unknown;
    try {
      w.host({ hooks: HOOKS, warmPool: bad as never });
    } catch (e) {
      err = e;
    }
    t.type(err, InvalidOptionError, `${JSON.stringify(bad)} is refused`);
    t.equal((err as InvalidOptionError).field, field, `${JSON.stringify(bad)}: the error names ${field}`);
  }
});
