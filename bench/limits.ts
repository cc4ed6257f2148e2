/**
 * npm run bench:limits — how fast the host learns of a breach, and what stats() costs.
 *
 * Latency is breach → 'violation' event on the host, over ≥ 50 breaches per kind:
 *  - memory: a C helper touches memory up to 4 MiB under the limit, takes CLOCK_MONOTONIC, then
 *    touches past it. Breach time is that timestamp, so the figure includes the ~1 ms the last 4 MiB
 *    take to fault in (an upper bound).
 *  - pids: the helper fills the pids limit with sleeping children, takes the timestamp, forks once more.
 *  - timeout: breach is start + timeout, so this is the timer's lateness plus the kill.
 * process.hrtime is CLOCK_MONOTONIC too, so both sides use the same clock.
 * Peer rows, measured in the same run: when the host would learn of it without event files, from the
 * exit of the helper (child_process 'exit'), which is all a non-cgroup sandbox gets.
 */
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { SandboxCgroup, hostLayout, listSandboxCgroups, type LimitViolation } from '../lib/limits';
import type { LimitsOptions } from '../lib/limits';

const N = Number(process.env.BENCH_N ?? 60);
const MiB = 1024 * 1024;

const HELPER = `
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>
static long long now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec * 1000000000LL + t.tv_nsec; }
int main(int argc, char **argv) {
  char gate; if (read(0, &gate, 1) != 1) return 2;
  if (strcmp(argv[1], "memory") == 0) {
    size_t limit = strtoull(argv[2], 0, 10), below = limit - 4 * 1024 * 1024, i;
    char *p = mmap(0, limit * 2, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    for (i = 0; i < below; i += 4096) p[i] = 1;
    printf("%lld\\n", now()); fflush(stdout);
    for (; i < limit * 2; i += 4096) p[i] = 1;
    return 0;
  }
  if (strcmp(argv[1], "pids") == 0) {
    int n = atoi(argv[2]);
    for (int k = 1; k < n; k++) if (fork() == 0) { pause(); _exit(0); }
    printf("%lld\\n", now()); fflush(stdout);
    if (fork() == 0) _exit(0);
    pause();
  }
  return 0;
}
`;

function compileHelper(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'warden-bench-'));
  fs.writeFileSync(path.join(dir, 'h.c'), HELPER);
  const out = path.join(dir, 'h');
  const r = spawnSync('cc', ['-O2', '-o', out, path.join(dir, 'h.c')], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`cc failed (install gcc): ${r.stderr || r.error}`);
  process.on('exit', () => fs.rmSync(dir, { recursive: true, force: true }));
  return out;
}

interface Sample { eventMs: number; exitMs: number }

async function breach(helper: string, kind: 'memory' | 'pids' | 'timeout', limits: LimitsOptions, arg: string): Promise<Sample> {
  const cg = SandboxCgroup.create(limits);
  const child = kind === 'timeout'
    ? spawn('/bin/sh', ['-c', 'read _g; exec sleep 30'], { stdio: ['pipe', 'pipe', 'ignore'] })
    : spawn(helper, [kind, arg], { stdio: ['pipe', 'pipe', 'ignore'] });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => { out += d; });
  const exited = new Promise<bigint>((r) => child.on('exit', () => r(process.hrtime.bigint())));
  const violation = new Promise<[LimitViolation, bigint]>((r) => cg.once('violation', (v: LimitViolation) => r([v, process.hrtime.bigint()])));
  cg.attach(child.pid!);
  const start = process.hrtime.bigint();
  cg.start(child.pid);
  child.stdin!.end('g');
  const [v, at] = await violation;
  if (v.kind !== kind) throw new Error(`expected a ${kind} violation, got ${v.kind}`);
  if (kind === 'pids') await cg.kill();
  const exitAt = await exited;
  await cg.destroy();
  const breachAt = kind === 'timeout' ? start + BigInt(Math.round(Number(limits.timeout) * 1e6)) : BigInt(out.trim().split('\n')[0]!);
  return { eventMs: Number(at - breachAt) / 1e6, exitMs: Number(exitAt - breachAt) / 1e6 };
}

function pct(xs: number[], p: number): number {
  const s = xs.slice().sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)]!;
}

