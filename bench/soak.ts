/**
 * npm run bench:soak — a long run of one PluginHost, looking for what grows.
 *
 *  phase A: --calls hook calls (default 1,000,000; a call is one plugin handler run) against --plugins
 *           loaded plugins (default 20): targeted calls of one plugin's own hook, every tenth invoke a
 *           parallel hook all of them handle, --concurrency invokes in flight (default 32).
 *  phase B: --cycles load/unload cycles (default 10,000), one worker per plugin; three cycles in four
 *           are unload + load, the fourth a hot reload (the new sandbox first, then the old one stops);
 *           meanwhile --calls-during-cycles invokes (default 2) of the parallel hook stay in flight.
 *
 * Host RSS, V8 heap, fds (/proc/self/fd) and sandbox cgroups (directories of this host in every
 * hierarchy) are sampled --samples times per phase (default 20) at quiet points: no call in flight,
 * every plugin loaded, after a full GC (run with --expose-gc, as the npm script does). Reported:
 * start, after warm-up (--warmup, default the first 10% of the phase), end, and growth.
 * Two bounded fills are kept out of the RSS target and shown instead: the channel rings' shared pages
 * (resident as messages walk through each plugin's fixed-size rings; measured from smaps and
 * subtracted) and the audit log's in-memory events (phase B's warm-up lasts until they are full).
 * Targets: RSS growth after warm-up ≤ 5% (--rss-target); fds and sandbox cgroups at the end of each phase exactly
 * as at its start; after close(), exactly as before the host started. Exits 1 if one is missed (or a
 * call or a cycle failed), saying which.
 *
 * A cold cycle starts a Node runner in a new sandbox and stops one: with one worker per plugin on a
 * 2-core machine that is ~25-40 cycles a second, so the default run (1,000,000 calls, 10,000 cycles)
 * takes about 8 minutes there. --quick is the CI size: 20,000 calls, 200 cycles, 10 plugins.
 * --launcher <module> uses another launcher (a warm pool; see bench/launcher-arg.ts).
 */
import { AuditLog } from '../lib/audit';
import { PluginHost } from '../lib/plugins';
import type { HookResult } from '../lib/hooks';
import { argNumber, argValue, cgroupCount, channelRingRss, fdCount, fdTargets, hostRss, mib, scaleHooks, scaleWorld, table } from '../test/helpers/scale';
import { launcherFromArgs } from './launcher-arg';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Sample {
  done: number;
  ms: number;
  rss: number;
  /** RSS of the channel rings' shared pages (part of rss). */
  rings: number;
  heap: number;
  heapTotal: number;
  external: number;
  fds: number;
  cgroups: number;
}

/** Events the audit log keeps in memory (its default, passed explicitly so the warm-up knows it). */
const AUDIT_MEMORY = 10_000;

/** Mapped per channel: the control page and two rings of the default 1 MiB. */
const RING_BYTES = 4096 + 2 * 1024 * 1024;

const gc = (globalThis as { gc?: () => void }).gc;

async function sample(done: number, t0: number): Promise<Sample> {
  // Let closes finish (libuv close callbacks, fs.watch teardown) and collect what can be collected.
  await sleep(20);
  if (gc) {
    gc();
    gc();
  }
  await sleep(5);
  const m = process.memoryUsage();
  return { done, ms: performance.now() - t0, rss: hostRss(), rings: channelRingRss(), heap: m.heapUsed, heapTotal: m.heapTotal, external: m.external, fds: fdCount(), cgroups: cgroupCount() };
}

interface PhaseReport {
  name: string;
  /** How the warm-up ended, for the output. */
  note: string;
  unit: string;
  samples: Sample[];
  warm: Sample;
  failures: string[];
  ms: number;
  /** Ring bytes mapped (all of which could become resident). */
  maxRings: number;
}

