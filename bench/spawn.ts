/**
 * npm run bench:spawn — spawn-to-exit of /bin/true, side by side in one run:
 *   warden (full sandbox, default seccomp profile), the raw floor (clone with the same namespaces +
 *   exec, from a small C program), bwrap --unshare-all with equivalent mounts (spawned from this
 *   Node process, as a Node host would), and warden again while the host holds 2 GB.
 * Prints a markdown table of medians and the ratios the targets are stated in.
 */
import { execFileSync, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Sandbox } from '../lib/sandbox/sandbox';

const N = Number(process.env.WARDEN_BENCH_N ?? 200);
const WARMUP = 20;

function stats(samples: number[]): { p50: number; p90: number } {
  const s = [...samples].sort((a, b) => a - b);
  return { p50: s[Math.floor(s.length / 2)], p90: s[Math.floor(s.length * 0.9)] };
}

async function time(n: number, once: () => Promise<void>): Promise<{ p50: number; p90: number }> {
  for (let i = 0; i < WARMUP; i++) await once();
  const samples: number[] = [];
  for (let i = 0; i < n; i++) {
    const t0 = process.hrtime.bigint();
    await once();
    samples.push(Number(process.hrtime.bigint() - t0) / 1e3);
  }
  return stats(samples);
}

const warden = () => Sandbox.spawn({ command: ['/bin/true'], stdio: ['ignore', 'ignore', 'ignore'] }).exited.then(() => undefined);

function bwrapArgs(): string[] {
  const args = ['--unshare-all', '--die-with-parent', '--new-session'];
  for (const d of ['/usr', '/bin', '/sbin', '/lib', '/lib32', '/lib64', '/libx32']) {
    if (!fs.existsSync(d)) continue;
    if (fs.lstatSync(d).isSymbolicLink()) args.push('--symlink', fs.readlinkSync(d), d);
    else args.push('--ro-bind', d, d);
  }
  for (const f of ['/etc/ld.so.cache', '/etc/ld.so.conf', '/etc/ld.so.conf.d', '/etc/alternatives']) if (fs.existsSync(f)) args.push('--ro-bind', f, f);
  args.push('--proc', '/proc', '--dev', '/dev', '--tmpfs', '/tmp', '/bin/true');
  return args;
}

function bwrapOnce(bwrap: string, args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const c = spawn(bwrap, args, { stdio: 'ignore' });
    c.once('error', reject);
    c.once('exit', (code) => (code === 0 ? resolve() : reject(new Error(`bwrap exited ${code}`))));
  });
}

function which(cmd: string): string | null {
  for (const dir of (process.env.PATH ?? '/usr/bin:/bin').split(':')) {
    const p = path.join(dir, cmd);
    if (fs.existsSync(p)) return p;
  }
  return null;
}

/**
 * The raw floor as a helper process that makes one spawn per request: warden's spawns and the
 * floor's alternate one for one, so that each follows one of the other. (Measured in rounds of
 * twenty, the floor's tight C loop ran with caches warm and left its net namespaces' asynchronous
 * teardown to the warden round after it: the ratio read 0.05-0.1x worse than alternating.)
 */
function floorServer(exe: string): { once: () => Promise<number>; close: () => void } {
  const child = spawn(exe, ['/bin/true'], { stdio: ['pipe', 'pipe', 'inherit'] });
  const waiting: Array<{ resolve: (us: number) => void; reject: (e: Error) => void }> = [];
  let buffered = '';
  child.stdout!.setEncoding('utf8');
  child.stdout!.on('data', (d: string) => {
    buffered += d;
    for (let nl = buffered.indexOf('\n'); nl >= 0; nl = buffered.indexOf('\n')) {
      const line = buffered.slice(0, nl);
      buffered = buffered.slice(nl + 1);
      waiting.shift()?.resolve(Number(line));
    }
  });
  child.once('exit', (code) => {
    for (const w of waiting.splice(0)) w.reject(new Error(`the raw floor helper exited (${code})`));
  });
  return {
    once: () => new Promise((resolve, reject) => {
      waiting.push({ resolve, reject });
      child.stdin!.write('spawn\n');
    }),
    close: () => child.stdin!.end(),
  };
}

