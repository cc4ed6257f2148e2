/**
 * The `limits` option of Sandbox.spawn and its validated form. Validation happens before anything is
 * created, so a bad option never leaves a cgroup behind.
 */
import * as fs from 'node:fs';
import { InvalidOptionError } from '../errors';
import { parseCount, parseCpu, parseDuration, parseSize } from './units';

/** One block device throttle. `device` is `major:minor` or a path to a block device node. */
export interface IoLimitOptions {
  device: string;
  readBps?: string | number;
  writeBps?: string | number;
  readIops?: number;
  writeIops?: number;
}

export interface LimitsOptions {
  /** Hard memory limit (`256M` or bytes). Exceeding it OOM-kills the sandbox: a `memory` violation. */
  memory?: string | number;
  /** Swap the sandbox may use on top of `memory`. Default 0: swap off, so the limit is a real one. */
  swap?: string | number;
  /** Most tasks (processes and threads) at once. A refused fork is a `pids` violation (not fatal). */
  pids?: string | number;
  /** Cpu bandwidth in cores (`0.5` = half of one core, over every 100 ms period). Throttles, never kills. */
  cpu?: string | number;
  /** Cpu time budget (`10s` or ms), summed over all processes. Exhausting it kills: `cpu-time`. */
  cpuTime?: string | number;
  /** Wall-clock limit from start (`30s` or ms). Reaching it kills: `timeout`. */
  timeout?: string | number;
  /** Block io throttles, where the host has the io (v2) or blkio (v1) controller. */
  io?: IoLimitOptions | IoLimitOptions[];
  /**
   * When the host cannot enforce a limit through cgroups, run anyway with rlimits standing in
   * (RLIMIT_AS for memory, RLIMIT_NPROC for pids, RLIMIT_CPU for cpu time) and say so on the handle.
   * Default false: fail closed with ERR_LIMIT_UNAVAILABLE.
   */
  allowDegraded?: boolean;
  /**
   * Degraded mode only: bytes added on top of `memory` for RLIMIT_AS, for runtimes that reserve
   * address space they never touch (Node reserves about 0.7 GB at start; spawnNode adds 1 GiB).
   * The limit is then looser by that much, and weaker says so. Default 0.
   */
  addressSpaceOverhead?: string | number;
}

export interface IoLimit {
  /** `major:minor` */
  device: string;
  readBps?: number;
  writeBps?: number;
  readIops?: number;
  writeIops?: number;
}

export interface ResolvedLimits {
  memory?: number;
  swap: number;
  pids?: number;
  cpu?: number;
  cpuTime?: number;
  timeout?: number;
  io: IoLimit[];
  allowDegraded: boolean;
  addressSpaceOverhead: number;
}

const KNOWN = new Set(['memory', 'swap', 'pids', 'cpu', 'cpuTime', 'timeout', 'io', 'allowDegraded', 'addressSpaceOverhead']);

function resolveDevice(field: string, device: string): string {
  if (/^\d+:\d+$/.test(device)) return device;
  let st: fs.Stats;
  try {
    st = fs.statSync(device);
  } catch (e) {
    throw new InvalidOptionError(field, `'${device}' is neither major:minor nor an existing device (${(e as NodeJS.ErrnoException).code})`);
  }
  if (!st.isBlockDevice()) throw new InvalidOptionError(field, `'${device}' is not a block device`);
  // Block throttles apply to whole disks; st.rdev packs major/minor the glibc way.
  const major = Number((BigInt(st.rdev) >> 8n) & 0xfffn);
  const minor = Number((BigInt(st.rdev) & 0xffn) | ((BigInt(st.rdev) >> 12n) & 0xfff00n));
  return `${major}:${minor}`;
}

/**
 * The smallest memory limit accepted. Measured (x86_64, 6.x kernels): /bin/true needs about 192 KiB,
 * and below about 48 KiB the kernel's allocations for the sandbox's setup, made while its first
 * task still shares the host's address space (CLONE_VM, before execve), hit the limit: the OOM
 * killer then kills every process sharing that address space, the host included. 1 MiB leaves a
 * wide margin above both.
 */
export const MIN_MEMORY = 1024 * 1024;

export function resolveLimits(opts: LimitsOptions | undefined, prefix = 'limits'): ResolvedLimits {
  const o = opts ?? {};
  if (typeof o !== 'object' || o === null) throw new InvalidOptionError(prefix, 'must be an object');
  for (const k of Object.keys(o)) {
    if (!KNOWN.has(k)) throw new InvalidOptionError(`${prefix}.${k}`, `unknown limit; known: ${[...KNOWN].join(', ')}`);
  }
  const r: ResolvedLimits = { swap: 0, io: [], allowDegraded: o.allowDegraded === true, addressSpaceOverhead: 0 };
  if (o.addressSpaceOverhead !== undefined && o.addressSpaceOverhead !== 0) r.addressSpaceOverhead = parseSize(`${prefix}.addressSpaceOverhead`, o.addressSpaceOverhead);
  if (o.memory !== undefined) {
    r.memory = parseSize(`${prefix}.memory`, o.memory);
    if (r.memory < MIN_MEMORY) {
      throw new InvalidOptionError(`${prefix}.memory`, `is ${r.memory} bytes, below the minimum of 1M (${MIN_MEMORY} bytes): nothing can start with less (/bin/true needs about 192K); give at least 1M`);
    }
  }
  if (o.swap !== undefined) {
    r.swap = o.swap === 0 || o.swap === '0' ? 0 : parseSize(`${prefix}.swap`, o.swap);
    if (r.memory === undefined && r.swap > 0) throw new InvalidOptionError(`${prefix}.swap`, 'needs limits.memory');
  }
  if (o.pids !== undefined) r.pids = parseCount(`${prefix}.pids`, o.pids);
  if (o.cpu !== undefined) r.cpu = parseCpu(`${prefix}.cpu`, o.cpu);
  if (o.cpuTime !== undefined) r.cpuTime = parseDuration(`${prefix}.cpuTime`, o.cpuTime);
  if (o.timeout !== undefined) r.timeout = parseDuration(`${prefix}.timeout`, o.timeout);
  if (o.io !== undefined) {
    const list = Array.isArray(o.io) ? o.io : [o.io];
    list.forEach((io, i) => {
      const f = `${prefix}.io[${i}]`;
      if (typeof io !== 'object' || io === null || typeof io.device !== 'string') {
        throw new InvalidOptionError(f, 'must be { device, readBps?, writeBps?, readIops?, writeIops? }');
      }
      const l: IoLimit = { device: resolveDevice(`${f}.device`, io.device) };
      if (io.readBps !== undefined) l.readBps = parseSize(`${f}.readBps`, io.readBps);
      if (io.writeBps !== undefined) l.writeBps = parseSize(`${f}.writeBps`, io.writeBps);
      if (io.readIops !== undefined) l.readIops = parseCount(`${f}.readIops`, io.readIops);
      if (io.writeIops !== undefined) l.writeIops = parseCount(`${f}.writeIops`, io.writeIops);
      r.io.push(l);
    });
  }
  return r;
}

/** True when any limit needs a cgroup (timeout alone is a timer, but teardown still wants one). */
export function needsCgroup(l: ResolvedLimits): boolean {
  return l.memory !== undefined || l.pids !== undefined || l.cpu !== undefined || l.cpuTime !== undefined || l.io.length > 0;
}
