/**
 * Each isolation property, asserted from inside a sandbox.
 */
import t from 'tap';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Sandbox } from '../lib/sandbox/sandbox';
import { DEFAULT_HOST_ID_RANGE, HostIdsExhaustedError } from '../lib/sandbox/ids';
import { RUN_DEADLINE_MS, isRoot, rootOnly, sh, waitUntil, within } from './helpers/sandbox';

const SECCOMP = {}; // the default profile

const inDefaultRange = (id: number) => id >= DEFAULT_HOST_ID_RANGE.first && id < DEFAULT_HOST_ID_RANGE.first + DEFAULT_HOST_ID_RANGE.count;
const hostIds = (pid: number) => {
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  return { uid: Number(/^Uid:\s+(\d+)/m.exec(status)![1]), gid: Number(/^Gid:\s+(\d+)/m.exec(status)![1]) };
};

t.test('identity: unprivileged uid/gid inside, and the host sees an unprivileged uid', async (t) => {
  const sb = Sandbox.spawn({ command: ['/bin/sh', '-c', 'id -u; id -g; id -G; read x'], stdio: ['pipe', 'pipe', 'inherit'], ...SECCOMP });
  // A failed wait below must not leave it reading stdin: that would keep this file alive until tap's timeout.
  t.teardown(() => sb.kill());
  let out = '';
  sb.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d));
  await waitUntil(() => out.split('\n').length >= 4, RUN_DEADLINE_MS, () => `its three id lines (so far: ${JSON.stringify(out)})`);
  const status = fs.readFileSync(`/proc/${sb.pid}/status`, 'utf8');
  const hostUid = Number(/^Uid:\s+(\d+)/m.exec(status)![1]);
  const hostGid = Number(/^Gid:\s+(\d+)/m.exec(status)![1]);
  sb.stdin!.end('\n');
  await within(sb.exited, RUN_DEADLINE_MS, 'the sandbox to exit');
  const [uid, gid, groups] = out.trim().split('\n');
  if (isRoot) {
    t.equal(uid, '65534', 'uid inside');
    t.equal(gid, '65534', 'gid inside');
    t.equal(groups, '65534', 'no supplementary groups (host root group dropped)');
    t.ok(inDefaultRange(hostUid), `host uid ${hostUid} is from the host id range, not root`);
    t.equal(hostGid, hostUid, 'host gid: the same number');
    t.notOk(fs.readFileSync('/etc/passwd', 'utf8').split('\n').some((l) => l.split(':')[2] === String(hostUid)), 'no /etc/passwd user has it');
  } else {
    t.equal(Number(uid), process.getuid!(), 'uid inside is the caller');
    t.equal(hostUid, process.getuid!(), 'host uid is the caller');
  }
  t.not(hostUid, 0);
});

t.test('chosen inside uid maps to the unprivileged host uid', { skip: !isRoot && 'needs root to map an arbitrary uid' }, async (t) => {
  const r = await sh('id -u; cat /proc/self/uid_map', { uid: 0, gid: 0, ...SECCOMP });
  const [uid, map] = r.stdout.trim().split('\n');
  t.equal(uid, '0');
  const m = /^0\s+(\d+)\s+1$/.exec(map.trim());
  t.ok(m !== null && inDefaultRange(Number(m[1])), `inside 0 is host ${m?.[1]}, from the host id range`);
});

