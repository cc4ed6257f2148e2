/**
 * npm run bench:fanout — one parallel hook over N plugins, against the same fan-out over N
 * `worker_threads` and over N `child_process` children (IPC through process.send), in the same run.
 *
 * For each N (--sizes, default 20,200,1000) and each of the three:
 *  - throughput: plugin calls per second (one invoke = N plugin calls), --inflight invokes in flight
 *    (default 4, as bench:scale);
 *  - invoke p50 / p99: from invoke to the last of its N answers;
 *  - cpu per plugin call: host (process.cpuUsage: every thread of this process, so a worker's cpu is
 *    in it) + runners (warden: the sandboxes' cgroups, cpuacct.usage or cpu.stat usage_usec; children:
 *    /proc/<pid>/stat, 10 ms ticks, so enough calls must run for it to mean anything).
 * Ratios are against worker_threads. Every answer is checked; a failed or missing answer makes the
 * run exit 1.
 *
 * Each plugin (and each peer) answers with the argument it got: the cost measured is the call path,
 * not the handler. The peers carry the same argument and answer as plain structured-clone messages.
 *
 * Beside them, the floor of the mechanics on this machine (bench/fanout-floor.c, built with `cc`):
 * the same fan-out, wake-ups and collection in C over N processes and over N threads, with nothing
 * else in the way, and again with 1 MiB of each sleeper's memory touched per wake-up (a stand-in for
 * a runtime's working set). The processes / threads ratio of the floor is what one process per
 * plugin costs here before any JavaScript runs.
 *
 * Options: --sizes 20,200 (which N, comma-separated), --calls C (plugin calls measured per N and
 * contestant, default 40000; the invokes are C / N, at least --min-rounds, default 10), --inflight I,
 * --warmup W (invokes before measuring, default 5), --peers-max N (no peers above this N: 1000 node
 * children take ~40 MB each; default no limit), --no-floor (skip the C floor), --launcher <module>
 * (bench/launcher-arg.ts).
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Worker } from 'node:worker_threads';

import { PluginHost } from '../lib/plugins';
import { argNumber, argValue, hostCpuMs, pluginName, processCpuMs, runnerPids, sandboxTotals, table } from '../test/helpers/scale';
import { PluginWorld } from '../test/helpers/plugins';
import { launcherFromArgs } from './launcher-arg';

const HOOK = 'fanout.all';

interface Result {
  name: string;
  pluginCalls: number;
  ms: number;
  latencies: number[];
  hostCpuMs: number;
  runnersCpuMs: number;
  runnersCpuFrom: string;
  failures: string[];
}

/** What the contestants share: fan one argument out to N and wait for every answer. */
interface FanOut {
  name: string;
  n: number;
  /** Resolves with every answer, in any order. */
  invoke(arg: number): Promise<unknown[]>;
  /** Runner cpu so far, ms, and where it comes from. */
  runnersCpu(): { ms: number; from: string };
  close(): Promise<void>;
}

