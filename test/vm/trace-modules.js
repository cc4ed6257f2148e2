// @ts-check
// Prints, one per line, the node_modules package directories (relative to the repository) that the
// VM needs at run time, so the initramfs carries those and not the 200+ MB of build tooling.
//
//  1. tap, as a test file run with plain `node file.test.js` uses it: found by running a small test
//     here (passing, failing, skipped, timed and nested assertions, so that the lazily required
//     diff/stack/format code is loaded too) and recording every module it resolves;
//  2. the production dependencies of package.json, with their own dependencies (what dist/lib needs);
//  3. the packages named in test/vm/modules.txt (what a test file needs besides tap), with their
//     dependencies.
// Whole package directories are kept, so a file a package requires lazily is still there.
'use strict';
const fs = require('node:fs');
const path = require('node:path');
const Module = require('node:module');
const { spawnSync } = require('node:child_process');

const repo = path.resolve(process.argv[2] || path.join(__dirname, '..', '..'));

if (process.env.WARDEN_VM_TRACE_OUT) {
  // Child mode: record every resolved file, then run the sample test.
  const seen = new Set();
  const resolve = /** @type {any} */ (Module)._resolveFilename;
  /** @type {any} */ (Module)._resolveFilename = function (/** @type {any[]} */ ...args) {
    const r = resolve.apply(this, args);
    seen.add(r);
    return r;
  };
  process.on('exit', () => {
    fs.writeFileSync(/** @type {string} */ (process.env.WARDEN_VM_TRACE_OUT), [...seen].join('\n'));
    process.exitCode = 0; // the sample fails on purpose
  });
  const t = require(require.resolve('tap', { paths: [repo] }));
  t.test('sample', async (/** @type {any} */ t) => {
    t.ok(true);
    t.same({ a: 1 }, { a: 2 });
    t.match('x', /y/);
    t.throws(() => { throw new Error('x'); });
    await t.rejects(Promise.reject(new Error('y')));
    t.skip('skipped');
    t.todo('todo');
    t.test('nested', async (/** @type {any} */ t) => { t.equal(1, 2); t.fail('fail'); });
  });
  t.test('planned', (/** @type {any} */ t) => { t.plan(1); setTimeout(() => t.pass('ok'), 1); });
  return;
}

const pkgs = new Set();
/** @param {string} file */
function packageDirOf(file) {
  const rel = path.relative(repo, file);
  const m = /^((?:node_modules\/(?:@[^/]+\/)?[^/]+\/)+)/.exec(rel.split(path.sep).join('/') + '/');
  return m ? m[1].replace(/\/$/, '') : null;
}

// 1. tap
const out = path.join(require('node:os').tmpdir(), `warden-vm-trace-${process.pid}.txt`);
const r = spawnSync(process.execPath, [__filename, repo], {
  env: { ...process.env, WARDEN_VM_TRACE_OUT: out },
  stdio: ['ignore', 'ignore', 'inherit'],
});
if (r.status !== 0 || !fs.existsSync(out)) {
  console.error('trace-modules: the sample tap run failed; is tap installed (npm install)?');
  process.exit(1);
}
const traced = new Set();
for (const f of fs.readFileSync(out, 'utf8').split('\n')) {
  const d = f && packageDirOf(f);
  if (d) traced.add(d);
}
fs.rmSync(out, { force: true });

// 2 and 3: dependency closures, resolved the way node does (nearest node_modules upwards).
/** @param {string} name @param {string} fromDir @param {Set<string>} [skip] */
function addWithDeps(name, fromDir, skip) {
  if (skip && skip.has(name)) return;
  let dir = fromDir;
  for (;;) {
    const cand = path.join(dir, 'node_modules', name);
    if (fs.existsSync(path.join(cand, 'package.json'))) {
      const rel = path.relative(repo, cand).split(path.sep).join('/');
      if (visited.has(rel)) return;
      pkgs.add(rel);
      visited.add(rel);
      const pj = JSON.parse(fs.readFileSync(path.join(cand, 'package.json'), 'utf8'));
      for (const dep of Object.keys({ ...pj.dependencies, ...pj.optionalDependencies })) addWithDeps(dep, cand, skip);
      return;
    }
    if (path.resolve(dir) === repo || dir === path.dirname(dir)) break;
    dir = path.dirname(dir);
  }
  // Optional dependencies may be absent; a missing required one shows up inside the VM.
}
const visited = new Set();
// The traced packages with their dependencies (a lazily required one was maybe not traced). Not
// followed: what only the tap CLI or TypeScript loading needs (runner, reporter, ts-node, tsc).
const notFollowed = new Set(['tap', '@tapjs/run', '@tapjs/typescript', '@tapjs/reporter', 'typescript',
  'tshy', '@isaacs/ts-node-temp-fork-for-pr-2009', '@typescript/native-preview']);
for (const d of traced) {
  pkgs.add(d);
  const name = d.replace(/^.*node_modules\//, '').replace(/^(.*\/)?((?:@[^/]+\/)?[^/]+)$/, '$2');
  const at = d.lastIndexOf('/node_modules/');
  const dir = path.join(repo, at < 0 ? '' : d.slice(0, at));
  if (!notFollowed.has(name)) addWithDeps(name, dir, notFollowed);
}
const rootPj = JSON.parse(fs.readFileSync(path.join(repo, 'package.json'), 'utf8'));
for (const dep of Object.keys(rootPj.dependencies || {})) addWithDeps(dep, repo);
const extra = path.join(repo, 'test', 'vm', 'modules.txt');
if (fs.existsSync(extra)) {
  for (const line of fs.readFileSync(extra, 'utf8').split('\n')) {
    const name = line.replace(/#.*/, '').trim();
    if (name) addWithDeps(name, repo);
  }
}
process.stdout.write([...pkgs].sort().join('\n') + '\n');
