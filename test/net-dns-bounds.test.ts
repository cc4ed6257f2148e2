/**
 * A sandbox's DNS against the host: each query a sandbox sends its stub becomes a lookup by the
 * host, an event (an audit line) and, while the upstream is silent, a resolver socket. A hostile
 * plugin with one granted name could send thousands a second: the host's audit log grew by ~2,000
 * lines a second, every query went upstream, and with a silent upstream the host ran out of fds.
 * NetworkPolicy.dns is fed here exactly what the stub hands it, against a real DNS server on
 * loopback that the test runs.
 */
import t from 'tap';
import * as dgram from 'node:dgram';
import * as dns from 'node:dns';
import * as fs from 'node:fs';
import { NetworkPolicy, validateNetworkOptions, type NetworkEvent } from '../lib/net/policy';
import { waitUntil } from './helpers/sandbox';

/** A DNS query for `name` (type A), as a program in the sandbox sends it. */
function query(id: number, name: string): Buffer {
  const h = Buffer.alloc(12);
  h.writeUInt16BE(id, 0);
  h.writeUInt16BE(0x0100, 2);
  h.writeUInt16BE(1, 4);
  const labels = name.split('.').flatMap((l) => [Buffer.from([l.length]), Buffer.from(l)]);
  return Buffer.concat([h, ...labels, Buffer.from([0, 0, 1, 0, 1])]);
}

/** A DNS server on loopback: answers A queries with `address` (TTL 60), or never (`silent`). */
async function upstream(mode: { address?: number[]; silent?: boolean }): Promise<{ port: number; queries: () => number; close: () => void }> {
  const srv = dgram.createSocket('udp4');
  let n = 0;
  srv.on('message', (m, r) => {
    n++;
    if (mode.silent) return;
    let p = 12;
    while (m[p] !== 0) p += m[p]! + 1;
    p += 5;
    const h = Buffer.from(m.subarray(0, 12));
    h[2] = 0x81;
    h[3] = 0x80;
    h.writeUInt16BE(1, 6);
    const ans = Buffer.from([0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, ...mode.address!]);
    srv.send(Buffer.concat([h, m.subarray(12, p), ans]), r.port, r.address);
  });
  await new Promise<void>((resolve) => srv.bind(0, '127.0.0.1', resolve));
  return { port: srv.address().port, queries: () => n, close: () => srv.close() };
}

function policyFor(network: Parameters<typeof validateNetworkOptions>[0]) {
  const events: NetworkEvent[] = [];
  const violations: string[] = [];
  const replies: Buffer[] = [];
  const policy = new NetworkPolicy(validateNetworkOptions(network), (e) => events.push(e), (r) => violations.push(r), (_port, answer) => replies.push(answer));
  return { policy, events, violations, replies };
}

const rcode = (answer: Buffer) => answer[3]! & 0x0f;
const fdCount = () => fs.readdirSync('/proc/self/fd').length;
const servers = dns.getServers();
t.teardown(() => dns.setServers(servers));

t.test('a flood of queries for a granted name is looked up once, reported once, and becomes a violation', async (t) => {
  const up = await upstream({ address: [198, 51, 100, 7] });
  t.teardown(up.close);
  dns.setServers([`127.0.0.1:${up.port}`]);
  const { policy, events, violations, replies } = policyFor({ allow: ['api.example.com:443', '198.51.100.0/24:443'] });
  // Within the rate: every query answered, from one lookup, reported once.
  for (let i = 0; i < 50; i++) policy.dns(query(i, 'api.example.com'), 40000);
  await waitUntil(() => replies.length === 50, 10_000, () => `the answers (${replies.length} of 50)`);
  t.ok(replies.every((a) => rcode(a) === 0 && a.includes(Buffer.from([198, 51, 100, 7]))), 'all 50 answered with the address');
  t.equal(up.queries(), 1, 'from one lookup by the host');
  t.equal(events.filter((e) => e.decision === 'allowed').length, 1, 'reported once');
  // Then a flood. Before: 1000 more lookups upstream, 1000 more 'allowed' events, no violation.
  for (let i = 0; i < 1000; i++) policy.dns(query(i, 'api.example.com'), 40000);
  await new Promise((r) => setTimeout(r, 200));
  t.equal(up.queries(), 1, 'the flood looked nothing up');
  t.equal(events.filter((e) => e.decision === 'allowed').length, 1, 'nor was it reported as allowed');
  t.equal(violations.length, 1, 'the flood is a violation');
  t.match(violations[0], /refused network attempts/);
  t.ok(events.some((e) => e.decision === 'refused' && /DNS queries a second/.test(e.reason ?? '')), 'the queries over the rate are refused');
  t.ok(replies.slice(50).some((a) => rcode(a) === 5), 'answered REFUSED');
  t.ok(events.length < 200, `events stay bounded (${events.length} for 1050 queries)`);
});

t.test('with a silent upstream, lookups at once are bounded (no socket per query)', async (t) => {
  const up = await upstream({ silent: true });
  t.teardown(up.close);
  dns.setServers([`127.0.0.1:${up.port}`]);
  const { policy, events, violations } = policyFor({ outbound: true });
  const fds = fdCount();
  let peak = 0;
  for (let i = 0; i < 200; i++) {
    policy.dns(query(i, `n${i}.example.com`), 40000);
    peak = Math.max(peak, fdCount() - fds);
  }
  await new Promise((r) => setTimeout(r, 100));
  peak = Math.max(peak, fdCount() - fds);
  // Before: 200 lookups at once, the resolver a socket for each (20,000 queries took the host to
  // its fd limit).
  t.ok(peak <= 24, `the host's fds grew by at most ${peak}`);
  t.ok(events.some((e) => e.decision === 'refused' && /lookups at once/.test(e.reason ?? '')), 'the lookups over the bound are refused');
  t.equal(violations.length, 1, 'and the flood is a violation');
});

t.test('answers that point a granted name at a closed address count as refused attempts', async (t) => {
  const up = await upstream({ address: [10, 1, 2, 3] });
  t.teardown(up.close);
  dns.setServers([`127.0.0.1:${up.port}`]);
  const { policy, events, violations, replies } = policyFor({ allow: ['api.example.com:443'] });
  for (let i = 0; i < 40; i++) policy.dns(query(i, 'api.example.com'), 40000);
  await waitUntil(() => violations.length > 0 || replies.length >= 40, 10_000, 'the answers');
  // Before: each was a 'refused' event that counted for nothing: a plugin could repeat it forever.
  t.equal(violations.length, 1, 'a violation');
  t.ok(events.filter((e) => /private address in the answer/.test(e.reason ?? '')).length > 30, 'each dropped answer counted');
});
