/**
 * fds, parent death, setup failures: what must never leak or half-happen.
 */
import t from 'tap';
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Sandbox } from '../lib/sandbox/sandbox';
import { SandboxSetupError } from '../lib/sandbox/errors';
import { isRoot, sh } from './helpers/sandbox';
import { reachablePackage } from './helpers/reachable';

const SECCOMP = {}; // the default profile
const index = path.join(__dirname, '..', 'lib', 'index.js');

t.test('no fd of the host leaks in, not even one without close-on-exec', async (t) => {
  // A host process that holds fd 3 without close-on-exec (stdio inheritance gives exactly that).
  const script = `
    const { Sandbox } = require(${JSON.stringify(index)});
    const sb = Sandbox.spawn({ command: ['/bin/sh', '-c', 'ls /proc/self/fd | sort -n | tr "\\\\n" " "'], seccomp: 'none', stdio: ['ignore', 'inherit', 'inherit'] });
    sb.exited.then((r) => process.exit(r.code));`;
  const leaked = fs.openSync(__filename, 'r');
  const r = spawnSync(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'pipe', leaked], encoding: 'utf8' });
  fs.closeSync(leaked);
  t.equal(r.status, 0, r.stderr);
  // 0-2, and the fd ls uses to read the directory.
  t.equal(r.stdout.trim(), '0 1 2 3', 'only stdio (and ls\'s own directory fd)');
  const host = spawnSync(process.execPath, ['-e', 'console.log(require("fs").readdirSync("/proc/self/fd").join(" "))'], { stdio: ['ignore', 'pipe', 'pipe', fs.openSync(__filename, 'r')], encoding: 'utf8' });
  t.match(host.stdout, /\b3\b/, 'control: the host process did hold fd 3');
});

t.test('fds passed explicitly arrive at their target numbers', async (t) => {
  const file = path.join(os.tmpdir(), `warden-fd-${process.pid}`);
  fs.writeFileSync(file, 'passed-in');
  t.teardown(() => fs.rmSync(file, { force: true }));
  const fd = fs.openSync(file, 'r');
  const r = await sh('cat <&7; echo; ls /proc/self/fd | sort -n | tr "\\n" " "', { fds: [{ fd, target: 7 }], ...SECCOMP });
  fs.closeSync(fd);
  const [content, fds] = r.stdout.split('\n');
  t.equal(content, 'passed-in');
  t.equal(fds.trim(), '0 1 2 3 7');
});

t.test('the sandbox dies with its host process', async (t) => {
  const script = `
    const { Sandbox } = require(${JSON.stringify(index)});
    const sb = Sandbox.spawn({ command: ['/bin/sleep', '1000'], seccomp: 'none' });
    console.log(sb.pid);`;
  const host = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  const pid = await new Promise<number>((resolve) => host.stdout!.once('data', (d: Buffer) => resolve(Number(d.toString().trim()))));
  t.ok(fs.existsSync(`/proc/${pid}`), 'the sandbox runs');
  host.kill('SIGKILL');
  await new Promise((r) => host.once('exit', r));
  let gone = false;
  for (let i = 0; i < 200 && !gone; i++) {
    // A zombie reaped by init counts as gone once /proc/<pid> disappears or shows state Z.
    try {
      gone = /^State:\s+Z/m.test(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    } catch {
      gone = true;
    }
    if (!gone) await new Promise((r) => setTimeout(r, 10));
  }
  t.ok(gone, 'the sandbox died with its host');
});

t.test('setup failures are SandboxSetupError with stage and errno; the command never runs', async (t) => {
  const err = (fn: () => unknown) => {
    try {
      fn();
    } catch (e) {
      return e as SandboxSetupError;
    }
    throw new Error('expected a throw');
  };
  const e1 = err(() => Sandbox.spawn({ command: ['/no/such/program'], ...SECCOMP }));
  t.type(e1, SandboxSetupError);
  t.equal(e1.code, 'ERR_SANDBOX_SETUP');
  t.equal(e1.stage, 'exec');
  t.equal(e1.errnoName, 'ENOENT');
  t.equal(e1.entry, 'command[0]');
  t.match(e1.message, /for command\[0\]: '\/no\/such\/program'; the path must exist inside the sandbox.*bind it/, 'names the command and what to bind');

  const e2 = err(() => Sandbox.spawn({ command: ['/bin/true'], cwd: '/nowhere', ...SECCOMP }));
  t.equal(e2.stage, 'chdir');
  t.equal(e2.errnoName, 'ENOENT');

  const e3 = err(() => Sandbox.spawn({ command: ['/bin/true'], tmpfs: [{ target: '/usr/lib/x' }], ...SECCOMP }));
  t.equal(e3.stage, 'mkdir', 'a mount point under a read-only bind');
  t.equal(e3.entry, 'tmpfs[0]');

  // The marker file would exist if any part of the command ran.
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'warden-never-'));
  fs.chmodSync(dir, 0o777);
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  err(() => Sandbox.spawn({ command: ['/bin/sh', '-c', 'touch /out/ran'], binds: [{ source: dir, target: '/out', writable: true }], cwd: '/missing', ...SECCOMP }));
  t.notOk(fs.existsSync(path.join(dir, 'ran')), 'the command never ran');
});