function pct(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

async function measure(f: FanOut, rounds: number, inflight: number, warmup: number): Promise<Result> {
  const r: Result = { name: f.name, pluginCalls: 0, ms: 0, latencies: [], hostCpuMs: 0, runnersCpuMs: 0, runnersCpuFrom: '', failures: [] };
  const one = async (i: number): Promise<void> => {
    const t = performance.now();
    let values: unknown[];
    try {
      values = await f.invoke(i);
    } catch (e) {
      r.failures.push(`${f.name} #${i}: ${(e as Error).message}`);
      return;
    }
    r.latencies.push(performance.now() - t);
    const good = values.filter((v) => v === i).length;
    r.pluginCalls += good;
    if (good !== f.n) r.failures.push(`${f.name} #${i}: ${good} right answers of ${f.n}`);
  };
  for (let i = 0; i < warmup; i++) await one(-1 - i);
  r.latencies = [];
  r.pluginCalls = 0;
  const h0 = hostCpuMs();
  const c0 = f.runnersCpu();
  const t0 = performance.now();
  let next = 0;
  await Promise.all(Array.from({ length: Math.min(inflight, rounds) }, async () => {
    while (next < rounds) await one(next++);
  }));
  r.ms = performance.now() - t0;
  r.hostCpuMs = hostCpuMs() - h0;
  const c1 = f.runnersCpu();
  r.runnersCpuMs = c1.ms - c0.ms;
  r.runnersCpuFrom = c1.from;
  r.latencies.sort((a, b) => a - b);
  return r;
}

// ------------------------------------------------------------------------------------------ warden

async function wardenFanOut(n: number): Promise<FanOut> {
  const world = await PluginWorld.create();
  const names: string[] = [];
  for (let i = 0; i < n; i++) {
    const name = pluginName(i);
    names.push(name);
    world.writePlugin(name, { code: `'use strict';\nexports.activate = (host) => { host.hook(${JSON.stringify(HOOK)}, (i) => i); };\n`, hooks: [HOOK] });
    await world.trust(name);
  }
  await world.publish();
  const choice = await launcherFromArgs();
  const host = new PluginHost({
    pluginDirs: [world.pluginsDir],
    trust: { store: world.store(), file: world.trustFile },
    hostApiVersion: '1.2.0',
    hooks: [{ name: HOOK, mode: 'parallel' }],
    audit: world.auditPath,
    // A memory limit gives every sandbox its cgroups, whose cpu accounting is read here.
    limits: { memory: '256M', callTimeout: '5s' },
    launcher: choice.launcher,
  });
  const close = async () => {
    await host.close();
    await choice.close();
    world.cleanup();
  };
  try {
    await host.start();
    const down = host.plugins().filter((p) => p.status !== 'active');
    if (down.length > 0) throw new Error(`${down.length} of ${n} plugins not active after start(), e.g. ${down[0]!.name}: ${down[0]!.reason?.message ?? down[0]!.status}`);
  } catch (e) {
    await close();
    throw e;
  }
  const pids = runnerPids(host);
  return {
    name: `warden (${choice.name})`,
    n,
    invoke: async (arg) => {
      const r = await host.invoke(HOOK, [arg]);
      const bad = r.outcomes.find((o) => !o.ok);
      if (bad) throw new Error(`${bad.owner}: ${bad.error?.code ?? ''} ${bad.error?.message ?? ''}`);
      return r.values;
    },
    runnersCpu: () => {
      const ns = sandboxTotals().cpuNs;
      if (ns > 0) return { ms: ns / 1e6, from: 'cgroups' };
      return { ms: pids.reduce((a, p) => a + (processCpuMs(p) ?? 0), 0), from: '/proc/<pid>/stat' };
    },
    close,
  };
}

// ------------------------------------------------------------------------------------------- peers

/** Matches answers `{ id, v }` to the invoke that sent `id`, resolving once all n have come. */
class Collector {
  private seq = 0;
  private readonly open = new Map<number, { values: unknown[]; resolve: (v: unknown[]) => void }>();
  constructor(private readonly n: number) {}
  start(): { id: number; done: Promise<unknown[]> } {
    const id = this.seq++;
    let resolve!: (v: unknown[]) => void;
    const done = new Promise<unknown[]>((r) => { resolve = r; });
    this.open.set(id, { values: [], resolve });
    return { id, done };
  }
  answer(m: { id: number; v: unknown }): void {
    const o = this.open.get(m.id);
    if (!o) return;
    o.values.push(m.v);
    if (o.values.length === this.n) {
      this.open.delete(m.id);
      o.resolve(o.values);
    }
  }
}

const PEER_CODE = `
const port = require('node:worker_threads').parentPort;
if (port) port.on('message', (m) => port.postMessage({ id: m.id, v: m.arg }));
else process.on('message', (m) => process.send({ id: m.id, v: m.arg }));
`;

async function threadsFanOut(n: number): Promise<FanOut> {
  const c = new Collector(n);
  const workers: Worker[] = [];
  for (let i = 0; i < n; i++) {
    const w = new Worker(PEER_CODE, { eval: true });
    w.on('message', (m) => c.answer(m));
    workers.push(w);
  }
  await Promise.all(workers.map((w) => new Promise((r) => w.once('online', r))));
  return {
    name: 'worker_threads (postMessage)',
    n,
    invoke: (arg) => {
      const { id, done } = c.start();
      for (const w of workers) w.postMessage({ id, arg });
      return done;
    },
    // Workers are threads of this process: their cpu is in process.cpuUsage.
    runnersCpu: () => ({ ms: 0, from: 'in the host (threads)' }),
    close: async () => { await Promise.all(workers.map((w) => w.terminate())); },
  };
}

async function childrenFanOut(n: number): Promise<FanOut> {
  const c = new Collector(n);
  const children: ChildProcess[] = [];
  for (let i = 0; i < n; i++) {
    const ch = spawn(process.execPath, ['-e', PEER_CODE], { stdio: ['ignore', 'ignore', 'inherit', 'ipc'] });
    ch.on('message', (m) => c.answer(m as { id: number; v: unknown }));
    children.push(ch);
  }
  await Promise.all(children.map((ch) => new Promise((r) => ch.once('spawn', r))));
  // A child is ready when it answers.
  const first = c.start();
  for (const ch of children) ch.send({ id: first.id, arg: 0 });
  await first.done;
  const pids = children.map((ch) => ch.pid!);
  return {
    name: 'child_process (process.send)',
    n,
    invoke: (arg) => {
      const { id, done } = c.start();
      for (const ch of children) ch.send({ id, arg });
      return done;
    },
    runnersCpu: () => ({ ms: pids.reduce((a, p) => a + (processCpuMs(p) ?? 0), 0), from: '/proc/<pid>/stat' }),
    close: async () => {
      await Promise.all(children.map((ch) => new Promise((r) => {
        ch.once('exit', r);
        ch.kill('SIGKILL');
      })));
    },
  };
}

// -------------------------------------------------------------------------------------------- floor

interface Floor {
  callsPerSecond: number;
  cpuUsPerCall: number;
  hostCpuUsPerCall: number;
}

/** Builds bench/fanout-floor.c into a temporary directory; returns the program and its cleanup. */
function buildFloor(): { exe: string; cleanup: () => void } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'warden-fanout-floor-'));
  const exe = path.join(dir, 'fanout-floor');
  try {
    execFileSync('cc', ['-O2', '-pthread', '-o', exe, path.join(__dirname, '..', '..', 'bench', 'fanout-floor.c')], { stdio: ['ignore', 'ignore', 'inherit'] });
  } catch (e) {
    fs.rmSync(dir, { recursive: true, force: true });
    throw new Error(`building bench/fanout-floor.c with cc failed (install a C compiler, or pass --no-floor): ${(e as Error).message}`);
  }
  return { exe, cleanup: () => fs.rmSync(dir, { recursive: true, force: true }) };
}

