/**
 * A host whose pid was a crashed host's: the dead host's sandbox cgroups (`warden.<pid>.<n>`) are
 * still there, with the same names this host would pick. Spawns with limits must still work, and
 * the leftovers must not count as this host's (tests and doctor would blame it for them).
 */
import t from 'tap';
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import { hostLayout, discoverOwnCgroups } from '../lib/limits';
import { secondHostCgroupProblem } from './helpers/second-host';

const root = process.getuid?.() === 0;
const LIMITS = path.join(__dirname, '..', 'lib', 'limits', 'index.js');
const SANDBOX = path.join(__dirname, '..', 'lib', 'sandbox', 'sandbox.js');

t.test('cgroups left by a dead host with the same pid are stepped over, not reused or listed', { skip: !root && 'skip: creating sandbox cgroups needs root here' }, async (t) => {
  const own = discoverOwnCgroups(hostLayout());
  if (own.v1.size === 0 && own.v2 === undefined) {
    t.plan(0, 'skip: this host has no cgroup hierarchy of its own to create sandbox cgroups in');
    return;
  }
  const problem = secondHostCgroupProblem();
  if (problem !== undefined) {
    t.plan(0, `skip: ${problem}`);
    return;
  }
  // A fresh process plays the restarted host: it makes what a crashed host of its pid left behind
  // (the first names it would pick) before it loads warden, then spawns with a memory limit.
  const script = `
    const fs = require('fs'), path = require('path');
    const { hostLayout, discoverOwnCgroups, listSandboxCgroups } = require(${JSON.stringify(LIMITS)});
    const own = discoverOwnCgroups(hostLayout());
    const parents = [...new Set([...own.v1.values(), ...(own.v2 ? [own.v2] : [])])];
    const stale = [];
    for (const p of parents) for (const n of [1, 2]) { const d = path.join(p, 'warden.' + process.pid + '.' + n); fs.mkdirSync(d); stale.push(d); }
    const { Sandbox } = require(${JSON.stringify(SANDBOX)});
    const out = { stale: stale.length };
    let sb;
    try { sb = Sandbox.spawn({ command: ['/bin/sh', '-c', 'cat /proc/self/cgroup'], limits: { memory: '64M' }, stdio: ['ignore', 'pipe', 'inherit'] }); }
    catch (e) { for (const d of stale) fs.rmdirSync(d); console.log(JSON.stringify({ error: String(e) })); process.exit(0); }
    let text = ''; sb.stdout.on('data', (d) => text += d);
    out.during = listSandboxCgroups().map((d) => path.basename(d));
    sb.exited.then((r) => {
      out.code = r.code; out.cgroupOfChild = text; out.after = listSandboxCgroups();
      out.staleStillThere = stale.filter((d) => fs.existsSync(d)).length;
      for (const d of stale) fs.rmdirSync(d);
      console.log(JSON.stringify(out));
    }, (e) => { for (const d of stale) fs.rmdirSync(d); console.log(JSON.stringify({ error: String(e) })); });`;
  const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 60_000 });
  t.equal(r.status, 0, r.stderr);
  const out = JSON.parse(r.stdout.trim().split('\n').pop()!);
  t.equal(out.error, undefined, 'the spawn with limits worked');
  t.equal(out.code, 0);
  t.ok(out.stale > 0, 'stale cgroups were made');
  t.ok(out.during.length > 0, 'the sandbox got cgroups of its own');
  t.notOk(out.during.some((n: string) => /\.(1|2)$/.test(n)), `not the stale names: ${out.during.join(', ')}`);
  t.notMatch(out.cgroupOfChild, /warden\.\d+\.(1|2)\n/, 'the child is not in a stale cgroup');
  t.same(out.after, [], 'after the exit nothing of this host is listed (the stale ones are not its)');
  t.equal(out.staleStillThere, out.stale, 'the stale cgroups were not touched');
});
