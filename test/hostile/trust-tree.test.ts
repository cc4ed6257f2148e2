/**
 * Plugin trees that look fine on the host and are something else in the sandbox. The runner
 * recreates the tree under /plugin, so a symlink is verified for what it resolves to there: a relative
 * target that climbs out of /plugin reaches the host path it names (live, if the plugin may read it),
 * not the file that was digested. And every refusal of a tree carries an ERR_TRUST_* code.
 */
import t, { Test } from 'tap';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';

import { digestDirectory, readPluginTree, resolveInTree } from '../../lib/trust';
import { spawnNode } from '../../lib/process/spawn-node';
import type { PluginLauncher } from '../../lib/plugins';
import { PluginWorld } from '../helpers/plugins';
import { tmpdir } from '../trust-fixtures';

const HOOKS = [{ name: 'who', mode: 'first' as const }];

async function world(t: Test): Promise<PluginWorld> {
  const w = await PluginWorld.create();
  t.teardown(() => w.cleanup());
  return w;
}

/**
 * Launcher that changes the plugin's real.js on the host after the host verified and read the
 * tree and before the sandbox loads it: what a plugin reading its host directory would then see.
 */
function tamperingLauncher(dir: string, started: string[]): PluginLauncher {
  return async (entry, options) => {
    started.push(path.basename(path.dirname(entry)));
    fs.writeFileSync(path.join(dir, 'real.js'), `exports.who = 'changed after verification';\n`);
    return spawnNode(entry, options);
  };
}

/**
 * The tree digest (lib/trust/digest.ts encoding) computed with no refusals at all: what a hostile
 * publisher lists for a tree warden itself would refuse to hash.
 */
function rawDigest(root: string): string {
  const entries: Array<{ rel: string; st: fs.Stats }> = [];
  const walk = (rel: string) => {
    for (const name of fs.readdirSync(path.join(root, rel))) {
      const r = rel === '' ? name : `${rel}/${name}`;
      const st = fs.lstatSync(path.join(root, r));
      entries.push({ rel: r, st });
      if (st.isDirectory()) walk(r);
    }
  };
  walk('');
  entries.sort((a, b) => Buffer.compare(Buffer.from(a.rel), Buffer.from(b.rel)));
  const h = createHash('sha3-512').update('warden-tree-v1\0');
  for (const { rel, st } of entries) {
    const abs = path.join(root, rel);
    if (st.isDirectory()) h.update(`d\0${rel}\0`);
    else if (st.isSymbolicLink()) h.update(`l\0${rel}\0${fs.readlinkSync(abs)}\0`);
    else h.update(`f\0${rel}\0${(st.mode & 0o111) !== 0 ? '755' : '644'}\0${st.size}\0`).update(fs.readFileSync(abs));
  }
  return `sha3-512:${h.digest('hex')}`;
}

async function escaping(t: Test, withRead: boolean): Promise<void> {
  const w = await world(t);
  const dir = path.join(w.pluginsDir, 'linker');
  const permissions = withRead ? [`fs:read:${dir}`] : [];
  w.writePlugin('linker', {
    code: `exports.activate = (host) => { const m = require('./entry.js'); host.hook('who', () => m.who); };`,
    hooks: ['who'],
    permissions,
    files: { 'real.js': `exports.who = 'verified';\n` },
  });
  // Up to / and back down to this very directory: inside it on the host, outside /plugin in the sandbox.
  const target = `${'../'.repeat(dir.split('/').length - 1)}${dir.slice(1)}/real.js`;
  fs.symlinkSync(target, path.join(dir, 'entry.js'));
  t.equal(fs.realpathSync(path.join(dir, 'entry.js')), path.join(dir, 'real.js'), 'on the host the link stays in the directory');
  await w.trust('linker', { permissions, digest: rawDigest(dir) });
  await w.publish();

  const started: string[] = [];
  const host = w.host({ hooks: HOOKS, launcher: tamperingLauncher(dir, started) });
  t.teardown(() => host.close());
  await host.start();
  const answer = (await host.invoke('who')).value;
  t.not(answer, 'changed after verification', 'the plugin does not run a host file changed after verification');
  t.equal(host.status('linker'), 'failed');
  t.equal(host.info('linker').reason?.stage, 'verify', 'refused at verification');
  t.equal(host.info('linker').reason?.code, 'ERR_TRUST_UNSAFE_FILE');
  t.match(host.info('linker').reason?.message, /entry\.js: symlink to .* leaves the plugin directory/);
  t.same(started, [], 'no sandbox was started for it');
  // `warden hash` / `warden trust add` refuse it the same way.
  fs.writeFileSync(path.join(dir, 'real.js'), `exports.who = 'verified';\n`);
  await t.rejects(digestDirectory(dir), { code: 'ERR_TRUST_UNSAFE_FILE', kind: 'symlink-escape' });
}

