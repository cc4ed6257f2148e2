/**
 * A plugin that takes every per-user kernel count it can reach must not deny them to another plugin
 * or to the host. As root each sandbox runs as a host uid of its own (lib/sandbox/ids.ts), and its
 * user namespace is owned by that uid: the kernel charges what is taken inside to the namespace's
 * owner too (kernel/ucount.c), which was root.
 *
 * Counts reachable: inotify instances (both profiles), processes (up to the plugin's pids limit),
 * POSIX message queue bytes (the `default` profile, as `warden run` uses; `strict` forbids mq_open).
 * Keyrings are not: add_key is a seccomp violation under both profiles (checked below).
 */
import t, { type Test } from 'tap';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { Sandbox } from '../../lib';
import { DEFAULT_HOST_ID_RANGE } from '../../lib/sandbox/ids';
import { PluginWorld, until } from '../helpers/plugins';

interface Taken {
  inotify: number; inotifyError: string;
  mqueue: number; mqueueError: string;
  procs: number; procsError: string;
}

const root = process.getuid?.() === 0;
const inRange = (id: number) => id >= DEFAULT_HOST_ID_RANGE.first && id < DEFAULT_HOST_ID_RANGE.first + DEFAULT_HOST_ID_RANGE.count;

/** The helper (test/fixtures/counts.c), compiled into a directory every uid can read. */
function helper(t: Test): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'warden-counts-'));
  fs.chmodSync(dir, 0o755);
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const bin = path.join(dir, 'counts');
  execFileSync('cc', ['-O2', '-Wall', '-o', bin, path.join(__dirname, '..', '..', '..', 'test', 'fixtures', 'counts.c'), '-lrt']);
  fs.chmodSync(bin, 0o755);
  return bin;
}

/** What the host (root) gets now: one of each. */
function hostProbe(bin: string, ...what: string[]): Taken {
  return JSON.parse(execFileSync(bin, ['probe', ...what], { encoding: 'utf8' })) as Taken;
}

function hostUidOf(pid: number): number {
  return Number(/^Uid:\s+\d+\s+(\d+)/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))![1]);
}

const PLUGIN = (bin: string) => `
const { spawn } = require('child_process');
const held = [];
function run(args, keep) {
  return new Promise((resolve, reject) => {
    const c = spawn(${JSON.stringify(bin)}, args, { stdio: ['pipe', 'pipe', 'inherit'] });
    if (keep) held.push(c); else c.stdin.end();
    let out = '';
    c.stdout.on('data', (d) => {
      out += d;
      const i = out.indexOf('\\n');
      if (i >= 0) resolve(JSON.parse(out.slice(0, i)));
    });
    c.on('error', reject);
    c.on('exit', (code) => { if (!out.includes('\\n')) reject(new Error('helper exited with ' + code)); });
  });
}
exports.activate = () => ({
  hold: (...what) => run(['hold', ...what], true),
  probe: (...what) => run(['probe', ...what], false),
});
`;

