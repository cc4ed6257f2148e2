/**
 * RunnerPool: warm starts really come from runners started beforehand, a runner serves one plugin
 * only, the pool refills, size 0 disables it, and what a pooled sandbox cannot be fitted to starts
 * cold and works.
 */
import t from 'tap';
import * as fs from 'node:fs';
import * as path from 'node:path';

import { LimitError } from '../lib/errors';
import { hostLayout } from '../lib/limits';
import { discoverOwnCgroups } from '../lib/limits/discover';
import { RunnerPool } from '../lib/pool';
import { PROBE_PLUGIN, pluginDir } from './helpers/plugin-dir';
import { until } from './helpers/plugins';

t.test('a warm start takes a runner started before start() was called, and never hands it out twice', async (t) => {
  const dir = pluginDir(t, PROBE_PLUGIN);
  const entry = path.join(dir, 'index.js');
  const pool = new RunnerPool({ size: 2 });
  t.teardown(() => pool.close());
  await pool.waitIdle();
  t.same(pool.stats(), { idle: 2, starting: 0, warm: 0, cold: 0 });

  const asked = Date.now();
  const a = await pool.start(entry);
  const b = await pool.start(entry);
  t.teardown(() => { a.kill(); b.kill(); });
  t.ok(a.warm && b.warm, 'both starts are warm');
  t.ok(a.launchedAt <= asked && b.launchedAt <= asked, 'their processes were started before start() was called');
  t.not(a.pid, b.pid, 'two plugins, two runners');
  t.equal(await a.call('ping'), 'pong');
  t.equal(await a.call('where'), '/plugin/index.js', 'the plugin runs from the files it was sent');
  t.equal(await b.call('pid'), 1, 'the runner is pid 1 of its own sandbox');

  // A third start with both runners taken and none ready yet is cold, and never reuses a or b.
  const st = pool.stats();
  const c = await pool.start(entry);
  t.teardown(() => c.kill());
  if (st.idle === 0) t.notOk(c.warm, 'no ready runner: cold');
  t.not(c.pid, a.pid);
  t.not(c.pid, b.pid);

  // The runner of a plugin that ended is gone with it, not back in the pool.
  await a.close();
  await pool.waitIdle();
  const d = await pool.start(entry);
  t.teardown(() => d.kill());
  t.ok(d.warm, 'refilled: warm again');
  t.not(d.pid, a.pid);
  t.equal(await d.call('ping'), 'pong');
});

t.test('a second $load on a runner is refused', async (t) => {
  const dir = pluginDir(t, PROBE_PLUGIN);
  const pool = new RunnerPool({ size: 1 });
  t.teardown(() => pool.close());
  await pool.waitIdle();
  const p = await pool.start(path.join(dir, 'index.js'));
  t.teardown(() => p.kill());
  await t.rejects(p.load(path.join(dir, 'index.js'), undefined, undefined), /never reused/);
});

t.test('the pool refills after each take, in the background', async (t) => {
  const dir = pluginDir(t, PROBE_PLUGIN);
  const pool = new RunnerPool({ size: 1 });
  t.teardown(() => pool.close());
  for (let i = 0; i < 3; i++) {
    await pool.waitIdle();
    const p = await pool.start(path.join(dir, 'index.js'));
    t.ok(p.warm, `start ${i + 1} is warm`);
    const s = pool.stats();
    t.equal(s.idle + s.starting, 1, 'a replacement is on its way');
    await p.close();
  }
  t.equal(pool.stats().warm, 3);
});

t.test('a pooled runner that dies while idle is replaced', async (t) => {
  const pool = new RunnerPool({ size: 1 });
  t.teardown(() => pool.close());
  await pool.waitIdle();
  const first = (pool as unknown as { idle: Array<{ handle: { pid: number; kill(): void; exited: Promise<unknown> } }> }).idle[0]!.handle;
  first.kill();
  await first.exited;
  t.match(pool.lastError?.message ?? '', /exited while idle/);
  await pool.waitIdle();
  const second = (pool as unknown as { idle: Array<{ handle: { pid: number } }> }).idle[0]!.handle;
  t.not(second.pid, first.pid, 'a new runner took its place');
});

