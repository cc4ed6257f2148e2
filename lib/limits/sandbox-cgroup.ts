/**
 * One sandbox's cgroup from creation to removal: places it under the host's own cgroup, writes the
 * limits, turns kernel events into violations, enforces cpu time and wall-clock budgets, reports
 * stats, kills what is left at the end and removes the directories.
 *
 * Lifecycle (the launcher drives it):
 *   const cg = SandboxCgroup.create(limits)   // directories + limits + event watches, nothing runs yet
 *   launcher(cgroupDir: cg.cloneIntoDir, cgroupTasks: cg.tasksFiles)  // placed before its first instruction
 *   cg.start(pid)                             // timeout and cpu-time clocks start
 *   ... 'violation' events, cg.stats() ...
 *   await cg.destroy()                        // after the child exited: kill the rest, rmdir
 */
import { EventEmitter } from 'node:events';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { threadId } from 'node:worker_threads';
import { LimitError } from '../errors';
import type { Backend, KernelEvent, StatFields, WeakerLimit } from './backend';
import { removeCgroupDir } from './cgroupfs';
import { CpuTimeWatch } from './cputime';
import { discoverOwnCgroups, type OwnCgroups } from './discover';
import { killCgroup, killMethod, waitEmpty, type KillMethod } from './kill';
import { hostLayout, type CgroupLayout, type CgroupMode } from './layout';
import { needsCgroup, resolveLimits, type LimitsOptions, type ResolvedLimits } from './options';
import { degradedLimits, type RlimitSpec } from './rlimits';
import { V1Backend } from './v1';
import { V2Backend, enableControllers } from './v2';

export type LimitViolationKind = 'memory' | 'pids' | 'cpu-time' | 'timeout';

/** A limit the sandbox ran into. Units: memory in bytes, pids in tasks, cpu-time and timeout in ms. */
export interface LimitViolation {
  kind: LimitViolationKind;
  limit: number;
  /** memory: peak usage; pids: tasks at the refusal; cpu-time: cpu used; timeout: wall time elapsed. */
  observed: number;
  /** Date.now() when the host learned of it. */
  at: number;
}

export interface LimitStats {
  memory: { current?: number; peak?: number; limit?: number; oomKills?: number };
  cpu: { usageNs?: number; throttledNs?: number; limitCores?: number; timeBudgetMs?: number };
  pids: { current?: number; limit?: number; maxEvents?: number };
  /** Date.now() of the read. */
  at: number;
}

/** Sandbox cgroups are named `warden.<host pid>.<n>`: a leftover can be traced to its host. */
export const CGROUP_PREFIX = 'warden.';

export interface CreateOptions {
  /** Override the directory name (tests). */
  name?: string;
  layout?: CgroupLayout;
  own?: OwnCgroups;
}

// The host's own cgroups, discovered once: on v2 the host may move itself into a leaf of its own
// cgroup (see v2.ts), after which /proc/self/cgroup no longer names the directory sandboxes go under.
let ownCache: { layout: CgroupLayout; own: OwnCgroups } | undefined;
function hostPlacement(layout?: CgroupLayout, own?: OwnCgroups): { layout: CgroupLayout; own: OwnCgroups } {
  if (layout !== undefined || own !== undefined) {
    const l = layout ?? hostLayout();
    return { layout: l, own: own ?? discoverOwnCgroups(l) };
  }
  if (ownCache === undefined) {
    const l = hostLayout();
    ownCache = { layout: l, own: discoverOwnCgroups(l) };
  }
  return ownCache;
}

let seq = 0;

/**
 * Cgroups named with this process's pid that existed before it made any: a crashed host's that had
 * the same pid (pids are reused, and quickly where pid_max is small). They are not ours: new names
 * step over them (a mkdir would fail with EEXIST) and listSandboxCgroups() leaves them out.
 * Found once, by the first create or list, before this process has made a cgroup of its own.
 */
let inherited: { dirs: Set<string>; names: Set<string> } | undefined;
/** The directories of those cgroups that still exist as far as this process knows (cleanup.ts removes them). */
export function inheritedSandboxCgroups(): Set<string> {
  return inheritedCgroups().dirs;
}
function inheritedCgroups(): { dirs: Set<string>; names: Set<string> } {
  if (inherited === undefined) {
    const dirs = sandboxCgroupsNamed(`${CGROUP_PREFIX}${process.pid}.`);
    inherited = { dirs: new Set(dirs), names: new Set(dirs.map((d) => path.basename(d))) };
  }
  return inherited;
}

