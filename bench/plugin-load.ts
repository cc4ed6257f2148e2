/**
 * Plugin load benchmark: how long until a plugin answers, warm (from a RunnerPool) and cold,
 * beside the ways a Node host can otherwise start code: a Node process (`node -e 0`), a forked
 * child to its first message, a worker thread to its first message, an isolated-vm isolate to its
 * first call. One run, rounds interleaved so that a busy moment of the machine hits every row alike.
 *
 * warden rows time RunnerPool.start() until it resolves: reading and digesting the plugin's files,
 * fitting the runner (limits lowered, exec guard stacked), sending the files, the runner writing
 * them and loading the plugin, and its answer with the plugin's methods. The plugin: three small
 * files, strict seccomp, no network, no exec. After a warm start the pool refills; every row
 * waits for it, so the refill's CPU never lands in a measurement.
 *
 * Targets (issue 7): warm p50 ≤ 5 ms; cold p50 ≤ 1.2 × `node -e 0`. Issue 17: warm p50 ≤ 0.5 × the
 * isolated-vm row (an isolate, a context, the code and its first call).
 * Environment: every process row runs with the environment PATH only (as warden's sandbox does);
 * `node -e 0` with this process's environment is shown too, since variables such as
 * NODE_EXTRA_CA_CERTS add tens of milliseconds to every Node start.
 */
import { fork, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Worker } from 'node:worker_threads';

import { RunnerPool } from '../lib/pool';
import { spawnNode } from '../lib/process/spawn-node';

const N = Number(process.env.BENCH_LOAD_N ?? 40);
const WARMUP = 3;
const root = path.join(__dirname, '..', '..', 'bench');
const CLEAN_ENV = { PATH: process.env.PATH ?? '/usr/bin:/bin' };
const LIMITS = { memory: '256M', pids: 64 };
const CEILING = { memory: '512M', pids: 128 };

type Sample = () => Promise<number>;

function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((s.length * p) / 100))]!;
}

function pluginDir(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'warden-load-'));
  fs.chmodSync(dir, 0o755);
  fs.mkdirSync(path.join(dir, 'lib'), { mode: 0o755 });
  fs.writeFileSync(path.join(dir, 'package.json'), JSON.stringify({ name: 'bench-plugin', version: '1.0.0', main: 'index.js' }), { mode: 0o644 });
  fs.writeFileSync(path.join(dir, 'lib', 'greet.js'), "exports.greet = (n) => `hello ${n}`;\n", { mode: 0o644 });
  fs.writeFileSync(path.join(dir, 'index.js'), "const { greet } = require('./lib/greet');\nexports.ping = () => 'pong';\nexports.greet = greet;\n", { mode: 0o644 });
  return dir;
}

function timeProcess(args: string[], env: NodeJS.ProcessEnv): Promise<number> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const c = spawn(process.execPath, args, { stdio: 'ignore', env });
    c.on('error', reject);
    c.on('exit', () => resolve(performance.now() - t0));
  });
}

function timeFork(): Promise<number> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const c = fork(path.join(root, 'load-peer.js'), [], { stdio: 'ignore', env: CLEAN_ENV });
    c.on('error', reject);
    c.once('message', () => {
      const t = performance.now() - t0;
      c.kill('SIGKILL');
      c.once('exit', () => resolve(t));
    });
  });
}

function timeWorker(): Promise<number> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const w = new Worker(path.join(root, 'load-peer.js'));
    w.on('error', reject);
    w.once('message', () => {
      const t = performance.now() - t0;
      void w.terminate().then(() => resolve(t));
    });
  });
}

async function isolatedVm(): Promise<Sample | string> {
  let ivm: typeof import('isolated-vm');
  try {
    ivm = (await import('isolated-vm')).default ?? (await import('isolated-vm'));
  } catch (e) {
    return `not available: ${(e as Error).message.split('\n')[0]}`;
  }
  return async () => {
    const t0 = performance.now();
    const iso = new ivm.Isolate({ memoryLimit: 128 });
    const ctx = await iso.createContext();
    await ctx.eval("globalThis.ping = () => 'pong';");
    const ping = (await ctx.global.get('ping', { reference: true })) as import('isolated-vm').Reference<() => string>;
    await ping.apply(undefined, []);
    const t = performance.now() - t0;
    iso.dispose();
    return t;
  };
}