t.test('host ids: distinct per live sandbox, given back at exit, refused clearly when the range is used up', { skip: !isRoot && 'needs root: unprivileged sandboxes map to the caller' }, async (t) => {
  // A range of three, far from the default one, for this test alone.
  const range = { first: 0x7ffd0000 + (process.pid % 1000) * 4, count: 3 };
  const spawn = () => Sandbox.spawn({ command: ['/bin/sh', '-c', 'read x'], stdio: ['pipe', 'ignore', 'ignore'], hostIds: range });
  // Failed spawns give their id back: a setup failure, a bad option, a bad stdio.
  for (let i = 0; i < 4; i++) {
    t.throws(() => Sandbox.spawn({ command: ['/no/such/program'], hostIds: range }), { stage: 'exec' } as never);
    t.throws(() => Sandbox.spawn({ command: ['/bin/true'], hostIds: range, tmpSize: 'huge' }), { field: 'tmpSize' } as never);
    t.throws(() => Sandbox.spawn({ command: ['/bin/true'], hostIds: range, stdio: ['pipe'] as never }), { field: 'stdio' } as never);
  }
  const running = [spawn(), spawn(), spawn()];
  t.teardown(() => running.forEach((sb) => sb.kill()));
  const ids = running.map((sb) => hostIds(sb.pid));
  t.equal(new Set(ids.map((i) => i.uid)).size, 3, `three live sandboxes, three host uids (${ids.map((i) => i.uid).join(', ')})`);
  t.ok(ids.every((i) => i.uid >= range.first && i.uid < range.first + range.count && i.gid === i.uid), 'each from the range, gid = uid');
  t.throws(spawn, HostIdsExhaustedError, 'a fourth is refused');
  t.throws(spawn, { code: 'ERR_HOST_IDS_EXHAUSTED', message: new RegExp(`no free host uid in ${range.first}-${range.first + 2}.*wider range`) }, 'naming the range and what to do');
  running[1].stdin!.end('\n');
  await within(running[1].exited, RUN_DEADLINE_MS, 'the second sandbox to exit');
  const again = spawn();
  t.teardown(() => again.kill());
  t.equal(hostIds(again.pid).uid, ids[1].uid, 'the id of the one that exited is handed out again');
  for (const sb of [...running, again]) sb.stdin!.end('\n');
  await within(Promise.all([...running, again].map((sb) => sb.exited)), RUN_DEADLINE_MS, 'the four sandboxes to exit');
  t.throws(() => Sandbox.spawn({ command: ['/bin/true'], hostIds: { first: 65000, count: 1000 } }), { code: 'ERR_INVALID_OPTION', field: 'hostIds' }, 'a range with nobody (65534) in it is refused');
});

t.test('hostname is the sandbox\'s own', async (t) => {
  t.equal((await sh('hostname', SECCOMP)).stdout.trim(), 'warden');
  t.equal((await sh('hostname', { hostname: 'plug-1', ...SECCOMP })).stdout.trim(), 'plug-1');
  t.not(os.hostname(), 'plug-1');
});

t.test('PID namespace: the sandbox sees only its own processes, as pid 1', async (t) => {
  const r = await sh('echo $$; ls /proc | grep -E "^[0-9]+$" | sort -n | tr "\\n" " "', SECCOMP);
  const [self, pids] = r.stdout.trim().split('\n');
  t.equal(self, '1', 'the command is pid 1');
  const list = pids.trim().split(' ').map(Number);
  t.ok(list.length <= 6, `only the sandbox's processes are visible: ${pids}`);
  t.ok(list.every((p) => p < 10), 'no host pids');
});

t.test('network namespace: only lo, and down', async (t) => {
  const r = await sh('cat /proc/net/dev', SECCOMP);
  const ifaces = r.stdout.split('\n').slice(2).map((l) => l.split(':')[0].trim()).filter(Boolean);
  t.same(ifaces, ['lo']);
});

t.test('shareNet keeps the host network', async (t) => {
  const r = await sh('cat /proc/net/dev | wc -l', { shareNet: true, ...SECCOMP });
  const hostLines = fs.readFileSync('/proc/net/dev', 'utf8').trim().split('\n').length;
  t.equal(Number(r.stdout.trim()), hostLines);
});

t.test('filesystem: host files invisible, root and binds read-only, /tmp private', async (t) => {
  const secret = fs.mkdtempSync(path.join(os.tmpdir(), 'warden-secret-'));
  fs.writeFileSync(path.join(secret, 'key'), 'hunter2');
  t.teardown(() => fs.rmSync(secret, { recursive: true, force: true }));
  const r = await sh(
    `ls -A /tmp | wc -l; cat ${secret}/key 2>&1; ls /home /root /etc/passwd /etc/shadow 2>&1 | wc -l; ` +
      'touch /usr/x 2>&1; touch /newfile 2>&1; touch /tmp/ok && echo tmp-writable',
    SECCOMP,
  );
  const lines = r.stdout.split('\n');
  t.equal(lines[0], '0', 'a fresh /tmp');
  t.match(lines[1], /No such file/, 'host /tmp content invisible');
  t.match(r.stdout, /(cannot touch .)?\/usr\/x.?: Read-only file system/);
  t.match(r.stdout, /(cannot touch .)?\/newfile.?: Read-only file system/);
  t.match(r.stdout, /tmp-writable/);
  t.notOk(fs.existsSync('/usr/x'));
});

