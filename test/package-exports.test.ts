// The package as a consumer gets it: entry points (CommonJS, ES module, types), no install-time
// compilation, and the addon loader's answer when no binary fits. The packed tarball itself is
// installed into fresh projects by .ci/consumers.sh.
import t from 'tap';
import * as fs from 'node:fs';
import * as path from 'node:path';

import { addonFile, loadAddon, requireAddon } from '../lib/native-file';

const root = path.join(__dirname, '..', '..');
const pkg = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8'));

t.test('the ES module entry re-exports exactly the names of the CommonJS entry', async (t) => {
  const cjs = require(path.join(root, 'dist', 'lib', 'index.js')) as Record<string, unknown>;
  // A real dynamic import (tsc would turn `import()` into require under module commonjs).
  const importEsm = new Function('spec', 'return import(spec)') as (spec: string) => Promise<Record<string, unknown>>;
  const esm = await importEsm(path.join(root, 'esm', 'index.mjs'));
  const esmNames = Object.keys(esm).filter((name) => name !== 'default').sort();
  t.same(esmNames, Object.keys(cjs).sort(), 'same names (after changing lib/index.ts: node tools/gen-esm.js)');
  for (const name of esmNames) t.equal(esm[name], cjs[name], `${name} is the CommonJS binding itself`);
  t.equal(esm.default, cjs, 'the default export is the CommonJS module');
  // The package's own name, imported, goes through the exports map's import condition.
  const self = await importEsm('warden');
  t.equal(self.Sandbox, cjs.Sandbox, "import('warden') gets the named exports");
  t.equal(self.PluginHost, cjs.PluginHost);
});

t.test('exports map: require, import and types resolve to files that exist', async (t) => {
  const dot = pkg.exports['.'];
  for (const [cond, target] of [
    ['require', dot.require.default], ['require types', dot.require.types],
    ['import', dot.import.default], ['import types', dot.import.types],
  ] as const) {
    t.ok(fs.existsSync(path.join(root, target)), `${cond}: ${target} exists`);
  }
  // The package's own name resolves through its exports map (self-reference), as in a consumer.
  t.equal(require.resolve('warden'), path.join(root, 'dist', 'lib', 'index.js'));
  t.equal(pkg.bin.warden, 'bin/warden', 'bin unchanged');
});

t.test('no package manager compiles anything at install', async (t) => {
  for (const script of ['preinstall', 'install', 'postinstall']) {
    t.equal(pkg.scripts[script], undefined, `no ${script} script`);
  }
  t.equal(pkg.gypfile, false, 'gypfile false: npm adds no implicit node-gyp rebuild');
  t.notOk(fs.existsSync(path.join(root, 'binding.gyp')), 'no binding.gyp at the package root (it is native/binding.gyp)');
  t.notOk(pkg.dependencies['node-addon-api'], 'the build-only headers are not a runtime dependency');
});

t.test('the shipped binary is the one loaded', async (t) => {
  const file = addonFile();
  t.equal(file, path.join(root, 'prebuilds', 'linux-x64', 'warden.node'));
  t.ok(pkg.files.includes('prebuilds/linux-x64/warden.node'), 'and the package ships it');
  t.type((requireAddon() as Record<string, unknown>).compileSeccomp, 'function');
});

t.test('no binary for the platform: the error names it and the build command', async (t) => {
  const dir = t.testdir({});
  t.throws(() => loadAddon(dir, 'linux', 'arm64'), {
    message: /no native addon loads on linux-arm64.*prebuilds\/linux-arm64\/warden\.node or prebuilds\/linux-arm64-musl\/warden\.node.*\(none there\)[^]*npm ci && npm run build:native/,
  });
  t.throws(() => loadAddon(dir, 'darwin', 'arm64'), { message: /darwin-arm64: looked for prebuilds\/darwin-arm64\/warden\.node in/ });
});

t.test('a binary that does not load: the error carries the loader\'s reason', async (t) => {
  const dir = t.testdir({ prebuilds: { 'linux-x64': { 'warden.node': 'not an ELF file' } } });
  t.throws(() => loadAddon(dir, 'linux', 'x64'), {
    message: /no native addon loads on linux-x64 \(glibc [0-9.]+\).*warden\.node: .*(invalid ELF header|too short)[^]*npm run build:native/,
  });
});