t.test('a symlink leaving /plugin, the plugin holding fs:read on its own directory', (t) => escaping(t, true));
t.test('a symlink leaving /plugin, without fs:read', (t) => escaping(t, false));

t.test('symlinks that stay inside the tree still work in the sandbox', async (t) => {
  const w = await world(t);
  const dir = w.writePlugin('inner', {
    code: `exports.activate = (host) => { const m = require('./sub/alias.js'); host.hook('who', () => m.who); };`,
    hooks: ['who'],
    files: { 'real.js': `exports.who = 'inner';\n`, 'lib/keep': '' },
  });
  fs.symlinkSync('../real.js', path.join(dir, 'lib', 'alias.js'));
  fs.symlinkSync('lib', path.join(dir, 'sub'));
  const listed = await w.trust('inner');
  t.equal(listed.digest, rawDigest(dir), 'the test\'s digest is the real encoding');
  await w.publish();
  const host = w.host({ hooks: HOOKS });
  t.teardown(() => host.close());
  await host.start();
  t.equal(host.status('inner'), 'active', JSON.stringify(host.info('inner').reason));
  t.equal((await host.invoke('who')).value, 'inner');
});

t.test('resolveInTree: links are followed inside the tree only, as in the sandbox', async (t) => {
  const root = fs.realpathSync(tmpdir());
  const base = path.basename(root);
  fs.mkdirSync(path.join(root, 'd'));
  fs.writeFileSync(path.join(root, 'f'), 'x');
  const cases: Array<[string, string, string | RegExp]> = [
    ['top', '.', ''],
    ['d/up', '../f', 'f'],
    ['d/self', '../d/../d/.', 'd'],
    ['dot', 'x/..', 'symlink-dangling'], // x does not exist: the kernel says ENOENT too
    ['here', '.', ''],
    ['via', 'here/../f', 'symlink-escape'], // here → '.', so here/.. is above the top
    ['sib', `../${base}/f`, 'symlink-escape'], // back in through the directory's own name: fine on the host only
    ['deep', '../../../../../../..', 'symlink-escape'],
    ['loop1', 'loop2', 'symlink-loop'],
    ['loop2', 'loop1', 'symlink-loop'],
    ['selfloop', 'selfloop/x', 'symlink-loop'],
    ['thru-file', 'f/..', 'symlink-dangling'],
    ['abs', '/etc/passwd', 'symlink-absolute'],
    ['to-abs', 'abs', 'symlink-absolute'],
  ];
  for (const [name, target] of cases) fs.symlinkSync(target, path.join(root, name));
  for (const [name, target, want] of cases) {
    const got = await resolveInTree(root, name, target).then(
      (r) => r,
      (e: { code?: string; kind?: string }) => `${e.code}:${e.kind}`,
    );
    if (want === '' || want === 'f' || want === 'd') t.equal(got, want, `${name} -> ${target} resolves to '${want}'`);
    else t.equal(got, `ERR_TRUST_UNSAFE_FILE:${want}`, `${name} -> ${target} is refused (${want})`);
  }
});

t.test('a non-UTF-8 file name, a missing directory: ERR_TRUST_* codes, not bare errnos', async (t) => {
  const w = await world(t);
  const dir = w.writePlugin('oddname', { code: `exports.activate = (host) => { host.hook('who', () => 'odd'); };`, hooks: ['who'] });
  await w.trust('oddname');
  await w.publish();
  // Added after listing: the host must refuse the tree with a trust code, naming the problem.
  fs.writeFileSync(Buffer.concat([Buffer.from(dir + '/x'), Buffer.from([0xff, 0xfe]), Buffer.from('.js')]), 'odd');
  const host = w.host({ hooks: HOOKS });
  t.teardown(() => host.close());
  await host.start();
  t.equal(host.status('oddname'), 'failed');
  t.equal(host.info('oddname').reason?.code, 'ERR_TRUST_UNSAFE_FILE');
  t.match(host.info('oddname').reason?.message, /x\?\?\.js: file name is not valid UTF-8/);
  await t.rejects(digestDirectory(dir), { code: 'ERR_TRUST_UNSAFE_FILE', kind: 'name-not-utf8' });
  await t.rejects(readPluginTree(dir), { code: 'ERR_TRUST_UNSAFE_FILE', kind: 'name-not-utf8' });

  // A symlink whose target is not UTF-8 would be recreated differently from what was digested.
  const other = fs.realpathSync(tmpdir());
  fs.symlinkSync(Buffer.from([0x61, 0xff]), path.join(other, 'l'));
  await t.rejects(readPluginTree(other), { code: 'ERR_TRUST_UNSAFE_FILE', kind: 'symlink-not-utf8' });

  const missing = path.join(w.root, 'no-such-plugin');
  await t.rejects(readPluginTree(missing), { code: 'ERR_TRUST_TREE_UNREADABLE', errno: 'ENOENT' });
  await t.rejects(digestDirectory(missing), { code: 'ERR_TRUST_TREE_UNREADABLE', errno: 'ENOENT' });
});