t.test('binds: read-only by default, writable when asked, the host sees writes', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'warden-bind-'));
  fs.chmodSync(dir, 0o777);
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const ro = await sh('echo x > /data/f 2>&1 || echo refused', { binds: [{ source: dir, target: '/data' }], ...SECCOMP });
  t.match(ro.stdout + ro.stderr, /Read-only file system/);
  t.notOk(fs.existsSync(path.join(dir, 'f')));
  const rw = await sh('echo written > /data/f', { binds: [{ source: dir, target: '/data', writable: true }], ...SECCOMP });
  t.equal(rw.code, 0, rw.stderr);
  t.equal(fs.readFileSync(path.join(dir, 'f'), 'utf8'), 'written\n');
});

t.test('mounts are nosuid and nodev (device nodes excepted), /tmp size-limited', async (t) => {
  const r = await sh('cat /proc/self/mounts', SECCOMP);
  const mounts = r.stdout.trim().split('\n').map((l) => l.split(' '));
  t.ok(mounts.length >= 5);
  for (const [, target, , opts] of mounts) {
    const o = opts.split(',');
    t.ok(o.includes('nosuid'), `${target} is nosuid`);
    if (!/^\/dev\/(null|zero|full|random|urandom)$/.test(target)) t.ok(o.includes('nodev'), `${target} is nodev`);
  }
  const full = await sh('dd if=/dev/zero of=/tmp/big bs=1024 count=4096 2>&1; echo rc=$?', { tmpSize: '2M', ...SECCOMP });
  t.match(full.stdout, /No space left on device/);
  t.match(full.stdout, /rc=1/);
});

t.test('/dev holds only the harmless devices', async (t) => {
  const r = await sh('ls -A /dev | sort | tr "\\n" " "; echo; echo x > /dev/null && head -c 8 /dev/urandom | wc -c; touch /dev/new 2>&1', SECCOMP);
  const [listing, random] = r.stdout.split('\n');
  t.equal(listing.trim(), 'fd full null random stderr stdin stdout urandom zero');
  t.equal(random.trim(), '8', 'urandom readable, null writable');
  t.match(r.stdout, /\/dev\/new.?: Read-only file system/, 'nothing can be added to /dev');
});

t.test('binds are resolved at every spawn: a file replaced on the host is what the next sandbox sees', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'warden-rebind-'));
  fs.chmodSync(dir, 0o755);
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  fs.writeFileSync(path.join(dir, 'conf'), 'one\n');
  const binds = [{ source: path.join(dir, 'conf'), target: '/etc/conf' }, { source: dir, target: '/data' }];
  t.equal((await sh('cat /etc/conf; ls /data', { binds, ...SECCOMP })).stdout, 'one\nconf\n');
  // As ldconfig replaces /etc/ld.so.cache: a new file renamed over the old one.
  fs.writeFileSync(path.join(dir, 'conf.new'), 'two\n');
  fs.renameSync(path.join(dir, 'conf.new'), path.join(dir, 'conf'));
  fs.writeFileSync(path.join(dir, 'added'), '');
  t.equal((await sh('cat /etc/conf; ls /data', { binds, ...SECCOMP })).stdout, 'two\nadded\nconf\n');
});

t.test('/tmp and tmpfs mounts belong to the sandbox\'s ids; mount points beneath them are each sandbox\'s own', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'warden-under-'));
  fs.chmodSync(dir, 0o755);
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  fs.writeFileSync(path.join(dir, 'f'), 'x\n');
  const r = await sh('id -u; stat -c %u /tmp /scratch; ls /tmp; cat /tmp/in/f; touch /scratch/ok && echo scratch-writable', {
    binds: [{ source: dir, target: '/tmp/in' }], tmpfs: [{ target: '/scratch' }], ...SECCOMP,
  });
  const [uid, tmpOwner, scratchOwner, ...rest] = r.stdout.trim().split('\n');
  t.equal(tmpOwner, uid, '/tmp belongs to the sandbox uid');
  t.equal(scratchOwner, uid, 'a tmpfs belongs to the sandbox uid');
  t.same(rest, ['in', 'x', 'scratch-writable'], 'a bind beneath /tmp is there, in a fresh /tmp');
  await rootOnly(t, 'with uid 0 inside, /tmp is 0:0 inside', 'an unprivileged host maps only its own uid', async () => {
    const r0 = await sh('stat -c %u:%g /tmp; id -u', { uid: 0, gid: 0, ...SECCOMP });
    t.same(r0.stdout.trim().split('\n'), ['0:0', '0'], 'with uid 0 inside, /tmp is 0:0 inside');
  });
  t.notOk(fs.existsSync(path.join(dir, 'in')), 'nothing was created on the host');
});