/**
 * Whether `used` bytes leave room under a memory limit to lower a running sandbox to: below 90%
 * of it. Closer, the write of the limit would make the kernel reclaim (in the writer's thread) or
 * kill the sandbox at once. narrow() and a pool fitting a runner to a plugin's files ask the same.
 */
export function memoryRoom(used: number, limit: number): boolean {
  return used < limit * 0.9;
}

/**
 * The violation to report as the sandbox's end, given the one held and a new one: the first,
 * except that `pids` (a refused fork, which ends nothing) gives way to the first violation that
 * does end the sandbox. Otherwise a plugin could pick the label of its own end: refuse itself a
 * fork first, then break the limit it means to.
 */
export function endingViolation<V extends { kind: string }>(held: V | null | undefined, next: V): V {
  if (held === null || held === undefined) return next;
  return held.kind === 'pids' && next.kind !== 'pids' ? next : held;
}

/**
 * warden.<host pid>.<n>, or warden.<host pid>.<thread id>.<n> in a worker thread: each thread has
 * its own copy of this module and of `seq`, and two workers launching with limits at once would
 * otherwise both make warden.<pid>.1 (the second mkdir failing with EEXIST).
 */
function nextName(): string {
  const { names } = inheritedCgroups();
  const thread = threadId === 0 ? '' : `${threadId}.`;
  let name: string;
  do name = `${CGROUP_PREFIX}${process.pid}.${thread}${++seq}`;
  while (names.has(name));
  return name;
}

function createBackend(l: ResolvedLimits, name: string, layout: CgroupLayout, own: OwnCgroups): Backend {
  if (layout.mode === 'none') {
    throw new LimitError('cgroup', 'no cgroup hierarchy is mounted on this host; mount cgroup2 on /sys/fs/cgroup');
  }
  if (layout.mode === 'unified') {
    if (own.v2 === undefined) throw new LimitError('cgroup', 'this process has no cgroup2 membership in /proc/self/cgroup');
    const required = new Set<string>();
    if (l.memory !== undefined) required.add('memory');
    if (l.pids !== undefined) required.add('pids');
    if (l.cpu !== undefined) required.add('cpu');
    if (l.io.length > 0) required.add('io');
    // memory and pids for stats even when not limited; cpu usage is in cpu.stat without the controller.
    enableControllers(own.v2, required, new Set(['memory', 'pids']), own.v2 === layout.v2!.mountPoint);
    return new V2Backend(own.v2, name, l);
  }
  return new V1Backend(layout, own, name, l);
}

export class SandboxCgroup extends EventEmitter {
  /** The limits in force (lowered by narrow()). */
  limits: ResolvedLimits;
  readonly mode: CgroupMode;
  /** Undefined in degraded mode. */
  readonly backend: Backend | undefined;
  /** cgroup.procs files for the launcher (empty in degraded mode). */
  readonly procsFiles: string[];
  /**
   * The cgroup2 directory the launcher creates the child in with clone3(CLONE_INTO_CGROUP), when
   * there is one (unified hosts, and the controller-less v2 hierarchy of hybrid hosts): no
   * cgroup.procs write for it, which after an idle spell waits for an RCU grace period.
   */
  readonly cloneIntoDir: string | undefined;
  /**
   * The v1 hierarchies' `tasks` files, which the child writes "0" into to move itself before it
   * does anything else. The kernel moves a thread that moves itself without its global
   * threadgroup lock; a cgroup.procs write by the host takes that lock for writing, which after an
   * idle spell waits for an RCU grace period (5-20 ms on every cold spawn with limits).
   */
  readonly tasksFiles: string[];
  /** Limits that hold less strictly than requested, with the reason. Empty when all hold. */
  readonly weaker: WeakerLimit[];
  /** rlimits the launcher must set in the child (degraded mode only). */
  readonly rlimits: RlimitSpec[];
  readonly killMethod: KillMethod | 'process';
  /** The violation that says why the sandbox ended (see endingViolation). Later ones are still emitted. */
  violation: LimitViolation | undefined;

