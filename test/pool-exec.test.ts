/**
 * The `sys:exec` permission (allowExec), warm and cold: without it the runner stacks a filter that
 * forbids starting programs before the plugin loads, and the host reports the attempt as a seccomp
 * violation naming execve. The profiles let a sandboxed process add filters, never loosen them.
 */
import t from 'tap';
import * as path from 'node:path';

import { RunnerPool } from '../lib/pool';
import { resolveSeccompProfile, NO_EXEC_POLICY } from '../lib/policy/profiles';
import { spawnNode } from '../lib/process/spawn-node';
import { launchRunner, unsandboxedSpawner, PluginProcess, type RunnerExit } from '../lib/process/plugin-process';
import { addon, attempt, filterFile, outcome } from './helpers/seccomp';
import { PROBE_PLUGIN, pluginDir } from './helpers/plugin-dir';

async function tryExec(p: PluginProcess): Promise<{ violations: unknown[]; exit: RunnerExit; error: unknown }> {
  const violations: unknown[] = [];
  p.on('violation', (v) => violations.push(v));
  const error = await p.call('exec').then(() => undefined, (e) => e);
  const exit = await p.exited;
  return { violations, exit, error };
}

t.test('without allowExec a plugin cannot run a program, warm or cold; the host is told execve', async (t) => {
  const dir = pluginDir(t, PROBE_PLUGIN);
  const entry = path.join(dir, 'index.js');
  const pool = new RunnerPool({ size: 1 });
  t.teardown(() => pool.close());
  await pool.waitIdle();
  const warm = await pool.start(entry);
  const cold = await spawnNode(entry);
  const copied = await spawnNode(entry, { pluginFiles: 'copy' });
  t.ok(warm.warm);
  for (const [name, p] of [['warm', warm], ['cold, bound', cold], ['cold, copied', copied]] as const) {
    t.equal(await p.call('worker'), 42, `${name}: threads (worker_threads) still work`);
    const r = await tryExec(p);
    t.match(r.error, { code: 'ERR_CHANNEL_CLOSED' }, `${name}: the call dies with the sandbox`);
    t.equal(r.exit.signal, 'SIGSYS', `${name}: killed by seccomp`);
    t.match(r.exit.violation, { kind: 'seccomp', syscall: 'execve' }, `${name}: the exit names execve`);
    t.match(r.violations, [{ kind: 'seccomp', syscall: 'execve' }], `${name}: one violation event`);
  }
});

t.test('with allowExec the plugin runs programs: cold from a default pool, warm from a pool with allowExec', async (t) => {
  const dir = pluginDir(t, PROBE_PLUGIN);
  const entry = path.join(dir, 'index.js');
  const guarded = new RunnerPool({ size: 1 });
  const open = new RunnerPool({ size: 2, allowExec: true });
  t.teardown(() => Promise.all([guarded.close(), open.close()]));
  await Promise.all([guarded.waitIdle(), open.waitIdle(2)]);
  // A default pool's runners stacked the exec guard while they warmed up.
  t.match(guarded.warmRefusal({ allowExec: true }), /^allowExec:/);
  const fromGuarded = await guarded.start(entry, { allowExec: true });
  const warm = await open.start(entry, { allowExec: true });
  const cold = await spawnNode(entry, { allowExec: true });
  t.teardown(() => { fromGuarded.kill(); warm.kill(); cold.kill(); });
  t.equal(fromGuarded.warm, false, 'a default pool starts it cold');
  t.equal(warm.warm, true, 'a pool with allowExec serves it warm');
  t.equal(await fromGuarded.call('exec'), 0, 'cold: /bin/true ran');
  t.equal(await warm.call('exec'), 0, 'warm: /bin/true ran');
  t.equal(await cold.call('exec'), 0, 'spawnNode: /bin/true ran');
  // A pool with allowExec still guards the plugins that may not: the guard is stacked at their load.
  const guardedAtLoad = await open.start(entry);
  t.ok(guardedAtLoad.warm);
  const r = await tryExec(guardedAtLoad);
  t.equal(r.exit.signal, 'SIGSYS', 'a plugin without allowExec from an allowExec pool: killed by seccomp');
  t.match(r.exit.violation, { kind: 'seccomp', syscall: 'execve' });
});

