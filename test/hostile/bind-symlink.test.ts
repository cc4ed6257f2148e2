/**
 * A hostile sandbox with a writable bind plants symlinks (or flips a directory and a symlink in a
 * tight loop) where a later bind will look: the next spawn must bind the real directory or fail with
 * a clear error, and never mount what the symlink names (the host's /proc, /etc, a 0700 directory).
 */
import t, { Test } from 'tap';
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { Sandbox } from '../../lib/sandbox/sandbox';
import { sh, isRoot, rootOnly } from '../helpers/sandbox';
import { PluginWorld } from '../helpers/plugins';
import { decidePermissions, parsePermission } from '../../lib/plugins/permissions';

/** A host directory the sandbox's uid may write: S of `fs:write:S`. */
function shared(t: Test): string {
  const base = fs.mkdtempSync(path.join(os.tmpdir(), 'warden-hostile-'));
  fs.chmodSync(base, 0o755);
  t.teardown(() => fs.rmSync(base, { recursive: true, force: true }));
  const s = path.join(base, 'S');
  fs.mkdirSync(s);
  fs.chmodSync(s, 0o777);
  return s;
}

/** A 0700 root directory with a world-readable file inside: the sandbox's host uid cannot reach it. */
function privateDir(t: Test): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'warden-private-'));
  fs.chmodSync(dir, 0o700);
  fs.mkdirSync(path.join(dir, 'inner'), { mode: 0o755 });
  fs.writeFileSync(path.join(dir, 'inner', 'secret'), 'root-only secret\n', { mode: 0o644 });
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** The sandbox with `fs:write:S` plants a symlink named `name` pointing at `to`, replacing a directory. */
async function plant(t: Test, s: string, name: string, to: string): Promise<void> {
  fs.mkdirSync(path.join(s, name), { mode: 0o777 });
  const r = await sh(`rm -rf /S/${name} && ln -s ${to} /S/${name} && echo planted`, { binds: [{ source: s, target: '/S', writable: true }] });
  t.equal(r.stdout, 'planted\n', `the writable sandbox replaced ${name} with a symlink to ${to}`);
  t.ok(fs.lstatSync(path.join(s, name)).isSymbolicLink());
}

/** Spawns a bind of `source` and expects the clear refusal; returns what the sandbox saw if it ran. */
async function expectRefused(t: Test, source: string, component: string, script: string): Promise<void> {
  let seen: string | undefined;
  try {
    seen = (await sh(script, { binds: [{ source, target: '/x' }] })).stdout;
  } catch (e) {
    const err = e as { code?: string; stage?: string; errnoName?: string; message: string };
    t.equal(err.code, 'ERR_SANDBOX_SETUP');
    t.equal(err.stage, 'bind-source');
    t.equal(err.errnoName, 'ELOOP');
    t.match(err.message, source, 'the message names the path');
    t.match(err.message, `'${component}' is a symlink`, 'and the offending component');
    t.match(err.message, /bind the real path/, 'and what to do');
    return;
  }
  t.fail(`the bind of ${source} was made through a symlink; the sandbox saw: ${JSON.stringify(seen.slice(0, 200))}`);
}

t.test('a symlink planted by a writable sandbox is refused at the next bind: /proc, /etc, a 0700 directory', async (t) => {
  const s = shared(t);
  await plant(t, s, 'p', '/proc');
  await plant(t, s, 'e', '/etc');
  const priv = privateDir(t);
  await plant(t, s, 'v', priv);

  // The symlink as the last component, and as a component in the middle of the path.
  await expectRefused(t, path.join(s, 'p'), path.join(s, 'p'), 'cat /x/1/cmdline | tr "\\0" " "');
  await expectRefused(t, path.join(s, 'p', '1'), path.join(s, 'p'), 'cat /x/cmdline | tr "\\0" " "');
  await expectRefused(t, path.join(s, 'e'), path.join(s, 'e'), 'cat /x/hostname');
  await expectRefused(t, path.join(s, 'v', 'inner'), path.join(s, 'v'), 'cat /x/secret');
});

