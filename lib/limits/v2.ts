/**
 * cgroup v2 backend (unified hosts): one directory under the host's own cgroup carries every limit.
 *
 * Controllers must be enabled in the parent's cgroup.subtree_control, and v2 forbids that while the
 * parent holds processes ("no internal processes"), except at the root. A host started by systemd
 * with Delegate=yes sits alone in its delegated cgroup: then we move the host into a leaf of its own
 * (`warden-host`), as systemd's delegation documentation asks, and enable the controllers above it.
 * If other processes share the host's cgroup we do not move what is not ours: we fail closed.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { LimitError } from '../errors';
import { DELEGATION_HELP, StatFile, errnoOf, readText, tryWrite, writeCg } from './cgroupfs';
import { watchFile, type Stop } from './events';
import type { Backend, NarrowLimits, KernelEvent, RawStats, StatField, StatFields, WeakerLimit } from './backend';
import type { ResolvedLimits } from './options';

export const CPU_PERIOD_US = 100_000;
export const HOST_LEAF = 'warden-host';

function controllersOf(dir: string, file: 'cgroup.controllers' | 'cgroup.subtree_control'): Set<string> {
  return new Set((readText(path.join(dir, file)) ?? '').split(/\s+/).filter((s) => s !== ''));
}

const LIMIT_OF_CONTROLLER: Record<string, string> = { memory: 'memory', pids: 'pids', cpu: 'cpu', io: 'io' };

/**
 * Makes `wanted` controllers available to children of `parent`. Required ones failing is an error;
 * optional ones (for stats only) are dropped. Returns what is enabled.
 */
export function enableControllers(parent: string, required: Set<string>, optional: Set<string>, isRoot: boolean): Set<string> {
  const available = controllersOf(parent, 'cgroup.controllers');
  for (const c of required) {
    if (!available.has(c)) {
      throw new LimitError(LIMIT_OF_CONTROLLER[c] ?? c,
        `the ${c} controller is not available in ${parent} (it offers: ${[...available].join(' ') || 'none'}); ` +
        `enable it in the parent's cgroup.subtree_control, or ${DELEGATION_HELP}`, { path: path.join(parent, 'cgroup.controllers') });
    }
  }
  const want = [...required, ...[...optional].filter((c) => available.has(c))];
  const enabled = controllersOf(parent, 'cgroup.subtree_control');
  const missing = want.filter((c) => !enabled.has(c));
  if (missing.length === 0) return new Set(want);

  const file = path.join(parent, 'cgroup.subtree_control');
  const write = (list: string[]) => fs.writeFileSync(file, list.map((c) => `+${c}`).join(' '));
  try {
    write(missing);
  } catch (e) {
    let errno = errnoOf(e);
    if (errno === 'EBUSY' && !isRoot && moveSelfToLeaf(parent)) {
      try {
        write(missing);
        rememberHostMove(parent, missing);
        errno = undefined;
      } catch (e2) {
        errno = errnoOf(e2);
      }
    }
    if (errno !== undefined) {
      const requiredMissing = missing.filter((c) => required.has(c));
      if (requiredMissing.length === 0) return new Set(want.filter((c) => enabled.has(c)));
      const why = errno === 'EBUSY'
        ? `${parent} holds processes other than this host, and cgroup v2 allows no controllers for children of a cgroup with processes; start the host in a cgroup of its own`
        : `writing to ${file} failed with ${errno}`;
      throw new LimitError(LIMIT_OF_CONTROLLER[requiredMissing[0]!] ?? 'cgroup',
        `cannot enable ${requiredMissing.join(', ')} for sandboxes: ${why}; ${DELEGATION_HELP}`, { path: file, errno });
    }
  }
  return new Set(want);
}

/**
 * What we changed above the host to give sandboxes controllers: undone when the host exits, so the
 * cgroup tree is left as we found it (controllers disabled, host back in its cgroup, leaf removed).
 */
const hostMoves = new Map<string, Set<string>>();

function rememberHostMove(parent: string, enabled: string[]): void {
  if (hostMoves.size === 0) process.once('exit', restoreHostCgroups);
  const set = hostMoves.get(parent) ?? new Set<string>();
  for (const c of enabled) set.add(c);
  hostMoves.set(parent, set);
}

