/**
 * npm run bench:net — what a network policy costs a sandbox, against a direct connection from the
 * host in the same run. Needs root: it builds the namespaces of test/helpers/net-world.ts (all
 * traffic stays on this machine) and runs itself again inside the "host" one.
 *
 * The same client script runs twice per round, alternating: as a plain process of the host, and in a
 * sandbox whose policy allows the server (connect intercepted, the host connects and hands the
 * socket in). It reports, from inside:
 *  - connect latency: net.connect() call to 'connect' event, N connections one after another;
 *  - throughput: DOWNLOADS connections one after another, each downloading BYTES from the world's
 *    bulk server. The ratio is of the medians over all rounds: both paths are the same kernel
 *    socket, and one download per round measured the machine's other load more than the path.
 * Targets (issue 16): connect p50 ≤ direct + 0.3 ms; throughput ≥ 0.9 × direct.
 */
import { spawn, spawnSync } from 'node:child_process';
import { createWorld, worldUnavailable, WORLD } from '../test/helpers/net-world';
import { Sandbox } from '../lib/sandbox/sandbox';

const N = Number(process.env.BENCH_N ?? 300);
const BYTES = Number(process.env.BENCH_BYTES ?? 256 * 1024 * 1024);
const DOWNLOADS = Number(process.env.BENCH_DOWNLOADS ?? 4);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);

const CLIENT = `
const net = require('net');
const [host, n, bytes, downloads] = [process.argv[1], Number(process.argv[2]), Number(process.argv[3]), Number(process.argv[4])];
const once = () => new Promise((res, rej) => {
  const t0 = process.hrtime.bigint();
  const s = net.connect({ host, port: 9000 }, () => { const dt = Number(process.hrtime.bigint() - t0) / 1e6; s.destroy(); res(dt); });
  s.on('error', rej);
});
const bulk = () => new Promise((res, rej) => {
  const s = net.connect({ host, port: 9000 }, () => {
    const req = Buffer.alloc(9); req[0] = 0x53; req.writeBigUInt64BE(BigInt(bytes), 1);
    const t0 = process.hrtime.bigint(); let got = 0;
    s.on('data', (d) => (got += d.length)).on('end', () => res(got / (Number(process.hrtime.bigint() - t0) / 1e9)));
    s.write(req);
  });
  s.on('error', rej);
});
(async () => {
  for (let i = 0; i < 20; i++) await once(); // warm up
  const lat = [];
  for (let i = 0; i < n; i++) lat.push(await once());
  const bps = [];
  for (let i = 0; i < downloads; i++) bps.push(await bulk());
  process.stdout.write(JSON.stringify({ lat, bps }));
})().catch((e) => { console.error(e); process.exit(1); });`;

interface Result { lat: number[]; bps: number[] }

function direct(): Promise<Result> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, ['-e', CLIENT, WORLD.http, String(N), String(BYTES), String(DOWNLOADS)], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    p.stdout.on('data', (d: Buffer) => (out += d));
    p.on('exit', (code) => (code === 0 ? resolve(JSON.parse(out) as Result) : reject(new Error(`direct client exited ${code}`))));
  });
}

async function sandboxed(): Promise<Result> {
  const sb = Sandbox.spawn({
    command: [process.execPath, '-e', CLIENT, WORLD.http, String(N), String(BYTES), String(DOWNLOADS)],
    network: { allow: [`${WORLD.http}:9000`], connectionsPerMinute: 1_000_000, maxConnections: 1000, dnsServers: [WORLD.dns] },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let out = '';
  sb.stdout!.on('data', (d: Buffer) => (out += d));
  const [r] = await Promise.all([sb.exited, new Promise((resolve) => sb.stdout!.on('end', resolve))]);
  if (r.code !== 0) throw new Error(`sandboxed client exited ${r.code ?? r.signal}`);
  return JSON.parse(out) as Result;
}

const pct = (xs: number[], p: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(xs.length * p))]!;

async function inner(): Promise<void> {
  const d: Result = { lat: [], bps: [] };
  const s: Result = { lat: [], bps: [] };
  for (let round = 0; round < ROUNDS; round++) {
    const a = await direct();
    const b = await sandboxed();
    d.lat.push(...a.lat);
    s.lat.push(...b.lat);
    d.bps.push(...a.bps);
    s.bps.push(...b.bps);
  }
  const med = (xs: number[]) => pct(xs, 0.5);
  const rows = [
    ['', 'connect p50 ms', 'connect p90 ms', 'throughput MB/s'],
    ['direct (host process)', pct(d.lat, 0.5).toFixed(3), pct(d.lat, 0.9).toFixed(3), (med(d.bps) / 1e6).toFixed(0)],
    ['sandbox, policy (seccomp + ADDFD)', pct(s.lat, 0.5).toFixed(3), pct(s.lat, 0.9).toFixed(3), (med(s.bps) / 1e6).toFixed(0)],
  ];
  for (const r of rows) console.log(`${r[0]!.padEnd(36)}${r.slice(1).map((c) => c.padStart(17)).join('')}`);
  const dp50 = pct(d.lat, 0.5), sp50 = pct(s.lat, 0.5);
  const ratio = med(s.bps) / med(d.bps);
  const range = (xs: number[]) => `${(Math.min(...xs) / 1e6).toFixed(0)}-${(Math.max(...xs) / 1e6).toFixed(0)}`;
  console.log(`\n${ROUNDS} rounds × ${N} connections and ${DOWNLOADS} downloads of ${BYTES / 1024 / 1024} MiB, direct and sandboxed alternating`);
  console.log(`downloads, MB/s: direct ${range(d.bps)}, sandbox ${range(s.bps)} (${d.bps.length} each; the ratio is of the medians)`);
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
