/**
 * The plugin runner inside a real sandbox (strict seccomp, no network, read-only views), called
 * through the shared-memory channel.
 */
import t from 'tap';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { spawnNode } from '../lib/process/spawn-node';
import { DEFAULT_HOST_ID_RANGE } from '../lib/sandbox/ids';
import { rootOnly } from './helpers/sandbox';

function pluginDir(files: Record<string, string>): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'warden-plugin-'));
  fs.chmodSync(dir, 0o755); // the runner reads it as the sandbox's unprivileged uid
  for (const [name, text] of Object.entries(files)) fs.writeFileSync(path.join(dir, name), text, { mode: 0o644 });
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

t.test('a CommonJS plugin answers calls from inside the strict sandbox', async (t) => {
  const dir = pluginDir({
    'index.js': `
      exports.add = (a, b) => a + b;
      exports.whoami = () => ({ uid: process.getuid(), pid: process.pid, hostname: require('os').hostname() });
      exports.readHost = (p) => require('fs').readFileSync(p, 'utf8');
      exports.fail = () => { const e = new Error('plugin says no'); e.code = 'E_PLUGIN'; throw e; };
      exports.echo = (b) => b;
    `,
  });
  const p = await spawnNode(path.join(dir, 'index.js'));
  t.teardown(() => p.kill());
  t.equal(await p.call('add', 2, 3), 5);
  const who = (await p.call('whoami')) as { uid: number; pid: number; hostname: string };
  t.equal(who.pid, 1, 'the runner is pid 1 of its own PID namespace');
  t.equal(who.hostname, 'warden');
  rootOnly(t, 'nobody inside, on a host uid of its own from the host id range', 'unprivileged, the sandbox maps to the caller', () => {
    t.equal(who.uid, 65534, 'nobody inside');
    const hostUid = Number(/^Uid:\s+(\d+)/m.exec(fs.readFileSync(`/proc/${p.pid}/status`, 'utf8'))![1]);
    t.ok(hostUid >= DEFAULT_HOST_ID_RANGE.first && hostUid < DEFAULT_HOST_ID_RANGE.first + DEFAULT_HOST_ID_RANGE.count, `host uid ${hostUid}: the sandbox's own, from the host id range`);
  });
  await t.rejects(p.call('readHost', '/etc/hostname'), { code: 'ENOENT' }, 'host files are not there');
  await t.rejects(p.call('fail'), { message: 'plugin says no', code: 'E_PLUGIN' });
  const big = Buffer.alloc(8 * 1024 * 1024, 7);
  const back = (await p.call('echo', big)) as Buffer;
  t.equal(back.length, big.length, 'an 8 MiB payload streams through a 1 MiB ring');
  t.equal(back[back.length - 1], 7);
});

t.test('an ES module plugin loads too, and a dying plugin rejects pending calls', async (t) => {
  const dir = pluginDir({
    'index.mjs': `
      export function hang() { return new Promise(() => {}); }
      export function crash() { setTimeout(() => process.exit(3), 10); return 'bye'; }
      export const ping = () => 'pong';
    `,
  });
  const p = await spawnNode(path.join(dir, 'index.mjs'));
  t.equal(await p.call('ping'), 'pong');
  const pending = p.call('hang');
  await p.call('crash');
  await t.rejects(pending, { code: 'ERR_CHANNEL_CLOSED' }, 'the pending call is rejected when the plugin dies');
  await p.exited;
});