t.test('tmpfs made ahead for the next spawn are still each sandbox\'s own and empty', async (t) => {
  const opts = { tmpfs: [{ target: '/scratch' }], ...SECCOMP };
  // The first one writes into both and stays; those spawned meanwhile and after it see neither file.
  const first = Sandbox.spawn({ command: ['/bin/sh', '-c', 'echo a > /tmp/mark; echo a > /scratch/mark; echo ready; read x'], stdio: ['pipe', 'pipe', 'inherit'], ...opts });
  t.teardown(() => first.kill());
  let out = '';
  first.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d));
  await waitUntil(() => out.includes('ready'), RUN_DEADLINE_MS, 'the first sandbox to say ready');
  const look = 'ls -A /tmp /scratch | tr -d "\n"; echo; stat -f -c %i /tmp /scratch | tr "\n" " "';
  const during = [await sh(look, opts), await sh(look, opts)];
  first.stdin!.end('\n');
  t.same(await within(first.exited, RUN_DEADLINE_MS, 'the first sandbox to exit'), { code: 0, signal: null, violation: null });
  const after = await sh(look, opts);
  for (const [i, r] of [...during, after].entries()) t.equal(r.stdout.split('\n')[0], '/scratch:/tmp:', `sandbox ${i + 2} has an empty /tmp and /scratch`);
  const ids = [...during, after].map((r) => r.stdout.split('\n')[1]);
  t.equal(new Set(ids).size, ids.length, `each has filesystems of its own (${ids.join('| ')})`);
});

/** Why this host cannot clone a prepared root ('' when it can); `warden doctor` prints the same. */
function noPreparedRoot(): string {
  if (!isRoot) return 'an unprivileged host builds the root per spawn';
  const { buildPlan } = require('../lib/sandbox/plan') as typeof import('../lib/sandbox/plan');
  const set = buildPlan({ command: ['/bin/true'] }).plan.mountSet!;
  return set.templateNamespace ? '' : `this kernel cannot serve a prepared root: ${set.noTemplateReason}`;
}

t.test('a mount list is prepared once; the sandbox sees no host mount besides its binds', async (t) => {
  const { buildPlan } = await import('../lib/sandbox/plan');
  const a = buildPlan({ command: ['/bin/true'] }).plan.mountSet!;
  const b = buildPlan({ command: ['/bin/echo'], env: { PATH: '/bin' } }).plan.mountSet!;
  t.equal(a, b, 'the same mount list is prepared once');
  const r = await sh('cat /proc/self/mountinfo', SECCOMP);
  const targets = r.stdout.trim().split('\n').map((l) => l.split(' ')[4]);
  // What the plan mounts: the default system binds (which differ between hosts), /proc, the devices, /tmp.
  const planned = new Set(buildPlan({ command: ['/bin/true'] }).mountDescriptions.map((d) => d.text.split(' ').pop()));
  t.ok(planned.has('/usr') && planned.has('/tmp'), 'the planned targets are known');
  t.same(targets.filter((p) => p !== '/' && !planned.has(p)), [], 'no mount of the host besides the planned ones');
  const why = noPreparedRoot();
  t.test('a root host clones its sandboxes from a template mount namespace', { skip: why !== '' && why }, async (t) => {
    t.equal(a.noTemplateReason, '');
    t.equal(a.template, true, 'the template root is used');
    t.equal(a.templateNamespace, true, 'sandboxes are cloned from the template namespace');
  });
});

t.test('prepared mount lists are bounded and released: their fds do not pile up', { skip: noPreparedRoot() || false }, async (t) => {
  const { releasePreparedMounts } = await import('../lib/sandbox/plan');
  const fdCount = () => fs.readdirSync('/proc/self/fd').length;
  releasePreparedMounts();
  const before = fdCount();
  // 80 distinct lists (more than the 64 kept): each evicted one closes its template at once.
  for (let i = 0; i < 80; i++) await sh('true', { tmpfs: [{ target: `/scratch${i}` }], ...SECCOMP });
  const held = fdCount() - before;
  t.ok(held > 0, `prepared lists hold fds (${held})`);
  // Plus what was made ahead for the list launched last (its /tmp, its one tmpfs and a status
  // socket pair), which only that list keeps.
  // As root, also the lock of the block of host ids the sandboxes were given ids from.
  t.ok(held <= 64 * 2 + 4 + (isRoot ? 1 : 0), `at most two fds (template root and namespace) per kept list, four spares and a host id block's lock (${held})`);
  releasePreparedMounts();
  t.equal(fdCount(), before, 'releasePreparedMounts closes them all');
  t.equal((await sh('echo again', SECCOMP)).stdout, 'again\n', 'and the next spawn prepares its list again');
});

