/**
 * The warm pool must not carry anything from one plugin to the next: a plugin served warm leaves
 * files, environment, globals, timers, open fds, child processes, IPC objects, abstract sockets and
 * its host uid behind, and the plugins served after it (while it still runs, and after it ended)
 * see none of it. Each runner serves one plugin and has its own sandbox and host id.
 */
import t from 'tap';
import * as fs from 'node:fs';
import * as path from 'node:path';

import { RunnerPool } from '../../lib/pool';
import { pluginDir } from '../helpers/plugin-dir';
import { rootOnly } from '../helpers/sandbox';

/** Leaves every kind of state it can behind (and keeps it alive: timers, children, sockets). */
const DIRTY = `
const fs = require('fs');
const net = require('net');
const { spawn } = require('child_process');
exports.dirty = async () => {
  for (const d of ['/tmp', '/plugin']) {
    try { fs.writeFileSync(d + '/leak', 'from the first plugin'); } catch {}
  }
  process.env.WARDEN_LEAK = 'from the first plugin';
  globalThis.wardenLeak = 'from the first plugin';
  Object.prototype.wardenLeak = 'polluted';
  setInterval(() => fs.writeFileSync('/tmp/leak-timer', String(Date.now())), 5);
  const fd = fs.openSync('/tmp/leak-fd', 'w');
  const child = spawn('/bin/sleep', ['1000'], { stdio: 'ignore', detached: true });
  child.unref();
  const server = net.createServer(() => {}).listen('\\0warden-leak');
  await new Promise((r) => server.once('listening', r));
  return { fd, child: child.pid };
};
`;

/** Reports what it can see of anything left behind. */
const PROBE = `
const fs = require('fs');
const net = require('net');
exports.look = async () => {
  const files = [];
  for (const f of ['/tmp/leak', '/tmp/leak-timer', '/tmp/leak-fd', '/plugin/leak']) if (fs.existsSync(f)) files.push(f);
  const fds = fs.readdirSync('/proc/self/fd').map((n) => { try { return n + ' ' + fs.readlinkSync('/proc/self/fd/' + n); } catch { return n; } })
    .filter((l) => !/ \\/proc\\/\\d+\\/fd$/.test(l)).map((l) => l.replace(/\\[\\d+\\]/, '[]')).sort();
  const procs = fs.readdirSync('/proc').filter((n) => /^\\d+$/.test(n)).map((n) => fs.readFileSync('/proc/' + n + '/comm', 'utf8').trim());
  const socket = await new Promise((resolve) => {
    const c = net.connect('\\0warden-leak');
    c.once('connect', () => { c.destroy(); resolve('connected'); });
    c.once('error', (e) => resolve(e.code));
  });
  return {
    files, fds, procs, socket,
    env: process.env.WARDEN_LEAK ?? null,
    global: globalThis.wardenLeak ?? null,
    proto: ({}).wardenLeak ?? null,
  };
};
`;

function hostUid(pid: number): number {
  return Number(/^Uid:\s+\d+\s+(\d+)/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))![1]);
}

t.test('a plugin served warm after another sees nothing the other left behind', async (t) => {
  // The dirty plugin can look too: what it sees of its own state shows that the probe finds it.
  const both = "Object.assign(exports, require('./dirty.js'), require('./probe.js'));";
  const dirty = path.join(pluginDir(t, { 'index.js': both, 'dirty.js': DIRTY, 'probe.js': PROBE }), 'index.js');
  const probe = path.join(pluginDir(t, { 'index.js': PROBE }), 'index.js');
  // allowExec: the dirty plugin starts a child; such a pool stacks the exec guard at each load instead.
  const pool = new RunnerPool({ size: 2, allowExec: true });
  t.teardown(() => pool.close());
  await pool.waitIdle();

  // What a runner that followed nobody sees: the reference.
  const clean = await pool.start(probe);
  t.teardown(() => clean.kill());
  t.ok(clean.warm, 'served warm');
  const reference = (await clean.call('look')) as Record<string, unknown>;
  await clean.close();

  await pool.waitIdle();
  const a = await pool.start(dirty, { allowExec: true });
  t.teardown(() => a.kill());
  t.ok(a.warm, 'the dirty plugin is served warm');
  const left = (await a.call('dirty')) as { fd: number; child: number };
  t.ok(left.child > 0, 'it started a child and left it running');
  await new Promise((r) => setTimeout(r, 50));
  const own = (await a.call('look')) as Record<string, unknown> & { files: string[]; procs: string[]; fds: string[] };
  t.same(own.files, ['/tmp/leak', '/tmp/leak-timer', '/tmp/leak-fd', '/plugin/leak'], 'the probe finds the files it left, in its own sandbox');
  t.same([own.env, own.global, own.proto, own.socket], ['from the first plugin', 'from the first plugin', 'polluted', 'connected'], 'and its variable, global, prototype and socket');
  t.ok(own.procs.includes('sleep'), 'and its child');
  t.ok(own.fds.length > (reference.fds as string[]).length, 'and its extra fds');

  // The next plugin, while the dirty one still runs, and again after it ended.
  await pool.waitIdle();
  const b = await pool.start(probe);
  t.teardown(() => b.kill());
  t.ok(b.warm, 'the next plugin is served warm');
  const during = (await b.call('look')) as Record<string, unknown>;
  rootOnly(t, 'it runs as another host uid', 'unprivileged, every sandbox maps to the caller', () => t.not(hostUid(b.pid), hostUid(a.pid), 'it runs as another host uid'));
  await a.close();
  await pool.waitIdle();
  const c = await pool.start(probe);
  t.teardown(() => c.kill());
  t.ok(c.warm);
  const after = (await c.call('look')) as Record<string, unknown>;
  rootOnly(t, 'and the one after it as yet another', 'unprivileged, every sandbox maps to the caller', () => t.not(hostUid(c.pid), hostUid(b.pid), 'and the one after it as yet another'));

  for (const [when, seen] of [['while the first runs', during], ['after it ended', after]] as const) {
    t.same(seen.files, [], `${when}: no file it wrote (/tmp, /plugin)`);
    t.equal(seen.env, null, `${when}: no variable it set`);
    t.equal(seen.global, null, `${when}: no global it set`);
    t.equal(seen.proto, null, `${when}: no prototype it polluted`);
    t.same(seen.fds, reference.fds, `${when}: the same fds as a runner that followed nobody`);
    t.same(seen.procs, reference.procs, `${when}: the same processes (no child of the first, no timer writing)`);
    t.equal(seen.socket, 'ECONNREFUSED', `${when}: its abstract socket is out of reach`);
  }
  await b.close();
  await c.close();
});
