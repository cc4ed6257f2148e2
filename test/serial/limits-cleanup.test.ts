/**
 * A host killed with SIGKILL leaves its sandbox cgroups behind (its sandboxes die with it through the
 * parent-death signal). `warden doctor` lists them, `warden doctor --clean` and the next
 * PluginHost.start() remove them, and a live host's cgroups are never touched.
 *
 * Serial (package.json's tap.serial): a PluginHost starting in a test file run beside this one would
 * remove the killed host's cgroups, as it should, before doctor could be asked about them.
 */
import t from 'tap';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { once } from 'node:events';
import { deadHostCgroups, hostLayout, discoverOwnCgroups } from '../../lib/limits';
import { PluginWorld } from '../helpers/plugins';
import { secondHostCgroupProblem } from '../helpers/second-host';

const root = process.getuid?.() === 0;
const LIB = path.join(__dirname, '..', '..', 'lib', 'index.js');
const LIMITS = path.join(__dirname, '..', '..', 'lib', 'limits', 'index.js');
const BIN = path.join(__dirname, '..', '..', '..', 'bin', 'warden');

/** A host process with one sandbox (sleep) in cgroups of its own; reports them, then waits for stdin to end. */
async function startHost(): Promise<{ proc: ChildProcess; sandboxPid: number; cgroups: string[] }> {
  const script = `
    const { Sandbox } = require(${JSON.stringify(LIB)}); const { listSandboxCgroups } = require(${JSON.stringify(LIMITS)});
    const sb = Sandbox.spawn({ command: ['/bin/sleep', '60'], limits: { memory: '64M', pids: 16 } });
    process.stdout.write(JSON.stringify({ sandboxPid: sb.pid, cgroups: listSandboxCgroups() }) + '\\n');
    process.stdin.on('end', () => { sb.kill('SIGKILL'); sb.exited.then(() => setTimeout(() => process.exit(0), 100)); });
    process.stdin.resume();`;
  const proc = spawn(process.execPath, ['-e', script], { stdio: ['pipe', 'pipe', 'inherit'] });
  const [line] = (await once(proc.stdout!.setEncoding('utf8'), 'data')) as [string];
  return { proc, ...(JSON.parse(line) as { sandboxPid: number; cgroups: string[] }) };
}

async function gone(pid: number, ms: number): Promise<boolean> {
  for (const end = Date.now() + ms; Date.now() < end; await new Promise((r) => setTimeout(r, 20))) {
    if (!fs.existsSync(`/proc/${pid}`)) return true;
  }
  return false;
}

/** Why the tests of a killed host cannot run here, if they cannot. */
const skipReason = (): string | false => {
  if (!root || !hasCgroups()) return 'skip: needs root and a cgroup hierarchy of its own to create sandbox cgroups in';
  const problem = secondHostCgroupProblem();
  return problem === undefined ? false : `skip: ${problem}`;
};

const hasCgroups = (): boolean => {
  try {
    const own = discoverOwnCgroups(hostLayout());
    return own.v1.size > 0 || own.v2 !== undefined;
  } catch {
    return false;
  }
};

t.test('leftovers of a killed host: listed, removed by doctor --clean, a live host untouched', { skip: skipReason() }, async (t) => {
  const dead = await startHost();
  const live = await startHost();
  t.ok(dead.cgroups.length > 0, `the host had cgroups: ${dead.cgroups.join(' ')}`);
  dead.proc.kill('SIGKILL');
  await once(dead.proc, 'exit');
  t.ok(await gone(dead.sandboxPid, 5000), 'the dead host\'s sandbox died with it (parent-death signal)');
  t.ok(dead.cgroups.every((d) => fs.existsSync(d)), 'its cgroups are left behind');

  const listed = spawnSync(BIN, ['doctor'], { encoding: 'utf8' });
  for (const d of dead.cgroups) t.match(listed.stdout, `leftover sandbox cgroup ${d} of host pid ${dead.proc.pid}: its host is gone; \`warden doctor --clean\` removes it`);
  t.ok(dead.cgroups.every((d) => fs.existsSync(d)), 'doctor alone removes nothing');
  for (const d of live.cgroups) t.match(listed.stdout, `${d} of host pid ${live.proc.pid}: kept, a process with that pid is alive`);

  const cleaned = spawnSync(BIN, ['doctor', '--clean'], { encoding: 'utf8' });
  for (const d of dead.cgroups) t.match(cleaned.stdout, `${d} of host pid ${dead.proc.pid}: removed`);
  t.ok(dead.cgroups.every((d) => !fs.existsSync(d)), 'the dead host\'s cgroups are gone');
  t.ok(live.cgroups.every((d) => fs.existsSync(d)), 'the live host\'s cgroups are still there');
  t.ok(fs.existsSync(`/proc/${live.sandboxPid}`), 'and its sandbox still runs');

  live.proc.stdin!.end();
  await once(live.proc, 'exit');
  t.ok(live.cgroups.every((d) => !fs.existsSync(d)), 'the live host removed its own at exit');
});

t.test('PluginHost.start() removes a dead host\'s cgroups and audits it', { skip: skipReason() }, async (t) => {
  const dead = await startHost();
  dead.proc.kill('SIGKILL');
  await once(dead.proc, 'exit');
  t.ok(await gone(dead.sandboxPid, 5000), 'the sandbox died with its host');
  const w = await PluginWorld.create();
  t.teardown(() => w.cleanup());
  await w.publish();
  const host = w.host();
  await host.start();
  await host.close();
  t.ok(dead.cgroups.every((d) => !fs.existsSync(d)), 'removed at start');
  const events = fs.readFileSync(w.auditPath, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { event: string; severity: string; reason: string });
  const cleanup = events.filter((e) => e.event === 'cleanup');
  for (const d of dead.cgroups) t.ok(cleanup.some((e) => e.severity === 'warning' && e.reason === `removed sandbox cgroup ${d} of host pid ${dead.proc.pid}, which is gone`), `audited: ${d}`);
  t.same(deadHostCgroups(false).filter((l) => l.hostPid === dead.proc.pid), [], 'nothing of it is left');
});

t.test('the runner bundle of a killed host is removed by the next host', async (t) => {
  const BUNDLE = path.join(__dirname, '..', '..', 'lib', 'process', 'runner-bundle.js');
  const ENTRY = path.join(__dirname, '..', '..', 'lib', 'runner', 'main.js');
  const make = `const { runnerBundle } = require(${JSON.stringify(BUNDLE)}); process.stdout.write(String(runnerBundle(${JSON.stringify(ENTRY)})) + '\\n');`;
  const dead = spawn(process.execPath, ['-e', `${make} setInterval(() => {}, 1000);`], { stdio: ['ignore', 'pipe', 'inherit'] });
  const [line] = (await once(dead.stdout!.setEncoding('utf8'), 'data')) as [string];
  const deadBundle = line.trim();
  t.match(path.basename(path.dirname(deadBundle)), new RegExp(`^warden-runner-${dead.pid}-`), 'the bundle directory names its host');
  dead.kill('SIGKILL');
  await once(dead, 'exit');
  t.ok(fs.existsSync(deadBundle), 'a killed host leaves its bundle');
  const next = spawnSync(process.execPath, ['-e', make], { encoding: 'utf8' });
  t.equal(next.status, 0, next.stderr);
  t.notOk(fs.existsSync(path.dirname(deadBundle)), 'the next host removed it');
  t.notOk(fs.existsSync(next.stdout.trim()), 'and its own is removed at its exit');
});
