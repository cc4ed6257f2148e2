/** What the v1 and v2 backends have in common; SandboxCgroup drives either. */

/** A limit that holds less strictly than asked, and why (degraded mode, or a host without a knob). */
export interface WeakerLimit {
  limit: 'memory' | 'swap' | 'pids' | 'cpu' | 'cpuTime' | 'io' | 'teardown';
  reason: string;
  /** What stands in, if anything: 'RLIMIT_AS', 'RLIMIT_NPROC', 'RLIMIT_CPU', 'none'. */
  substitute: string;
}

/** Raw counters, in kernel units converted to bytes / nanoseconds / counts. */
export interface RawStats {
  memoryCurrent?: number;
  memoryPeak?: number;
  cpuUsageNs?: number;
  cpuThrottledNs?: number;
  pidsCurrent?: number;
  oomKills?: number;
  pidsMaxEvents?: number;
}

/**
 * The counters a caller wants from stats(): each is a read of a cgroup file (a syscall of a few µs),
 * and a host that samples a thousand sandboxes every few seconds reads only what it shows.
 */
export type StatField = keyof RawStats;
export type StatFields = ReadonlySet<StatField>;

export type KernelEvent = { kind: 'oom' } | { kind: 'pids-max'; count: number };

export interface Backend {
  readonly version: 1 | 2;
  /** Every directory created, in creation order (removed in reverse). */
  readonly dirs: string[];
  /** cgroup.procs files the launcher writes the child's pid into before it runs. */
  readonly procsFiles: string[];
  readonly weaker: WeakerLimit[];
  /** The v2 directory where cgroup.kill / cgroup.freeze / cgroup.events live, if any. */
  readonly v2Dir?: string;
  /** The v1 freezer directory, if used for teardown. */
  readonly freezerDir?: string;
  /** Any procs file listing all sandbox processes (to signal them one by one as a last resort). */
  readonly anyProcsFile: string;
  /** Reads the counters named in `only` (all without it); the others are left undefined. */
  stats(only?: StatFields): RawStats;
  cpuUsageNs(): number | undefined;
  /** Start delivering kernel events. Called once, before the first process enters. */
  watch(onEvent: (e: KernelEvent) => void): void;
  /**
   * Re-read the event counters now and deliver what changed. The exit of the sandbox can be noticed
   * before the kernel's file notification is delivered; this closes that gap at exit.
   */
  recheck(): void;
  /** Stop event delivery and close fds. Idempotent. */
  close(): void;
  /** Writes lower memory (with swap), pids and cpu limits into the live cgroup. */
  narrow(l: NarrowLimits): void;
}

/** The limits a running sandbox's cgroup can be lowered to in place. */
export interface NarrowLimits {
  memory?: number;
  swap: number;
  pids?: number;
  cpu?: number;
}