async function phaseCalls(host: PluginHost, names: string[], calls: number, nSamples: number, warmup: number, concurrency: number): Promise<PhaseReport> {
  const failures: string[] = [];
  const samples: Sample[] = [];
  const t0 = performance.now();
  samples.push(await sample(0, t0));
  let done = 0;
  let invokes = 0;
  const step = Math.max(1, Math.ceil(calls / nSamples));
  const warmAt = Math.ceil(calls * warmup);
  let warm: Sample | undefined;
  while (done < calls) {
    const target = Math.min(calls, done + step);
    // Workers run until this slice's calls are done, then all stop: the sample is taken at rest.
    const worker = async () => {
      while (done < target) {
        const i = invokes++;
        let r: HookResult;
        const all = i % 10 === 0;
        const name = names[i % names.length]!;
        try {
          r = all ? await host.invoke('scale.all', [i]) : await host.invoke(`scale.one.${name}`, [i]);
        } catch (e) {
          failures.push(`invoke #${i} threw ${(e as Error).message}`);
          done++;
          continue;
        }
        done += r.outcomes.length;
        for (const o of r.outcomes) if (!o.ok) failures.push(`invoke #${i}: ${o.owner}: ${o.error?.code ?? ''} ${o.error?.message ?? ''}`);
        if (all ? r.values.length !== names.length : r.values[0] !== i) failures.push(`invoke #${i}: wrong answer ${JSON.stringify(r.values).slice(0, 200)}`);
      }
    };
    await Promise.all(Array.from({ length: concurrency }, worker));
    const s = await sample(done, t0);
    samples.push(s);
    if (warm === undefined && done >= warmAt) warm = s;
    process.stderr.write(`  calls ${done}: rss ${mib(s.rss)} MiB (rings ${mib(s.rings)}), heap ${mib(s.heap)}/${mib(s.heapTotal)} MiB, fds ${s.fds}, cgroups ${s.cgroups}\n`);
    if (failures.length > 100) break;
  }
  const note = `warm-up: the first ${Math.round(warmup * 100)}%; RSS target without the channel rings' pages, a bounded fill (≤ ${mib(names.length * RING_BYTES)} MiB here)`;
  return { name: 'A: hook calls', unit: 'calls', note, samples, warm: warm ?? samples[samples.length - 1]!, failures, ms: performance.now() - t0, maxRings: names.length * RING_BYTES };
}

async function phaseCycles(host: PluginHost, names: string[], cycles: number, nSamples: number, warmup: number, backgroundCalls: number): Promise<PhaseReport> {
  let bgInvokes = 0;
  const failures: string[] = [];
  const samples: Sample[] = [];
  const t0 = performance.now();
  samples.push(await sample(0, t0));
  let done = 0;
  const step = Math.max(names.length, Math.ceil(cycles / nSamples));
  const warmAt = Math.ceil(cycles * warmup);
  let warm: Sample | undefined;
  let warmFraction: Sample | undefined;
  let k = 0;
  while (done < cycles) {
    const target = Math.min(cycles, done + step);
    // Calls keep coming while plugins come and go (a plugin being unloaded just drops out of the
    // parallel hook's answers; an error is a failure). They stop before each sample.
    let cycling = true;
    const background = Array.from({ length: backgroundCalls }, async () => {
      while (cycling) {
        const i = bgInvokes++;
        try {
          const r = await host.invoke('scale.all', [i]);
          for (const o of r.outcomes) if (!o.ok) failures.push(`call during cycles #${i}: ${o.owner}: ${o.error?.code ?? ''} ${o.error?.message ?? ''}`);
        } catch (e) {
          failures.push(`call during cycles #${i} threw ${(e as Error).message}`);
        }
      }
    });
    // One worker per plugin (a plugin's load and unload are serialized by the host anyway).
    await Promise.all(names.map(async (name) => {
      while (done < target) {
        done++;
        const reload = k++ % 4 === 3;
        try {
          if (reload) {
            await host.reload(name);
          } else {
            await host.unload(name);
            await host.load(name);
          }
          if (host.status(name) !== 'active') failures.push(`${name}: ${host.status(name)} after a ${reload ? 'reload' : 'cycle'}`);
        } catch (e) {
          failures.push(`${name} ${reload ? 'reload' : 'unload+load'}: ${(e as Error).message}`);
          await host.load(name).catch(() => undefined);
        }
      }
    }));
    cycling = false;
    await Promise.all(background);
    const s = await sample(done, t0);
    samples.push(s);
    // The audit log keeps its last AUDIT_MEMORY events in memory (each cycle adds a few): a bounded
    // fill that ends the warm-up too.
    if (warmFraction === undefined && done >= warmAt) warmFraction = s;
    if (warm === undefined && done >= warmAt && host.audit.events().length >= AUDIT_MEMORY) warm = s;
    process.stderr.write(`  cycles ${done} (${((s.ms / done)).toFixed(1)} ms each): rss ${mib(s.rss)} MiB (rings ${mib(s.rings)}), heap ${mib(s.heap)}/${mib(s.heapTotal)} MiB, fds ${s.fds}, cgroups ${s.cgroups}\n`);
    if (failures.length > 100) break;
  }
  const note = warm !== undefined
    ? `warm-up: the first ${Math.round(warmup * 100)}% and until the audit log's ${AUDIT_MEMORY} events in memory were full`
    : `warm-up: the first ${Math.round(warmup * 100)}% (the audit log's in-memory events never reached ${AUDIT_MEMORY}: growth includes that bounded fill)`;
  return { name: 'B: load/unload cycles', unit: 'cycles', note, samples, warm: warm ?? warmFraction ?? samples[samples.length - 1]!, failures, ms: performance.now() - t0, maxRings: names.length * RING_BYTES };
}