t.test('a bind gives no more than the sandbox\'s host identity can reach: a path inside a 0700 root directory is refused', { skip: !isRoot && 'needs root: an unprivileged host binds as itself' }, async (t) => {
  const priv = privateDir(t);
  let seen: string | undefined;
  try {
    seen = (await sh('cat /x/secret', { binds: [{ source: path.join(priv, 'inner'), target: '/x' }] })).stdout;
  } catch (e) {
    const err = e as { code?: string; stage?: string; errnoName?: string; message: string };
    t.equal(err.code, 'ERR_SANDBOX_SETUP');
    t.equal(err.stage, 'bind-source');
    t.equal(err.errnoName, 'EACCES');
    t.match(err.message, new RegExp(`'${priv}' cannot be searched by host uid \\d+`));
    return;
  }
  t.fail(`a file inside a 0700 root directory became readable through a bind: ${JSON.stringify(seen)}`);
});

t.test('hostAccess: the host\'s own files under a 0700 directory are bound with its rights, and still never through a symlink', { skip: !isRoot && 'needs root: an unprivileged host binds as itself' }, async (t) => {
  // The runner binds the package it loads this way: a host installed under /root or a mkdtemp
  // directory must still run plugins. A plugin can name no such bind: it is the host's option.
  const priv = privateDir(t);
  const r = await sh('cat /x/secret', { binds: [{ source: path.join(priv, 'inner'), target: '/x', hostAccess: true }] });
  t.equal(r.stdout, 'root-only secret\n', 'bound with the host\'s rights');
  fs.symlinkSync(path.join(priv, 'inner'), path.join(priv, 'link'));
  await t.rejects(
    sh('cat /x/secret', { binds: [{ source: path.join(priv, 'link'), target: '/x', hostAccess: true }] }),
    { code: 'ERR_SANDBOX_SETUP', stage: 'bind-source', errnoName: 'ELOOP' },
    'a symlink is refused with the host\'s rights too',
  );
  t.throws(() => Sandbox.spawn({ command: ['/bin/true'], binds: [{ source: priv, hostAccess: 'yes' as unknown as boolean }] }), { code: 'ERR_INVALID_OPTION', field: 'binds[0].hostAccess' });
});

t.test('mount targets inside the new root are reached without following symlinks', async (t) => {
  // S is bound writable at /data and a second bind goes to /data/sub: a sandbox made /S/sub a
  // symlink to /etc, so following it would put the bind over the sandbox's own /etc view.
  const s = shared(t);
  const other = fs.mkdtempSync(path.join(os.tmpdir(), 'warden-other-'));
  fs.chmodSync(other, 0o755);
  t.teardown(() => fs.rmSync(other, { recursive: true, force: true }));
  await plant(t, s, 'sub', '/usr');
  await t.rejects(
    sh('ls /usr', { binds: [{ source: s, target: '/data', writable: true }, { source: other, target: '/data/sub' }] }),
    { code: 'ERR_SANDBOX_SETUP', stage: 'mount-target', errnoName: 'ELOOP', message: /binds\[1\].*\/data\/sub/ },
  );
});

t.test('race: a sandbox flips a component between a directory and a symlink while the host binds it', async (t) => {
  const s = shared(t);
  const priv = privateDir(t);
  fs.mkdirSync(path.join(s, 'c', 'inner'), { recursive: true, mode: 0o777 });
  fs.chmodSync(path.join(s, 'c'), 0o777);
  fs.writeFileSync(path.join(s, 'c', 'inner', 'real'), 'real\n', { mode: 0o644 });
  // The flipper: c is the real directory, then missing, then a symlink into the 0700 directory.
  const flipper = Sandbox.spawn({
    command: ['/bin/sh', '-c', `while :; do mv -T /S/c /S/parked; ln -s ${priv} /S/c; sleep 0.002; rm /S/c; mv -T /S/parked /S/c; sleep 0.002; done`],
    binds: [{ source: s, target: '/S', writable: true }],
    stdio: ['ignore', 'ignore', 'ignore'],
  });
  t.teardown(() => flipper.kill('SIGKILL'));
  const outcomes = { real: 0, refused: 0, missing: 0, missingAtPlan: 0, escaped: 0 };
  const source = path.join(s, 'c', 'inner');
  for (let i = 0; i < 200; i++) {
    await new Promise((r) => setTimeout(r, i % 3)); // so that the spawns do not fall into step with the flips
    try {
      const r = await sh('cat /x/real /x/secret 2>/dev/null; true', { binds: [{ source, target: '/x' }] });
      if (r.stdout.includes('secret')) outcomes.escaped++;
      else if (r.stdout === 'real\n') outcomes.real++;
      else t.fail(`unexpected view: ${JSON.stringify(r.stdout)}`);
    } catch (e) {
      const err = e as { code?: string; stage?: string; errnoName?: string };
      if (err.code === 'ERR_SANDBOX_SETUP' && err.stage === 'bind-source' && err.errnoName === 'ELOOP') outcomes.refused++;
      else if (err.code === 'ERR_SANDBOX_SETUP' && err.stage === 'bind-source' && err.errnoName === 'ENOENT') outcomes.missing++;
      else if ((e as { code?: string }).code === 'ERR_INVALID_OPTION' && (e as Error).message.includes(source)) outcomes.missingAtPlan++; // gone when the plan checked it
      else throw e;
    }
  }
  t.comment(`outcomes: ${JSON.stringify(outcomes)}`);
  t.equal(outcomes.escaped, 0, 'no spawn mounted the symlink target');
  t.ok(outcomes.real > 0, 'some spawns bound the real directory');
});

