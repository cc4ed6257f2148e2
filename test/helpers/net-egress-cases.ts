/**
 * The cases of test/net-egress.test.ts, run inside the test's "host" network namespace.
 */
import t from 'tap';
import { execFileSync } from 'node:child_process';
import * as dns from 'node:dns';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { Sandbox } from '../../lib/sandbox/sandbox';
import type { SpawnOptions, Violation } from '../../lib/sandbox/types';
import type { NetworkEvent, NetworkOptions } from '../../lib/net/policy';
import { WORLD } from './net-world';
import { PluginWorld, until } from './plugins';
import { reachablePackage } from './reachable';
import { readAuditLog } from '../../lib/audit';

const root = path.join(__dirname, '..', '..', '..');
// The host's own resolver, for sandboxes whose policy names no DNS servers (the PluginHost's).
dns.setServers([WORLD.dns]);
const DNS = [WORLD.dns];

// The C program, compiled once.
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'warden-net-'));
fs.chmodSync(tmp, 0o755);
process.on('exit', () => fs.rmSync(tmp, { recursive: true, force: true }));
const attempt = path.join(tmp, 'net-attempt');
execFileSync('cc', ['-O2', '-Wall', '-o', attempt, path.join(root, 'test', 'fixtures', 'net-attempt.c')]);

// What an attacker wants on the host: a service on each closed address, answering a secret.
const SECRET = 'SECRET-of-the-host';
const secretPort = 7070;
const hostTargets = ['127.0.0.1', '::1', WORLD.hostSide, WORLD.privateAddr, WORLD.metadata, WORLD.metadata6, WORLD.alibaba, '100.64.0.1', '192.168.77.1'];
const servers: net.Server[] = [];

interface Run {
  out: string;
  code: number | null;
  events: NetworkEvent[];
  violation: Violation | null;
}

async function run(command: string[], options: Partial<SpawnOptions>): Promise<Run> {
  const events: NetworkEvent[] = [];
  const sb = Sandbox.spawn({
    command,
    binds: [{ source: attempt, target: '/opt/net-attempt' }],
    stdio: ['ignore', 'pipe', 'pipe'],
    ...options,
  });
  sb.on('network', (e) => events.push(e));
  let out = '';
  sb.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d));
  sb.stderr!.setEncoding('utf8').on('data', (d: string) => (out += d));
  const [r] = await Promise.all([sb.exited, new Promise((resolve) => sb.stdout!.on('end', resolve))]);
  return { out: out.trim(), code: r.code, events, violation: r.violation };
}

/** Node inside: connect to each target, print one line per target: target, then data or error code. */
const PROBE = `
const net = require('net');
const targets = JSON.parse(process.argv[1]);
(async () => {
  for (const [host, port] of targets) {
    const line = await new Promise((resolve) => {
      let data = '';
      const s = net.connect({ host, port, timeout: 4000 }, () => s.write('hello\\r\\n\\r\\n'));
      s.on('data', (d) => (data += d)).on('end', () => resolve(data || 'EOF'));
      s.on('timeout', () => { s.destroy(); resolve('TIMEOUT'); });
      s.on('error', (e) => resolve(e.code));
    });
    console.log(host + ' ' + port + ' ' + line);
  }
})();`;

function probe(targets: Array<[string, number]>, network: NetworkOptions | undefined, extra: Partial<SpawnOptions> = {}): Promise<Run> {
  return run([process.execPath, '-e', PROBE, JSON.stringify(targets)], { ...(network ? { network } : {}), ...extra });
}

function lines(out: string): Map<string, string> {
  const m = new Map<string, string>();
  for (const l of out.split('\n')) {
    const [h, p, ...rest] = l.split(' ');
    if (p !== undefined) m.set(`${h} ${p}`, rest.join(' '));
  }
  return m;
}

t.before(async () => {
  for (const host of hostTargets) {
    const s = net.createServer((c) => c.end(SECRET));
    await new Promise<void>((r) => s.listen({ host, port: secretPort }, r));
    servers.push(s);
    const s80 = net.createServer((c) => c.end(SECRET));
    await new Promise<void>((r) => s80.listen({ host, port: 80 }, r));
    servers.push(s80);
  }
});
t.teardown(() => {
  for (const s of servers) s.close();
});