t.test('a runner whose warm-up failed (its exec guard may be missing) is never idle, not even for a turn', async (t) => {
  // The runner's side is real; only its answer to $warm is made to fail, as a runner that could not
  // stack the guard answers. Before: it was pushed idle until its exit was seen, and could be taken.
  const real = PluginProcess.prototype.warmUp;
  const failed = new Set<PluginProcess>();
  PluginProcess.prototype.warmUp = async function (this: PluginProcess) {
    if (failed.size === 0) {
      failed.add(this);
      throw new Error('the exec guard could not be stacked');
    }
    return real.apply(this, arguments as unknown as Parameters<typeof real>);
  };
  t.teardown(() => { PluginProcess.prototype.warmUp = real; });
  const pool = new RunnerPool({ size: 1 });
  t.teardown(() => pool.close());
  const idle = (pool as unknown as { idle: Array<{ handle?: PluginProcess }> }).idle;
  // Looked at every turn of the event loop until the pool has a good runner.
  let seen = false;
  while (pool.stats().idle === 0 || failed.size === 0) {
    if (idle.some((r) => r.handle !== undefined && failed.has(r.handle))) seen = true;
    await new Promise((r) => setImmediate(r));
  }
  t.equal(failed.size, 1, 'one warm-up failed');
  t.notOk(seen, 'that runner was never in the idle list');
  t.notOk(idle.some((r) => r.handle !== undefined && failed.has(r.handle)), 'the idle runner is the next one');
  const [dead] = failed;
  t.ok((await dead!.exited).signal !== null, 'the runner was killed');
});

t.test('a runner dying of SIGSYS before its load is not blamed on execve', async (t) => {
  // An ordinary child (a sandbox's pid 1 ignores signals from outside it has no handler for).
  const h = await launchRunner(unsandboxedSpawner, { env: { PATH: process.env.PATH ?? '/usr/bin' } });
  await h.ready;
  h.sigsysMeans = 'execve';
  h.kill('SIGSYS');
  const exit = await h.exited;
  t.equal(exit.signal, 'SIGSYS');
  t.notOk(exit.violation, 'no load was sent: no violation invented');
});

t.test('stacked programs: no listener, so no violation action; execve may be denied', async (t) => {
  const compile = addon.compileSeccomp as unknown as (p: unknown, o?: unknown) => Buffer;
  t.throws(() => compile(NO_EXEC_POLICY), /execve must stay allowed/, 'a launcher filter must allow execve');
  t.ok(compile(NO_EXEC_POLICY, { stacked: true }).length > 0, 'a stacked one may deny it');
  t.throws(() => compile({ defaultAction: 'violation', rules: [] }, { stacked: true }), /not available in a filter a process adds to itself/);
  const restrictSelf = (addon as unknown as { restrictSelf: (b: Buffer) => void }).restrictSelf;
  t.throws(() => restrictSelf(Buffer.alloc(5)), { code: 'ERR_SECCOMP_RESTRICT' });
});

t.test('under both profiles a process may add filters but not loosen them', async (t) => {
  const SPEC_ALLOW = '4';
  const NEW_LISTENER = '8';
  const LOG = '2';
  const TSYNC = '1';
  for (const name of ['strict', 'default'] as const) {
    const filter = filterFile(resolveSeccompProfile(name, { network: false }));
    // A NULL program: allowed flags reach the kernel (EFAULT), refused ones stop at the filter (EPERM).
    t.equal(outcome(attempt(filter, 'call', 'seccomp', '1', TSYNC, '0')), 'errno EFAULT', `${name}: SET_MODE_FILTER with TSYNC reaches the kernel`);
    t.equal(outcome(attempt(filter, 'call', 'seccomp', '1', SPEC_ALLOW, '0')), 'errno EPERM', `${name}: SPEC_ALLOW refused`);
    t.equal(outcome(attempt(filter, 'call', 'seccomp', '1', NEW_LISTENER, '0')), 'errno EPERM', `${name}: NEW_LISTENER refused`);
    t.equal(outcome(attempt(filter, 'call', 'seccomp', '1', LOG, '0')), 'errno EPERM', `${name}: LOG refused`);
    t.equal(outcome(attempt(filter, 'call', 'seccomp', '0x100000001', TSYNC, '0')), 'errno EFAULT', `${name}: the operation compares on 32 bits`);
    t.equal(outcome(attempt(filter, 'call', 'prctl', '53', '0', '2', '0', '0')), 'errno EPERM', `${name}: speculation mitigations cannot be switched back on`);
  }
});
