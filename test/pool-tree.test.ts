/**
 * A plugin's files sent over the channel: the digest of what is read equals digestDirectory(), what
 * runs is what was digested, and trees that are hostile or too big are refused before anything starts.
 */
import t from 'tap';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { RunnerPool } from '../lib/pool';
import { spawnNode } from '../lib/process/spawn-node';
import { digestDirectory } from '../lib/trust/digest';
import { readPluginTree } from '../lib/trust/tree';
import { pluginDir } from './helpers/plugin-dir';

t.test('readPluginTree digests what digestDirectory digests', async (t) => {
  const dir = pluginDir(t, {
    'index.js': "exports.hello = require('./lib/a').a;",
    'lib/a.js': "exports.a = () => 'a';",
    'lib/deep/empty.txt': '',
    'node_modules/dep/package.json': '{"name":"dep","main":"main.js"}',
    'node_modules/dep/main.js': 'module.exports = 1;',
    'data/ünïcödé name.txt': 'x'.repeat(70_000),
  });
  fs.chmodSync(path.join(dir, 'lib/a.js'), 0o755);
  fs.symlinkSync('lib/a.js', path.join(dir, 'alias.js'));
  fs.mkdirSync(path.join(dir, 'empty-dir'), { mode: 0o755 });
  const tree = await readPluginTree(dir);
  t.equal(tree.digest, await digestDirectory(dir), 'same digest');
  t.equal(tree.bytes, 70_000 + [
    "exports.hello = require('./lib/a').a;", "exports.a = () => 'a';", '{"name":"dep","main":"main.js"}', 'module.exports = 1;',
  ].reduce((n, s) => n + s.length, 0));
  t.match(tree.files.find((e) => e.path === 'alias.js'), { kind: 'l', target: 'lib/a.js' });
  t.match(tree.files.find((e) => e.path === 'lib/a.js'), { kind: 'f', mode: 0o755 });

  // What the sandbox got is what was digested: read it back from inside, byte for byte.
  fs.writeFileSync(path.join(dir, 'dump.js'), `
    const fs = require('fs'), path = require('path');
    exports.dump = () => { const out = {}; const walk = (d, rel) => { for (const n of fs.readdirSync(d).sort()) {
      const a = path.join(d, n), r = rel ? rel + '/' + n : n, st = fs.lstatSync(a);
      out[r] = st.isSymbolicLink() ? 'l:' + fs.readlinkSync(a) : st.isDirectory() ? 'd' : 'f:' + (st.mode & 0o777).toString(8) + ':' + fs.readFileSync(a).toString('base64');
      if (st.isDirectory()) walk(a, r); } }; walk(__dirname, ''); return out; };
  `, { mode: 0o644 });
  const sent = await readPluginTree(dir);
  const p = await spawnNode(path.join(dir, 'dump.js'), { tree: sent, digest: sent.digest });
  t.teardown(() => p.kill());
  t.equal(p.digest, sent.digest);
  const inside = (await p.call('dump')) as Record<string, string>;
  const expected: Record<string, string> = {};
  for (const e of sent.files) {
    expected[e.path] = e.kind === 'l' ? `l:${e.target}` : e.kind === 'd' ? 'd' : `f:${e.mode!.toString(8)}:${e.data!.toString('base64')}`;
  }
  t.same(inside, expected, 'every entry arrived as read');
});

t.test('a digest that does not match refuses the start', async (t) => {
  const dir = pluginDir(t, { 'index.js': 'exports.x = 1;' });
  const pool = new RunnerPool({ size: 0 });
  t.teardown(() => pool.close());
  await t.rejects(pool.start(path.join(dir, 'index.js'), { digest: `sha3-512:${'0'.repeat(128)}` }), { code: 'ERR_TRUST_DIGEST_MISMATCH' });
  t.same(pool.stats(), { idle: 0, starting: 0, warm: 0, cold: 0 }, 'nothing was started');
});

t.test('hostile and oversized trees are refused with a clear error, before any runner is used', async (t) => {
  const pool = new RunnerPool({ size: 1 });
  t.teardown(() => pool.close());
  await pool.waitIdle();

  const out = pluginDir(t, { 'index.js': 'exports.x = 1;' });
  fs.symlinkSync('/etc/passwd', path.join(out, 'passwd'));
  await t.rejects(pool.start(path.join(out, 'index.js')), { code: 'ERR_TRUST_UNSAFE_FILE', kind: 'symlink-absolute', message: /passwd/ });

  const up = pluginDir(t, { 'index.js': 'exports.x = 1;' });
  fs.symlinkSync('../../../../etc', path.join(up, 'etc'));
  await t.rejects(pool.start(path.join(up, 'index.js')), { code: 'ERR_TRUST_UNSAFE_FILE', kind: /symlink-(escape|dangling)/ });

  const huge = pluginDir(t, { 'index.js': 'exports.x = 1;' });
  const fd = fs.openSync(path.join(huge, 'blob.bin'), 'w', 0o644);
  fs.ftruncateSync(fd, 65 * 1024 * 1024);
  fs.closeSync(fd);
  await t.rejects(pool.start(path.join(huge, 'index.js')), { code: 'ERR_TRUST_UNSAFE_FILE', kind: 'too-large', message: /blob\.bin.*treeLimits\.maxBytes/ });
  await t.rejects(pool.start(path.join(huge, 'index.js'), { treeLimits: { maxBytes: 1024 } }), { code: 'ERR_TRUST_UNSAFE_FILE', kind: 'too-large' });

  const many = pluginDir(t, { 'index.js': 'exports.x = 1;' });
  for (let i = 0; i < 30; i++) fs.writeFileSync(path.join(many, `f${i}.js`), '', { mode: 0o644 });
  await t.rejects(pool.start(path.join(many, 'index.js'), { treeLimits: { maxFiles: 10 } }), { kind: 'too-many-entries', message: /treeLimits\.maxFiles/ });

  const fifo = pluginDir(t, { 'index.js': 'exports.x = 1;' });
  const { execFileSync } = await import('node:child_process');
  execFileSync('mkfifo', [path.join(fifo, 'pipe')]);
  await t.rejects(pool.start(path.join(fifo, 'index.js')), { code: 'ERR_TRUST_UNSAFE_FILE', kind: 'fifo' });

  t.same(pool.stats(), { idle: 1, starting: 0, warm: 0, cold: 0 }, 'no runner was used or started');
});

t.test('a bigger tree than the pool takes is served cold', async (t) => {
  const dir = pluginDir(t, { 'index.js': "exports.size = () => require('fs').statSync(__dirname + '/big.bin').size;" });
  fs.writeFileSync(path.join(dir, 'big.bin'), Buffer.alloc(200_000, 1), { mode: 0o644 });
  const pool = new RunnerPool({ size: 1, treeLimits: { maxBytes: 100_000 } });
  t.teardown(() => pool.close());
  await pool.waitIdle();
  const p = await pool.start(path.join(dir, 'index.js'));
  t.teardown(() => p.kill());
  t.equal(p.warm, false);
  t.equal(await p.call('size'), 200_000);
  t.match(pool.warmRefusal({ tree: await readPluginTree(dir) }), /^tree:/);
  void os;
});
