/** The cases of test/install.test.ts, run inside the "host" namespace with the registry reachable. */
import t from 'tap';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { digestDirectory } from '../../lib/trust';
import { bundledNpm } from '../../lib/install/npm';

const fx = JSON.parse(process.env.WARDEN_INSTALL_FIXTURE!) as { root: string; registryRoot: string; good: string; tampered: string; outside: string };
const REGISTRY = 'http://198.51.100.1:4873/';
const bin = path.join(__dirname, '..', '..', '..', 'bin', 'warden');

function requests(): string[] {
  const f = path.join(fx.registryRoot, 'requests.log');
  return fs.existsSync(f) ? fs.readFileSync(f, 'utf8').split('\n').filter((l) => l !== '') : [];
}

function warden(...args: string[]) {
  return spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', timeout: 200_000 });
}

/** Every path under `dir`, for "nothing else changed" checks. */
function listing(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      out.push(path.relative(fx.root, p));
      if (e.isDirectory()) walk(p);
    }
  };
  walk(dir);
  return out.sort();
}

t.test('a dependency whose postinstall writes outside DIR and calls the network: nothing runs, nothing is written outside DIR', async (t) => {
  const into = path.join(fx.root, 'installed-good');
  const before = listing(fx.root).filter((p) => !p.startsWith('registry'));
  const r = warden('install', fx.good, '--into', into, '--registry', REGISTRY);
  t.equal(r.status, 0, r.stderr);
  t.equal(fs.readFileSync(path.join(into, 'node_modules', 'evil-dep', 'index.js'), 'utf8'), 'module.exports = 42;\n', 'the dependency is installed');
  t.equal(r.stdout.trim(), await digestDirectory(into), 'the printed digest is the directory\'s, ready for warden trust add');
  t.notOk(fs.existsSync(path.join(into, 'node_modules', 'evil-dep', 'postinstall-ran')), 'the postinstall did not run');
  t.match(r.stderr, /node_modules\/evil-dep\/package\.json\s+install-script\b/, 'the scan of DIR names the dependency\'s install script');
  t.same(fs.readdirSync(fx.outside), [], 'nothing written to the directory outside DIR');
  const after = listing(fx.root).filter((p) => !p.startsWith('registry') && !p.startsWith('installed-good'));
  t.same(after, before, 'nothing else under the test root changed');
  t.notOk(requests().some((l) => l.includes('/pwn')), 'the script never called home');
  t.ok(requests().some((l) => l.includes('/evil-dep/-/evil-dep-1.0.0.tgz')), 'the tarball came from the local registry');
  t.ok((fs.statSync(path.join(into, 'node_modules')).uid) === process.getuid!(), 'DIR is handed back to the caller');
});

t.test('a tarball that does not match the lockfile\'s integrity fails the install', async (t) => {
  const into = path.join(fx.root, 'installed-tampered');
  const r = warden('install', fx.tampered, '--into', into, '--registry', REGISTRY);
  t.equal(r.status, 1, 'refused');
  t.match(r.stderr, /EINTEGRITY|integrity/i, 'npm names the integrity check');
  t.match(r.stderr, /\[ERR_INSTALL\]/);
  t.notOk(fs.existsSync(path.join(into, 'node_modules', 'swapped-dep', 'index.js')), 'the swapped package is not installed');
});

t.test('only the registry is reachable: a lockfile resolving elsewhere fails', async (t) => {
  const spec = path.join(fx.root, 'plugins', 'elsewhere');
  fs.cpSync(fx.good, spec, { recursive: true });
  const lock = fs.readFileSync(path.join(spec, 'package-lock.json'), 'utf8').replaceAll('198.51.100.1:4873', '203.0.113.10:80');
  fs.writeFileSync(path.join(spec, 'package-lock.json'), lock);
  const r = warden('install', spec, '--into', path.join(fx.root, 'installed-elsewhere'), '--registry', REGISTRY);
  t.equal(r.status, 1);
  t.match(r.stderr, /refused 203\.0\.113\.10:80/, 'the connect to another host was refused by the policy');
});

t.test('bad input: a .npmrc in the plugin, a non-empty DIR, no lockfile', async (t) => {
  const spec = path.join(fx.root, 'plugins', 'with-npmrc');
  fs.cpSync(fx.good, spec, { recursive: true });
  fs.writeFileSync(path.join(spec, '.npmrc'), 'ignore-scripts=false\n');
  let r = warden('install', spec, '--into', path.join(fx.root, 'x1'), '--registry', REGISTRY);
  t.equal(r.status, 1);
  t.match(r.stderr, /\.npmrc would configure the install/);
  r = warden('install', fx.good, '--into', fx.outside + '/..', '--registry', REGISTRY);
  t.equal(r.status, 1);
  t.match(r.stderr, /is not empty/);
  fs.rmSync(path.join(spec, '.npmrc'));
  fs.rmSync(path.join(spec, 'package-lock.json'));
  r = warden('install', spec, '--into', path.join(fx.root, 'x2'), '--registry', REGISTRY);
  t.match(r.stderr, /has no package-lock\.json/);
});

t.test('control: the same npm ci on the host, scripts on, runs the attack the sandbox stopped', async (t) => {
  const dir = path.join(fx.root, 'control');
  fs.cpSync(fx.good, dir, { recursive: true });
  const r = spawnSync(process.execPath, [bundledNpm(), 'ci', '--no-audit', '--no-fund', '--no-update-notifier', `--registry=${REGISTRY}`, `--cache=${path.join(fx.root, 'control-cache')}`, '--userconfig=/dev/null'], { cwd: dir, encoding: 'utf8', timeout: 120_000, env: { ...process.env, npm_config_ignore_scripts: 'false' } });
  t.equal(r.status, 0, r.stderr);
  t.ok(fs.existsSync(path.join(dir, 'node_modules', 'evil-dep', 'postinstall-ran')), 'the postinstall ran');
  t.ok(fs.existsSync(path.join(fx.outside, 'escaped')), 'and wrote outside the package directory');
  for (let i = 0; i < 50 && !requests().some((l) => l.includes('/pwn')); i++) await new Promise((res) => setTimeout(res, 100));
  t.ok(requests().some((l) => l.includes('/pwn')), 'and called home');
});