// Numeric forms of loopback and the metadata address, as a program would write them.
const NUMERIC_LOOPBACK = ['127.0.0.1', '2130706433', '0x7f000001', '127.1', '0177.0.0.1', '::ffff:127.0.0.1', '::1', '::ffff:7f00:1'];
const CLOSED = [WORLD.hostSide, WORLD.privateAddr, '192.168.77.1', '100.64.0.1', WORLD.metadata, WORLD.alibaba, WORLD.metadata6, '::ffff:169.254.169.254', '::ffff:a9fe:a9fe', '2852039166', '0xa9fea9fe', '169.254.43518'];

t.test('control: with the host network shared (net:outbound before policies) every attack reaches the host', async (t) => {
  const targets: Array<[string, number]> = [...NUMERIC_LOOPBACK, ...CLOSED].map((h) => [h, secretPort]);
  const r = await probe(targets, undefined, { shareNet: true });
  const got = lines(r.out);
  for (const [h, p] of targets) t.equal(got.get(`${h} ${p}`), SECRET, `${h} reaches the host's service`);
});

t.test('loopback in every numeric form is the sandbox\'s own, never the host\'s', async (t) => {
  const targets: Array<[string, number]> = NUMERIC_LOOPBACK.map((h) => [h, secretPort]);
  const r = await probe(targets, { allow: ['api.test'], dnsServers: DNS });
  const got = lines(r.out);
  for (const [h, p] of targets) t.equal(got.get(`${h} ${p}`), 'ECONNREFUSED', `${h}: nothing listens on the sandbox's own loopback`);
  t.notMatch(r.out, SECRET);
});

t.test('private, CGNAT, link-local and metadata addresses are refused in every form, even with net:outbound', async (t) => {
  const targets: Array<[string, number]> = CLOSED.map((h) => [h, secretPort]);
  targets.push([WORLD.metadata, 80], [WORLD.metadata6, 80]);
  const r = await probe(targets, { outbound: true, dnsServers: DNS, maxRefusalsPerMinute: 1000 });
  const got = lines(r.out);
  for (const [h, p] of targets) t.equal(got.get(`${h} ${p}`), 'EACCES', `${h}:${p} refused with EACCES`);
  t.notMatch(r.out, SECRET);
  const refused = r.events.filter((e) => e.type === 'connect' && e.decision === 'refused');
  t.equal(refused.length, targets.length, 'each refusal is an event');
  t.ok(refused.some((e) => /metadata address/.test(e.reason ?? '')), 'the reason names the metadata class');
});

t.test('a granted name that resolves to a closed address is not answered', async (t) => {
  const targets: Array<[string, number]> = [['loop.test', secretPort], ['meta.test', 80], ['private.test', secretPort], ['mapped.test', secretPort]];
  const r = await probe(targets, { allow: ['loop.test', 'meta.test', 'private.test', 'mapped.test'], dnsServers: DNS });
  const got = lines(r.out);
  for (const [h, p] of targets) t.equal(got.get(`${h} ${p}`), 'ENOTFOUND', `${h}: no address answered`);
  t.ok(r.events.some((e) => e.type === 'dns' && e.decision === 'refused' && /address in the answer/.test(e.reason ?? '')), 'the dropped answer is reported');
});

t.test('an explicit IP or CIDR grant opens a private address; a name grant never does', async (t) => {
  const r = await probe([[WORLD.privateAddr, secretPort], ['192.168.77.1', secretPort]], { allow: [`${WORLD.privateAddr}/32:${secretPort}`], dnsServers: DNS });
  const got = lines(r.out);
  t.equal(got.get(`${WORLD.privateAddr} ${secretPort}`), SECRET, 'granted by IP');
  t.equal(got.get(`192.168.77.1 ${secretPort}`), 'EACCES', 'the neighbour is not');
});

t.test('DNS rebinding: the second answer (private) is dropped, and the address stays closed', async (t) => {
  const code = `
const http = require('http');
const get = (u) => new Promise((res) => http.get(u, (r) => { let b = ''; r.on('data', (d) => (b += d)).on('end', () => res('ok ' + b)); }).on('error', (e) => res(e.code)));
(async () => {
  console.log('first', await get('http://rebind.test:80/'));
  console.log('second', await get('http://rebind.test:${secretPort}/'));
  console.log('third', await get('http://rebind.test:${secretPort}/'));
})();`;
  const r = await run([process.execPath, '-e', code], { network: { allow: ['rebind.test'], dnsServers: DNS } });
  t.match(r.out, /^first ok hello from (::ffff:)?198\.51\.100\.1/m, 'the first (public) answer connects');
  t.match(r.out, /^second ENOTFOUND/m, 'the rebound answer (10.1.2.3) is not passed on');
  t.match(r.out, /^third ENOTFOUND/m, 'nor the next (127.0.0.1)');
  t.notMatch(r.out, SECRET);
});

