/**
 * The capability scan on a corpus of small plugins: each reaches one capability, directly, through
 * an alias, through a dependency or in an ES module, and the scan must name it with its file, line
 * and permission. A plugin that reaches none has no finding at all.
 */
import t from 'tap';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { scanPlugin, type Finding } from '../lib/scan';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'warden-scan-'));
t.teardown(() => fs.rmSync(root, { recursive: true, force: true }));

let n = 0;
/** A plugin directory with these files (relative path → text). */
function plugin(files: Record<string, string>, permissions: string[] = []): string {
  const dir = path.join(root, `p${n++}`);
  fs.mkdirSync(dir);
  fs.writeFileSync(path.join(dir, 'warden.json'), JSON.stringify({ name: 'p', version: '1.0.0', hostApi: '^1.0.0', permissions }));
  for (const [rel, text] of Object.entries(files)) {
    fs.mkdirSync(path.dirname(path.join(dir, rel)), { recursive: true });
    fs.writeFileSync(path.join(dir, rel), text);
  }
  return dir;
}

interface Expect {
  file?: string;
  line: number;
  permission: Finding['permission'];
  kind?: Finding['kind'];
}

/** [case name, files, the one finding expected]: the code is on line 2 unless said otherwise. */
const CORPUS: Array<[string, Record<string, string>, Expect]> = [
  ['direct require', { 'index.js': `'use strict';\nconst cp = require('child_process');\n` }, { line: 2, permission: 'sys:exec' }],
  ['node: prefix', { 'index.js': `\nrequire('node:fs').readFileSync('/etc/passwd');\n` }, { line: 2, permission: 'fs:*' }],
  ['fs/promises', { 'index.js': `\nconst { readFile } = require('fs/promises');\n` }, { line: 2, permission: 'fs:*' }],
  ['http', { 'index.js': `\nrequire('http').get('http://x');\n` }, { line: 2, permission: 'net:outbound' }],
  ['concatenated name', { 'index.js': `\nconst cp = require('child' + '_process');\n` }, { line: 2, permission: 'sys:exec' }],
  ['name through constants', { 'index.js': `const a = 'chi', b = a + 'ld_';\nconst cp = require(\`\${b}process\`);\n` }, { line: 2, permission: 'sys:exec' }],
  ['alias of require', { 'index.js': `const r = require;\nr('net').connect(80, 'x');\n` }, { line: 2, permission: 'net:outbound' }],
  ['alias bound after use (hoisted var)', { 'index.js': `function go() {\n  return q('dns');\n}\nvar q = require;\n` }, { line: 2, permission: 'net:outbound' }],
  ['destructuring', { 'index.js': `\nconst { execSync: run } = require('child_process');\n` }, { line: 2, permission: 'sys:exec' }],
  ['destructured require from module', { 'index.js': `const { require: req } = module;\nreq('dgram');\n` }, { line: 2, permission: 'net:outbound' }],
  ['module.require', { 'index.js': `\nmodule.require('tls');\n` }, { line: 2, permission: 'net:outbound' }],
  ['process.mainModule.require', { 'index.js': `\nprocess.mainModule.require('child_process').exec('id');\n` }, { line: 2, permission: 'sys:exec' }],
  ['require.main.require', { 'index.js': `\nrequire.main.require('https');\n` }, { line: 2, permission: 'net:outbound' }],
  ['require.call', { 'index.js': `\nrequire.call(null, 'fs');\n` }, { line: 2, permission: 'fs:*' }],
  ['createRequire', { 'index.js': `const { createRequire } = require('node:module');\nconst r = createRequire(__filename); r('http2');\n` }, { line: 2, permission: 'net:outbound' }],
  ['Module._load', { 'index.js': `const M = require('module');\nM._load('cluster');\n` }, { line: 2, permission: 'sys:exec' }],
  ['through the global object', { 'index.js': `\nglobalThis.process.mainModule.require('fs');\n` }, { line: 2, permission: 'fs:*' }],
  ['dynamic require', { 'index.js': `const name = process.argv[2];\nrequire(name);\n` }, { line: 2, permission: '*', kind: 'dynamic-require' }],
  ['dynamic import', { 'index.js': `\nimport(process.env.X);\n` }, { line: 2, permission: '*', kind: 'dynamic-require' }],
  ['fetch', { 'index.js': `\nfetch('https://example.test/');\n` }, { line: 2, permission: 'net:outbound', kind: 'global' }],
  ['WebSocket', { 'index.js': `\nnew WebSocket('ws://x');\n` }, { line: 2, permission: 'net:outbound', kind: 'global' }],
  ['fetch through globalThis, computed', { 'index.js': `\nglobalThis['fe' + 'tch']('x');\n` }, { line: 2, permission: 'net:outbound', kind: 'global' }],
  ['eval of a computed string', { 'index.js': `\neval(process.env.CODE);\n` }, { line: 2, permission: '*', kind: 'global' }],
  ['new Function of a computed string', { 'index.js': `\nconst f = new Function('a', process.env.CODE);\n` }, { line: 2, permission: '*', kind: 'global' }],
  ['eval of a constant string is scanned', { 'index.js': `\neval("require('child_process')");\n` }, { line: 2, permission: 'sys:exec' }],
  ['process.binding', { 'index.js': `\nprocess.binding('spawn_sync');\n` }, { line: 2, permission: '*', kind: 'global' }],
  ['process.binding destructured', { 'index.js': `const { binding } = process;\nbinding('fs');\n` }, { line: 1, permission: '*', kind: 'global' }],
  ['process.dlopen', { 'index.js': `\nprocess.dlopen(module, '/tmp/x.node');\n` }, { line: 2, permission: '*', kind: 'global' }],
  ['vm', { 'index.js': `\nrequire('vm').runInThisContext(code);\n` }, { line: 2, permission: '*' }],
  ['WebAssembly (no permission, listed)', { 'index.js': `\nWebAssembly.instantiate(bytes);\n` }, { line: 2, permission: null, kind: 'global' }],
  ['ESM import', { 'index.mjs': `\nimport net from 'node:net';\n` }, { file: 'index.mjs', line: 2, permission: 'net:outbound' }],
  ['ESM named import', { 'index.mjs': `\nimport { spawn } from 'child_process';\n` }, { file: 'index.mjs', line: 2, permission: 'sys:exec' }],
  ['ESM import()', { 'index.mjs': `\nawait import('node:fs/promises');\n` }, { file: 'index.mjs', line: 2, permission: 'fs:*' }],
  ['ESM re-export', { 'index.mjs': `\nexport { request } from 'https';\n` }, { file: 'index.mjs', line: 2, permission: 'net:outbound' }],
  ['ESM createRequire', { 'index.mjs': `import { createRequire } from 'module';\nconst require = createRequire(import.meta.url); require('dns');\n` }, { file: 'index.mjs', line: 2, permission: 'net:outbound' }],
  ['ESM in a .js file of a type:module package', { 'package.json': '{"type":"module","warden":null}', 'lib/x.js': `\nimport 'dgram';\n` }, { file: 'lib/x.js', line: 2, permission: 'net:outbound' }],
  ['ESM in a .js file without a type', { 'lib/x.js': `\nimport * as fs from 'fs';\n` }, { file: 'lib/x.js', line: 2, permission: 'fs:*' }],
  ['through a dependency', { 'index.js': `require('helper');\n`, 'node_modules/helper/index.js': `module.exports = () =>\n  require('child_process').execSync('id');\n` }, { file: 'node_modules/helper/index.js', line: 2, permission: 'sys:exec' }],
  ['through a required file of another extension', { 'index.js': `require('./data.txt');\n`, 'data.txt': `\nrequire('net');\n` }, { file: 'data.txt', line: 2, permission: 'net:outbound' }],
  ['a native addon in a dependency', { 'node_modules/fast/build/Release/fast.node': 'ELF' }, { file: 'node_modules/fast/build/Release/fast.node', line: 0, permission: '*', kind: 'native-addon' }],
  ['binding.gyp in a dependency', { 'node_modules/fast/binding.gyp': '{}' }, { file: 'node_modules/fast/binding.gyp', line: 0, permission: null, kind: 'binding-gyp' }],
  ['an install script in a dependency', { 'node_modules/evil/package.json': '{"name":"evil","scripts":{"postinstall":"node steal.js"}}' }, { file: 'node_modules/evil/package.json', line: 0, permission: null, kind: 'install-script' }],
  ['syntax error', { 'index.js': `const a = 1;\nconst = ;\n` }, { line: 2, permission: '*', kind: 'unparsed' }],
];

