/**
 * The host's own crash: a real host with plugins under load (calls in a loop, hot reloads from
 * trust-list updates, audit writes) is SIGKILLed at random moments, many times, and restarted. After
 * each restart: the dead host's sandboxes are gone (parent-death signal), its cgroups and runner
 * bundle were removed, the audit log verifies against its checkpoint (a write cut short is reported
 * and chained over), the trust state's version never went back, every plugin is active again.
 */
import t from 'tap';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { deadHostCgroups } from '../../lib/limits';
import { publicKeyToJson } from '../../lib/trust';
import { PluginWorld } from '../helpers/plugins';

const CRASHES = 10;
const HOST = path.join(__dirname, '..', 'helpers', 'crash-host.js');
const BIN = path.join(__dirname, '..', '..', '..', 'bin', 'warden');
const PLUGINS = ['alpha', 'beta', 'gamma'];

const code = (name: string, version: string) =>
  `exports.activate = (host) => { host.hook('ping', () => ${JSON.stringify(`${name}@${version}`)}); };`;

interface Line { pids?: number[]; active?: number; statuses?: string[]; calls?: number }

/** Starts the host; `lines` collects what it reports. */
function startHost(config: object, lines: Line[]): ChildProcess {
  const proc = spawn(process.execPath, [HOST, JSON.stringify(config)], { stdio: ['ignore', 'pipe', 'inherit'] });
  let buf = '';
  proc.stdout!.setEncoding('utf8').on('data', (d: string) => {
    buf += d;
    let nl;
    while ((nl = buf.indexOf('\n')) >= 0) {
      lines.push(JSON.parse(buf.slice(0, nl)) as Line);
      buf = buf.slice(nl + 1);
    }
  });
  return proc;
}

async function until(cond: () => boolean, ms: number, what: string): Promise<void> {
  for (const end = Date.now() + ms; !cond(); await new Promise((r) => setTimeout(r, 20))) {
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
  }
}

const alive = (pid: number) => fs.existsSync(`/proc/${pid}`);
/** Mounts in the test's namespace of the world's files or of the dead host's runner bundle. */
const mountsOf = (root: string, hostPid: number) => fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n').filter((l) => l.includes(root) || l.includes(`warden-runner-${hostPid}-`));
const stateVersion = (file: string) => (JSON.parse(fs.readFileSync(file, 'utf8')) as { version: number }).version;

t.test(`${CRASHES} SIGKILLs of a loaded host at random moments, each followed by a clean restart`, { timeout: 600_000 }, async (t) => {
  const w = await PluginWorld.create();
  t.teardown(() => w.cleanup());
  for (const name of PLUGINS) {
    w.writePlugin(name, { code: code(name, '1.0.0'), hooks: ['ping'] });
    await w.trust(name);
  }
  await w.publish();
  const publicKey = path.join(w.root, 'anchor.pub');
  fs.writeFileSync(publicKey, publicKeyToJson(w.publicKey()));
  const config = { pluginsDir: w.pluginsDir, trustFile: w.trustFile, statePath: w.statePath, auditPath: w.auditPath, checkpointPath: path.join(w.root, 'audit.checkpoint'), publicKey };

  let highestState = 0;
  let betaVersion = 1;
  let lines: Line[] = [];
  let host = startHost(config, lines);
  t.teardown(() => host.kill('SIGKILL'));
  for (let crash = 1; crash <= CRASHES; crash++) {
    // Kill during start-up (loads), or later, under calls, audit writes and hot reloads, at a random moment.
    const killAt = Date.now() + 150 + Math.floor(Math.random() * 3000);
    let updates = 0;
    while (Date.now() < killAt) {
      // A trust-list update now and then: beta's next version, hot reloaded by the host.
      if (Math.random() < 0.05) {
        betaVersion++;
        w.writePlugin('beta', { code: code('beta', `${betaVersion}.0.0`), hooks: ['ping'], version: `${betaVersion}.0.0` });
        await w.trust('beta');
        await w.publish();
        updates++;
      }
      await new Promise((r) => setTimeout(r, 20));
      if (host.exitCode !== null) throw new Error(`the host exited by itself (${host.exitCode})`);
    }
    const deadPid = host.pid!;
    const sandboxes = lines.flatMap((l) => l.pids ?? []);
    const running = lines.filter((l) => l.calls !== undefined).pop();
    const phase = running === undefined ? 'starting (loading its plugins)' : `running (${running.calls} calls done)`;
    host.kill('SIGKILL');
    await new Promise((r) => host.once('exit', r));

    // What the dead host leaves: its sandboxes die with it.
    await until(() => sandboxes.every((pid) => !alive(pid)), 5000, `the dead host's sandboxes (${sandboxes.join(' ')}) to die`);

    // The next host comes up, cleans after the dead one, and is the one under load for the next crash.
    lines = [];
    host = startHost(config, lines);
    await until(() => lines.some((l) => l.active === PLUGINS.length), 60_000, 'every plugin of the restarted host to be active');
    const leftCgroups = deadHostCgroups(false).filter((l) => l.hostPid === deadPid);
    const leftBundles = fs.readdirSync(os.tmpdir()).filter((n) => n.startsWith(`warden-runner-${deadPid}-`));
    const verify = spawnSync(BIN, ['audit', '--verify', '--file', w.auditPath, '--checkpoint', config.checkpointPath], { encoding: 'utf8' });
    const version = stateVersion(w.statePath);
    t.comment(`crash ${crash}: killed pid ${deadPid} while ${phase}, ${sandboxes.length} sandbox(es) seen, ${updates} trust update(s); after restart: all ${PLUGINS.length} plugins active, cgroups left ${leftCgroups.length}, bundles left ${leftBundles.length}, audit ${verify.stdout.trim().split(':')[0]}${/cut short/.test(verify.stdout) ? ' (a torn write chained over)' : ''}, trust state v${version}`);
    t.same(leftCgroups, [], `crash ${crash}: no cgroup of the dead host is left`);
    t.same(leftBundles, [], `crash ${crash}: no runner bundle of the dead host is left`);
    t.equal(verify.status, 0, `crash ${crash}: the audit log verifies: ${verify.stdout.trim()} ${verify.stderr.trim()}`);
    t.ok(version >= highestState, `crash ${crash}: the trust state's version did not go back (v${version}, highest seen v${highestState})`);
    highestState = Math.max(highestState, version);
    t.same(mountsOf(w.root, deadPid), [], `crash ${crash}: no mount of the dead host's files is left in the test's namespace`);
  }
  const sandboxes = lines.flatMap((l) => l.pids ?? []);
  host.kill('SIGKILL');
  await new Promise((r) => host.once('exit', r));
  await until(() => sandboxes.every((pid) => !alive(pid)), 5000, 'the last host\'s sandboxes to die');
  t.ok(highestState >= 1, `the trust state reached v${highestState}`);
});
