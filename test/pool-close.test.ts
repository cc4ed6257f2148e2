/**
 * RunnerPool.close() leaves nothing behind: no process, no cgroup, no fd; and idle runners cost the
 * host no CPU (no timers, the runner sleeps).
 */
import t from 'tap';
import * as fs from 'node:fs';
import * as path from 'node:path';

import { listSandboxCgroups } from '../lib/limits';
import { RunnerPool } from '../lib/pool';
import { PROBE_PLUGIN, pluginDir } from './helpers/plugin-dir';

const fdCount = () => fs.readdirSync('/proc/self/fd').length;
const children = () => {
  try {
    return fs.readFileSync(`/proc/${process.pid}/task/${process.pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean);
  } catch {
    return [];
  }
};
const cpuTicks = (pid: number) => {
  const f = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return Number(f[11]) + Number(f[12]); // utime + stime
};

t.test('close() kills idle and starting runners and leaves no process, cgroup or fd', async (t) => {
  const dir = pluginDir(t, PROBE_PLUGIN);
  const fds = fdCount();
  const cgroups = listSandboxCgroups();
  const kids = children();

  const pool = new RunnerPool({ size: 2, limits: { memory: '256M', pids: 64 } });
  await pool.waitIdle();
  const p = await pool.start(path.join(dir, 'index.js'), { limits: { memory: '128M', pids: 32 } });
  t.ok(p.warm);
  await p.close();
  t.ok(listSandboxCgroups().length > cgroups.length, 'pooled runners have their cgroups');
  // Close while a replacement is starting.
  await pool.close();
  t.same(pool.stats().idle, 0);
  t.same(listSandboxCgroups(), cgroups, 'no sandbox cgroup left');
  t.same(children(), kids, 'no child process left');
  // The fds of the exited runners' channels close as their handles are collected or closed.
  t.equal(fdCount(), fds, 'no fd left');
  await t.rejects(pool.start(path.join(dir, 'index.js')), /closed/);
});

t.test('close() right after construction, before any runner is ready', async (t) => {
  const fds = fdCount();
  const kids = children();
  const pool = new RunnerPool({ size: 3 });
  await new Promise((r) => setImmediate(r));
  await pool.close();
  t.same(children(), kids);
  t.equal(fdCount(), fds);
});

t.test('idle runners use no CPU, on either side', async (t) => {
  const pool = new RunnerPool({ size: 2 });
  t.teardown(() => pool.close());
  await pool.waitIdle();
  await new Promise((r) => setTimeout(r, 300)); // past the runner's last spin
  const pids = (pool as unknown as { idle: Array<{ handle: { pid: number } }> }).idle.map((r) => r.handle.pid);
  const before = pids.map(cpuTicks);
  const host0 = process.cpuUsage();
  await new Promise((r) => setTimeout(r, 1000));
  const host = process.cpuUsage(host0);
  const after = pids.map(cpuTicks);
  t.same(after, before, 'the runners used no clock tick in a second (they sleep in epoll)');
  t.ok(host.user + host.system < 50_000, `the host spent ${(host.user + host.system) / 1000} ms of cpu in a second of idling`);
});
