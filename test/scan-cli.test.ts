/** `warden scan` and the scan in `warden trust add`, through bin/warden. */
import t from 'tap';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';

const bin = path.join(__dirname, '..', '..', 'bin', 'warden');
const root = fs.mkdtempSync(path.join(os.tmpdir(), 'warden-scan-cli-'));
t.teardown(() => fs.rmSync(root, { recursive: true, force: true }));
const env: NodeJS.ProcessEnv = { ...process.env, HOME: root };

function warden(...args: string[]) {
  const r = spawnSync(bin, args, { encoding: 'utf8', env, cwd: root });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

function plugin(name: string, code: string, permissions: string[] = []): string {
  const dir = path.join(root, name);
  fs.mkdirSync(dir);
  fs.writeFileSync(path.join(dir, 'warden.json'), JSON.stringify({ name, version: '1.0.0', hostApi: '^1.0.0', entry: 'main.js', permissions }));
  fs.writeFileSync(path.join(dir, 'main.js'), code);
  return dir;
}

t.test('warden scan --json: findings and the diff against the manifest, and the exit codes', async (t) => {
  const mixed = plugin('mixed', `const { exec } = require('child' + '_process');\n`, ['net:outbound']);
  let r = warden('scan', mixed, '--json');
  t.equal(r.status, 3, 'used but not requested: 3');
  const report = JSON.parse(r.stdout);
  t.same(report.requested, ['net:outbound']);
  t.match(report.findings, [{ file: 'main.js', line: 1, kind: 'builtin', permission: 'sys:exec', what: /child/ }]);
  t.same(report.diff, { usedNotRequested: ['sys:exec'], requestedUnused: ['net:outbound'], complete: true });

  const clean = plugin('clean', `fetch('https://example.test/');\n`, ['net:connect:example.test:443']);
  r = warden('scan', clean);
  t.equal(r.status, 0, r.stdout + r.stderr);
  t.match(r.stdout, /main\.js:1:1\s+global\s+net:outbound\s+fetch/);
  t.match(r.stdout, /used, not requested: -/);

  const greedy = plugin('greedy', `module.exports = 1;\n`, ['sys:exec']);
  r = warden('scan', greedy);
  t.equal(r.status, 4, 'only requests never used: 4');
  t.match(r.stdout, /requested, never used: sys:exec/);

  // The manifest's entry is parsed whatever its extension.
  const odd = path.join(root, 'odd');
  fs.mkdirSync(odd);
  fs.writeFileSync(path.join(odd, 'warden.json'), JSON.stringify({ name: 'odd', version: '1.0.0', hostApi: '^1.0.0', entry: 'start' }));
  fs.writeFileSync(path.join(odd, 'start'), `require('net');\n`);
  r = warden('scan', odd, '--json');
  t.same(JSON.parse(r.stdout).implied, ['net:outbound']);

  r = warden('scan', path.join(root, 'nope'));
  t.equal(r.status, 1);
  t.match(r.stderr, /ENOENT/);
  t.equal(warden('scan').status, 2);
});

t.test('warden trust add: shows the scan, refuses an unused grant unless --force, warns about ungranted use', async (t) => {
  t.equal(warden('keygen', 'alice').status, 0);
  const list = path.join(root, 'trust.json');
  t.equal(warden('trust', 'init', list, '--key', path.join(root, '.warden', 'keys', 'alice.pub')).status, 0);
  const dir = plugin('shell', `require('child_process').execFileSync('ls');\n`, ['sys:exec']);
  const before = fs.readFileSync(list, 'utf8');

  let r = warden('trust', 'add', list, dir, '--publisher', 'acme', '--trust', 'privileged', '--permission', 'sys:exec', '--permission', 'net:outbound');
  t.equal(r.status, 1, 'refused');
  t.match(r.stdout, /main\.js:1:1\s+builtin\s+sys:exec/, 'the scan is shown');
  t.match(r.stderr, /refused: the code never uses net:outbound; drop the --permission, or pass --force/);
  t.equal(fs.readFileSync(list, 'utf8'), before, 'the list is unchanged');

  r = warden('trust', 'add', list, dir, '--publisher', 'acme', '--trust', 'privileged', '--permission', 'sys:exec', '--permission', 'net:outbound', '--force');
  t.equal(r.status, 0, r.stderr);
  t.match(r.stderr, /--force: granting net:outbound, which the code never uses/);
  t.match(r.stdout, /added shell@1\.0\.0/);

  const net = plugin('fetcher', `fetch('https://example.test/');\n`);
  r = warden('trust', 'add', list, net, '--publisher', 'acme', '--trust', 'privileged');
  t.equal(r.status, 0, 'used but not granted: added, with a warning');
  t.match(r.stderr, /warning: the code uses net:outbound, not granted here/);
});