  private pid: number | undefined;
  private startedAt = 0;
  private timeoutTimer: NodeJS.Timeout | undefined;
  private cpuWatch: CpuTimeWatch | undefined;
  private killing: Promise<void> | undefined;
  private destroyed: Promise<void> | undefined;
  /** The counters as they were at teardown: stats() after the end still answers. */
  private finalStats: LimitStats | undefined;

  /**
   * Creates the cgroup and arms the kernel event watches. Throws LimitError (ERR_LIMIT_UNAVAILABLE)
   * when a requested limit cannot be enforced, unless limits.allowDegraded.
   */
  static create(limits: LimitsOptions | ResolvedLimits | undefined, opts: CreateOptions = {}): SandboxCgroup {
    const l = isResolved(limits) ? limits : resolveLimits(limits);
    const name = opts.name ?? nextName();
    let backend: Backend | undefined;
    let mode: CgroupMode = 'none';
    let degraded: ReturnType<typeof degradedLimits> | undefined;
    try {
      const { layout, own } = hostPlacement(opts.layout, opts.own);
      mode = layout.mode;
      backend = createBackend(l, name, layout, own);
    } catch (e) {
      if (!(e instanceof LimitError)) throw e;
      // Without any cgroup limit requested, a missing cgroup costs only the teardown guarantee.
      if (needsCgroup(l) && !l.allowDegraded) throw e;
      degraded = degradedLimits(l, e.message);
    }
    return new SandboxCgroup(l, mode, backend, degraded);
  }

  private constructor(l: ResolvedLimits, mode: CgroupMode, backend: Backend | undefined, degraded: ReturnType<typeof degradedLimits> | undefined) {
    super();
    this.limits = l;
    this.mode = mode;
    this.backend = backend;
    this.procsFiles = backend?.procsFiles.slice() ?? [];
    const intoProcs = backend?.v2Dir === undefined ? undefined : path.join(backend.v2Dir, 'cgroup.procs');
    this.cloneIntoDir = intoProcs !== undefined && this.procsFiles.includes(intoProcs) ? backend!.v2Dir : undefined;
    // Every file but the clone3 one is a v1 hierarchy's: the v2 directory, if any, is cloneIntoDir.
    this.tasksFiles = this.procsFiles.filter((f) => f !== intoProcs).map((f) => path.join(path.dirname(f), 'tasks'));
    this.weaker = [...(backend?.weaker ?? []), ...(degraded?.weaker ?? [])];
    this.rlimits = degraded?.rlimits ?? [];
    this.killMethod = backend ? killMethod(backend) : 'process';
    backend?.watch((e) => this.onKernelEvent(e));
  }

  /** Moves a running process in (tests, and launchers that cannot place the child themselves). */
  attach(pid: number): void {
    for (const f of this.procsFiles) {
      try {
        fs.writeFileSync(f, String(pid));
      } catch (e) {
        const errno = (e as NodeJS.ErrnoException).code;
        throw new LimitError('cgroup', `cannot move pid ${pid} into ${f}: ${errno}`, { path: f, errno });
      }
    }
  }

  /** The sandbox's first process runs: the timeout and cpu-time clocks start now. */
  start(pid?: number): void {
    this.pid = pid;
    this.startedAt = Date.now();
    const { timeout, cpuTime } = this.limits;
    if (timeout !== undefined) {
      this.timeoutTimer = setTimeout(() => this.violate({ kind: 'timeout', limit: timeout, observed: Date.now() - this.startedAt, at: Date.now() }), timeout);
      this.timeoutTimer.unref();
    }
    if (cpuTime !== undefined && this.backend !== undefined) {
      const b = this.backend;
      this.cpuWatch = new CpuTimeWatch(cpuTime * 1e6, () => b.cpuUsageNs(), this.limits.cpu, (used) =>
        this.violate({ kind: 'cpu-time', limit: cpuTime, observed: Math.round(used / 1e6), at: Date.now() }));
      this.cpuWatch.start();
    }
  }

