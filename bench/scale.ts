/**
 * npm run bench:scale — N plugins (default 200, --plugins N) loaded at once by one PluginHost, each in
 * its own sandbox with a memory limit (so each has its cgroups), then:
 *  - load: wall time of start() (at most --max-loads starts at once, default PluginHost's: 2 per
 *    core), against the target 1.3 × N × (a bare `node -e 0`, measured in the same run) / cores;
 *  - calls: a parallel hook every plugin handles, a 'first' hook that walks the plugins until the one
 *    named answers, and targeted calls of one plugin's own hook, spread at random; every answer is
 *    checked, and any failure makes the run exit 1;
 *  - memory: host RSS, the sandboxes' memory cgroups, the runners' PSS and RSS, per plugin;
 *  - idle: with everything loaded and no call for --idle seconds (default 10), the cpu time and the
 *    main-thread wake-ups (voluntary context switches) of the host and of all runners. Target ~0:
 *    nothing may poll per plugin.
 *  - observation: the usage history's sampling during the idle time, and one Prometheus scrape of
 *    every plugin's series (target: history and metrics together ≤ 1% of one core);
 *  - close: time to unload everything; fds and sandbox cgroups back to where they were.
 * Peer, measured in the same run: an idle bare `node` (child_process, no sandbox, no runner) for memory.
 *
 * Options: --plugins N, --rounds R (parallel hook invocations, default 20), --targeted T (default
 * 4000), --first F (default 100), --concurrency C (targeted calls in flight, default 64), --idle S,
 * --max-loads N (maxConcurrentLoads), --launcher <module> (see bench/launcher-arg.ts), --load-timeout MS (default: PluginHost's), --pids N
 * or none (each plugin's pids limit, default 64 as PluginHost's default; on a cgroup v1 host a pids
 * limit keeps one 10 ms timer running in the host, since v1 does not notify a refused fork).
 */
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import { monitorEventLoopDelay } from 'node:perf_hooks';

import { DEFAULT_LOADS_PER_CORE } from '../lib/defaults';
import { PluginHost, type LoadProgressEvent, type PluginInfo } from '../lib/plugins';
import type { HookResult } from '../lib/hooks';
import {
  argNumber, argValue, cgroupCount, fdCount, hostCpuMs, hostRss, mib, processCpuMs, processMemory, runnerPids, sandboxTotals,
  scaleHooks, scaleWorld, table,
} from '../test/helpers/scale';
import { launcherFromArgs } from './launcher-arg';
import { pollStats } from '../lib/limits/events';
import { statFileReads } from '../lib/limits/cgroupfs';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function ctxSwitches(pid: number | 'self'): number {
  try {
    // /proc/<pid>/status counts the main thread only: for a Node process, its event loop.
    const m = /^voluntary_ctxt_switches:\s+(\d+)/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : NaN;
  } catch {
    return NaN;
  }
}

function pct(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

interface CallStats {
  invokes: number;
  pluginCalls: number;
  failures: string[];
  ms: number;
  latencies: number[];
}

async function runPool<T>(count: number, concurrency: number, fn: (i: number) => Promise<T>): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < count) await fn(next++);
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, worker));
}

async function calls(host: PluginHost, names: string[], what: 'all' | 'first' | 'one', count: number, concurrency: number): Promise<CallStats> {
  const s: CallStats = { invokes: 0, pluginCalls: 0, failures: [], ms: 0, latencies: [] };
  const t0 = performance.now();
  await runPool(count, concurrency, async (i) => {
    const target = names[Math.floor(Math.random() * names.length)]!;
    const started = performance.now();
    let r: HookResult;
    try {
      if (what === 'all') r = await host.invoke('scale.all', [i]);
      else if (what === 'first') r = await host.invoke('scale.first', [target]);
      else r = await host.invoke(`scale.one.${target}`, [i]);
    } catch (e) {
      s.failures.push(`${what} #${i}: invoke threw ${(e as Error).message}`);
      return;
    }
    s.latencies.push(performance.now() - started);
    s.invokes++;
    s.pluginCalls += r.outcomes.length;
    for (const o of r.outcomes) if (!o.ok) s.failures.push(`${what} #${i}: ${o.owner}: ${o.error?.code ?? ''} ${o.error?.message ?? ''}`);
    if (what === 'all' && r.values.length !== names.length) s.failures.push(`all #${i}: ${r.values.length} answers of ${names.length}`);
    if (what === 'first' && r.value !== target) s.failures.push(`first #${i}: answered ${String(r.value)}, expected ${target}`);
    if (what === 'one' && (r.values.length !== 1 || r.values[0] !== i)) s.failures.push(`one #${i}: answered ${JSON.stringify(r.values)}`);
  });
  s.ms = performance.now() - t0;
  s.latencies.sort((a, b) => a - b);
  return s;
}