t.test('PATH search inside the sandbox', async (t) => {
  const r = await sh('echo ok', { env: { PATH: '/nonexistent:/bin' }, ...SECCOMP });
  t.equal(r.stdout, 'ok\n');
  const r2 = await (await import('./helpers/sandbox')).run({ command: ['echo', 'found'], ...SECCOMP });
  t.equal(r2.stdout, 'found\n');
});

t.test('an unprivileged caller gets the same isolation through a user namespace', { skip: !isRoot && 'already unprivileged: the whole suite is the unprivileged run' }, async (t) => {
  const setpriv = ['/usr/bin/setpriv', '/bin/setpriv'].find((p) => fs.existsSync(p));
  if (setpriv !== undefined && fs.realpathSync(setpriv).endsWith('busybox')) {
    t.plan(0, 'skip: setpriv here is busybox\'s, which cannot drop the inheritable capabilities');
    return;
  }
  if (setpriv === undefined) {
    t.plan(0, 'skip: setpriv (util-linux) is not installed');
    return;
  }
  // The checkout may sit where uid 1000 cannot go (a 0700 directory): load a copy it can reach.
  const reachable = reachablePackage();
  if (reachable.skip !== undefined) {
    t.plan(0, reachable.skip);
    return;
  }
  const script = `
    const { Sandbox } = require(${JSON.stringify(path.join(reachable.root, 'dist', 'lib', 'index.js'))});
    const sb = Sandbox.spawn({ command: ['/bin/sh', '-c', 'id -u; echo $$; hostname; grep -E "^(CapEff|CapBnd|NoNewPrivs)" /proc/self/status; cat /proc/net/dev | tail -n +3 | cut -d: -f1; touch /usr/x 2>&1'], seccomp: 'none', stdio: ['ignore', 'inherit', 'inherit'] });
    sb.exited.then((r) => process.exit(r.code));`;
  // `env -i`: the test runner adds its preloads to every child's environment (NODE_OPTIONS, even
  // over an explicit env), and those live in the checkout, which uid 1000 may not be able to reach.
  const env = ['/usr/bin/env', '-i', `PATH=${process.env.PATH ?? '/usr/bin:/bin'}`];
  const r = spawnSync(setpriv, ['--reuid=1000', '--regid=1000', '--clear-groups', '--inh-caps=-all', ...env, process.execPath, '-e', script], { encoding: 'utf8', cwd: '/' });
  if (/Operation not permitted|uid-map|clone/.test(r.stderr) && /ERR_SANDBOX_SETUP/.test(r.stderr)) {
    t.plan(0, `skip: unprivileged user namespaces are not available here: ${r.stderr.split('\n')[0]}`);
    return;
  }
  t.equal(r.stderr, '', 'the unprivileged host ran without an error');
  const lines = r.stdout.trim().split('\n').map((l) => l.trim());
  t.equal(lines[0], '1000', 'uid inside is the caller');
  t.equal(lines[1], '1', 'pid 1');
  t.equal(lines[2], 'warden');
  t.match(r.stdout, /CapEff:\s+0000000000000000/);
  t.match(r.stdout, /CapBnd:\s+0000000000000000/);
  t.match(r.stdout, /NoNewPrivs:\s+1/);
  t.equal(lines[6], 'lo');
  t.match(r.stdout, /Read-only file system/);
});