  /**
   * Lowers the limits of the running sandbox in place (a pooled runner fitted to its plugin):
   * memory (with swap), pids and cpu are written to the cgroup, each at most the value in force; a
   * cpuTime budget and a timeout start counting now. Throws LimitError (ERR_LIMIT_NARROW) and
   * changes nothing when that is not possible: a limit not set at creation (its controller may not
   * be attached) or set lower, io throttles, degraded mode, memory already in use above the new
   * limit.
   */
  narrow(req: ResolvedLimits): void {
    const cur = this.limits;
    const refuse = (limit: string, why: string): never => {
      throw new LimitError(limit, `cannot lower ${limit} in place: ${why}`, { code: 'ERR_LIMIT_NARROW' });
    };
    const b = this.backend;
    if (b === undefined) refuse('cgroup', 'the sandbox has no cgroup (degraded mode)');
    if (this.destroyed !== undefined) refuse('cgroup', 'the sandbox has ended');
    for (const k of ['memory', 'pids', 'cpu'] as const) {
      const want = req[k];
      if (want === undefined) continue;
      const have = cur[k];
      if (have === undefined) refuse(k, `the sandbox was started without a ${k} limit`);
      if (want > have!) refuse(k, `${want} is above the ${have} in force`);
    }
    if (req.memory !== undefined && req.swap > cur.swap) refuse('swap', `${req.swap} is above the ${cur.swap} in force`);
    if (req.io.length > 0) refuse('io', 'io throttles are set at creation only');
    if (req.memory !== undefined) {
      const used = b!.stats().memoryCurrent;
      if (used !== undefined && !memoryRoom(used, req.memory)) refuse('memory', `the sandbox already uses ${used} bytes, near or above ${req.memory}`);
    }
    if (req.cpuTime !== undefined && b!.cpuUsageNs() === undefined) refuse('cpuTime', 'no cgroup gives this sandbox\'s cpu usage');
    b!.narrow({ memory: req.memory, swap: req.memory !== undefined ? req.swap : cur.swap, pids: req.pids, cpu: req.cpu });
    this.limits = {
      ...cur,
      memory: req.memory ?? cur.memory,
      swap: req.memory !== undefined ? req.swap : cur.swap,
      pids: req.pids ?? cur.pids,
      cpu: req.cpu ?? cur.cpu,
      cpuTime: req.cpuTime ?? cur.cpuTime,
      timeout: req.timeout ?? cur.timeout,
    };
    if (req.timeout !== undefined) {
      if (this.timeoutTimer !== undefined) clearTimeout(this.timeoutTimer);
      const from = Date.now();
      const timeout = req.timeout;
      this.timeoutTimer = setTimeout(() => this.violate({ kind: 'timeout', limit: timeout, observed: Date.now() - from, at: Date.now() }), timeout);
      this.timeoutTimer.unref();
    }
    if (req.cpuTime !== undefined) {
      this.cpuWatch?.stop();
      const base = b!.cpuUsageNs()!;
      const cpuTime = req.cpuTime;
      this.cpuWatch = new CpuTimeWatch(base + cpuTime * 1e6, () => b!.cpuUsageNs(), this.limits.cpu, (used) =>
        this.violate({ kind: 'cpu-time', limit: cpuTime, observed: Math.round((used - base) / 1e6), at: Date.now() }));
      this.cpuWatch.start();
    }
  }

  private onKernelEvent(e: KernelEvent): void {
    const at = Date.now();
    if (e.kind === 'oom') {
      const s = this.backend?.stats();
      this.violate({ kind: 'memory', limit: this.limits.memory ?? 0, observed: s?.memoryPeak ?? s?.memoryCurrent ?? this.limits.memory ?? 0, at });
    } else if (this.limits.pids !== undefined) {
      // A fork is refused when the count is at the limit; by the time we read pids.current the
      // refused program may have exited, so the count at refusal is the honest `observed`.
      this.violate({ kind: 'pids', limit: this.limits.pids, observed: this.limits.pids, at });
    }
  }

  /**
   * Records and emits a violation. memory, cpu-time and timeout end the sandbox; pids does not (the
   * fork was refused, the program may cope, and pids.max already contains a fork bomb).
   */
  private violate(v: LimitViolation): void {
    if (this.destroyed !== undefined) return;
    this.violation = endingViolation(this.violation, v);
    if (v.kind !== 'pids') void this.kill();
    this.emit('violation', v);
  }