function restoreHostCgroups(): void {
  for (const [parent, enabled] of hostMoves) {
    // Best effort at exit: a sandbox cgroup still present keeps the controllers busy, and then the
    // host stays in its leaf (the next host start finds and reuses it).
    tryWrite(path.join(parent, 'cgroup.subtree_control'), [...enabled].map((c) => `-${c}`).join(' '));
    if (tryWrite(path.join(parent, 'cgroup.procs'), String(process.pid))) {
      try {
        fs.rmdirSync(path.join(parent, HOST_LEAF));
      } catch {
        /* still in use: left for the next start */
      }
    }
  }
  hostMoves.clear();
}

/** Moves this process (all its threads) into parent/warden-host when it is alone in parent. */
function moveSelfToLeaf(parent: string): boolean {
  const procs = (readText(path.join(parent, 'cgroup.procs')) ?? '').split('\n').filter((s) => s !== '');
  if (procs.length !== 1 || procs[0] !== String(process.pid)) return false;
  const leaf = path.join(parent, HOST_LEAF);
  try {
    fs.mkdirSync(leaf);
  } catch (e) {
    if (errnoOf(e) !== 'EEXIST') return false;
  }
  return tryWrite(path.join(leaf, 'cgroup.procs'), String(process.pid));
}

export class V2Backend implements Backend {
  readonly version = 2 as const;
  readonly dirs: string[] = [];
  readonly procsFiles: string[];
  readonly weaker: WeakerLimit[] = [];
  readonly v2Dir: string;
  readonly anyProcsFile: string;
  private readonly files: Record<'memCurrent' | 'memPeak' | 'memEvents' | 'cpuStat' | 'pidsCurrent' | 'pidsEvents', StatFile>;
  private stops: Stop[] = [];
  private lastOomKills = 0;
  private lastPidsMax = 0;

  /** parent: the host's own v2 cgroup (the base, with controllers already enabled by enableControllers). */
  constructor(parent: string, name: string, limits: ResolvedLimits) {
    const dir = path.join(parent, name);
    try {
      fs.mkdirSync(dir);
    } catch (e) {
      const errno = errnoOf(e);
      throw new LimitError('cgroup', `cannot create cgroup ${dir}: ${errno}; ${DELEGATION_HELP}`, { path: dir, errno });
    }
    this.dirs.push(dir);
    this.v2Dir = dir;
    this.procsFiles = [path.join(dir, 'cgroup.procs')];
    this.anyProcsFile = this.procsFiles[0]!;
    try {
      this.apply(dir, limits);
    } catch (e) {
      try { fs.rmdirSync(dir); } catch { /* reported error is the first one */ }
      this.dirs.length = 0;
      throw e;
    }
    const f = (n: string) => new StatFile(path.join(dir, n));
    this.files = {
      memCurrent: f('memory.current'), memPeak: f('memory.peak'), memEvents: f('memory.events'),
      cpuStat: f('cpu.stat'), pidsCurrent: f('pids.current'), pidsEvents: f('pids.events'),
    };
  }

  private apply(dir: string, l: ResolvedLimits): void {
    const p = (n: string) => path.join(dir, n);
    if (l.memory !== undefined) {
      writeCg('memory', p('memory.max'), String(l.memory));
      if (fs.existsSync(p('memory.swap.max'))) writeCg('memory', p('memory.swap.max'), String(l.swap));
      else this.weaker.push({ limit: 'swap', reason: 'the kernel does not account swap (no memory.swap.max); the sandbox may swap', substitute: 'none' });
      // One OOM kill takes the whole sandbox: a half-killed process tree is worse than a clean stop.
      tryWrite(p('memory.oom.group'), '1');
    }
    if (l.pids !== undefined) writeCg('pids', p('pids.max'), String(l.pids));
    if (l.cpu !== undefined) writeCg('cpu', p('cpu.max'), `${Math.max(1000, Math.round(l.cpu * CPU_PERIOD_US))} ${CPU_PERIOD_US}`);
    for (const io of l.io) {
      const parts = [io.device];
      if (io.readBps !== undefined) parts.push(`rbps=${io.readBps}`);
      if (io.writeBps !== undefined) parts.push(`wbps=${io.writeBps}`);
      if (io.readIops !== undefined) parts.push(`riops=${io.readIops}`);
      if (io.writeIops !== undefined) parts.push(`wiops=${io.writeIops}`);
      writeCg('io', p('io.max'), parts.join(' '));
    }
  }

