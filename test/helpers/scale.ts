/**
 * Shared by bench/scale, bench/soak and test/plugins-scale: a world of N small signed plugins, and the
 * probes that say what a host and its sandboxes cost (RSS, fds, sandbox cgroups, memory, cpu time).
 *
 * Every plugin handles three hooks: `scale.all` (parallel, every plugin), `scale.first` (first mode:
 * only the plugin named in the argument answers) and `scale.one.<name>` (series, only that plugin: a
 * targeted call).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

import { hostLayout, listSandboxCgroups } from '../../lib/limits';
import type { HookDeclaration } from '../../lib/hooks';
import type { PluginHost } from '../../lib/plugins';
import { PluginWorld } from './plugins';

export const pluginName = (i: number): string => `p${String(i).padStart(4, '0')}`;

/** What each plugin runs: answers with its name; `scale.first` only for the plugin it names. */
export function scalePluginCode(name: string): string {
  return `'use strict';
const NAME = ${JSON.stringify(name)};
let calls = 0;
exports.activate = (host) => {
  host.hook('scale.all', (i) => { calls++; return NAME; });
  host.hook('scale.first', (target) => { calls++; return target === NAME ? NAME : undefined; });
  host.hook('scale.one.' + NAME, (i) => { calls++; return i; });
};
exports.calls = () => calls;
`;
}

export function scaleHooks(names: readonly string[]): HookDeclaration[] {
  return [
    { name: 'scale.all', mode: 'parallel' },
    { name: 'scale.first', mode: 'first' },
    ...names.map((n) => ({ name: `scale.one.${n}`, mode: 'series' as const })),
  ];
}

/** A PluginWorld holding `n` signed plugins p0000 … (the trust list published). */
export async function scaleWorld(n: number): Promise<{ world: PluginWorld; names: string[] }> {
  const world = await PluginWorld.create();
  const names: string[] = [];
  for (let i = 0; i < n; i++) {
    const name = pluginName(i);
    names.push(name);
    world.writePlugin(name, { code: scalePluginCode(name), hooks: ['scale.all', 'scale.first', `scale.one.${name}`] });
    await world.trust(name);
  }
  await world.publish();
  return { world, names };
}

// ------------------------------------------------------------------------------------------ probes

/** VmRSS of this process in bytes. */
export function hostRss(): number {
  const m = /^VmRSS:\s+(\d+) kB/m.exec(fs.readFileSync('/proc/self/status', 'utf8'));
  return m ? Number(m[1]) * 1024 : NaN;
}

/**
 * RSS of this process's mappings of channel rings (the memfds named warden-channel), bytes. The rings
 * are fixed-size shared mappings (by default 1 MiB per direction per plugin) whose pages become
 * resident as far as messages reach (small ones reuse the first 16 KiB of each lap, large ones walk
 * further): a bounded fill, not a leak, shown apart from the rest.
 */
export function channelRingRss(): number {
  let kb = 0;
  let inRing = false;
  for (const line of fs.readFileSync('/proc/self/smaps', 'utf8').split('\n')) {
    if (/^[0-9a-f]+-[0-9a-f]+ /.test(line)) inRing = line.includes('/memfd:warden-channel');
    else if (inRing && line.startsWith('Rss:')) kb += Number(/(\d+)/.exec(line)?.[1] ?? 0);
  }
  return kb * 1024;
}

/** Open fds of this process. */
export function fdCount(): number {
  return fs.readdirSync('/proc/self/fd').length;
}

/** What this process's fds point at (fd → readlink), to name a leaked one. */
export function fdTargets(): Map<string, string> {
  const out = new Map<string, string>();
  for (const fd of fs.readdirSync('/proc/self/fd')) {
    try {
      out.set(fd, fs.readlinkSync(`/proc/self/fd/${fd}`));
    } catch {
      // the directory's own fd, closed by now
    }
  }
  return out;
}

/** Sandbox cgroup directories of this process, in every hierarchy (a v1 sandbox has one per controller used). */
export function cgroupCount(): number {
  return listSandboxCgroups().length;
}

/** Cpu time (user + system, all threads) this process used, in ms. */
export function hostCpuMs(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
}

function readNumber(file: string): number | undefined {
  try {
    const v = Number(fs.readFileSync(file, 'utf8').trim());
    return Number.isFinite(v) ? v : undefined;
  } catch {
    return undefined;
  }
}