t.test('capabilities all empty, no_new_privs set, no controlling tty', async (t) => {
  const r = await sh('grep -E "^(Cap|NoNewPrivs|Seccomp:)" /proc/self/status; cat /proc/self/stat', SECCOMP);
  t.match(r.stdout, /Seccomp:\s+2/, 'the default profile is installed');
  for (const set of ['CapInh', 'CapPrm', 'CapEff', 'CapBnd', 'CapAmb']) {
    t.match(r.stdout, new RegExp(`${set}:\\s+0000000000000000`), `${set} is empty`);
  }
  t.match(r.stdout, /NoNewPrivs:\s+1/);
  const strict = await sh('grep -E "^Seccomp:" /proc/self/status', { seccomp: 'strict' });
  t.match(strict.stdout, /Seccomp:\s+2/, 'a seccomp filter is installed (mode 2)');
  // field 7 of /proc/self/stat is tty_nr; the process leads its own session.
  const stat = r.stdout.trim().split('\n').pop()!;
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  t.equal(fields[4], '0', 'no controlling tty');
  t.equal(fields[3], '1', 'in the session of the sandbox\'s pid 1, which called setsid');
});

t.test('environment is exactly what was given', async (t) => {
  const r = await sh('env | sort', { env: { PATH: '/usr/bin:/bin', FOO: 'bar' }, ...SECCOMP });
  t.same(r.stdout.trim().split('\n').filter((l) => l !== 'PWD=/' && !l.startsWith('SHLVL')), ['FOO=bar', 'PATH=/usr/bin:/bin']);
});

t.test('rlimits: core 0 by default, others as set', async (t) => {
  const r = await sh('ulimit -c; ulimit -n; ulimit -Hn', { rlimits: { nofile: { soft: 64, hard: 128 } }, ...SECCOMP });
  t.same(r.stdout.trim().split('\n'), ['0', '64', '128']);
});

t.test('stdin and stdout pipes carry data', async (t) => {
  const { run } = await import('./helpers/sandbox');
  const r = await run({ command: ['/bin/cat'], ...SECCOMP }, 'through the sandbox');
  t.equal(r.stdout, 'through the sandbox');
  t.equal(r.code, 0);
});

t.test('exit codes and signals come back', async (t) => {
  t.equal((await sh('exit 42', SECCOMP)).code, 42);
  const killed = await sh('kill -SEGV $$; sleep 5', SECCOMP);
  // pid 1 ignores signals it does not handle, even its own SEGV sent by kill: it goes on to exit 0.
  t.equal(killed.code, 0);
  const sb = Sandbox.spawn({ command: ['/bin/sleep', '100'], ...SECCOMP });
  t.equal(sb.kill(), true);
  const r = await within(sb.exited, RUN_DEADLINE_MS, 'the killed sandbox to be reaped');
  t.equal(r.signal, 'SIGKILL');
  t.equal(sb.kill(), false, 'kill after exit says so');
});

t.test('when pid 1 exits, everything in the sandbox dies', async (t) => {
  const marker = `${Math.floor(Math.random() * 1e6) + 1000}.25`;
  const r = await sh(`sleep ${marker} & echo started`, SECCOMP);
  t.equal(r.stdout.trim(), 'started');
  await new Promise((res) => setTimeout(res, 100));
  const survivors = fs.readdirSync('/proc').filter((p) => /^\d+$/.test(p)).filter((p) => {
    try {
      return fs.readFileSync(`/proc/${p}/cmdline`, 'utf8').includes(marker);
    } catch {
      return false;
    }
  });
  t.same(survivors, [], 'the backgrounded sleep is gone');
});

t.test('cgroup namespace: the sandbox sees its own cgroup as the root', async (t) => {
  const host = fs.readFileSync('/proc/self/cgroup', 'utf8');
  const r = await sh('cat /proc/self/cgroup', SECCOMP);
  const paths = r.stdout.trim().split('\n').map((l) => l.split(':').slice(2).join(':'));
  t.ok(paths.length > 0);
  t.ok(paths.every((p) => p === '/'), `every hierarchy shows / inside (host: ${host.trim().split('\n').length} lines)`);
});