  narrow(l: NarrowLimits): void {
    const p = (n: string) => path.join(this.v2Dir, n);
    if (l.memory !== undefined) {
      writeCg('memory', p('memory.max'), String(l.memory));
      if (fs.existsSync(p('memory.swap.max'))) writeCg('memory', p('memory.swap.max'), String(l.swap));
      tryWrite(p('memory.oom.group'), '1');
    }
    if (l.pids !== undefined) writeCg('pids', p('pids.max'), String(l.pids));
    if (l.cpu !== undefined) writeCg('cpu', p('cpu.max'), `${Math.max(1000, Math.round(l.cpu * CPU_PERIOD_US))} ${CPU_PERIOD_US}`);
  }

  private onEvent: ((e: KernelEvent) => void) | undefined;

  watch(onEvent: (e: KernelEvent) => void): void {
    this.onEvent = onEvent;
    const mem = this.files.memEvents.keyed();
    this.lastOomKills = (mem?.get('oom_kill') ?? 0) + (mem?.get('oom_group_kill') ?? 0);
    this.lastPidsMax = this.files.pidsEvents.keyed()?.get('max') ?? 0;
    if (this.files.memEvents.available) this.stops.push(watchFile(this.files.memEvents.file, () => this.checkMemory()));
    if (this.files.pidsEvents.available) this.stops.push(watchFile(this.files.pidsEvents.file, () => this.checkPids()));
  }

  private checkMemory(): void {
    const m = this.files.memEvents.keyed();
    const kills = (m?.get('oom_kill') ?? 0) + (m?.get('oom_group_kill') ?? 0);
    if (kills > this.lastOomKills) {
      this.lastOomKills = kills;
      this.onEvent?.({ kind: 'oom' });
    }
  }

  private checkPids(): void {
    const max = this.files.pidsEvents.keyed()?.get('max') ?? 0;
    if (max > this.lastPidsMax) {
      this.lastPidsMax = max;
      this.onEvent?.({ kind: 'pids-max', count: max });
    }
  }

  recheck(): void {
    this.checkMemory();
    this.checkPids();
  }

  cpuUsageNs(): number | undefined {
    const u = this.files.cpuStat.keyed()?.get('usage_usec');
    return u === undefined ? undefined : u * 1000;
  }

  stats(only?: StatFields): RawStats {
    const want = (f: StatField): boolean => only === undefined || only.has(f);
    // cpu.stat holds usage and throttling both: one read for either.
    const cpu = want('cpuUsageNs') || want('cpuThrottledNs') ? this.files.cpuStat.keyed() : undefined;
    const mem = want('oomKills') ? this.files.memEvents.keyed() : undefined;
    const usage = want('cpuUsageNs') ? cpu?.get('usage_usec') : undefined;
    const throttled = want('cpuThrottledNs') ? cpu?.get('throttled_usec') : undefined;
    return {
      memoryCurrent: want('memoryCurrent') ? this.files.memCurrent.number() : undefined,
      memoryPeak: want('memoryPeak') ? this.files.memPeak.number() : undefined,
      cpuUsageNs: usage === undefined ? undefined : usage * 1000,
      cpuThrottledNs: throttled === undefined ? undefined : throttled * 1000,
      pidsCurrent: want('pidsCurrent') ? this.files.pidsCurrent.number() : undefined,
      oomKills: mem === undefined ? undefined : (mem.get('oom_kill') ?? 0),
      pidsMaxEvents: want('pidsMaxEvents') ? this.files.pidsEvents.keyed()?.get('max') : undefined,
    };
  }

  close(): void {
    this.onEvent = undefined;
    for (const s of this.stops.splice(0)) s();
    for (const f of Object.values(this.files)) f.close();
  }
}