function keyed(file: string, key: string): number | undefined {
  try {
    const m = new RegExp(`^${key} (\\d+)$`, 'm').exec(fs.readFileSync(file, 'utf8'));
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}

export interface SandboxTotals {
  /** Sandboxes counted (one per memory cgroup found). */
  sandboxes: number;
  /** Sum of the sandboxes' memory cgroups' usage (v1 memory.usage_in_bytes, v2 memory.current), bytes. */
  cgroupMemory: number;
  /** Sum of their cpu usage (v1 cpuacct.usage, else cpu.stat usage_usec), ns. */
  cpuNs: number;
}

/** Memory and cpu of this host's sandboxes, from their cgroups. */
export function sandboxTotals(): SandboxTotals {
  const layout = hostLayout();
  const mem = layout.mode === 'unified' ? layout.v2?.mountPoint : layout.v1.get('memory')?.mountPoint;
  const cpuacct = layout.v1.get('cpuacct')?.mountPoint;
  const v2 = layout.v2?.mountPoint;
  const out: SandboxTotals = { sandboxes: 0, cgroupMemory: 0, cpuNs: 0 };
  const under = (dir: string, root: string | undefined): boolean => root !== undefined && dir.startsWith(root + '/');
  for (const dir of listSandboxCgroups()) {
    if (under(dir, mem)) {
      const v = readNumber(path.join(dir, layout.mode === 'unified' ? 'memory.current' : 'memory.usage_in_bytes'));
      if (v !== undefined) {
        out.sandboxes++;
        out.cgroupMemory += v;
      }
    }
    if (cpuacct !== undefined) {
      if (under(dir, cpuacct)) out.cpuNs += readNumber(path.join(dir, 'cpuacct.usage')) ?? 0;
    } else if (under(dir, v2)) {
      out.cpuNs += (keyed(path.join(dir, 'cpu.stat'), 'usage_usec') ?? 0) * 1000;
    }
  }
  return out;
}

/** Rss and Pss of one process (smaps_rollup), bytes. */
export function processMemory(pid: number): { rss: number; pss: number } | undefined {
  try {
    const t = fs.readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8');
    const kb = (k: string) => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, 'm').exec(t)?.[1] ?? NaN) * 1024;
    return { rss: kb('Rss'), pss: kb('Pss') };
  } catch {
    return undefined;
  }
}

/** Cpu time of one process (all its threads; /proc/<pid>/stat utime + stime), ms. */
export function processCpuMs(pid: number): number | undefined {
  try {
    const s = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
    const ticks = Number(f[11]) + Number(f[12]);
    return (ticks * 1000) / CLK_TCK;
  } catch {
    return undefined;
  }
}

/** This process's children, in any state (a zombie included). */
export function childProcesses(): Array<{ pid: number; state: string }> {
  const out: Array<{ pid: number; state: string }> = [];
  for (const name of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const s = fs.readFileSync(`/proc/${name}/stat`, 'utf8');
      const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
      if (Number(f[1]) === process.pid) out.push({ pid: Number(name), state: f[0]! });
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

/** USER_HZ: 100 on every Linux that Node runs on. */
const CLK_TCK = 100;

/** The pids of the plugins' runners (host pid namespace). */
export function runnerPids(host: PluginHost): number[] {
  return host.plugins().map((p) => p.pid).filter((p): p is number => p !== undefined);
}

export function mib(bytes: number): string {
  return (bytes / 1024 / 1024).toFixed(1);
}

/** Reads `--name value` / `--flag` from argv. */
export function argValue(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  if (i < 0) return undefined;
  const v = process.argv[i + 1];
  return v === undefined || v.startsWith('--') ? 'true' : v;
}

export function argNumber(name: string, def: number): number {
  const v = argValue(name);
  if (v === undefined) return def;
  const n = Number(v.replace(/_/g, ''));
  if (!Number.isFinite(n) || n < 0) throw new Error(`--${name} must be a non-negative number, got ${v}`);
  return n;
}

/** A markdown table. */
export function table(head: readonly string[], rows: ReadonlyArray<ReadonlyArray<string | number>>): string {
  const line = (cells: ReadonlyArray<string | number>) => `| ${cells.map(String).join(' | ')} |`;
  return [line(head), line(head.map(() => '---')), ...rows.map(line)].join('\n') + '\n';
}
