// Option parsing and layout detection: pure functions, plus what this host's kernel says.
import t from 'tap';
import * as fs from 'node:fs';
import { parseCpu, parseDuration, parseSize, resolveLimits, detectLayout, hostLayout, discoverOwnCgroups } from '../lib/limits';
import { parseMountinfo } from '../lib/limits/layout';
import { parseProcCgroup } from '../lib/limits/discover';
import { InvalidOptionError } from '../lib/errors';

t.test('sizes', async (t) => {
  t.equal(parseSize('m', '256M'), 256 * 1024 * 1024);
  t.equal(parseSize('m', '1.5g'), 1.5 * 1024 ** 3);
  t.equal(parseSize('m', '4096'), 4096);
  t.equal(parseSize('m', '64KiB'), 65536);
  t.equal(parseSize('m', 1000), 1000);
  for (const bad of ['12X', '', '-1M', 'M', '0', 0, 1.5]) {
    t.throws(() => parseSize('memory', bad as string), { code: 'ERR_INVALID_OPTION', field: 'memory' }, `refuses ${JSON.stringify(bad)}`);
  }
});

t.test('durations', async (t) => {
  t.equal(parseDuration('d', '10s'), 10_000);
  t.equal(parseDuration('d', '500ms'), 500);
  t.equal(parseDuration('d', '1.5s'), 1500);
  t.equal(parseDuration('d', '2m'), 120_000);
  t.equal(parseDuration('d', 250), 250);
  for (const bad of ['10', '10x', '', '-1s', '0s', '30d']) {
    t.throws(() => parseDuration('timeout', bad), InvalidOptionError, `refuses ${JSON.stringify(bad)}`);
  }
  t.throws(() => parseDuration('timeout', '1000h'), /24 days/);
});

t.test('cpu', async (t) => {
  t.equal(parseCpu('c', '0.5'), 0.5);
  t.equal(parseCpu('c', '50%'), 0.5);
  t.equal(parseCpu('c', 2), 2);
  t.throws(() => parseCpu('cpu', '0.001'), /at least 0.01/);
  t.throws(() => parseCpu('cpu', 'half'), InvalidOptionError);
});

t.test('resolveLimits validates every field and refuses unknown ones', async (t) => {
  t.throws(() => resolveLimits({ memory: 4096 }), { code: 'ERR_INVALID_OPTION', field: 'limits.memory', message: /below the minimum of 1M/ }, 'below 1M: refused (a sandbox could not start, and too little for its setup kills the host)');
  t.equal(resolveLimits({ memory: '1M' }).memory, 1024 * 1024);
  const r = resolveLimits({ memory: '256M', pids: 64, cpu: '0.5', cpuTime: '10s', timeout: '30s' });
  t.same(r, { memory: 256 * 1024 ** 2, swap: 0, pids: 64, cpu: 0.5, cpuTime: 10_000, timeout: 30_000, io: [], allowDegraded: false, addressSpaceOverhead: 0 });
  t.throws(() => resolveLimits({ memroy: '1M' } as never), { code: 'ERR_INVALID_OPTION', field: 'limits.memroy' });
  t.throws(() => resolveLimits({ pids: 0 }), { code: 'ERR_INVALID_OPTION', field: 'limits.pids' });
  t.throws(() => resolveLimits({ swap: '1M' }), { code: 'ERR_INVALID_OPTION', field: 'limits.swap' });
  t.same(resolveLimits({ io: { device: '8:0', readBps: '1M' } }).io, [{ device: '8:0', readBps: 1048576 }]);
  t.throws(() => resolveLimits({ io: { device: '/nonexistent' } }), { code: 'ERR_INVALID_OPTION', field: 'limits.io[0].device' });
});

const HYBRID = `31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw,nsdelegate
`;

t.test('mountinfo: co-mounted controllers share a hierarchy, named ones are skipped', async (t) => {
  const m = parseMountinfo(HYBRID);
  t.equal(m.length, 5);
  const dir = t.testdir();
  const tmp = `${dir}/mountinfo`;
  fs.writeFileSync(tmp, HYBRID);
  // A base that does not exist: no statfs answer, so the mode comes from the mounts alone (the test
  // directory itself may well be a tmpfs, which would read as a v1 layout).
  const base = `${dir}/absent`;
  const l = detectLayout({ base, mountinfo: tmp });
  t.equal(l.v1.get('cpu'), l.v1.get('cpuacct'));
  t.equal(l.v1.get('cpu')?.mountPoint, '/sys/fs/cgroup/cpu,cpuacct');
  t.notOk(l.v1.has('name=systemd'));
  t.equal(l.v2?.mountPoint, '/sys/fs/cgroup/unified');
  t.equal(l.mode, 'hybrid');
  const unifiedOnly = `41 23 0:38 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n`;
  fs.writeFileSync(tmp, unifiedOnly);
  t.equal(detectLayout({ base, mountinfo: tmp }).mode, 'unified');
  fs.writeFileSync(tmp, HYBRID.split('\n').filter((l) => !l.includes('cgroup2')).join('\n'));
  t.equal(detectLayout({ base, mountinfo: tmp }).mode, 'legacy');
  t.equal(parseMountinfo('1 2 0:1 / /a\\040b rw - cgroup2 cgroup2 rw\n')[0]!.mountPoint, '/a b');
});

t.test('/proc/self/cgroup parsing', async (t) => {
  const p = parseProcCgroup('9:name=systemd:/\n4:memory:/a/b\n1:cpu,cpuacct:/\n0::/user.slice/x\n');
  t.equal(p.v2, '/user.slice/x');
  t.equal(p.v1.get('memory'), '/a/b');
  t.equal(p.v1.get('cpuacct'), '/');
  t.notOk(p.v1.has('name=systemd'));
});

t.test('this host: layout agrees with statfs, own cgroups exist', async (t) => {
  const l = hostLayout();
  const type = fs.statfsSync('/sys/fs/cgroup').type;
  t.comment(`layout: ${l.mode}; v1 controllers: ${[...l.v1.keys()].join(' ') || 'none'}; v2: ${l.v2?.mountPoint ?? 'none'}`);
  if (type === 0x63677270) t.equal(l.mode, 'unified');
  else t.not(l.mode, 'unified');
  const own = discoverOwnCgroups(l);
  if (own.v2 !== undefined) t.ok(fs.existsSync(`${own.v2}/cgroup.procs`), `own cgroup2 ${own.v2}`);
  for (const [c, d] of own.v1) t.ok(fs.existsSync(`${d}/cgroup.procs`), `own ${c} ${d}`);
});

t.test('warden run limit flags', async (t) => {
  const { takeLimitFlags } = await import('../lib/limits/cli');
  const r = takeLimitFlags(['--memory', '256M', '--pids=64', '--cpu', '0.5', '--cpu-time', '10s', '--timeout', '30s', '--', 'sh', '--memory', '1']);
  t.same(r.limits, { memory: '256M', pids: '64', cpu: '0.5', cpuTime: '10s', timeout: '30s' });
  t.same(r.rest, ['--', 'sh', '--memory', '1']);
  t.same(takeLimitFlags(['--net', 'x']), { limits: undefined, rest: ['--net', 'x'] });
  t.throws(() => takeLimitFlags(['--memory']), { code: 'ERR_INVALID_OPTION', field: '--memory' });
  t.throws(() => takeLimitFlags(['--timeout', '10']), { code: 'ERR_INVALID_OPTION', field: 'limits.timeout' });
});