t.test('through PluginHost: a writable grant of one plugin cannot redirect a bind of another, nor its own next start', async (t) => {
  const w = await PluginWorld.create();
  t.teardown(() => w.cleanup());
  const s = path.join(w.root, 'S');
  const a = path.join(s, 'a');
  fs.mkdirSync(path.join(a, '1'), { recursive: true });
  for (const d of [s, a, path.join(a, '1')]) fs.chmodSync(d, 0o777);
  fs.writeFileSync(path.join(a, '1', 'cmdline'), 'a plain file', { mode: 0o644 });
  const hostInit = fs.readFileSync('/proc/1/cmdline', 'utf8');
  // The writer may write S and reads S/a/1 (a directory of S until it plants the link): it moves
  // S/a aside (S/a/1 is a mount point of its sandbox, S/a is not) and makes S/a a symlink to /proc,
  // so that S/a/1 names the host's init.
  w.writePlugin('writer', {
    code: `exports.activate = (host) => { host.hook('greet', () => {
      const fs = require('fs');
      fs.renameSync(${JSON.stringify(a)}, ${JSON.stringify(a + '.old')});
      fs.symlinkSync('/proc', ${JSON.stringify(a)});
      return 'planted';
    }); };`,
    hooks: ['greet'],
    permissions: [`fs:write:${s}`, `fs:read:${path.join(a, '1')}`],
  });
  w.writePlugin('reader', {
    code: `exports.activate = (host) => { host.hook('pick', () => require('fs').readFileSync(${JSON.stringify(path.join(a, '1', 'cmdline'))}, 'utf8')); };`,
    hooks: ['pick'],
    permissions: [`fs:read:${path.join(a, '1')}`],
  });
  await w.trust('writer', { permissions: [`fs:write:${s}`] });
  await w.trust('reader', { permissions: [`fs:read:${s}`] });
  await w.publish();
  const host = w.host({ hooks: [{ name: 'greet', mode: 'parallel' }, { name: 'pick', mode: 'first' }], loading: 'lazy', allowDegradedLimits: !isRoot });
  t.teardown(() => host.close());
  await host.start();
  await host.load('writer');
  const planted = await host.invoke('greet', []);
  t.same(planted.values, ['planted'], JSON.stringify(planted.errors));
  t.ok(fs.lstatSync(a).isSymbolicLink(), 'the writer replaced S/a with a symlink to /proc');

  // Another plugin, granted S/a.
  let leaked: unknown;
  try {
    await host.load('reader');
    leaked = (await host.invoke('pick', [])).value;
  } catch (e) {
    const err = e as { code?: string; message: string };
    t.equal(err.code, 'ERR_PLUGIN_LOAD');
    t.match(err.message, `'${a}' is a symlink`, 'the refusal names the component');
    t.match(err.message, /real path/, 'and says what to do');
  }
  t.not(leaked, hostInit, "the host's /proc is not visible to the reader");
  t.equal(leaked, undefined, 'the reader did not run');

  // The writer's own next start.
  let relaunched = true;
  await host.reload('writer').catch((e: Error) => {
    relaunched = false;
    t.match(e.message, `'${a}' is a symlink`);
  });
  t.notOk(relaunched, "the writer's next start does not bind through its own symlink");
});