t.test('size 0 disables the pool: every start is cold and works', async (t) => {
  const dir = pluginDir(t, PROBE_PLUGIN);
  const pool = new RunnerPool({ size: 0 });
  t.teardown(() => pool.close());
  t.match(pool.warmRefusal({}), /disabled/);
  const p = await pool.start(path.join(dir, 'index.js'));
  t.teardown(() => p.kill());
  t.equal(p.warm, false);
  t.equal(await p.call('where'), '/plugin/index.js', 'cold starts get their files the same way');
  t.same(pool.stats(), { idle: 0, starting: 0, warm: 0, cold: 1 });
});

t.test('policies a pooled sandbox cannot meet start cold, correctly', async (t) => {
  const dir = pluginDir(t, PROBE_PLUGIN);
  const data = pluginDir(t, { 'data.txt': 'bound for this plugin only' });
  const entry = path.join(dir, 'index.js');
  const pool = new RunnerPool({ size: 1 });
  t.teardown(() => pool.close());
  await pool.waitIdle();

  t.match(pool.warmRefusal({ binds: [{ source: data }] }), /^binds:/);
  t.match(pool.warmRefusal({ seccomp: 'default' }), /^seccomp:/);
  t.match(pool.warmRefusal({ shareNet: true }), /^shareNet:/);
  t.match(pool.warmRefusal({ rlimits: { nofile: 64 } }), /^rlimits:/);
  t.match(pool.warmRefusal({ env: { NODE_OPTIONS: '--max-old-space-size=64' } }), /^env\.NODE_OPTIONS:/);
  t.match(pool.warmRefusal({ limits: { memory: '64M' } }), /^limits:/, 'a pool without a ceiling has no cgroup to lower');
  t.match(pool.warmRefusal({ pluginFiles: 'bind' }), /^pluginFiles:/);
  t.equal(pool.warmRefusal({ env: { GREETING: 'hi' }, timeout: 5000 }), undefined);
  t.match(pool.warmRefusal({ allowExec: true }), /^allowExec:/, "the pool's runners stacked the exec guard");

  const p = await pool.start(entry, { binds: [{ source: data }] });
  t.teardown(() => p.kill());
  t.equal(p.warm, false, 'extra binds: cold');
  t.equal(await p.call('read', path.join(data, 'data.txt')), 'bound for this plugin only', 'the bind is there');
  t.equal(pool.stats().idle, 1, 'the pooled runner was not touched');

  const q = await pool.start(entry, { env: { GREETING: 'hi' } });
  t.teardown(() => q.kill());
  t.ok(q.warm, 'env is set in the runner before the plugin loads');
  t.equal(await q.call('env', 'GREETING'), 'hi');
});