function pctGrowth(from: number, to: number): string {
  const g = ((to - from) / from) * 100;
  return `${g >= 0 ? '+' : ''}${g.toFixed(1)}%`;
}

async function main(): Promise<void> {
  const quick = argValue('quick') !== undefined;
  const calls = argNumber('calls', quick ? 20_000 : 1_000_000);
  const cycles = argNumber('cycles', quick ? 200 : 10_000);
  const nPlugins = Math.max(1, argNumber('plugins', quick ? 10 : 20));
  const nSamples = Math.max(2, argNumber('samples', 20));
  const warmup = argNumber('warmup', 0.1);
  const concurrency = Math.max(1, argNumber('concurrency', 32));
  const rssTarget = argNumber('rss-target', 5);
  const backgroundCalls = argNumber('calls-during-cycles', 2);
  if (!gc) process.stderr.write('note: run with --expose-gc (npm run bench:soak does) for stable RSS samples\n');
  const choice = await launcherFromArgs();

  // The first write to stderr makes libuv open the /dev/null it keeps per loop (its EMFILE reserve):
  // before the fds are counted, so it is not taken for a leak.
  process.stderr.write(`creating and signing ${nPlugins} plugins...\n`);
  const { world, names } = await scaleWorld(nPlugins);
  const fds0 = fdCount();
  const fdList0 = fdTargets();
  const cgroups0 = cgroupCount();
  const audit = new AuditLog({ path: world.auditPath, maxEvents: AUDIT_MEMORY });
  const host = new PluginHost({
    pluginDirs: [world.pluginsDir],
    trust: { store: world.store(), file: world.trustFile },
    hostApiVersion: '1.2.0',
    hooks: scaleHooks(names),
    audit,
    limits: { memory: '256M', pids: 64, callTimeout: '5s' },
    launcher: choice.launcher,
  });
  const misses: string[] = [];
  const phases: PhaseReport[] = [];
  let fds1 = NaN;
  let cgroups1 = NaN;
  const t0 = performance.now();
  try {
    await host.start();
    const inactive = host.plugins().filter((p) => p.status !== 'active');
    if (inactive.length > 0) throw new Error(`${inactive.length} plugins did not load: ${inactive[0]!.name} ${inactive[0]!.reason?.message ?? ''}`);
    if (calls > 0) {
      process.stderr.write(`phase A: ${calls} hook calls over ${nPlugins} plugins\n`);
      phases.push(await phaseCalls(host, names, calls, nSamples, warmup, concurrency));
    }
    if (cycles > 0) {
      process.stderr.write(`phase B: ${cycles} load/unload cycles over ${nPlugins} plugins (${choice.name})\n`);
      phases.push(await phaseCycles(host, names, cycles, nSamples, warmup, backgroundCalls));
    }
  } finally {
    await host.close();
    await choice.close();
    audit.close();
    await sleep(50);
    fds1 = fdCount();
    cgroups1 = cgroupCount();
    world.cleanup();
  }
  const totalS = (performance.now() - t0) / 1000;

  const rows: Array<Array<string | number>> = [];
  for (const p of phases) {
    const s0 = p.samples[0]!;
    const end = p.samples[p.samples.length - 1]!;
    const done = end.done;
    const rate = `${(done / (end.ms / 1000)).toFixed(0)} ${p.unit}/s`;
    // The target is on RSS without the channel rings: their pages become resident as messages walk
    // through them, up to a fixed size per plugin (see channelRingRss); that fill is shown on its own row.
    const own = (x: Sample) => x.rss - x.rings;
    const rssGrowth = ((own(end) - own(p.warm)) / own(p.warm)) * 100;
    const rssOk = rssGrowth <= rssTarget;
    rows.push([p.name, `${done} ${p.unit} in ${(end.ms / 1000).toFixed(0)} s (${rate}), ${p.failures.length} failed`, '', '', '', '', p.failures.length === 0 ? 'ok' : '**MISSED**']);
    rows.push(['', 'host RSS (MiB)', mib(s0.rss), `${mib(p.warm.rss)} (at ${p.warm.done})`, mib(end.rss), `${pctGrowth(p.warm.rss, end.rss)} after warm-up`, '']);
    rows.push(['', 'of which channel rings (MiB)', mib(s0.rings), mib(p.warm.rings), mib(end.rings), `${pctGrowth(p.warm.rings, end.rings)}`, `bounded: ≤ ${mib(p.maxRings)}`]);
    rows.push(['', 'host RSS without the rings (MiB)', mib(own(s0)), mib(own(p.warm)), mib(own(end)), `${pctGrowth(own(p.warm), own(end))} after warm-up`, `≤ ${rssTarget}%: ${rssOk ? 'ok' : '**MISSED**'}`]);
    rows.push(['', 'V8 heap used after GC (MiB)', mib(s0.heap), mib(p.warm.heap), mib(end.heap), pctGrowth(p.warm.heap, end.heap), '']);
    rows.push(['', 'external + array buffers (MiB)', mib(s0.external), mib(p.warm.external), mib(end.external), pctGrowth(p.warm.external, end.external), '']);
    rows.push(['', 'fds', s0.fds, p.warm.fds, end.fds, `${end.fds - s0.fds}`, end.fds === s0.fds ? 'ok' : '**MISSED**']);
    rows.push(['', 'sandbox cgroups', s0.cgroups, p.warm.cgroups, end.cgroups, `${end.cgroups - s0.cgroups}`, end.cgroups === s0.cgroups ? 'ok' : '**MISSED**']);
    if (p.failures.length > 0) misses.push(`${p.name}: ${p.failures.length} failures, first: ${p.failures[0]}`);
    if (!rssOk) misses.push(`${p.name}: RSS grew ${rssGrowth.toFixed(1)}% after warm-up (target ≤ ${rssTarget}%)`);
    if (end.fds !== s0.fds) misses.push(`${p.name}: fds ${s0.fds} at the start, ${end.fds} at the end`);
    if (end.cgroups !== s0.cgroups) misses.push(`${p.name}: sandbox cgroups ${s0.cgroups} at the start, ${end.cgroups} at the end`);
  }
  rows.push(['after close()', 'fds / sandbox cgroups', `${fds0} / ${cgroups0}`, '', `${fds1} / ${cgroups1}`, `${fds1 - fds0} / ${cgroups1 - cgroups0}`, fds1 === fds0 && cgroups1 === cgroups0 ? 'ok' : '**MISSED**']);
  if (fds1 !== fds0) {
    const extra = [...fdTargets()].filter(([fd, target]) => fdList0.get(fd) !== target).map(([fd, target]) => `${fd} → ${target}`);
    misses.push(`after close(): fds ${fds0} before start, ${fds1} after (${extra.join(', ') || 'gone again when listed'})`);
  }
  if (cgroups1 !== cgroups0) misses.push(`after close(): sandbox cgroups ${cgroups0} before start, ${cgroups1} after`);

  process.stdout.write(`\n### bench:soak — ${nPlugins} plugins, ${calls} calls, ${cycles} cycles (${choice.name}), ${totalS.toFixed(0)} s\n\n`);
  process.stdout.write(table(['phase', 'measure', 'start', 'after warm-up', 'end', 'growth', 'target'], rows));
  process.stdout.write('\n' + phases.map((p) => `${p.name}: ${p.note}.`).join('\n') + '\n');
  for (const p of phases) {
    process.stdout.write(`\n${p.name}, samples (${p.unit}: RSS MiB / rings MiB / heap MiB / fds / cgroups): `);
    process.stdout.write(p.samples.map((s) => `${s.done}: ${mib(s.rss)}/${mib(s.rings)}/${mib(s.heap)}/${s.fds}/${s.cgroups}`).join(', ') + '\n');
  }
  if (misses.length > 0) {
    process.stdout.write(`\nMISSED (${misses.length}):\n${misses.map((m) => `- ${m}`).join('\n')}\n`);
    process.exitCode = 1;
  } else {
    process.stdout.write('\nall targets met\n');
  }
}

main().catch((e) => {
  process.stderr.write(`${(e as Error)?.stack ?? String(e)}\n`);
  process.exitCode = 1;
});