for (const [name, files, want] of CORPUS) {
  t.test(name, async (t) => {
    const report = await scanPlugin(plugin(files));
    // Reaching the built-in 'module' (for createRequire) is listed too, with no permission.
    const findings = report.findings.filter((x) => !(x.kind === 'builtin' && x.permission === null && /module/.test(x.what)));
    t.equal(findings.length, 1, `one finding: ${JSON.stringify(report.findings)}`);
    const f = findings[0]!;
    t.equal(f.file, want.file ?? 'index.js');
    t.equal(f.line, want.line, 'line');
    t.equal(f.permission, want.permission, 'permission');
    if (want.kind !== undefined) t.equal(f.kind, want.kind, 'kind');
    else t.equal(f.kind, 'builtin', 'kind');
  });
}

t.test('no finding on a plugin that reaches nothing', async (t) => {
  const dir = plugin({
    'index.js': [
      `const path = require('path'), util = require('node:util'), { EventEmitter } = require('events');`,
      `const lib = require('./lib/helper'); const _ = require('lodash');`,
      `const r = (x) => x * 2; r('fs');`,
      `if (typeof fetch === 'function') console.log('has fetch');`,
      `const isFn = (x) => x instanceof Function; const bind = Function.prototype.bind;`,
      `const g = Function('return this')();`,
      `exports.activate = (host) => host.hook('x', (s) => JSON.stringify({ s: path.join('a', s) }));`,
    ].join('\n'),
    'lib/helper.js': `export const x = 1;\n`,
    'README.md': '# not code: require("child_process")\n',
    'node_modules/lodash/index.js': `module.exports = { map: (a, f) => a.map(f) };\n`,
    'node_modules/lodash/package.json': '{"name":"lodash","main":"index.js","scripts":{"test":"node test.js"}}',
  });
  const report = await scanPlugin(dir, { requested: [] });
  t.same(report.findings, []);
  t.same(report.implied, []);
  t.same(report.diff, { usedNotRequested: [], requestedUnused: [], complete: true });
  t.equal(report.stats.files, 3, 'index.js, lib/helper.js and the dependency were parsed');
});