t.test('limits: lowered in place under the pool ceiling, cold above it', async (t) => {
  const dir = pluginDir(t, PROBE_PLUGIN);
  const entry = path.join(dir, 'index.js');
  const pool = new RunnerPool({ size: 1, limits: { memory: '512M', pids: 64 } });
  t.teardown(() => pool.close());
  t.match(pool.warmRefusal({}), /capped at/, 'a plugin without limits is not silently capped');
  t.match(pool.warmRefusal({ limits: { memory: '1G', pids: 32 } }), /above the pool's ceiling/);
  t.match(pool.warmRefusal({ limits: { memory: '256M' } }), /^limits\.pids:/);
  await pool.waitIdle();
  const p = await pool.start(entry, { limits: { memory: '256M', pids: 32 } });
  t.teardown(() => p.kill());
  t.ok(p.warm);
  const sb = (p.process as unknown as { narrowLimits: unknown });
  t.type(sb.narrowLimits, 'function');
  // The kernel's word, read from the host (inside, the sandbox may have no /sys/fs/cgroup at all):
  // the runner's own memory cgroup, a sandbox cgroup of this host, holds 256M.
  const dirs = discoverOwnCgroups(hostLayout(), `/proc/${p.pid}/cgroup`);
  const memoryDir = dirs.v1.get('memory') ?? dirs.v2;
  if (memoryDir === undefined) throw new Error(`runner ${p.pid} is in no memory cgroup`);
  t.match(path.basename(memoryDir), new RegExp(`^warden\\.${process.pid}\\.\\d+$`), `its memory cgroup is a sandbox cgroup (${memoryDir})`);
  const limitFile = path.join(memoryDir, dirs.v1.has('memory') ? 'memory.limit_in_bytes' : 'memory.max');
  t.equal(Number(fs.readFileSync(limitFile, 'utf8').trim()), 256 * 1024 * 1024, `${limitFile} says 256M`);
  const big = await pool.start(entry, { limits: { memory: '1G', pids: 32 } });
  t.teardown(() => big.kill());
  t.equal(big.warm, false, 'above the ceiling: cold');
  t.equal(await big.call('ping'), 'pong');
});

t.test('$go: the runner writes the files while the limits are lowered, and runs no plugin code before', async (t) => {
  // The plugin's top level logs the time it ran. Lowering the limits is made to take 300 ms here (a
  // busy host); the plugin must not have run before it ended, nor at all when it fails.
  const dir = pluginDir(t, { 'index.js': `console.log('ran ' + Date.now()); exports.ping = () => 'pong';` });
  const entry = path.join(dir, 'index.js');
  const pool = new RunnerPool({ size: 1, limits: { memory: '512M', pids: 64 } });
  t.teardown(() => pool.close());
  type Handle = { pid: number; on(e: 'log', f: (level: string, m: string) => void): void; process: { narrowLimits(l: unknown): void } };
  const idle = () => (pool as unknown as { idle: Array<{ handle: Handle }> }).idle[0]!.handle;
  const slowly = (h: Handle, fail: boolean) => {
    const narrow = h.process.narrowLimits.bind(h.process);
    let done = 0;
    h.process.narrowLimits = (l: unknown) => {
      const end = Date.now() + 300;
      while (Date.now() < end);
      done = Date.now();
      if (fail) throw new LimitError('cgroup', 'refused for the test', { code: 'ERR_LIMIT_NARROW' });
      narrow(l);
    };
    const ran: number[] = [];
    h.on('log', (_level, m) => { if (m.startsWith('ran ')) ran.push(Number(m.slice(4))); });
    return { ran, fitted: () => done };
  };

  await pool.waitIdle();
  const first = idle();
  const watch = slowly(first, false);
  const p = await pool.start(entry, { limits: { memory: '256M', pids: 32 } });
  t.teardown(() => p.kill());
  t.ok(p.warm && p.pid === first.pid, 'warm, on the watched runner');
  t.equal(await p.call('ping'), 'pong');
  await until(() => watch.ran.length > 0, 2000);
  t.ok(watch.ran[0]! >= watch.fitted(), `the plugin ran after the limits were lowered (${watch.ran[0]! - watch.fitted()} ms after)`);

  await pool.waitIdle();
  const second = idle();
  const refused = slowly(second, true);
  const q = await pool.start(entry, { limits: { memory: '256M', pids: 32 } });
  t.teardown(() => q.kill());
  t.equal(q.warm, false, 'a runner that cannot be fitted: the plugin starts cold');
  t.not(q.pid, second.pid);
  t.equal(await q.call('ping'), 'pong');
  await new Promise((r) => setTimeout(r, 200));
  t.same(refused.ran, [], 'the runner that was not fitted never ran the plugin (it had its files)');
});

t.test('files that cannot fit under the memory limit beside the runner: cold, decided before $load', async (t) => {
  // 63 MiB of files and a limit of 68M: more than the 90% of the limit a runner may be fitted at,
  // whatever the runner uses beside them. Decided before $load: before, the limit was lowered while
  // the runner wrote them (at first nearly nothing), so the start was warm and the runner ran out of
  // memory writing.
  const dir = pluginDir(t, { 'index.js': `exports.ping = () => 'pong';`, 'big.bin': 'x'.repeat(63 << 20) });
  const pool = new RunnerPool({ size: 1, limits: { memory: '512M', pids: 64 } });
  t.teardown(() => pool.close());
  await pool.waitIdle();
  const before = pool.stats();
  const started = await pool.start(path.join(dir, 'index.js'), { limits: { memory: '68M', pids: 32 } }).then(
    (h) => { t.teardown(() => h.kill()); return h; },
    (e: Error) => e,
  );
  t.equal(pool.stats().warm, before.warm, 'the pooled runner was not used (the start went cold)');
  // Cold, the files do not fit either: the load ends for its memory limit (or, if the kernel
  // charged less than expected, it runs).
  if (started instanceof Error) t.match(started, { code: 'ERR_SANDBOX_VIOLATION', violation: { kind: 'memory' } }, `cold: ${started.message}`);
  else t.equal(started.warm, false);
});

t.test('a missing entry fails the load and the runner is not reused', async (t) => {
  const dir = pluginDir(t, PROBE_PLUGIN);
  const pool = new RunnerPool({ size: 1 });
  t.teardown(() => pool.close());
  await pool.waitIdle();
  fs.writeFileSync(path.join(dir, 'broken.js'), 'throw new Error("broken plugin")', { mode: 0o644 });
  await t.rejects(pool.start(path.join(dir, 'broken.js')), { message: 'broken plugin' });
  await t.rejects(pool.start(path.join(dir, 'nope.js')), { code: 'ERR_INVALID_OPTION' }, 'an entry outside the tree is refused before any runner is used');
  await pool.waitIdle();
  t.equal(pool.stats().warm, 1, 'only the broken plugin used a runner');
});

t.test('$wake: a pooled runner spins for the coming $load, a few ms at most, then sleeps again', async (t) => {
  const dir = pluginDir(t, PROBE_PLUGIN);
  const pool = new RunnerPool({ size: 1 });
  t.teardown(() => pool.close());
  await pool.waitIdle();
  const runner = (pool as unknown as { idle: Array<{ handle: { pid: number; wake(): void } }> }).idle[0]!.handle;
  // Time the runner's main thread spent on a core (ns), as the scheduler counts it.
  const onCpuMs = () => Number(fs.readFileSync(`/proc/${runner.pid}/task/${runner.pid}/schedstat`, 'utf8').split(' ')[0]) / 1e6;
  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
  // Asleep: under 1 ms on a core in 100 ms. The runner may still be finishing work of its warm-up
  // (V8 posts some, such as an optimized compile's last step, to the main thread), and the machine
  // may be busy: the least of up to five windows. A runner that spins while idle fails all five.
  const idleWindow = async () => {
    const windows: number[] = [];
    while (windows.length < 5 && !windows.some((ms) => ms < 1)) {
      const before = onCpuMs();
      await sleep(100);
      windows.push(onCpuMs() - before);
    }
    return windows;
  };
  const idle = await idleWindow();
  t.ok(Math.min(...idle) < 1, `asleep before: ${idle.map((ms) => ms.toFixed(2)).join(', ')} ms on a core in 100 ms`);
  // WAKE_SPIN_US (3 ms wall) of spinning, and the handling of the message; without $wake: under
  // 1 ms. A busy machine may take the core from it meanwhile: the most of up to five rounds.
  const rounds: number[] = [];
  while (rounds.length < 5 && !rounds.some((ms) => ms >= 2)) {
    const before = onCpuMs();
    runner.wake();
    await sleep(50);
    rounds.push(onCpuMs() - before);
  }
  const spun = Math.max(...rounds);
  t.ok(spun >= 2, `it spun after $wake: ${rounds.map((ms) => ms.toFixed(2)).join(', ')} ms on a core`);
  t.ok(spun < 25, `for a bounded time: ${spun.toFixed(2)} ms`);
  const again = await idleWindow();
  t.ok(Math.min(...again) < 1, `asleep again: ${again.map((ms) => ms.toFixed(2)).join(', ')} ms on a core in 100 ms`);
  // The runner still takes its plugin.
  const p = await pool.start(path.join(dir, 'index.js'));
  t.teardown(() => p.kill());
  t.equal(p.pid, runner.pid, 'the woken runner served the load');
  t.equal(await p.call('ping'), 'pong');
});

t.test('$wake: starts reading their trees at once wake one runner each', async (t) => {
  const dir = pluginDir(t, PROBE_PLUGIN);
  const pool = new RunnerPool({ size: 2 });
  t.teardown(() => pool.close());
  await pool.waitIdle();
  const woken: number[] = [];
  for (const r of (pool as unknown as { idle: Array<{ handle: { pid: number; wake(): void } }> }).idle) {
    const h = r.handle;
    const wake = h.wake.bind(h);
    h.wake = () => {
      woken.push(h.pid);
      wake();
    };
  }
  const [a, b] = await Promise.all([pool.start(path.join(dir, 'index.js')), pool.start(path.join(dir, 'index.js'))]);
  t.teardown(() => { a.kill(); b.kill(); });
  t.ok(a.warm && b.warm, 'both warm');
  t.same([...woken].sort(), [a.pid, b.pid].sort(), 'each runner taken was woken, once (was: the first one twice)');
});

t.test('$wake is a hint: waking a runner whose channel closed throws nothing', async (t) => {
  const pool = new RunnerPool({ size: 2 });
  t.teardown(() => pool.close());
  await pool.waitIdle();
  const first = (pool as unknown as { idle: Array<{ handle: { rpc: { close(): void }; wake(): void } }> }).idle[0]!.handle;
  first.rpc.close();
  t.doesNotThrow(() => first.wake(), 'waking a closed runner throws nothing (it threw the channel error out of start())');
});
