/**
 * cgroup v1 backend (hybrid and legacy hosts): one directory per controller hierarchy used, each under
 * the host's own cgroup in that hierarchy, plus — where a cgroup2 hierarchy is mounted, as on hybrid
 * hosts — a directory there without controllers, only for cgroup.kill and cgroup.events (a v1 host
 * has no atomic kill; the freezer stands in on legacy hosts).
 *
 * Co-mounted controllers (cpu,cpuacct) share one directory. v1 has no "no internal processes" rule,
 * so creating children beside the host's own processes is fine.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { LimitError } from '../errors';
import { DELEGATION_HELP, StatFile, errnoOf, exists, tryWrite, writeCg } from './cgroupfs';
import { pollCounter, watchV1Event, type Stop } from './events';
import type { Backend, NarrowLimits, KernelEvent, RawStats, StatField, StatFields, WeakerLimit } from './backend';
import type { CgroupLayout } from './layout';
import type { OwnCgroups } from './discover';
import type { ResolvedLimits } from './options';
import { CPU_PERIOD_US } from './v2';

const LIMIT_OF_CONTROLLER: Record<string, string> = { memory: 'memory', pids: 'pids', cpu: 'cpu', cpuacct: 'cpuTime', blkio: 'io' };

export class V1Backend implements Backend {
  readonly version = 1 as const;
  readonly dirs: string[] = [];
  readonly procsFiles: string[] = [];
  readonly weaker: WeakerLimit[] = [];
  readonly v2Dir?: string;
  readonly freezerDir?: string;
  readonly anyProcsFile: string;
  private readonly dirOf = new Map<string, string>(); // controller → directory
  private readonly files: Record<'memUsage' | 'memMax' | 'oomControl' | 'cpuacct' | 'cpuStat' | 'pidsCurrent' | 'pidsEvents' | 'v2CpuStat', StatFile | undefined>;
  private stops: Stop[] = [];
  private readonly pidsLimited: boolean;
  /** A cpu quota was set (at creation or narrowed to): without one, cpu.stat's throttled_time stays 0. */
  private cpuLimited = false;

  constructor(layout: CgroupLayout, own: OwnCgroups, name: string, l: ResolvedLimits) {
    const required = new Set<string>();
    if (l.memory !== undefined) required.add('memory');
    if (l.pids !== undefined) required.add('pids');
    if (l.cpu !== undefined) required.add('cpu');
    if (l.io.length > 0) required.add('blkio');
    // For stats, and cpu time usage when the v2 hierarchy cannot give it.
    const optional = new Set(['memory', 'pids', 'cpuacct']);
    const canKillV2 = own.v2 !== undefined;
    if (!canKillV2) optional.add('freezer');
    if (l.cpuTime !== undefined && !canKillV2) required.add('cpuacct');

    try {
      if (canKillV2) {
        const dir = this.mkdir(path.join(own.v2!, name), 'cgroup', true)!;
        this.v2Dir = dir;
        this.procsFiles.push(path.join(dir, 'cgroup.procs'));
      }
      const byMount = new Map<string, string>(); // hierarchy mount → created dir
      for (const c of new Set([...required, ...optional])) {
        const h = layout.v1.get(c);
        const ownDir = own.v1.get(c);
        if (h === undefined || ownDir === undefined) {
          if (required.has(c)) {
            throw new LimitError(LIMIT_OF_CONTROLLER[c] ?? c, `the ${c} cgroup controller is not mounted on this host; mount it, or ${DELEGATION_HELP}`);
          }
          continue;
        }
        let dir = byMount.get(h.mountPoint);
        if (dir === undefined) {
          const created = this.mkdir(path.join(ownDir, name), LIMIT_OF_CONTROLLER[c] ?? c, required.has(c));
          if (created === undefined) continue;
          dir = created;
          byMount.set(h.mountPoint, dir);
          this.procsFiles.push(path.join(dir, 'cgroup.procs'));
        }
        this.dirOf.set(c, dir);
      }
      const freezer = this.dirOf.get('freezer');
      if (freezer !== undefined) this.freezerDir = freezer;
      this.apply(l);
    } catch (e) {
      for (const d of this.dirs.reverse()) {
        try { fs.rmdirSync(d); } catch { /* the first error is the one to report */ }
      }
      this.dirs.length = 0;
      throw e;
    }
    if (this.procsFiles.length === 0) {
      throw new LimitError('cgroup', `no cgroup hierarchy is usable on this host; ${DELEGATION_HELP}`);
    }
    this.anyProcsFile = this.procsFiles[0]!;
    this.pidsLimited = l.pids !== undefined;
    const f = (c: string, n: string) => {
      const d = this.dirOf.get(c);
      return d === undefined ? undefined : new StatFile(path.join(d, n));
    };
    this.files = {
      memUsage: f('memory', 'memory.usage_in_bytes'), memMax: f('memory', 'memory.max_usage_in_bytes'),
      oomControl: f('memory', 'memory.oom_control'), cpuacct: f('cpuacct', 'cpuacct.usage'),
      cpuStat: f('cpu', 'cpu.stat'), pidsCurrent: f('pids', 'pids.current'), pidsEvents: f('pids', 'pids.events'),
      // The controller-less v2 hierarchy still keeps cpu usage (cpu.stat usage_usec): a fallback for cpuacct.
      v2CpuStat: this.v2Dir !== undefined ? new StatFile(path.join(this.v2Dir, 'cpu.stat')) : undefined,
    };
    if (l.cpuTime !== undefined && this.cpuUsageNs() === undefined) {
      this.close();
      throw new LimitError('cpuTime', `no cgroup gives cpu usage on this host (neither cpuacct nor cgroup2 cpu.stat); ${DELEGATION_HELP}`);
    }
  }

  /** Creates a directory; failure is an error when required, else undefined. */
  private mkdir(dir: string, limit: string, required: boolean): string | undefined {
    try {
      fs.mkdirSync(dir);
    } catch (e) {
      const errno = errnoOf(e);
      if (!required) return undefined;
      throw new LimitError(limit, `cannot create cgroup ${dir}: ${errno}; ${DELEGATION_HELP}`, { path: dir, errno });
    }
    this.dirs.push(dir);
    return dir;
  }

  private apply(l: ResolvedLimits): void {
    const p = (c: string, n: string) => path.join(this.dirOf.get(c)!, n);
    if (l.memory !== undefined) {
      writeCg('memory', p('memory', 'memory.limit_in_bytes'), String(l.memory));
      // memsw bounds memory+swap; it must be set after the memory limit (the kernel keeps memsw ≥ limit).
      if (exists(p('memory', 'memory.memsw.limit_in_bytes'))) {
        writeCg('memory', p('memory', 'memory.memsw.limit_in_bytes'), String(l.memory + l.swap));
      } else if (l.swap === 0) {
        tryWrite(p('memory', 'memory.swappiness'), '0');
        this.weaker.push({ limit: 'swap', reason: 'swap accounting is off (no memory.memsw.*); swappiness 0 makes swapping rare, not impossible', substitute: 'memory.swappiness=0' });
      }
    }
    if (l.pids !== undefined) writeCg('pids', p('pids', 'pids.max'), String(l.pids));
    if (l.cpu !== undefined) {
      this.cpuLimited = true;
      writeCg('cpu', p('cpu', 'cpu.cfs_period_us'), String(CPU_PERIOD_US));
      writeCg('cpu', p('cpu', 'cpu.cfs_quota_us'), String(Math.max(1000, Math.round(l.cpu * CPU_PERIOD_US))));
    }
    for (const io of l.io) {
      const w = (file: string, v: number | undefined) => { if (v !== undefined) writeCg('io', p('blkio', file), `${io.device} ${v}`); };
      w('blkio.throttle.read_bps_device', io.readBps);
      w('blkio.throttle.write_bps_device', io.writeBps);
      w('blkio.throttle.read_iops_device', io.readIops);
      w('blkio.throttle.write_iops_device', io.writeIops);
    }
  }

  narrow(l: NarrowLimits): void {
    const p = (c: string, n: string) => {
      const d = this.dirOf.get(c);
      if (d === undefined) throw new LimitError(LIMIT_OF_CONTROLLER[c] ?? c, `this sandbox has no ${c} cgroup to narrow`);
      return path.join(d, n);
    };
    if (l.memory !== undefined) {
      // Lowering: the memory limit first, then memsw (the kernel keeps memsw ≥ the memory limit).
      writeCg('memory', p('memory', 'memory.limit_in_bytes'), String(l.memory));
      if (exists(p('memory', 'memory.memsw.limit_in_bytes'))) writeCg('memory', p('memory', 'memory.memsw.limit_in_bytes'), String(l.memory + l.swap));
    }
    if (l.pids !== undefined) writeCg('pids', p('pids', 'pids.max'), String(l.pids));
    if (l.cpu !== undefined) {
      writeCg('cpu', p('cpu', 'cpu.cfs_quota_us'), String(Math.max(1000, Math.round(l.cpu * CPU_PERIOD_US))));
      this.cpuLimited = true;
    }
  }

  private onEvent: ((e: KernelEvent) => void) | undefined;
  private oomKillsAtStart = 0;
  private oomReported = false;
  private pidsMaxSeen = 0;

  watch(onEvent: (e: KernelEvent) => void): void {
    this.onEvent = onEvent;
    this.oomKillsAtStart = this.files.oomControl?.keyed()?.get('oom_kill') ?? 0;
    const mem = this.dirOf.get('memory');
    if (mem !== undefined) {
      // The eventfd fires as the OOM starts, before memory.oom_control counts the kill: the event itself
      // is the signal. It also fires when the cgroup is removed; close() runs before any rmdir.
      this.stops.push(watchV1Event(mem, 'memory.oom_control', '', () => this.reportOom()));
    }
    const pids = this.dirOf.get('pids');
    // Without a pids limit the directory is there for stats only: no refusal of ours to report.
    if (pids !== undefined && this.pidsLimited) {
      this.stops.push(pollCounter(path.join(pids, 'pids.events'), 'max', (count) => this.reportPids(count)));
    }
  }

  private reportOom(): void {
    this.oomReported = true;
    this.onEvent?.({ kind: 'oom' });
  }

  private reportPids(count: number): void {
    if (count <= this.pidsMaxSeen) return;
    this.pidsMaxSeen = count;
    this.onEvent?.({ kind: 'pids-max', count });
  }

  recheck(): void {
    const kills = this.files.oomControl?.keyed()?.get('oom_kill') ?? 0;
    if (!this.oomReported && kills > this.oomKillsAtStart) this.reportOom();
    const max = this.files.pidsEvents?.keyed()?.get('max') ?? 0;
    if (max > 0) this.reportPids(max);
  }

  cpuUsageNs(): number | undefined {
    const ns = this.files.cpuacct?.number();
    if (ns !== undefined) return ns;
    const us = this.files.v2CpuStat?.keyed()?.get('usage_usec');
    return us === undefined ? undefined : us * 1000;
  }

  stats(only?: StatFields): RawStats {
    const want = (f: StatField): boolean => only === undefined || only.has(f);
    // Without a quota of its own a v1 cgroup is never throttled (a parent's quota throttles the
    // parent's runqueue): 0 without reading cpu.stat, where the cpu controller is there to say so.
    const throttled = !want('cpuThrottledNs') ? undefined
      : !this.cpuLimited && this.files.cpuStat?.available === true ? 0
      : this.files.cpuStat?.keyed()?.get('throttled_time'); // ns in v1
    return {
      memoryCurrent: want('memoryCurrent') ? this.files.memUsage?.number() : undefined,
      memoryPeak: want('memoryPeak') ? this.files.memMax?.number() : undefined,
      cpuUsageNs: want('cpuUsageNs') ? this.cpuUsageNs() : undefined,
      cpuThrottledNs: throttled,
      pidsCurrent: want('pidsCurrent') ? this.files.pidsCurrent?.number() : undefined,
      oomKills: want('oomKills') ? this.files.oomControl?.keyed()?.get('oom_kill') : undefined,
      pidsMaxEvents: want('pidsMaxEvents') ? this.files.pidsEvents?.keyed()?.get('max') : undefined,
    };
  }

  close(): void {
    this.onEvent = undefined;
    for (const s of this.stops.splice(0)) s();
    for (const f of Object.values(this.files)) f?.close();
  }
}