async function main(): Promise<void> {
  const rows: Array<[string, { p50: number; p90: number } | string]> = [];
  let floor: ReturnType<typeof floorServer> | undefined;
  let floorError = '';
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'warden-bench-'));
  try {
    const exe = path.join(dir, 'raw-floor');
    execFileSync('cc', ['-O2', '-o', exe, path.join(__dirname, '..', '..', 'bench', 'raw-floor.c')]);
    floor = floorServer(exe);
  } catch (err) {
    floorError = `not measured: ${(err as Error).message.split('\n')[0]}`;
  }
  const fullSamples: number[] = [];
  const floorSamples: number[] = [];
  for (let i = 0; i < WARMUP + N; i++) {
    const t0 = process.hrtime.bigint();
    await warden();
    if (i >= WARMUP) fullSamples.push(Number(process.hrtime.bigint() - t0) / 1e3);
    if (floor !== undefined) {
      try {
        const us = await floor.once();
        if (i >= WARMUP) floorSamples.push(us);
      } catch (err) {
        floor = undefined;
        floorError = `not measured: ${(err as Error).message}`;
      }
    }
  }
  floor?.close();
  fs.rmSync(dir, { recursive: true, force: true });
  const full = stats(fullSamples);
  rows.push(['warden, full sandbox', full]);
  const floorStats = floorSamples.length === N ? stats(floorSamples) : floorError;
  rows.push(['raw floor: clone(same namespaces) + exec, C', floorStats]);

  const bwrap = which('bwrap');
  const bw = bwrap === null ? 'not measured: bwrap is not installed (apt-get install bubblewrap)' : await time(N, () => bwrapOnce(bwrap, bwrapArgs()));
  rows.push(['bwrap --unshare-all, spawned from Node', bw]);

  // The host grows to 2 GB of touched memory: a fork()-based spawn would copy its page tables.
  const ballast: Buffer[] = [];
  for (let i = 0; i < 16; i++) ballast.push(Buffer.alloc(128 * 1024 * 1024, 1));
  const big = await time(N, warden);
  rows.push([`warden, host holding ${(process.memoryUsage().rss / 2 ** 30).toFixed(1)} GB RSS`, big]);
  const bwBig = bwrap === null ? 'not measured' : await time(Math.min(N, 50), () => bwrapOnce(bwrap, bwrapArgs()));
  rows.push(['bwrap, spawned from the same 2 GB host', bwBig]);
  ballast.length = 0;

  const fmt = (v: { p50: number; p90: number } | string) => (typeof v === 'string' ? `${v} | ` : `${(v.p50 / 1000).toFixed(2)} | ${(v.p90 / 1000).toFixed(2)}`);
  const lines = [
    `spawn-to-exit of /bin/true, ${N} runs each after ${WARMUP} warm-up runs (warden and the raw floor alternate spawn by spawn), one process, ${os.cpus().length} cores, Linux ${os.release()}, Node ${process.version}`,
    '',
    '| what | median ms | p90 ms |',
    '|---|---:|---:|',
    ...rows.map(([name, v]) => `| ${name} | ${fmt(v)} |`),
    '',
  ];
  const ratio = (a: unknown, b: unknown, target: string) =>
    typeof a === 'object' && typeof b === 'object' ? `${((a as { p50: number }).p50 / (b as { p50: number }).p50).toFixed(2)}x (target ${target})` : 'n/a';
  lines.push(`- warden / bwrap: ${ratio(full, bw, '≤ 0.5x')}`);
  lines.push(`- warden / raw floor: ${ratio(full, floorStats, '≤ 1.3x')}`);
  lines.push(`- warden with a 2 GB host / warden: ${ratio(big, full, '≤ 1.2x')}`);
  process.stdout.write(`${lines.join('\n')}\n`);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
