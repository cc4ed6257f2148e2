import t from 'tap';
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';

const bin = path.join(__dirname, '..', '..', 'bin', 'warden');
const warden = (...args: string[]) => spawnSync(bin, args, { encoding: 'utf8' });

t.test('warden run passes the exit code and prints a JSON status', async (t) => {
  const r = warden('run', '--json-status', '--hostname', 'cli', '--', '/bin/sh', '-c', 'hostname; exit 7');
  t.equal(r.status, 7);
  t.equal(r.stdout, 'cli\n');
  const lines = r.stderr.trim().split('\n').map((l) => JSON.parse(l));
  t.equal(lines[0].status, 'running');
  t.same({ status: lines[1].status, code: lines[1].code, exitStatus: lines[1].exitStatus }, { status: 'exited', code: 7, exitStatus: 7 });
});

t.test('128+n for a signal, 159 for a seccomp violation, 125 for setup errors', async (t) => {
  t.equal(warden('run', '--', '/bin/sh', '-c', 'sleep 5 & kill -9 $!; wait $!; exit $?').status, 137, 'the shell reports its child\'s SIGKILL as 137');
  const v = warden('run', '--', 'unshare', '-U', 'true');
  t.equal(v.status, 159);
  t.match(v.stderr, /seccomp violation: syscall unshare/);
  const s = warden('run', '--chdir', '/nowhere', '--', '/bin/true');
  t.equal(s.status, 125);
  t.match(s.stderr, /stage 'chdir' \(ENOENT\)/);
});

t.test('a memory limit below what a process can start with is refused up front, with the minimum', async (t) => {
  for (const m of ['1', '4096', '32K']) {
    const r = warden('run', '--memory', m, '--', '/bin/true');
    t.equal(r.status, 125, `--memory ${m}: a setup error, not a killed warden (137)`);
    t.match(r.stderr, /^warden run: limits\.memory: is \d+ bytes, below the minimum of 1M \(1048576 bytes\).*give at least 1M\n$/, 'the minimum is stated');
  }
  t.equal(warden('run', '--memory', '1M', '--', '/bin/true').status, 0, 'the minimum itself runs /bin/true');
  const p = warden('run', '--pids', '0', '--', '/bin/true');
  t.equal(p.status, 125);
  t.match(p.stderr, /limits\.pids: must be a positive whole number/);
});

t.test('a missing command is named, with what to bind', async (t) => {
  const abs = warden('run', '--', '/no/such/cmd');
  t.equal(abs.status, 125);
  t.match(abs.stderr, /stage 'exec' \(ENOENT\) for command\[0\]: '\/no\/such\/cmd'; the path must exist inside the sandbox.*--ro-bind/);
  const byName = warden('run', '--', 'no-such-cmd');
  t.match(byName.stderr, /for command\[0\]: 'no-such-cmd' \(tried \/usr\/local\/bin\/no-such-cmd, \/usr\/bin\/no-such-cmd, \/bin\/no-such-cmd\)/, 'a PATH search says where it looked');
  const unbound = warden('run', '--no-default-binds', '--', '/bin/true');
  t.match(unbound.stderr, /for command\[0\]: '\/bin\/true'; the path must exist inside the sandbox/, 'a host program that is not bound in');
});

t.test('flags: binds, env, rlimits, namespaces, profile', async (t) => {
  const r = warden('run', '--ro-bind', '/etc/hostname', '/h', '--env', 'A=1', '--rlimit', 'nofile=77', '--share-net', '--profile', 'strict', '--', '/bin/sh', '-c', 'cat /h >/dev/null && echo $A; ulimit -n; env | grep -c =');
  t.equal(r.status, 0, r.stderr);
  const [a, nofile] = r.stdout.trim().split('\n');
  t.equal(a, '1');
  t.equal(nofile, '77');
});

t.test('bad input names the problem', async (t) => {
  for (const [args, re] of [
    [['run'], /missing command/],
    [['run', '--bogus', '--', 'true'], /unknown option '--bogus'/],
    [['run', '--rlimit', 'nofile=lots', '--', 'true'], /not a whole number/],
    [['run', '--uid', 'root', '--', 'true'], /numeric id/],
    [['run', '--ro-bind', '/no/such', '--', 'true'], /binds\[0\]\.source/],
    [['run', '--rlimit', 'bogus=1', '--', 'true'], /rlimits\.bogus: is not a resource/],
  ] as Array<[string[], RegExp]>) {
    const r = warden(...args);
    t.equal(r.status, 125, args.join(' '));
    t.match(r.stderr, re);
  }
});

t.test('warden doctor reports each namespace and the cgroup layout', async (t) => {
  const r = warden('doctor', '--json');
  const report = JSON.parse(r.stdout);
  for (const ns of ['user', 'pid', 'mount', 'net', 'ipc', 'uts', 'cgroup']) t.type(report.namespaces[ns].available, 'boolean', ns);
  t.match(report.cgroups.layout, /^(unified|hybrid|legacy|none)$/);
  // One detection: what doctor describes is the layout the limits use.
  t.equal(report.cgroups.layout, report.limits.mode, 'the layout is the one limits use');
  t.equal(report.cgroups.v2Path, report.limits.v2Mount ?? null, 'the cgroup2 mount is the one limits use');
  t.same(report.cgroups.v1Controllers, report.limits.v1Controllers, 'the v1 controllers are those limits use');
  t.ok(Array.isArray(report.findings) && report.findings.length > 0);
  t.equal(r.status, report.findings.some((f: { level: string }) => f.level === 'refused') ? 1 : 0);
});