  /** Catches violations whose notification has not been delivered yet (call when the sandbox exited). */
  recheck(): void {
    this.backend?.recheck();
  }

  /** The counters now; `only` names the ones to read (each a cgroup file read), the others stay undefined. */
  stats(only?: StatFields): LimitStats {
    if (this.finalStats !== undefined) return { ...this.finalStats, at: Date.now() };
    const s = this.backend?.stats(only) ?? {};
    return {
      memory: { current: s.memoryCurrent, peak: s.memoryPeak, limit: this.limits.memory, oomKills: s.oomKills },
      cpu: { usageNs: s.cpuUsageNs, throttledNs: s.cpuThrottledNs, limitCores: this.limits.cpu, timeBudgetMs: this.limits.cpuTime },
      pids: { current: s.pidsCurrent, limit: this.limits.pids, maxEvents: s.pidsMaxEvents },
      at: Date.now(),
    };
  }

  /** Kills every process in the sandbox (all of its cgroup; in degraded mode only the first process). */
  kill(): Promise<void> {
    this.killing ??= (async () => {
      if (this.backend !== undefined) {
        await killCgroup(this.backend);
      } else if (this.pid !== undefined) {
        try { process.kill(this.pid, 'SIGKILL'); } catch { /* already gone */ }
      }
    })().finally(() => { this.killing = undefined; });
    return this.killing;
  }

  /**
   * Ends the sandbox: stops clocks and watches, kills whatever is left (double-forked daemons
   * included), waits for the cgroup to empty and removes its directories. Idempotent.
   */
  destroy(): Promise<void> {
    if (this.destroyed === undefined) {
      this.recheck(); // last chance for a violation whose notification is still in flight
      this.destroyed = this.teardown();
    }
    return this.destroyed;
  }

  private async teardown(): Promise<void> {
    if (this.timeoutTimer !== undefined) clearTimeout(this.timeoutTimer);
    this.cpuWatch?.stop();
    const b = this.backend;
    if (b === undefined) return;
    this.finalStats = this.stats();
    // Close watches and fds before any rmdir: a v1 eventfd fires on removal, an open fd pins nothing
    // but would be read from a dead cgroup.
    b.close();
    if (this.killing !== undefined) await this.killing;
    await killCgroup(b);
    if (!(await waitEmpty(b))) {
      await killCgroup(b, 'signal');
      await waitEmpty(b, 2000);
    }
    const errors: unknown[] = [];
    for (const d of b.dirs.slice().reverse()) {
      try {
        await removeCgroupDir(d);
      } catch (e) {
        errors.push(e);
      }
    }
    if (errors.length > 0) throw errors[0];
  }
}

function isResolved(x: unknown): x is ResolvedLimits {
  return typeof x === 'object' && x !== null && Array.isArray((x as ResolvedLimits).io) && typeof (x as ResolvedLimits).swap === 'number';
}

/**
 * Sandbox cgroups of a host process (default: this one) that still exist, in every hierarchy.
 * Tests use it to prove nothing is left; `warden doctor` to show leftovers of crashed hosts.
 */
export function listSandboxCgroups(hostPid: number | undefined = process.pid): string[] {
  if (hostPid !== process.pid) return sandboxCgroupsNamed(hostPid === undefined ? CGROUP_PREFIX : `${CGROUP_PREFIX}${hostPid}.`);
  const { dirs } = inheritedCgroups();
  return sandboxCgroupsNamed(`${CGROUP_PREFIX}${hostPid}.`).filter((dir) => !dirs.has(dir));
}

/** Directories whose name starts with `prefix` under the host's own cgroups, in every hierarchy. */
export function sandboxCgroupsNamed(prefix: string): string[] {
  let placement: { layout: CgroupLayout; own: OwnCgroups };
  try {
    placement = hostPlacement();
  } catch {
    return [];
  }
  const parents = new Set<string>([...placement.own.v1.values()]);
  if (placement.own.v2 !== undefined) parents.add(placement.own.v2);
  const found: string[] = [];
  for (const parent of parents) {
    let names: string[] = [];
    try {
      names = fs.readdirSync(parent);
    } catch {
      continue;
    }
    for (const n of names) if (n.startsWith(prefix)) found.push(`${parent}/${n}`);
  }
  return found.sort();
}