t.test('the diff: used but not requested, requested but never used', async (t) => {
  const dir = plugin({ 'index.js': `require('child_process');\nrequire('fs');\n` });
  const report = await scanPlugin(dir, { requested: ['fs:read:/srv/data', 'net:connect:example.test:443', 'net:outbound'] });
  t.same(report.implied, ['fs:*', 'sys:exec']);
  t.same(report.diff.usedNotRequested, ['sys:exec']);
  t.same(report.diff.requestedUnused, ['net:connect:example.test:443', 'net:outbound']);
  t.equal(report.diff.complete, true);
  const unseen = await scanPlugin(plugin({ 'index.js': `require(x);\n` }), { requested: ['net:outbound'] });
  t.same(unseen.diff.usedNotRequested, ['*']);
  t.equal(unseen.diff.complete, false, 'with code it could not see through, nothing is called unused for sure');
});

t.test('symlinks are not followed, and one leaving the directory is a finding', async (t) => {
  const outside = path.join(root, 'outside');
  fs.mkdirSync(outside);
  fs.writeFileSync(path.join(outside, 'x.js'), `require('child_process');\n`);
  const dir = plugin({ 'index.js': `module.exports = 1;\n`, 'real/y.js': `require('fs');\n` });
  fs.symlinkSync(outside, path.join(dir, 'out'));
  fs.symlinkSync(path.join(outside, 'x.js'), path.join(dir, 'x.js'));
  fs.symlinkSync('real', path.join(dir, 'inside'));
  const report = await scanPlugin(dir);
  const kinds = report.findings.map((f) => `${f.file} ${f.kind} ${f.permission}`).sort();
  t.same(kinds, ['out symlink null', 'real/y.js builtin fs:*', 'x.js symlink null'], 'the outside code is not read; the inside file once');
});