t.test('a plugin holding every inotify instance, and one forking to its pids limit, deny nothing to a second plugin or the host', { skip: root ? false : 'needs root: unprivileged, every sandbox maps to the caller and charges its counts (see README)' }, async (t) => {
  const bin = helper(t);
  const w = await PluginWorld.create();
  t.teardown(() => w.cleanup());
  const permissions = ['sys:exec', `fs:read:${path.dirname(bin)}`];
  for (const name of ['hog', 'forker', 'victim']) {
    w.writePlugin(name, { code: PLUGIN(bin), permissions });
    await w.trust(name, { permissions, limits: { pids: 64, memory: 256 * 1024 * 1024 } });
  }
  await w.publish();
  const host = w.host({ hooks: [], loading: 'lazy' });
  t.teardown(() => host.close());
  await host.start();

  await host.load('hog');
  const hog = host.process('hog')!;
  const taken = (await hog.call('hold', 'inotify')) as Taken;
  t.ok(taken.inotify >= 1, `the hog took ${taken.inotify} inotify instances`);
  t.equal(taken.inotifyError, 'EMFILE', 'until the kernel said no');

  // Processes: the pids limit stops the fork bomb and unloads the plugin (a `pids` violation).
  await host.load('forker');
  // (The call may answer first, with EAGAIN, or fail as the plugin is unloaded.)
  const forked = await host.process('forker')!.call('hold', 'procs').then((r) => r as Taken, () => undefined);
  if (forked !== undefined) t.equal(forked.procsError, 'EAGAIN', `the forker started ${forked.procs} processes, until its pids limit said no`);
  await until(() => host.status('forker') !== 'active', 10000, 'the forker unloaded');
  t.equal(host.status('forker'), 'failed', 'the forker is unloaded at its pids limit');

  await host.load('victim');
  const victim = host.process('victim')!;
  const probe = (await victim.call('probe', 'inotify', 'procs')) as Taken;
  t.equal(probe.inotifyError, 'ok', 'a second plugin still gets an inotify instance');
  t.equal(probe.procsError, 'ok', 'and starts a process');
  const mine = hostProbe(bin, 'inotify', 'procs');
  t.equal(mine.inotifyError, 'ok', 'the host (root) still gets an inotify instance');
  t.equal(mine.procsError, 'ok', 'and starts a process');

  const ids = [hostUidOf(hog.pid), hostUidOf(victim.pid)];
  t.not(ids[0], ids[1], `each plugin runs as a host uid of its own (${ids.join(', ')})`);
  t.ok(ids.every(inRange), 'both from the default range');
  t.equal(host.status('hog'), 'active', 'the hog is still running, holding what it took');
});

t.test('a `warden run`-style sandbox holding every message queue byte and inotify instance denies none to the next or the host', { skip: root ? false : 'needs root (see above)' }, async (t) => {
  const bin = helper(t);
  const binds = [{ source: path.dirname(bin) }];
  const hog = Sandbox.spawn({ command: [bin, 'hold', 'inotify', 'mqueue'], binds, stdio: ['pipe', 'pipe', 'inherit'] });
  t.teardown(() => hog.kill());
  const line = await new Promise<string>((resolve) => {
    let out = '';
    hog.stdout!.on('data', (d: Buffer) => {
      out += d;
      if (out.includes('\n')) resolve(out.slice(0, out.indexOf('\n')));
    });
  });
  const taken = JSON.parse(line) as Taken;
  t.ok(taken.mqueue >= 1, `the first sandbox holds ${taken.mqueue} message queues`);
  t.equal(taken.mqueueError, 'EMFILE', 'until its RLIMIT_MSGQUEUE said no');
  t.equal(taken.inotifyError, 'EMFILE', `and ${taken.inotify} inotify instances, until the kernel said no`);

  const next = Sandbox.spawn({ command: [bin, 'probe', 'inotify', 'mqueue'], binds, stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  next.stdout!.on('data', (d: Buffer) => (out += d));
  // The exit can be seen before the last of stdout is read: wait for both.
  const ended = new Promise((r) => next.stdout!.once('end', r));
  t.equal((await next.exited).code, 0);
  await ended;
  const probe = JSON.parse(out) as Taken;
  t.equal(probe.mqueueError, 'ok', 'the next sandbox still opens a message queue');
  t.equal(probe.inotifyError, 'ok', 'and gets an inotify instance');
  const mine = hostProbe(bin, 'inotify', 'mqueue');
  t.equal(mine.mqueueError, 'ok', 'the host (root) still opens a message queue');
  t.equal(mine.inotifyError, 'ok', 'and gets an inotify instance');
  hog.stdin!.end();
  t.equal((await hog.exited).code, 0);
});

t.test('keyrings are out of reach: add_key is a violation under both profiles', async (t) => {
  const bin = helper(t);
  for (const seccomp of ['default', 'strict']) {
    const sb = Sandbox.spawn({ command: [bin, 'key'], binds: [{ source: path.dirname(bin) }], seccomp, stdio: ['ignore', 'ignore', 'ignore'] });
    const r = await sb.exited;
    t.equal(r.violation?.syscall, 'add_key', `${seccomp}: killed at add_key`);
  }
});