function runFloor(exe: string, kind: 'processes' | 'threads', n: number, inflight: number, rounds: number, touchKiB: number): Floor {
  process.stderr.write(`  C floor, ${n} ${kind}${touchKiB > 0 ? `, ${touchKiB} KiB touched per wake-up` : ''}...\n`);
  const out = execFileSync(exe, [kind, String(n), String(inflight), String(rounds), String(touchKiB)], { encoding: 'utf8', timeout: 300_000 });
  const f = JSON.parse(out) as Floor;
  if (!(f.callsPerSecond > 0) || !(f.cpuUsPerCall > 0)) throw new Error(`fanout-floor printed ${out.trim()}`);
  return f;
}

// -------------------------------------------------------------------------------------------- main

async function run(make: () => Promise<FanOut>, rounds: number, inflight: number, warmup: number): Promise<Result> {
  const f = await make();
  process.stderr.write(`  ${f.name}: ${rounds} invokes over ${f.n}...\n`);
  try {
    return await measure(f, rounds, inflight, warmup);
  } finally {
    await f.close();
  }
}

async function main(): Promise<void> {
  const sizes = (argValue('sizes') ?? '20,200,1000').split(',').map((s) => Number(s.trim()));
  for (const s of sizes) if (!Number.isInteger(s) || s < 1) throw new Error(`--sizes must be positive integers separated by commas, got ${argValue('sizes')}`);
  const calls = argNumber('calls', 40000);
  const minRounds = argNumber('min-rounds', 10);
  const inflight = Math.max(1, argNumber('inflight', 4));
  const warmup = argNumber('warmup', 5);
  const peersMax = argNumber('peers-max', Infinity);
  const floor = process.argv.includes('--no-floor') ? undefined : buildFloor();
  const failures: string[] = [];
  const rows: string[][] = [];
  const floorNotes: string[] = [];
  for (const n of sizes) {
    const rounds = Math.max(minRounds, Math.ceil(calls / n));
    process.stderr.write(`N = ${n}\n`);
    const results: Result[] = [];
    results.push(await run(() => wardenFanOut(n), rounds, inflight, warmup));
    let threads: Result | undefined;
    if (n <= peersMax) {
      threads = await run(() => threadsFanOut(n), rounds, inflight, warmup);
      results.push(threads);
      results.push(await run(() => childrenFanOut(n), rounds, inflight, warmup));
    }
    for (const r of results) {
      failures.push(...r.failures);
      const perS = r.pluginCalls / (r.ms / 1000);
      const p50 = pct(r.latencies, 50);
      const p99 = pct(r.latencies, 99);
      const cpuUs = ((r.hostCpuMs + r.runnersCpuMs) * 1000) / Math.max(1, r.pluginCalls);
      const tPerS = threads ? threads.pluginCalls / (threads.ms / 1000) : NaN;
      const tCpu = threads ? ((threads.hostCpuMs + threads.runnersCpuMs) * 1000) / Math.max(1, threads.pluginCalls) : NaN;
      const ratio = (v: number, t: number) => (threads ? `${(v / t).toFixed(2)}×` : 'no peer');
      rows.push([
        String(n), r.name, perS.toFixed(0), ratio(perS, tPerS),
        p50.toFixed(2), ratio(p50, threads ? pct(threads.latencies, 50) : NaN), p99.toFixed(2),
        `${cpuUs.toFixed(1)} (host ${((r.hostCpuMs * 1000) / Math.max(1, r.pluginCalls)).toFixed(1)} + runners ${((r.runnersCpuMs * 1000) / Math.max(1, r.pluginCalls)).toFixed(1)}, ${r.runnersCpuFrom})`,
        ratio(cpuUs, tCpu),
      ]);
    }
    if (n > peersMax) rows.push([String(n), `peers skipped (--peers-max ${peersMax})`, '', '', '', '', '', '', '']);
    if (floor !== undefined) {
      const tPerS = threads ? threads.pluginCalls / (threads.ms / 1000) : NaN;
      const tCpu = threads ? ((threads.hostCpuMs + threads.runnersCpuMs) * 1000) / Math.max(1, threads.pluginCalls) : NaN;
      const ratio = (v: number, t: number) => (threads ? `${(v / t).toFixed(2)}×` : 'no peer');
      const floorRounds = Math.max(rounds, 50);
      for (const touch of [0, 1024]) {
        const got = { processes: runFloor(floor.exe, 'processes', n, inflight, floorRounds, touch), threads: runFloor(floor.exe, 'threads', n, inflight, floorRounds, touch) };
        for (const kind of ['processes', 'threads'] as const) {
          const f = got[kind];
          rows.push([
            String(n), `C floor: ${n} ${kind}${touch > 0 ? ', 1 MiB touched per wake-up' : ''}`, f.callsPerSecond.toFixed(0), ratio(f.callsPerSecond, tPerS),
            '–', '', '–', `${f.cpuUsPerCall.toFixed(1)} (coordinator ${f.hostCpuUsPerCall.toFixed(1)})`, ratio(f.cpuUsPerCall, tCpu),
          ]);
        }
        floorNotes.push(`N = ${n}${touch > 0 ? ', 1 MiB touched' : ''}: C processes / C threads ${(got.processes.callsPerSecond / got.threads.callsPerSecond).toFixed(2)}× the calls/s, ${(got.processes.cpuUsPerCall / got.threads.cpuUsPerCall).toFixed(2)}× the cpu per call`);
      }
    }
  }
  floor?.cleanup();
  const load = fs.readFileSync('/proc/loadavg', 'utf8').trim();
  process.stdout.write(`\n### bench:fanout — a parallel hook over N plugins (${inflight} invokes in flight; ${os.availableParallelism()} cores; loadavg ${load})\n\n`);
  process.stdout.write(table(['N', 'fan-out over', 'plugin calls/s', 'vs threads', 'invoke p50 ms', 'vs threads', 'invoke p99 ms', 'cpu µs per plugin call', 'vs threads'], rows));
  if (floorNotes.length > 0) process.stdout.write(`\nThe floor (the same fan-out in C, no runtime): ${floorNotes.join('; ')}.\n`);
  if (failures.length > 0) {
    process.stdout.write(`\nFAILED (${failures.length}):\n${failures.slice(0, 20).map((f) => `- ${f}`).join('\n')}\n`);
    process.exitCode = 1;
  }
}

main().catch((e) => {
  process.stderr.write(`${(e as Error)?.stack ?? String(e)}\n`);
  process.exitCode = 1;
});