function row(cells: Array<string | number>, widths: number[]): string {
  return cells.map((c, i) => (typeof c === 'number' ? (Number.isInteger(c) ? String(c) : c.toFixed(2)) : c).padStart(widths[i]!)).join('  ');
}

async function main(): Promise<void> {
  const helper = compileHelper();
  const layout = hostLayout();
  const probe = SandboxCgroup.create({ memory: '64M', pids: 8 });
  const killBy = probe.killMethod;
  await probe.destroy();
  console.log(`cgroup layout: ${layout.mode}; teardown: ${killBy}; ${os.cpus().length} cpus; ${N} breaches per kind\n`);

  const cases = [
    { kind: 'memory' as const, limits: { memory: '32M' }, arg: String(32 * MiB), how: layout.mode === 'unified' ? 'inotify memory.events' : 'eventfd memory.oom_control' },
    { kind: 'pids' as const, limits: { pids: 8 }, arg: '8', how: layout.mode === 'unified' ? 'inotify pids.events' : 'poll pids.events (v1 has no notification)' },
    { kind: 'timeout' as const, limits: { timeout: 50 }, arg: '', how: 'timer' },
  ];
  const w = [26, 5, 9, 9, 9, 0];
  console.log(row(['breach → host knows (ms)', 'n', 'p50', 'p99', 'max', '  mechanism'], w));
  const peers: string[] = [];
  for (const c of cases) {
    const samples: Sample[] = [];
    for (let i = 0; i < N; i++) samples.push(await breach(helper, c.kind, c.limits, c.arg));
    const ev = samples.map((s) => s.eventMs);
    const ex = samples.map((s) => s.exitMs);
    console.log(row([`${c.kind} violation event`, N, pct(ev, 50), pct(ev, 99), Math.max(...ev), `  ${c.how}`], w));
    peers.push(row([`${c.kind}: helper exit seen`, N, pct(ex, 50), pct(ex, 99), Math.max(...ex), c.kind === 'pids' ? '  (killed by us after the event)' : '  child_process exit'], w));
  }
  console.log('peer:');
  for (const p of peers) console.log(p);

  // stats(): one sandbox, many calls; then a sweep over many sandboxes, as a monitor would do each second.
  const many = Number(process.env.BENCH_SANDBOXES ?? 200);
  const cgs: SandboxCgroup[] = [];
  const sleeper = spawn('/bin/sh', ['-c', 'read _g; exec sleep 60'], { stdio: ['pipe', 'ignore', 'ignore'] });
  for (let i = 0; i < many; i++) cgs.push(SandboxCgroup.create({ memory: '64M', pids: 16, cpu: 1 }));
  cgs[0]!.attach(sleeper.pid!);
  const calls = 20_000;
  let t0 = process.hrtime.bigint();
  for (let i = 0; i < calls; i++) cgs[0]!.stats();
  const perCall = Number(process.hrtime.bigint() - t0) / calls / 1000;
  // Peer: the same numbers with open+read+close per file (what a naive reader does).
  const files = cgs[0]!.backend!.procsFiles.map((f) => path.dirname(f));
  const naive = () => {
    for (const d of files) for (const n of fs.readdirSync(d)) {
      if (/^(memory\.(current|peak|usage_in_bytes|max_usage_in_bytes|events|oom_control)|pids\.(current|events)|cpu\.stat|cpuacct\.usage)$/.test(n)) fs.readFileSync(path.join(d, n));
    }
  };
  t0 = process.hrtime.bigint();
  for (let i = 0; i < 2000; i++) naive();
  const naivePer = Number(process.hrtime.bigint() - t0) / 2000 / 1000;
  t0 = process.hrtime.bigint();
  for (const cg of cgs) cg.stats();
  const sweepMs = Number(process.hrtime.bigint() - t0) / 1e6;
  console.log(`\nstats(): ${perCall.toFixed(1)} µs per call (pread on fds kept open); ` +
    `peer: readdir + readFileSync of the same files ${naivePer.toFixed(1)} µs; ` +
    `one sweep over ${many} sandboxes: ${sweepMs.toFixed(2)} ms`);
  sleeper.kill('SIGKILL');
  await Promise.all(cgs.map((cg) => cg.destroy()));
  const left = listSandboxCgroups();
  if (left.length > 0) throw new Error(`leftover cgroups: ${left.join(' ')}`);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