t.test('allowed: Node fetch, net.connect and a non-Node program reach the granted server', async (t) => {
  const code = `
const net = require('net');
(async () => {
  const r = await fetch('http://api.test/f');
  console.log('fetch', r.status, await r.text());
  await new Promise((res) => {
    const s = net.connect({ host: 'v4only.test', port: 80 }, () => s.write('GET /n HTTP/1.0\\r\\n\\r\\n'));
    let b = ''; s.on('data', (d) => (b += d)).on('end', () => { console.log('net', b.split('\\r\\n\\r\\n')[1]); res(); });
    s.on('error', (e) => { console.log('net', e.code); res(); });
  });
})();`;
  const r = await run([process.execPath, '-e', code], { network: { allow: ['api.test', 'v4only.test:80'], dnsServers: DNS } });
  t.match(r.out, /^fetch 200 hello from ((::ffff:)?198\.51\.100\.1|2001:db8::1) \/f$/m);
  t.match(r.out, /^net hello from (::ffff:)?198\.51\.100\.1 \/n$/m);
  const allowed = r.events.filter((e) => e.type === 'connect' && e.decision === 'allowed');
  t.ok(allowed.length >= 2, 'each allowed connect is an event');
  t.ok(r.events.some((e) => e.type === 'connected' && e.errno === undefined), 'and its outcome');

  const c = await run(['/opt/net-attempt', 'tcp', WORLD.other, '80'], { network: { allow: [`${WORLD.other}:80`], dnsServers: DNS } });
  t.equal(c.out, 'ok hello from ::ffff:203.0.113.10 /c', 'a C program, blocking connect to a granted IP');
  const c6 = await run(['/opt/net-attempt', 'tcp', WORLD.http6, '80', 'nonblock'], { network: { allow: ['[2001:db8::/32]:80'], dnsServers: DNS } });
  t.equal(c6.out, 'ok hello from 2001:db8::1 /c', 'non-blocking, IPv6, CIDR grant');
  if (fs.existsSync('/usr/bin/curl')) {
    const cu = await run(['/usr/bin/curl', '-sS', '--max-time', '10', 'http://api.test/curl'], { network: { allow: ['api.test:80'], dnsServers: DNS } });
    t.match(cu.out, /^hello from ((::ffff:)?198\.51\.100\.1|2001:db8::1) \/curl$/, 'curl, by name');
    const cm = await run(['/usr/bin/curl', '-sS', '--max-time', '10', `http://${WORLD.metadata}/latest/meta-data/`], { network: { allow: ['api.test:80'], dnsServers: DNS } });
    t.notMatch(cm.out, SECRET, 'curl cannot reach the metadata address');
    t.match(cm.out, /Permission denied|Couldn't connect|Failed to connect/, 'curl reports the refusal');
  } else {
    t.comment('curl is not installed: the non-Node check is the C program only');
  }
});

t.test('socket options and fd flags set before connect are carried to the handed-in socket', async (t) => {
  const r = await run(['/opt/net-attempt', 'opts', WORLD.http, '80'], { network: { allow: [`${WORLD.http}:80`], dnsServers: DNS } });
  t.equal(r.out, 'ok nodelay=1 keepalive=1 nonblock=1 cloexec=1 inprogress=1');
  const b = await run(['/opt/net-attempt', 'bufs', WORLD.http, '80'], { network: { allow: [`${WORLD.http}:80`], dnsServers: DNS } });
  t.equal(b.out, 'ok sndbuf=kept rcvbuf=kept', 'buffer sizes the program chose are carried');
});

t.test('ports, wildcards and names not granted', async (t) => {
  const r = await probe([['ports.test', 80], ['ports.test', 9000], ['a.wild.test', 9000], ['other.test', 9000], [WORLD.other, 9000]], { allow: ['ports.test:9000', '*.wild.test:9000-9010'], dnsServers: DNS });
  const got = lines(r.out);
  t.equal(got.get('ports.test 80'), 'EACCES', 'a port outside the grant');
  t.equal(got.get('ports.test 9000'), 'x', 'the granted port connects');
  t.equal(got.get('a.wild.test 9000'), 'x', 'a wildcard grant covers a name below it');
  t.equal(got.get('other.test 9000'), 'ENOTFOUND', 'a name not granted is not answered');
  t.equal(got.get(`${WORLD.other} 9000`), 'EACCES', 'an IP literal no granted name was answered with is refused');
});

t.test('UDP other than DNS, raw and packet sockets, MSG_FASTOPEN do not leave the sandbox', async (t) => {
  const net0 = { allow: [`${WORLD.http}`], outbound: true, dnsServers: DNS };
  const udp = await run(['/opt/net-attempt', 'udp', WORLD.http, '7'], { network: net0 });
  t.match(udp.out, /^err (ENETUNREACH|NOREPLY)$/, 'sendto with an address: no route out of the sandbox');
  const control = await run(['/opt/net-attempt', 'udp', WORLD.http, '7'], { shareNet: true });
  t.equal(control.out, 'ok reply ping', 'control: with the host network shared the echo answers');
  const raw = await run(['/opt/net-attempt', 'raw', WORLD.http], { network: net0 });
  t.match(raw.out, /^err (EPERM|EAFNOSUPPORT|EACCES)$/, 'raw socket refused');
  const packet = await run(['/opt/net-attempt', 'packet'], { network: net0 });
  t.match(packet.out, /^err (EPERM|EAFNOSUPPORT|EACCES)$/, 'packet socket refused');
  const tfo = await run(['/opt/net-attempt', 'fastopen', WORLD.metadata, '80'], { network: net0 });
  t.equal(tfo.out, 'err EOPNOTSUPP', 'MSG_FASTOPEN cannot connect behind connect()\'s back');
});

t.test('a socket whose host connection failed can neither reconnect elsewhere nor listen', async (t) => {
  // 198.51.100.1:1 refuses: the handed-in socket fails, and is then pointed at the metadata address.
  const net0 = { allow: [`${WORLD.http}`], dnsServers: DNS };
  const re = await run(['/opt/net-attempt', 'reconnect', WORLD.http, '1', WORLD.metadata, '80'], { network: net0 });
  t.equal(re.out, 'err EACCES', 'the second connect is decided again, and refused');
  const li = await run(['/opt/net-attempt', 'listen-after', WORLD.http, '1'], { network: net0 });
  t.equal(li.out, 'err EACCES', 'a host socket never listens');
});

t.test('sandboxes never reach each other; a sandbox still uses its own loopback', async (t) => {
  const server = `
const net = require('net');
const s = net.createServer((c) => c.end('from A')).listen(7777, '127.0.0.1', () => {
  console.log('listening');
  net.connect(7777, '127.0.0.1').on('data', (d) => console.log('self ' + d));
});
setTimeout(() => process.exit(0), 3000);`;
  const events: NetworkEvent[] = [];
  const a = Sandbox.spawn({ command: [process.execPath, '-e', server], network: { allow: ['api.test'], dnsServers: DNS }, stdio: ['ignore', 'pipe', 'inherit'] });
  a.on('network', (e) => events.push(e));
  let aout = '';
  a.stdout!.setEncoding('utf8').on('data', (d: string) => (aout += d));
  while (!aout.includes('listening')) await new Promise((r) => setTimeout(r, 20));
  const b = await probe([['127.0.0.1', 7777]], { allow: ['api.test'], dnsServers: DNS });
  t.equal(lines(b.out).get('127.0.0.1 7777'), 'ECONNREFUSED', 'B\'s loopback is B\'s own');
  await a.exited;
  t.match(aout, /self from A/, 'A listens and connects on its own loopback');
});

t.test('limits: connections per minute, and hammering refused destinations is a violation', async (t) => {
  const targets: Array<[string, number]> = [[WORLD.http, 80], [WORLD.http, 80], [WORLD.http, 80]];
  const r = await probe(targets, { allow: [WORLD.http], connectionsPerMinute: 2, dnsServers: DNS });
  const results = r.out.split('\n').map((l) => l.split(' ').slice(2).join(' '));
  t.equal(results.filter((x) => x === 'EAGAIN').length, 1, 'the third connection in the minute fails with EAGAIN');
  t.ok(r.events.some((e) => e.decision === 'refused' && /a minute/.test(e.reason ?? '')), 'and is reported');

  const hammer: Array<[string, number]> = Array.from({ length: 10 }, () => [WORLD.metadata, 80] as [string, number]);
  const h = await probe(hammer, { allow: ['api.test'], maxRefusalsPerMinute: 5, dnsServers: DNS });
  t.equal(h.violation?.kind, 'network', 'a network violation');
  t.equal(h.code, null, 'the sandbox was killed');
});

t.test('connects made by the host without asking JS (the lease) stay within the per-minute limit and are all reported', async (t) => {
  // The first connect is decided by JS, which leases the next ones to the listener thread; the
  // lease counts against the limit before they happen.
  const targets: Array<[string, number]> = Array.from({ length: 8 }, () => [WORLD.http, 80] as [string, number]);
  const r = await probe(targets, { allow: [WORLD.http], connectionsPerMinute: 5, dnsServers: DNS });
  const results = r.out.split('\n').map((l) => l.split(' ').slice(2).join(' '));
  t.equal(results.filter((x) => x === 'EAGAIN').length, 3, `5 connections in the minute, then EAGAIN (${JSON.stringify(results)})`);
  t.equal(r.events.filter((e) => e.type === 'connect' && e.decision === 'allowed').length, 5, 'each allowed connect is an event');
  t.ok(r.events.filter((e) => e.type === 'connect' && e.decision === 'allowed').every((e) => e.reason === WORLD.http && e.address === WORLD.http && e.port === 80), 'with the grant that allowed it');
  t.equal(r.events.filter((e) => e.type === 'connected' && e.errno === undefined).length, 5, 'and its hand-in');
  t.equal(r.events.filter((e) => e.type === 'closed').length, 5, 'and its close');
});

t.test('connects made under the lease reach the events while the sandbox still runs, not only when it exits', async (t) => {
  // The thread wakes the event loop for their outcomes at most every few milliseconds, not once
  // per connect: they must still come while the program runs (here: it waits 3 s after them).
  const program = `
const net = require('net');
(async () => {
  for (let i = 0; i < 10; i++) await new Promise((res, rej) => { const s = net.connect({ host: process.argv[1], port: 80 }, () => { s.destroy(); res(); }); s.on('error', rej); });
  console.log('done');
  setTimeout(() => {}, 3000);
})();`;
  const sb = Sandbox.spawn({ command: [process.execPath, '-e', program, WORLD.http], network: { allow: [`${WORLD.http}:80`], dnsServers: DNS }, stdio: ['ignore', 'pipe', 'inherit'] });
  const allowed: NetworkEvent[] = [];
  sb.on('network', (e) => { if (e.type === 'connect' && e.decision === 'allowed') allowed.push(e); });
  await new Promise<void>((resolve) => sb.stdout!.setEncoding('utf8').on('data', (d: string) => { if (d.includes('done')) resolve(); }));
  await new Promise((r) => setTimeout(r, 500));
  t.equal(allowed.length, 10, `all 10 connects reported half a second after the last, the program still running (${allowed.length})`);
  t.ok(allowed.every((e) => e.type === 'connect' && e.address === WORLD.http && e.port === 80), 'each to the granted server');
  sb.kill();
  await sb.exited;
});

t.test('many allowed names: their reports are a bounded rate, the rest counted, none lost', async (t) => {
  // 120 new names under a wildcard grant at 40 a second (under the query rate), then one more.
  // Before: 121 allowed-dns events (audit lines for a plugin), 50 a second for as long as it liked.
  const code = `
const dns = require('dns').promises;
(async () => {
  for (let i = 0; i < 120; i++) {
    await dns.resolve4('n' + i + '.many.test').catch((e) => console.log('n' + i + ' ' + e.code));
    await new Promise((r) => setTimeout(r, 25));
  }
  await new Promise((r) => setTimeout(r, 2500));
  console.log('last ' + (await dns.resolve4('last.many.test')).join(','));
})();`;
  const started = Date.now();
  const r = await run([process.execPath, '-e', code], { network: { allow: ['*.many.test:80'], dnsServers: DNS } });
  const most = 30 + Math.ceil((Date.now() - started) / 2000);
  t.match(r.out, /^last 198\.51\.100\.1$/m, 'every name was answered');
  t.notMatch(r.out, /^n\d+ /m, 'none refused');
  const reported = r.events.filter((e) => e.type === 'dns' && e.decision === 'allowed');
  t.ok(reported.length >= 31 && reported.length <= most, `${reported.length} reports: the burst of 30 and one per 2 s after it (at most ${most})`);
  const unreported = reported.reduce((n, e) => n + (e.unreported ?? 0), 0);
  t.equal(reported.length + unreported, 121, `each answer reported or counted in a later report (${reported.length} + ${unreported})`);
  t.equal(reported.at(-1)?.name, 'last.many.test', 'the last name was reported');
  t.match(reported.at(-1)?.reason, /answers not reported before this one/);
});

t.test('options are checked, naming the field', async (t) => {
  t.throws(() => Sandbox.spawn({ command: ['/bin/true'], network: { allow: ['0x7f000001'] } }), { code: 'ERR_INVALID_OPTION', field: 'network.allow[0]' });
  t.throws(() => Sandbox.spawn({ command: ['/bin/true'], network: { allow: ['2001:db8::1:80'] } }), { code: 'ERR_INVALID_OPTION', field: 'network.allow[0]' });
  t.throws(() => Sandbox.spawn({ command: ['/bin/true'], network: {}, shareNet: true }), { code: 'ERR_INVALID_OPTION', field: 'network' });
  t.throws(() => Sandbox.spawn({ command: ['/bin/true'], network: {}, seccomp: 'none' }), { code: 'ERR_INVALID_OPTION', field: 'seccomp' });
  t.throws(() => Sandbox.spawn({ command: ['/bin/true'], network: { connectionsPerMinute: 0 } }), { code: 'ERR_INVALID_OPTION', field: 'network.connectionsPerMinute' });
});

t.test('PluginHost: net:connect granted by the trust list; refusals and connections are audit lines', async (t) => {
  const w = await PluginWorld.create();
  t.teardown(() => w.cleanup());
  const code = `exports.activate = (host) => {
    host.hook('fetch', async (url, times = 1) => {
      let out;
      for (let i = 0; i < times; i++) {
        try { const r = await fetch(url); out = r.status + ' ' + (await r.text()); } catch (e) { out = 'error ' + (e.cause?.code ?? e.message); }
      }
      return out;
    });
  };`;
  w.writePlugin('caller', { code, hooks: ['fetch'], permissions: ['net:connect:api.test:80'] });
  w.writePlugin('greedy', { code, hooks: ['fetch'], permissions: ['net:connect:api.test'] });
  await w.trust('caller', { permissions: ['net:connect:api.test:80'] });
  await w.trust('greedy', { permissions: ['net:connect:api.test:80'] });
  await w.publish();
  const host = w.host({ hooks: [{ name: 'fetch', mode: 'parallel' }] });
  t.teardown(() => host.close());
  await host.start();
  t.equal(host.status('caller'), 'active');
  t.equal(host.status('greedy'), 'failed', 'a request wider than the grant (any port) is refused');
  const ok = await host.invoke('fetch', ['http://api.test/plugin']);
  t.match(ok.outcomes.find((o) => o.owner === 'caller')?.value, /^200 hello from ((::ffff:)?198\.51\.100\.1|2001:db8::1) \/plugin$/, 'the granted API answers');
  const meta = await host.invoke('fetch', [`http://${WORLD.metadata}/latest/meta-data/`]);
  t.equal(meta.outcomes.find((o) => o.owner === 'caller')?.value, 'error EACCES', 'the metadata address is refused');
  const { events } = await readAuditLog(w.auditPath, { event: 'network' });
  t.ok(events.some((e) => e.plugin === 'caller' && e.severity === 'info' && /allowed connect/.test(e.reason ?? '')), 'the allowed connection is an audit line');
  t.ok(events.some((e) => e.plugin === 'caller' && e.severity === 'warning' && /refused connect 169\.254\.169\.254:80: metadata/.test(e.reason ?? '')), 'and the refusal, with its reason');
  // Refused again and again (past maxRefusalsPerMinute, 30): a network violation, by that name
  // (it was reported as a channel protocol violation with an empty message).
  await host.invoke('fetch', [`http://${WORLD.metadata}/latest/meta-data/`, 40]);
  await until(() => host.status('caller') === 'failed', 10_000, 'the plugin to be ended');
  t.match(host.info('caller').reason, { kind: 'network', message: /^broke its network policy: .+/ }, 'a network violation');
  const v = (await readAuditLog(w.auditPath, { event: 'violation' })).events.find((e) => e.plugin === 'caller');
  t.match(v, { severity: 'critical', details: { kind: 'network' } }, 'audited as one, critical');
});

t.test('warden run --allow-net: the granted destination works, the refusal is one line on stderr', async (t) => {
  const bin = path.join(root, 'bin', 'warden');
  const { spawnSync } = await import('node:child_process');
  const ok = spawnSync(process.execPath, [bin, 'run', '--allow-net', `${WORLD.other}:80`, '--dns-server', WORLD.dns, '--ro-bind', attempt, '/opt/net-attempt', '--', '/opt/net-attempt', 'tcp', WORLD.other, '80'], { encoding: 'utf8', timeout: 60_000 });
  t.equal(ok.status, 0);
  t.equal(ok.stdout.trim(), 'ok hello from ::ffff:203.0.113.10 /c');
  const no = spawnSync(process.execPath, [bin, 'run', '--allow-net', `${WORLD.other}:80`, '--ro-bind', attempt, '/opt/net-attempt', '--', '/opt/net-attempt', 'tcp', WORLD.metadata, '80'], { encoding: 'utf8', timeout: 60_000 });
  t.equal(no.stdout.trim(), 'err EACCES');
  t.match(no.stderr, /warden run: network: refused connect 169\.254\.169\.254:80: metadata address/);
  const bad = spawnSync(process.execPath, [bin, 'run', '--allow-net', '127.1', '--', '/bin/true'], { encoding: 'utf8', timeout: 60_000 });
  t.equal(bad.status, 125);
  t.match(bad.stderr, /network\.allow\[0\].*numeric IPv4 form/);
});

t.test('warden doctor names the mechanism', async (t) => {
  const { spawnSync } = await import('node:child_process');
  const r = spawnSync(process.execPath, [path.join(root, 'bin', 'warden'), 'doctor', '--json'], { encoding: 'utf8', timeout: 120_000 });
  const report = JSON.parse(r.stdout) as { network: { mechanism: string } };
  t.equal(report.network.mechanism, 'seccomp-addfd');
});

t.test('limits: connections open at once; each closed connection is reported with its bytes', async (t) => {
  const code = `
const net = require('net');
const H = '${WORLD.http}';
const a = net.connect({ port: 9000, host: H, allowHalfOpen: true }, () => {
  const req = Buffer.alloc(9); req[0] = 0x53; req.writeBigUInt64BE(100000n, 1); a.write(req);
  const b = net.connect(9000, H, () => console.log('second connected'));
  b.on('error', (e) => {
    console.log('second ' + e.code);
    let got = 0;
    a.on('data', (d) => (got += d.length)).on('end', () => {
      console.log('first read ' + got);
      // Byte counts are sampled once a second (lib/net/policy.ts, sweep): stay open past one sample.
      setTimeout(() => a.destroy(), 1500);
      setTimeout(() => {
        const c = net.connect(9000, H, () => { console.log('third connected'); c.destroy(); });
        c.on('error', (e) => console.log('third ' + e.code));
      }, 4000);
    });
  });
});`;
  const r = await run([process.execPath, '-e', code], { network: { allow: [`${WORLD.http}:9000`], maxConnections: 1, dnsServers: DNS } });
  t.match(r.out, /^second EAGAIN$/m, 'the second connection at once is refused');
  t.match(r.out, /^first read 100000$/m);
  t.match(r.out, /^third connected$/m, 'once the first is closed, a new one may open');
  const closed = r.events.filter((e) => e.type === 'closed');
  t.ok(closed.length >= 1, 'closed connections are events');
  t.ok(closed.some((e) => (e.bytesIn ?? 0) >= 100000 && (e.bytesOut ?? 0) >= 9), `with the bytes in and out (${JSON.stringify(closed.map((e) => [e.bytesOut, e.bytesIn]))})`);
});

t.test('a connection shorter than a second is reported with its bytes (the kernel\'s destroy notification)', async (t) => {
  // Each connection asks the bulk server for N bytes, reads them and closes at once: well inside
  // the one-second sampling of the socket table, which alone saw such connections only after they
  // had lost their counts.
  const code = `
const net = require('net');
const sizes = [1000, 54321];
(async () => {
  for (const n of sizes) {
    await new Promise((res) => {
      const s = net.connect(9000, '${WORLD.http}', () => { const q = Buffer.alloc(9); q[0] = 0x53; q.writeBigUInt64BE(BigInt(n), 1); s.write(q); });
      let got = 0;
      s.on('data', (d) => (got += d.length)).on('end', () => { console.log('read ' + got); s.destroy(); res(); });
    });
  }
  setTimeout(() => {}, 300); // the process outlives its connections briefly, as a server would
})();`;
  const started = Date.now();
  const r = await run([process.execPath, '-e', code], { network: { allow: [`${WORLD.http}:9000`], dnsServers: DNS } });
  t.match(r.out, /^read 1000\nread 54321$/m);
  t.ok(Date.now() - started < 5000, 'the run is short');
  const closed = r.events.filter((e) => e.type === 'closed');
  t.equal(closed.length, 2, 'both connections are reported closed');
  t.same(closed.map((e) => e.bytesOut), [9, 9], 'with exactly the bytes sent');
  // The kernel's received count holds the peer's FIN as one more byte.
  t.same(closed.map((e) => e.bytesIn), [1001, 54322], 'and the bytes received (+1: the server\'s FIN)');
});

t.test('an unprivileged host enforces the same policy (the stub joins the sandbox\'s user namespace)', async (t) => {
  const setpriv = ['/usr/bin/setpriv', '/bin/setpriv'].find((p) => fs.existsSync(p));
  if (setpriv === undefined) return t.plan(0, 'skip: setpriv (util-linux) is not installed');
  const reachable = reachablePackage();
  if (reachable.skip !== undefined) return t.plan(0, reachable.skip);
  const script = `
const { Sandbox } = require(${JSON.stringify(path.join(reachable.root, 'dist', 'lib', 'sandbox', 'sandbox.js'))});
const code = "fetch('http://api.test/u').then(async (r) => console.log('fetch ' + r.status), (e) => console.log('fetch ' + (e.cause?.code ?? e.message))); require('net').connect(80, '${WORLD.metadata}').on('error', (e) => console.log('meta ' + e.code));";
const sb = Sandbox.spawn({ command: [process.execPath, '-e', code], network: { allow: ['api.test'], dnsServers: ['${WORLD.dns}'] }, stdio: ['ignore', 'inherit', 'inherit'] });
sb.exited.then((r) => console.log('uid ' + process.getuid() + ' exit ' + r.code));`;
  const file = path.join(reachable.root, 'net-unprivileged.js');
  fs.writeFileSync(file, script, { mode: 0o644 });
  const { spawnSync } = await import('node:child_process');
  // `env -i`: the test runner adds its preloads (in the checkout, maybe out of uid 1000's reach) to
  // every child's environment.
  const env = ['/usr/bin/env', '-i', `PATH=${process.env.PATH ?? '/usr/bin:/bin'}`];
  const r = spawnSync(setpriv, ['--reuid', '1000', '--regid', '1000', '--clear-groups', '--inh-caps=-all', ...env, process.execPath, file], { encoding: 'utf8', timeout: 60_000, cwd: reachable.root });
  t.match(r.stdout, /^fetch 200$/m, r.stderr);
  t.match(r.stdout, /^meta EACCES$/m);
  t.match(r.stdout, /^uid 1000 exit 0$/m);
});

t.test('a sandbox flooding connect() while the host is busy: the queue to the event loop stays bounded, every call is answered', async (t) => {
  // 400 processes connect at once while the host's event loop is blocked: the network thread
  // receives the notifications and queues them for the loop; past its bound it stops receiving, and
  // the callers wait in the kernel instead of in the host's memory. Their destination is the
  // sandbox's own loopback (nothing listens there): decided 'local', ECONNREFUSED, no refusal counted.
  const events: NetworkEvent[] = [];
  const sb = Sandbox.spawn({
    command: ['/opt/net-attempt', 'flood', '400', '127.0.0.1', '9'],
    binds: [{ source: attempt, target: '/opt/net-attempt' }],
    network: { allow: [WORLD.http], dnsServers: DNS },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  sb.on('network', (e) => events.push(e));
  let out = '';
  sb.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d));
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 3000); // the host's loop, busy for 3 s
  const [r] = await Promise.all([sb.exited, new Promise((resolve) => sb.stdout!.on('end', resolve))]);
  const peak = (sb as unknown as { native: { netQueuePeak(): number } }).native.netQueuePeak();
  t.equal(r.code, 0, out);
  t.equal(out.trim(), 'ok 0 400 0', 'every connect was answered (ECONNREFUSED from its own loopback)');
  t.ok(peak <= 256, `the queue held at most 256 items (peak ${peak})`);
  t.ok(peak >= 200, `the flood reached the bound while the loop was busy (peak ${peak})`);
  t.equal(events.filter((e) => e.decision === 'refused').length, 0, 'nothing refused, no violation');
});
