/**
 * The "internet" of the network tests and the network benchmark, run inside a network namespace the
 * test created (see net-world.ts): an HTTP server, a bulk TCP server, a UDP echo and a DNS server
 * the test controls. Prints 'ready' on stdout once everything listens.
 *
 * DNS records come as JSON in argv[2]: { "name": ["addr", ...] } answers every lookup the same; a
 * name with { "rotate": [...] } answers the next entry at each lookup (the rebinding mode); a name
 * "*.zone" answers the names one label below the zone.
 */
import * as dgram from 'node:dgram';
import * as http from 'node:http';
import * as net from 'node:net';

type Records = Record<string, string[] | { rotate: string[] }>;
const records = JSON.parse(process.argv[2] ?? '{}') as Records;
const dnsAddress = process.argv[3] ?? '198.51.100.53';
const rotation = new Map<string, number>();

function answer(query: Buffer): Buffer | null {
  if (query.length < 12) return null;
  let off = 12;
  const labels: string[] = [];
  while (off < query.length && query[off] !== 0) {
    labels.push(query.subarray(off + 1, off + 1 + query[off]!).toString('latin1').toLowerCase());
    off += query[off]! + 1;
  }
  off += 1;
  const type = query.readUInt16BE(off);
  const name = labels.join('.');
  // A "*.zone" record answers every name under the zone that has no record of its own.
  const rec = records[name] ?? records[`*.${labels.slice(1).join('.')}`];
  let addrs: string[] = [];
  if (Array.isArray(rec)) addrs = rec;
  else if (rec !== undefined) {
    // One lookup is an A and an AAAA query: the rotation advances on A only.
    const i = rotation.get(name) ?? 0;
    if (type === 1) rotation.set(name, i + 1);
    addrs = [rec.rotate[Math.min(type === 1 ? i : Math.max(i - 1, 0), rec.rotate.length - 1)]!];
  }
  const want = type === 1 ? 4 : type === 28 ? 6 : 0;
  const datas = addrs.filter((a) => net.isIP(a) === want).map((a) => (want === 4 ? Buffer.from(a.split('.').map(Number)) : v6bytes(a)));
  const header = Buffer.alloc(12);
  header.writeUInt16BE(query.readUInt16BE(0), 0);
  header.writeUInt16BE(0x8180 | (rec === undefined ? 3 : 0), 2);
  header.writeUInt16BE(1, 4);
  header.writeUInt16BE(datas.length, 6);
  const rrs = datas.map((d) => {
    const rr = Buffer.alloc(12 + d.length);
    rr.writeUInt16BE(0xc00c, 0);
    rr.writeUInt16BE(type, 2);
    rr.writeUInt16BE(1, 4);
    rr.writeUInt32BE(0, 6); // TTL 0: every lookup asks again
    rr.writeUInt16BE(d.length, 10);
    d.copy(rr, 12);
    return rr;
  });
  return Buffer.concat([header, query.subarray(12, off + 4), ...rrs]);
}

function v6bytes(a: string): Buffer {
  const [h, t] = a.includes('::') ? a.split('::') : [a, undefined];
  const hs = h ? h.split(':') : [];
  const ts = t ? t.split(':') : [];
  const groups = t === undefined ? hs : [...hs, ...Array(8 - hs.length - ts.length).fill('0'), ...ts];
  const b = Buffer.alloc(16);
  groups.forEach((g, i) => b.writeUInt16BE(parseInt(g, 16), i * 2));
  return b;
}

async function main(): Promise<void> {
  const httpServer = http.createServer((req, res) => {
    res.setHeader('content-type', 'text/plain');
    res.end(`hello from ${req.socket.localAddress} ${req.url}`);
  });
  await new Promise<void>((r) => httpServer.listen({ port: 80, host: '::', ipv6Only: false }, r));
  // Bulk: 'S' + 8 bytes count: the server sends that many bytes; anything else is read and counted.
  const bulk = net.createServer((s) => {
    s.setNoDelay(true);
    s.once('data', (d) => {
      if (d[0] === 0x53 && d.length >= 9) {
        let left = Number(d.readBigUInt64BE(1));
        const chunk = Buffer.alloc(256 * 1024, 1);
        const pump = () => {
          while (left > 0) {
            const n = Math.min(left, chunk.length);
            left -= n;
            if (!s.write(n === chunk.length ? chunk : chunk.subarray(0, n))) return void s.once('drain', pump);
          }
          s.end();
        };
        pump();
      } else {
        s.end('x');
      }
    });
    s.on('error', () => {});
  });
  await new Promise<void>((r) => bulk.listen({ port: 9000, host: '::', ipv6Only: false }, r));
  const echo = dgram.createSocket('udp4');
  echo.on('message', (m, from) => echo.send(m, from.port, from.address));
  await new Promise<void>((r) => echo.bind(7, '0.0.0.0', r));
  const dns = dgram.createSocket('udp4');
  dns.on('message', (m, from) => {
    const a = answer(m);
    if (a !== null) dns.send(a, from.port, from.address);
  });
  await new Promise<void>((r) => dns.bind(53, dnsAddress, r));
  process.stdout.write('ready\n');
  process.stdin.resume();
  process.stdin.on('end', () => process.exit(0)); // the test ended: so do we
}

void main();
