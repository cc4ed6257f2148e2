/**
 * `warden install`: a plugin's npm dependencies installed by npm ci in a sandbox, against a tiny
 * registry (test/helpers/npm-registry.ts) in a network namespace this test creates; never the public
 * registry. The dependency is hostile: its postinstall writes outside DIR, leaves a marker inside
 * DIR and calls the registry host (the one destination the sandbox may reach). This file runs twice,
 * like the egress tests: outside it builds the namespaces, the packages and the registry; inside
 * the "host" namespace it runs the cases.
 *
 * The control: the same npm ci run without the sandbox and without --ignore-scripts runs the
 * script (marker written, the registry called), so the witnesses can see an attack.
 */
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { createWorld, worldUnavailable, WORLD } from './helpers/net-world';

const REGISTRY = `http://${WORLD.http}:4873/`;

interface Fixture {
  root: string;
  registryRoot: string;
  /** Plugin whose lockfile matches the registry. */
  good: string;
  /** Plugin whose lockfile's integrity does not match the tarball the registry serves. */
  tampered: string;
  /** A world-writable directory outside DIR that the postinstall writes to. */
  outside: string;
}

function tgz(staging: string, pkg: Record<string, unknown>, files: Record<string, string>, out: string): { integrity: string; shasum: string } {
  const dir = path.join(staging, 'package');
  fs.rmSync(dir, { recursive: true, force: true });
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, 'package.json'), JSON.stringify(pkg, null, 2));
  for (const [f, text] of Object.entries(files)) fs.writeFileSync(path.join(dir, f), text);
  fs.mkdirSync(path.dirname(out), { recursive: true });
  const r = spawnSync('tar', ['-czf', out, '-C', staging, 'package']);
  if (r.status !== 0) throw new Error(`tar: ${r.stderr}`);
  const bytes = fs.readFileSync(out);
  return { integrity: `sha512-${createHash('sha512').update(bytes).digest('base64')}`, shasum: createHash('sha1').update(bytes).digest('hex') };
}

function publish(registryRoot: string, staging: string, name: string, files: Record<string, string>, scripts: Record<string, string>): { tarball: string; integrity: string } {
  const version = '1.0.0';
  const tarball = `${REGISTRY}${name}/-/${name}-${version}.tgz`;
  const pkg = { name, version, main: 'index.js', scripts };
  const d = tgz(staging, pkg, files, path.join(registryRoot, name, '-', `${name}-${version}.tgz`));
  const packument = { name, 'dist-tags': { latest: version }, versions: { [version]: { ...pkg, dist: { tarball, ...d } } } };
  fs.writeFileSync(path.join(registryRoot, name, 'index.json'), JSON.stringify(packument));
  return { tarball, integrity: d.integrity };
}

function plugin(root: string, name: string, dep: string, tarball: string, integrity: string): string {
  const dir = path.join(root, name);
  fs.mkdirSync(dir, { recursive: true, mode: 0o755 });
  fs.writeFileSync(path.join(dir, 'package.json'), JSON.stringify({ name, version: '1.0.0', dependencies: { [dep]: '1.0.0' } }, null, 2));
  fs.writeFileSync(path.join(dir, 'index.js'), `exports.activate = () => require(${JSON.stringify(dep)});\n`);
  fs.writeFileSync(path.join(dir, 'package-lock.json'), JSON.stringify({
    name, version: '1.0.0', lockfileVersion: 3, requires: true,
    packages: {
      '': { name, version: '1.0.0', dependencies: { [dep]: '1.0.0' } },
      [`node_modules/${dep}`]: { version: '1.0.0', resolved: tarball, integrity, hasInstallScript: true },
    },
  }, null, 2));
  return dir;
}

function build(): Fixture {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'warden-install-'));
  fs.chmodSync(root, 0o755);
  const registryRoot = path.join(root, 'registry');
  const staging = path.join(root, 'staging');
  const outside = path.join(root, 'outside');
  fs.mkdirSync(registryRoot, { mode: 0o755 });
  fs.mkdirSync(outside, { mode: 0o777 });
  fs.chmodSync(outside, 0o1777);
  // Writes outside DIR, leaves a marker in the package's own directory, calls the registry host.
  const evil = [
    `const fs = require('fs');`,
    `try { fs.writeFileSync(${JSON.stringify(path.join(outside, 'escaped'))}, 'x'); } catch {}`,
    `fs.writeFileSync('postinstall-ran', 'x');`,
    `require('http').get(${JSON.stringify(`${REGISTRY}pwn`)}, (r) => r.resume()).on('error', () => {});`,
  ].join(' ');
  const scripts = { postinstall: `node -e ${JSON.stringify(evil)}` };
  const good = publish(registryRoot, staging, 'evil-dep', { 'index.js': 'module.exports = 42;\n' }, scripts);
  const real = publish(registryRoot, staging, 'swapped-dep', { 'index.js': 'module.exports = "what the publisher locked";\n' }, scripts);
  // The registry now serves other bytes under the same name and version.
  publish(registryRoot, staging, 'swapped-dep', { 'index.js': 'module.exports = "swapped by the registry";\n' }, scripts);
  const plugins = path.join(root, 'plugins');
  fs.mkdirSync(plugins, { mode: 0o755 });
  return {
    root, registryRoot, outside,
    good: plugin(plugins, 'good-plugin', 'evil-dep', good.tarball, good.integrity),
    tampered: plugin(plugins, 'tampered-plugin', 'swapped-dep', real.tarball, real.integrity),
  };
}

if (process.env.WARDEN_INSTALL_FIXTURE === undefined) {
  const why = worldUnavailable() ?? (spawnSync('tar', ['--version']).status !== 0 ? "'tar' is not installed" : null);
  if (why !== null) {
    // eslint-disable-next-line @typescript-eslint/no-var-requires
    const t = require('tap') as typeof import('tap');
    t.plan(0, `skipped: ${why}`);
  } else {
    const fx = build();
    void createWorld({}).then(async (world) => {
      let status = 1;
      const registry = spawn('ip', ['netns', 'exec', world.inetNs, process.execPath, path.join(__dirname, 'helpers', 'npm-registry.js'), fx.registryRoot, '4873'], { stdio: ['pipe', 'pipe', 'inherit'] });
      try {
        await new Promise<void>((resolve, reject) => {
          registry.stdout!.on('data', (d: Buffer) => { if (d.toString().includes('ready')) resolve(); });
          registry.on('exit', (code) => reject(new Error(`the registry exited (${code})`)));
        });
        const [cmd, ...args] = world.hostExec([process.execPath, __filename]);
        const r = spawnSync(cmd!, args, { stdio: 'inherit', env: { ...process.env, WARDEN_INSTALL_FIXTURE: JSON.stringify(fx) }, timeout: 280_000 });
        status = r.status ?? 1;
      } finally {
        registry.stdin!.end();
        registry.kill('SIGKILL');
        world.destroy();
        fs.rmSync(fx.root, { recursive: true, force: true });
      }
      process.exitCode = status;
    });
  }
} else {
  // eslint-disable-next-line @typescript-eslint/no-var-requires
  require('./helpers/install-cases');
}