async function main(): Promise<void> {
  const dir = pluginDir();
  const entry = path.join(dir, 'index.js');
  const pool = new RunnerPool({ size: 1, limits: CEILING });
  const cold = new RunnerPool({ size: 0 });
  const settle = () => new Promise((r) => setTimeout(r, 20));

  const warden = (p: RunnerPool, options: Parameters<RunnerPool['start']>[1], expectWarm: boolean): Sample => async () => {
    const t0 = performance.now();
    const h = await p.start(entry, options);
    const t = performance.now() - t0;
    if (h.warm !== expectWarm) throw new Error(`expected a ${expectWarm ? 'warm' : 'cold'} start`);
    if ((await h.call('ping')) !== 'pong') throw new Error('the plugin did not answer');
    await h.close();
    return t;
  };
  const bindCold: Sample = async () => {
    const t0 = performance.now();
    const h = await spawnNode(entry, { limits: LIMITS });
    const t = performance.now() - t0;
    await h.close();
    return t;
  };

  const ivm = await isolatedVm();
  const rows: Array<{ name: string; run?: Sample; note?: string; xs: number[] }> = [
    { name: 'warden warm (pool), limits lowered in place', run: warden(pool, { limits: LIMITS }, true), xs: [] },
    { name: 'warden cold, files copied, cgroup limits', run: warden(cold, { limits: LIMITS }, false), xs: [] },
    { name: 'warden cold, files copied, no cgroup', run: warden(cold, {}, false), xs: [] },
    { name: 'warden cold, plugin dir bound (spawnNode), cgroup limits', run: bindCold, xs: [] },
    { name: '`node -e 0`', run: () => timeProcess(['-e', '0'], CLEAN_ENV), xs: [] },
    { name: '`node -e 0`, with this process\'s environment', run: () => timeProcess(['-e', '0'], process.env), xs: [] },
    { name: 'child_process.fork to first message', run: timeFork, xs: [] },
    { name: 'worker_threads to first message (in-process)', run: timeWorker, xs: [] },
    typeof ivm === 'string'
      ? { name: 'isolated-vm isolate + first call (in-process)', note: ivm, xs: [] }
      : { name: 'isolated-vm isolate + first call (in-process)', run: ivm, xs: [] },
  ];

  for (let round = 0; round < WARMUP + N; round++) {
    for (const r of rows) {
      if (r.run === undefined) continue;
      try {
        // Every row waits for the pool's refill after a warm start: its Node boot would otherwise
        // share the two cores with whichever row comes next.
        await pool.waitIdle();
        await settle();
        const t = await r.run();
        if (round >= WARMUP) r.xs.push(t);
      } catch (e) {
        r.note = `failed: ${(e as Error).message}`;
        r.run = undefined;
      }
    }
  }
  await pool.close();
  await cold.close();
  fs.rmSync(dir, { recursive: true, force: true });

  const byName = (prefix: string) => rows.find((r) => r.name.startsWith(prefix) && r.xs.length > 0);
  const fmt = (x: number) => x.toFixed(x < 10 ? 2 : 1);
  const lines = [
    `plugin load, ${N} runs per row after ${WARMUP} warm-up rounds, rows interleaved; ${os.cpus().length} cores, Linux ${os.release()}, Node ${process.version}`,
    '',
    '| what | p50 ms | p99 ms |',
    '|---|---:|---:|',
    ...rows.map((r) => (r.xs.length > 0 ? `| ${r.name} | ${fmt(pct(r.xs, 50))} | ${fmt(pct(r.xs, 99))} |` : `| ${r.name} | ${r.note ?? 'not measured'} | |`)),
    '',
  ];
  const warm = byName('warden warm');
  const node0 = byName('`node -e 0`');
  const coldCg = byName('warden cold, files copied, cgroup');
  const coldPlain = byName('warden cold, files copied, no cgroup');
  const ivmRow = byName('isolated-vm');
  if (warm) lines.push(`- warm p50: ${fmt(pct(warm.xs, 50))} ms (target ≤ 5 ms)`);
  if (warm && ivmRow) lines.push(`- warm p50 / isolated-vm isolate + first call p50: ${(pct(warm.xs, 50) / pct(ivmRow.xs, 50)).toFixed(2)}x (issue 17: ≤ 0.5x)`);
  if (node0 && coldPlain) lines.push(`- cold p50 / \`node -e 0\` p50: ${(pct(coldPlain.xs, 50) / pct(node0.xs, 50)).toFixed(2)}x without a cgroup (target ≤ 1.2x)`);
  if (node0 && coldCg) lines.push(`- cold p50 / \`node -e 0\` p50: ${(pct(coldCg.xs, 50) / pct(node0.xs, 50)).toFixed(2)}x with cgroup limits`);
  for (const r of rows) if (r.note && r.xs.length > 0) lines.push(`- ${r.name}: ${r.note}`);
  process.stdout.write(`${lines.join('\n')}\n`);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