t.test('permission coverage compares locations: non-normal forms and symlinked paths do not sneak past', async (t) => {
  const base = fs.mkdtempSync(path.join(os.tmpdir(), 'warden-perm-'));
  t.teardown(() => fs.rmSync(base, { recursive: true, force: true }));
  fs.mkdirSync(path.join(base, 'a'));
  fs.mkdirSync(path.join(base, 'b'));
  fs.symlinkSync('/etc', path.join(base, 'a', 'etc'));
  const grant = [`fs:read:${base}/a`];
  for (const form of [`${base}/a/../b`, `/${base}//a`, `${base}/a/`, `${base}/a/./x`]) {
    t.throws(() => decidePermissions('p', [parsePermission(`fs:read:${form}`)], grant), /not a normalized path/, `'${form}' is refused`);
    t.throws(() => decidePermissions('p', [{ kind: 'fs:read', path: `${base}/a` }], [`fs:read:${form}`]), { code: 'ERR_PLUGIN_PERMISSION' }, `a grant of '${form}' is refused`);
  }
  t.throws(() => decidePermissions('p', [parsePermission(`fs:read:${base}/a/etc`)], grant), { code: 'ERR_PLUGIN_PERMISSION', message: new RegExp(`'${base}/a/etc' is a symlink \\(to '/etc'\\).*real path`) });
  t.throws(() => decidePermissions('p', [parsePermission(`fs:read:${base}/a/etc/passwd`)], grant), { code: 'ERR_PLUGIN_PERMISSION', message: /is a symlink/ });
  t.doesNotThrow(() => decidePermissions('p', [parsePermission(`fs:read:${base}/a`)], grant));
});

t.test('without openat2 (a host seccomp answers ENOSYS) the O_PATH|O_NOFOLLOW walk refuses the same', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'warden-noopenat2-'));
  fs.chmodSync(dir, 0o755);
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const wrapper = path.join(dir, 'no-openat2');
  execFileSync('cc', ['-O2', '-Wall', '-o', wrapper, path.join(__dirname, '..', '..', '..', 'test', 'fixtures', 'no-openat2.c')], { stdio: 'inherit' });
  const s = shared(t);
  fs.mkdirSync(path.join(s, 'real'), { mode: 0o755 });
  fs.writeFileSync(path.join(s, 'real', 'f'), 'real file\n', { mode: 0o644 });
  fs.symlinkSync('/etc', path.join(s, 'e'));
  const priv = privateDir(t);
  const sandbox = path.join(__dirname, '..', '..', 'lib', 'sandbox', 'sandbox.js');
  const script = `
    const { Sandbox } = require(${JSON.stringify(sandbox)});
    const out = {};
    const tries = {
      real: [{ source: ${JSON.stringify(path.join(s, 'real'))}, target: '/x' }],
      link: [{ source: ${JSON.stringify(path.join(s, 'e'))}, target: '/x' }],
      under: [{ source: ${JSON.stringify(path.join(s, 'e', 'ssl'))}, target: '/x' }],
      private: [{ source: ${JSON.stringify(path.join(priv, 'inner'))}, target: '/x' }],
      target: [{ source: ${JSON.stringify(s)}, target: '/data' }, { source: ${JSON.stringify(path.join(s, 'real'))}, target: '/data/e/x' }],
    };
    (async () => {
      for (const [name, binds] of Object.entries(tries)) {
        try {
          const sb = Sandbox.spawn({ command: ['/bin/cat', '/x/f'], binds, stdio: ['ignore', 'pipe', 'ignore'] });
          let text = '';
          const drained = new Promise((resolve) => sb.stdout.setEncoding('utf8').on('data', (d) => (text += d)).on('end', resolve));
          await Promise.all([sb.exited, drained]);
          out[name] = 'ran: ' + text;
        } catch (e) {
          out[name] = e.stage + ' ' + e.errnoName;
        }
      }
      out.seccomp = /^Seccomp:\\s+(\\d)/m.exec(require('fs').readFileSync('/proc/self/status', 'utf8'))[1];
      console.log(JSON.stringify(out));
    })();`;
  const r = spawnSync(wrapper, [process.execPath, '-e', script], { encoding: 'utf8' });
  t.equal(r.status, 0, r.stderr);
  const out = JSON.parse(r.stdout) as Record<string, string>;
  t.equal(out.seccomp, '2', 'the host process runs under the filter that hides openat2');
  t.equal(out.real, 'ran: real file\n', 'a real path is bound');
  t.equal(out.link, 'bind-source ELOOP', 'a symlink as the last component is refused');
  t.equal(out.under, 'bind-source ELOOP', 'a symlink in the middle is refused');
  rootOnly(t, 'a path inside a 0700 root directory is refused', 'an unprivileged host binds as itself', () => t.equal(out.private, 'bind-source EACCES', 'a path inside a 0700 root directory is refused'));
  t.equal(out.target, 'mount-target ELOOP', 'a target through a symlink is refused');
});
