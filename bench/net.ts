/**
 * npm run bench:net — what a network policy costs a sandbox, against a direct connection from the
 * host in the same run. Needs root: it builds the namespaces of test/helpers/net-world.ts (all
 * traffic stays on this machine) and runs itself again inside the "host" one.
 *
 * The same client script runs as a plain process of the host and in a sandbox whose policy allows
 * the server (connect intercepted, the host connects and hands the socket in). It reports, from
 * inside:
 *  - connect latency: net.connect() call to 'connect' event, N connections one after another; per
 *    round, the host process then the sandbox, each alone;
 *  - throughput: per round, DOWNLOADS pairs of downloads of BYTES from the world's bulk server, one
 *    by the host process then one by the sandbox (or the other way round, every other pair), both
 *    clients waiting between them. Both paths are the same kernel socket: what makes two downloads
 *    differ is the machine's other load, which changes slower than one pair, so the ratio is the
 *    median of the pairs' ratios.
 * Targets (issue 16): connect p50 ≤ direct + 0.3 ms; throughput ≥ 0.9 × direct.
 */
import { spawn, spawnSync } from 'node:child_process';
import type { Readable, Writable } from 'node:stream';
import { createWorld, worldUnavailable, WORLD } from '../test/helpers/net-world';
import { Sandbox } from '../lib/sandbox/sandbox';

const N = Number(process.env.BENCH_N ?? 300);
const BYTES = Number(process.env.BENCH_BYTES ?? 256 * 1024 * 1024);
const DOWNLOADS = Number(process.env.BENCH_DOWNLOADS ?? 4);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);

// argv: host, then 'lat N' (prints the latencies as JSON, exits) or 'bulk BYTES' (one download per
// line read from stdin, prints its bytes per second on a line; exits at the end of stdin).
const CLIENT = `
const net = require('net');
const [host, mode, arg] = [process.argv[1], process.argv[2], Number(process.argv[3])];
const once = () => new Promise((res, rej) => {
  const t0 = process.hrtime.bigint();
  const s = net.connect({ host, port: 9000 }, () => { const dt = Number(process.hrtime.bigint() - t0) / 1e6; s.destroy(); res(dt); });
  s.on('error', rej);
});
const bulk = () => new Promise((res, rej) => {
  const s = net.connect({ host, port: 9000 }, () => {
    const req = Buffer.alloc(9); req[0] = 0x53; req.writeBigUInt64BE(BigInt(arg), 1);
    const t0 = process.hrtime.bigint(); let got = 0;
    s.on('data', (d) => (got += d.length)).on('end', () => res(got / (Number(process.hrtime.bigint() - t0) / 1e9)));
    s.write(req);
  });
  s.on('error', rej);
});
const fail = (e) => { console.error(e); process.exit(1); };
if (mode === 'lat') {
  (async () => {
    for (let i = 0; i < 20; i++) await once(); // warm up
    const lat = [];
    for (let i = 0; i < arg; i++) lat.push(await once());
    process.stdout.write(JSON.stringify(lat));
  })().catch(fail);
} else {
  let chain = Promise.resolve();
  require('readline').createInterface({ input: process.stdin }).on('line', () => {
    chain = chain.then(bulk).then((bps) => process.stdout.write(bps + '\\n')).catch(fail);
  });
}`;

type Side = 'direct' | 'sandbox';

/** A client of one side: its stdin, stdout and exit. */
interface Running { stdin: Writable | null; stdout: Readable; exited: Promise<number | null> }

function start(side: Side, args: string[], stdin: 'ignore' | 'pipe'): Running {
  const command = [process.execPath, '-e', CLIENT, WORLD.http, ...args];
  if (side === 'direct') {
    const p = spawn(command[0]!, command.slice(1), { stdio: [stdin, 'pipe', 'inherit'] });
    return { stdin: p.stdin, stdout: p.stdout!, exited: new Promise((resolve) => p.on('exit', (code) => resolve(code))) };
  }
  const sb = Sandbox.spawn({
    command,
    network: { allow: [`${WORLD.http}:9000`], connectionsPerMinute: 1_000_000, maxConnections: 1000, dnsServers: [WORLD.dns] },
    stdio: [stdin, 'pipe', 'inherit'],
  });
  return { stdin: sb.stdin ?? null, stdout: sb.stdout!, exited: sb.exited.then((r) => r.code) };
}

async function latencies(side: Side): Promise<number[]> {
  const c = start(side, ['lat', String(N)], 'ignore');
  let out = '';
  c.stdout.on('data', (d: Buffer) => (out += d));
  const [code] = await Promise.all([c.exited, new Promise((resolve) => c.stdout.on('end', resolve))]);
  if (code !== 0) throw new Error(`${side} client exited ${code}`);
  return JSON.parse(out) as number[];
}