/** An idle bare node (no sandbox, no runner, no plugin): the floor of what a Node process costs. */
async function bareNodePeer(): Promise<{ rss: number; pss: number } | undefined> {
  const child = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60000)'], { stdio: 'ignore' });
  await sleep(1000);
  const m = child.pid === undefined ? undefined : processMemory(child.pid);
  child.kill('SIGKILL');
  await new Promise((r) => child.once('exit', r));
  return m;
}

/** Mean wall time of a bare `node -e 0`, run `times` times one after the other: the peer of a cold start. */
function nodeStartMs(times: number): number {
  const t0 = performance.now();
  for (let i = 0; i < times; i++) spawnSync(process.execPath, ['-e', '0'], { stdio: 'ignore' });
  return (performance.now() - t0) / times;
}

async function main(): Promise<void> {
  const n = argNumber('plugins', 200);
  const rounds = argNumber('rounds', 20);
  const targeted = argNumber('targeted', 4000);
  const firsts = argNumber('first', 100);
  const concurrency = Math.max(1, argNumber('concurrency', 64));
  const idleS = argNumber('idle', 10);
  const loadTimeout = argValue('load-timeout');
  const pids = argValue('pids') ?? '64';
  const maxLoads = argValue('max-loads');
  const choice = await launcherFromArgs();

  process.stderr.write(`creating and signing ${n} plugins...\n`);
  const { world, names } = await scaleWorld(n);
  const failures: string[] = [];
  const rows: Array<[string, string]> = [];
  let exitCode = 0;
  const fds0 = fdCount();
  const cgroups0 = cgroupCount();
  const rss0 = hostRss();
  const host = new PluginHost({
    pluginDirs: [world.pluginsDir],
    trust: { store: world.store(), file: world.trustFile },
    hostApiVersion: '1.2.0',
    hooks: scaleHooks(names),
    audit: world.auditPath,
    // The default limits, spelled out: a memory limit gives every sandbox its cgroups.
    limits: pids === 'none' ? { memory: '256M', callTimeout: '5s' } : { memory: '256M', pids: Number(pids), callTimeout: '5s' },
    launcher: choice.launcher,
    ...(loadTimeout !== undefined ? { loadTimeoutMs: Number(loadTimeout) } : {}),
    ...(maxLoads !== undefined ? { maxConcurrentLoads: Number(maxLoads) } : {}),
  });
  host.on('load-progress', (p: LoadProgressEvent) => {
    const settled = p.loaded + p.failed;
    if (settled % 100 === 0 || settled === p.total) process.stderr.write(`  ${settled}/${p.total} settled (${p.failed} failed, ${p.queued} waiting)\n`);
  });
  try {
    const cores = os.availableParallelism();
    const nodeMs = nodeStartMs(20);
    const targetMs = (1.3 * n * nodeMs) / cores;
    process.stderr.write(`loading ${n} plugins (${choice.name})...\n`);
    const cpuLoad0 = hostCpuMs();
    const pollLoad0 = { ...pollStats };
    // How long the host's event loop stood still at a time while the plugins started: what the
    // application and the plugins already loaded waited (sampled every 1 ms).
    const loopDelay = monitorEventLoopDelay({ resolution: 1 });
    loopDelay.enable();
    const t0 = performance.now();
    await host.start();
    const loadMs = performance.now() - t0;
    loopDelay.disable();
    const loadCpu = hostCpuMs() - cpuLoad0;
    const infos = host.plugins();
    const notActive = infos.filter((p: PluginInfo) => p.status !== 'active');
    for (const p of notActive) failures.push(`load ${p.name}: ${p.status} ${p.reason?.message ?? ''}`);
    rows.push(['plugins active after start()', `${infos.length - notActive.length} of ${n}`]);
    rows.push(['start() wall time', `${(loadMs / 1000).toFixed(2)} s (${(loadMs / n).toFixed(1)} ms per plugin; ${maxLoads ?? `default ${DEFAULT_LOADS_PER_CORE * cores}`} starts at once)`]);
    rows.push(['peer: bare `node -e 0` (mean of 20, one after the other)', `${nodeMs.toFixed(1)} ms; target 1.3 × ${n} × that / ${cores} cores = ${(targetMs / 1000).toFixed(2)} s; start() is ${(loadMs / targetMs).toFixed(2)}× the target`]);
    rows.push(['host cpu during load', `${(loadCpu / 1000).toFixed(2)} s`]);
    rows.push(['during load: host event-loop delay (1 ms timer)', `p50 ${(loopDelay.percentile(50) / 1e6).toFixed(1)} ms, p99 ${(loopDelay.percentile(99) / 1e6).toFixed(1)} ms, max ${(loopDelay.max / 1e6).toFixed(1)} ms`]);
    const loadSweeps = pollStats.sweeps - pollLoad0.sweeps;
    rows.push(['during load: v1 pids counter sweeps (budget ≤ 1/10 of a core)', `${loadSweeps} sweeps, ${((pollStats.sweepMs - pollLoad0.sweepMs) / 1000).toFixed(2)} s; longest wait for the budget ${pollStats.maxOwedMs.toFixed(0)} ms`]);
    rows.push(['launcher; limits per plugin', `${choice.name}; memory 256M, pids ${pids}`]);

    const active = names.filter((name) => host.status(name) === 'active');
    if (active.length > 0) {
      process.stderr.write('calling...\n');
      const all = await calls(host, active, 'all', rounds, 4);
      const one = await calls(host, active, 'one', targeted, concurrency);
      const first = await calls(host, active, 'first', firsts, 8);
      for (const [label, s] of [[`parallel hook over all ${active.length} (4 in flight)`, all], [`targeted hook of one plugin (${concurrency} in flight)`, one], ['first hook, walks until the named one (8 in flight)', first]] as const) {
        failures.push(...s.failures);
        rows.push([`${label}`, `${s.invokes} invokes, ${s.pluginCalls} plugin calls, ${s.failures.length} failed; ${(s.pluginCalls / (s.ms / 1000)).toFixed(0)} plugin calls/s; invoke p50 ${pct(s.latencies, 50).toFixed(2)} ms, p99 ${pct(s.latencies, 99).toFixed(2)} ms`]);
      }
    }

    await sleep(1000);
    const runners = runnerPids(host);
    const totals = sandboxTotals();
    let pss = 0;
    let rss = 0;
    for (const pid of runners) {
      const m = processMemory(pid);
      if (m) {
        pss += m.pss;
        rss += m.rss;
      }
    }
    const hostRssNow = hostRss();
    const k = Math.max(1, runners.length);
    rows.push(['host RSS', `${mib(hostRssNow)} MiB (${mib(rss0)} MiB before start: +${mib(hostRssNow - rss0)} MiB, ${((hostRssNow - rss0) / k / 1024).toFixed(0)} KiB per plugin)`]);
    rows.push(['sandboxes, memory cgroups (sum of usage)', `${mib(totals.cgroupMemory)} MiB over ${totals.sandboxes} sandboxes, ${mib(totals.cgroupMemory / Math.max(1, totals.sandboxes))} MiB each`]);
    rows.push(['runners, PSS (sum)', `${mib(pss)} MiB, ${mib(pss / k)} MiB each`]);
    rows.push(['runners, RSS (sum, shared pages counted each time)', `${mib(rss)} MiB, ${mib(rss / k)} MiB each`]);
    const peer = await bareNodePeer();
    if (peer) rows.push(['peer: idle bare node (no sandbox, no runner)', `PSS ${mib(peer.pss)} MiB, RSS ${mib(peer.rss)} MiB`]);

    if (idleS > 0) {
      process.stderr.write(`idle for ${idleS} s...\n`);
      await sleep(1000); // let the calls' garbage and timers settle
      const pt0 = { ...pollStats };
      const ob0 = { ...host.metrics.cost };
      const reads0 = statFileReads.count;
      const hc0 = hostCpuMs();
      const hs0 = ctxSwitches('self');
      const sb0 = sandboxTotals().cpuNs;
      const rc0 = runners.map((p) => processCpuMs(p) ?? 0).reduce((a, b) => a + b, 0);
      const rs0 = runners.map((p) => ctxSwitches(p)).reduce((a, b) => a + b, 0);
      const i0 = performance.now();
      await sleep(idleS * 1000);
      const idleMs = performance.now() - i0;
      const hostIdle = hostCpuMs() - hc0;
      const hostWakes = ctxSwitches('self') - hs0;
      const sbIdle = (sandboxTotals().cpuNs - sb0) / 1e6;
      const rcIdle = runners.map((p) => processCpuMs(p) ?? 0).reduce((a, b) => a + b, 0) - rc0;
      const rsIdle = runners.map((p) => ctxSwitches(p)).reduce((a, b) => a + b, 0) - rs0;
      const perS = (v: number) => (v / (idleMs / 1000)).toFixed(1);
      rows.push([`idle ${idleS} s: host cpu`, `${hostIdle.toFixed(1)} ms (${perS(hostIdle)} ms/s; the sleep timer of this benchmark included)`]);
      rows.push([`idle ${idleS} s: host main-thread wake-ups`, `${hostWakes} (${perS(hostWakes)}/s)`]);
      rows.push([`idle ${idleS} s: v1 pids poll ticks / counter sweeps`, `${pollStats.ticks - pt0.ticks} / ${pollStats.sweeps - pt0.sweeps}`]);
      rows.push([`idle ${idleS} s: sandboxes cpu (cgroups)`, `${sbIdle.toFixed(1)} ms (${perS(sbIdle)} ms/s over ${runners.length} sandboxes)`]);
      rows.push([`idle ${idleS} s: runners cpu (/proc/<pid>/stat, 10 ms ticks)`, `${rcIdle.toFixed(0)} ms`]);
      rows.push([`idle ${idleS} s: runners main-thread wake-ups`, `${rsIdle} (${perS(rsIdle)}/s over ${runners.length} runners)`]);
      const obMs = host.metrics.cost.ms - ob0.ms;
      const ticks = host.metrics.cost.ticks - ob0.ticks;
      rows.push([`idle ${idleS} s: usage history sampling (every ${host.metrics.intervalMs} ms)`, `${ticks} ticks, cpu ${obMs.toFixed(1)} ms (${((obMs / idleMs) * 100).toFixed(3)}% of one core); ${ticks > 0 ? ((statFileReads.count - reads0) / ticks / n).toFixed(2) : '-'} cgroup file reads per plugin per tick`]);
      // A Prometheus scrape of every plugin's series, as a server scraping every 15 s would cost.
      const { Registry } = await import('prom-client');
      const registry = new Registry();
      host.metrics.register(registry);
      // The first scrape pays for compiling the formatting code; a server scrapes again and again, so
      // the cost is the mean of the next ones (cpu includes V8's helper threads: GC of the strings).
      const first0 = performance.now();
      await registry.metrics();
      const firstMs = performance.now() - first0;
      const scrapes = 5;
      let text = '';
      let wallMax = 0;
      // The scrape hands its families over turn by turn: what the application waits for is the
      // longest the event loop stood still meanwhile (a 1 ms timer's delay), not the scrape's wall time.
      const scrapeDelay = monitorEventLoopDelay({ resolution: 1 });
      scrapeDelay.enable();
      const sc0 = process.cpuUsage();
      for (let i = 0; i < scrapes; i++) {
        const w0 = performance.now();
        text = await registry.metrics();
        wallMax = Math.max(wallMax, performance.now() - w0);
      }
      const sc = process.cpuUsage(sc0);
      scrapeDelay.disable();
      const scrapeMs = (sc.user + sc.system) / 1000 / scrapes;
      rows.push([`metrics scrape (${n} plugins, ${text.split('\n').length} lines; mean of ${scrapes} after the first)`, `cpu ${scrapeMs.toFixed(1)} ms (${((scrapeMs / 15000) * 100).toFixed(3)}% of one core at one scrape per 15 s); wall up to ${wallMax.toFixed(1)} ms (the first scrape: ${firstMs.toFixed(1)} ms); the host's event loop late by at most ${(scrapeDelay.max / 1e6).toFixed(1)} ms meanwhile`]);
      rows.push(['history + metrics at idle (sampling, and a scrape per 15 s)', `${((obMs / idleMs + scrapeMs / 15000) * 100).toFixed(3)}% of one core (budget: 1%)`]);
    }

    process.stderr.write('closing...\n');
    const c0 = performance.now();
    await host.close();
    rows.push(['close (unload all)', `${((performance.now() - c0) / 1000).toFixed(2)} s`]);
  } finally {
    await host.close();
    await choice.close();
  }
  await sleep(100);
  const fds1 = fdCount();
  const cgroups1 = cgroupCount();
  rows.push(['fds before start / after close', `${fds0} / ${fds1}`]);
  rows.push(['sandbox cgroups before start / after close', `${cgroups0} / ${cgroups1}`]);
  if (fds1 !== fds0) failures.push(`fds: ${fds0} before, ${fds1} after close`);
  if (cgroups1 !== cgroups0) failures.push(`sandbox cgroups: ${cgroups0} before, ${cgroups1} after close`);
  world.cleanup();

  rows.push(['failures', String(failures.length)]);
  process.stdout.write(`\n### bench:scale — ${n} plugins, one host\n\n`);
  process.stdout.write(table(['measure', 'value'], rows));
  if (failures.length > 0) {
    exitCode = 1;
    process.stdout.write(`\nFAILED (${failures.length}):\n${failures.slice(0, 20).map((f) => `- ${f}`).join('\n')}\n`);
  }
  process.exitCode = exitCode;
}

main().catch((e) => {
  process.stderr.write(`${(e as Error)?.stack ?? String(e)}\n`);
  process.exitCode = 1;
});