/** DOWNLOADS pairs of downloads, the two sides alternating; [direct, sandbox] bytes per second. */
async function downloads(): Promise<Array<[number, number]>> {
  const clients = { direct: start('direct', ['bulk', String(BYTES)], 'pipe'), sandbox: start('sandbox', ['bulk', String(BYTES)], 'pipe') };
  const lines = { direct: [] as string[], sandbox: [] as string[] };
  const waiting: Partial<Record<Side, (line: string) => void>> = {};
  for (const side of ['direct', 'sandbox'] as const) {
    let buf = '';
    clients[side].stdout.on('data', (d: Buffer) => {
      buf += d;
      for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        const w = waiting[side];
        if (w !== undefined) { delete waiting[side]; w(line); } else lines[side].push(line);
      }
    });
  }
  const one = (side: Side) => new Promise<number>((resolve) => {
    waiting[side] = (line) => resolve(Number(line));
    clients[side].stdin!.write('go\n');
  });
  const pairs: Array<[number, number]> = [];
  for (let i = 0; i < DOWNLOADS; i++) {
    if (i % 2 === 0) {
      const d = await one('direct');
      pairs.push([d, await one('sandbox')]);
    } else {
      const s = await one('sandbox');
      pairs.push([await one('direct'), s]);
    }
  }
  for (const side of ['direct', 'sandbox'] as const) clients[side].stdin!.end();
  const codes = await Promise.all([clients.direct.exited, clients.sandbox.exited]);
  if (codes.some((c) => c !== 0)) throw new Error(`bulk clients exited ${codes.join(', ')}`);
  return pairs;
}

const pct = (xs: number[], p: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(xs.length * p))]!;

async function inner(): Promise<void> {
  const dLat: number[] = [];
  const sLat: number[] = [];
  const pairs: Array<[number, number]> = [];
  for (let round = 0; round < ROUNDS; round++) {
    dLat.push(...(await latencies('direct')));
    sLat.push(...(await latencies('sandbox')));
    pairs.push(...(await downloads()));
  }
  const med = (xs: number[]) => pct(xs, 0.5);
  const dBps = pairs.map((p) => p[0]);
  const sBps = pairs.map((p) => p[1]);
  const ratios = pairs.map(([d, s]) => s / d);
  const rows = [
    ['', 'connect p50 ms', 'connect p90 ms', 'throughput MB/s'],
    ['direct (host process)', pct(dLat, 0.5).toFixed(3), pct(dLat, 0.9).toFixed(3), (med(dBps) / 1e6).toFixed(0)],
    ['sandbox, policy (seccomp + ADDFD)', pct(sLat, 0.5).toFixed(3), pct(sLat, 0.9).toFixed(3), (med(sBps) / 1e6).toFixed(0)],
  ];
  for (const r of rows) console.log(`${r[0]!.padEnd(36)}${r.slice(1).map((c) => c.padStart(17)).join('')}`);
  const dp50 = pct(dLat, 0.5), sp50 = pct(sLat, 0.5);
  const ratio = med(ratios);
  console.log(`\n${ROUNDS} rounds × ${N} connections and ${DOWNLOADS} pairs of downloads of ${BYTES / 1024 / 1024} MiB, direct and sandboxed alternating`);
  console.log(`pairs' throughput ratios: ${Math.min(...ratios).toFixed(2)}× to ${Math.max(...ratios).toFixed(2)}× (${ratios.length} pairs; the median counts)`);
  console.log(`connect p50: +${(sp50 - dp50).toFixed(3)} ms over direct (target ≤ +0.3 ms): ${sp50 - dp50 <= 0.3 ? 'met' : 'NOT met'}`);
  console.log(`throughput: ${ratio.toFixed(2)}× direct (target ≥ 0.9×): ${ratio >= 0.9 ? 'met' : 'NOT met'}`);
}

async function main(): Promise<void> {
  if (process.env.WARDEN_NET_WORLD !== undefined) return inner();
  const why = worldUnavailable();
  if (why !== null) {
    console.log(`bench:net skipped: ${why}`);
    return;
  }
  const world = await createWorld({});
  try {
    const [cmd, ...args] = world.hostExec([process.execPath, __filename]);
    const r = spawnSync(cmd!, args, { stdio: 'inherit', env: { ...process.env, WARDEN_NET_WORLD: world.hostNs } });
    process.exitCode = r.status ?? 1;
  } finally {
    world.destroy();
  }
}

void main();
