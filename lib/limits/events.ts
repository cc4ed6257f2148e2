/**
 * Kernel event sources, one per kind of notification the kernel offers:
 *  - v2 event files (memory.events, pids.events, cgroup.events) raise inotify IN_MODIFY when they
 *    change (kernfs_notify); fs.watch delivers that on the event loop. No timer.
 *  - v1 memory.oom_control signals an eventfd registered in cgroup.event_control (native, uv_poll).
 *  - v1 pids.events has a `max` counter but the v1 pids controller never notifies it (inotify and
 *    poll stay silent; checked on 6.x kernels). There is no event to wait for, so for that one case
 *    a single shared timer reads the counter of every v1 sandbox with a pids limit. It runs only
 *    while such a sandbox exists. Reading every counter on every tick made idle sandboxes cost the
 *    host cpu in proportion to their number (50 idle plugins: ~40 ms of cpu per second on a 2-core
 *    VM), so each tick first reads one small file: the last pid allocated (/proc/loadavg). The
 *    kernel allocates the new task's pid before the pids controller refuses it (copy_process:
 *    alloc_pid, then cgroup_can_fork), and the sandboxes' PID namespaces are below ours, so every
 *    fork or thread creation attempted in any sandbox, refused or not, moves that number. While it
 *    does not move, no counter can have grown and the per-sandbox reads are skipped: an idle host
 *    pays one pread per tick whatever the number of sandboxes. After it moves, the counters are
 *    read on that tick and the next, which covers a refusal still in progress at the tick that saw
 *    its pid (alloc_pid and the refusal are microseconds apart unless the task is preempted in
 *    between; the final recheck() at teardown catches anything later still). The tick itself is
 *    every 10 ms while pids move (anywhere on the machine: a fork bomb, a runner starting its
 *    threads) and every 100 ms once none has for 100 ms, so a host whose machine is quiet wakes 10
 *    times a second, not 100. The price: a refusal that comes alone after such a quiet spell (a
 *    sandbox sitting at its limit that tries once more) is seen up to 100 ms late instead of 10;
 *    one that follows task creations, as a fork bomb's does, is not.
 *    While pids move, each sweep reads every counter, so its cost grows with the number of
 *    sandboxes; and while many plugins start (each runner creating its threads) pids move all the
 *    time. At a thousand sandboxes that was a thousand reads every 10 ms, half a core for the whole
 *    start (starting N plugins cost the host O(N²)). So the sweeps have a budget: after a sweep that
 *    took d, the next waits at least d × SWEEP_SPACING. A sweep owed meanwhile is not dropped, only
 *    later: at a few dozen sandboxes (well under a millisecond a sweep) nothing changes; at a
 *    thousand (4-9 ms a sweep here) a refusal is seen up to ten sweep durations late.
 */
import * as fs from 'node:fs';
import { cgroupEventsAddon } from './native';
import { StatFile } from './cgroupfs';

export type Stop = () => void;

/** Calls onChange (on the event loop) whenever the kernel notifies a change of `file`. */
export function watchFile(file: string, onChange: () => void): Stop {
  const w = fs.watch(file, { persistent: false }, () => onChange());
  // A cgroup being removed can surface as an error on the watcher; teardown handles removal itself.
  w.on('error', () => w.close());
  return () => w.close();
}

/** v1 notification through cgroup.event_control; cb runs on each eventfd wake-up. */
export function watchV1Event(dir: string, file: string, args: string, cb: () => void): Stop {
  const h = cgroupEventsAddon().watchCgroupEvent(dir, file, args, (count) => {
    if (count !== null) cb();
  });
  return () => h.close();
}

/** Period of the v1 pids poll while pids move: keeps breach→event p99 well under the 50 ms target. */
export const V1_PIDS_POLL_MS = 10;
/** Period once no pid has moved for PIDS_FAST_FOR_MS. */
export const V1_PIDS_IDLE_POLL_MS = 100;
/** How long after the last pid moved the poll stays at V1_PIDS_POLL_MS. */
export const PIDS_FAST_FOR_MS = 100;
/** After the last pid moved, the counters are read on the ticks of this long (this tick and the next). */
export const PIDS_SWEEP_AFTER_MS = 2 * V1_PIDS_POLL_MS;
/**
 * A sweep that took d (wall time: a sweep that was preempted counts as longer, so the budget errs
 * towards less cpu) is followed by at least d × this without one: sweeps use ≤ 1/10 of a core.
 */
export const SWEEP_SPACING = 9;

interface PolledCounter {
  file: StatFile;
  key: string;
  last: number;
  cb: (value: number) => void;
}

const polled = new Set<PolledCounter>();
let pollTimer: NodeJS.Timeout | undefined;
let pollDelay = V1_PIDS_POLL_MS;
let lastPidFile: StatFile | undefined;
let lastPid: string | undefined;
let lastMove = 0;
let sweepUntil = 0;
/** Earliest time (performance.now()) of the next sweep: the budget above. */
let nextSweepAt = 0;
/** A sweep was due but over budget: it runs on the first tick the budget allows. */
let sweepOwed = false;

/**
 * Ticks of the shared poll, how many of them read the counters, the wall time those reads took
 * (ms), and the longest a due sweep waited for its budget (ms). For tests and benchmarks.
 */
export const pollStats = { ticks: 0, sweeps: 0, sweepMs: 0, maxOwedMs: 0 };
let owedSince = 0;

/** The last pid allocated in our PID namespace (last field of /proc/loadavg); undefined if unreadable. */
function readLastPid(): string | undefined {
  const t = lastPidFile?.text();
  if (t === undefined) return undefined;
  const s = t.trimEnd();
  return s.slice(s.lastIndexOf(' ') + 1);
}

function pollOnce(): void {
  pollStats.ticks++;
  const now = Date.now();
  const pid = readLastPid();
  if (pid === undefined || pid !== lastPid) {
    lastPid = pid;
    lastMove = now;
    sweepUntil = now + PIDS_SWEEP_AFTER_MS;
  } else if (now > sweepUntil && !sweepOwed) {
    return; // no task was created anywhere since the counters were last read
  }
  const start = performance.now();
  if (start < nextSweepAt) {
    if (!sweepOwed) owedSince = start;
    sweepOwed = true;
    return;
  }
  if (sweepOwed) pollStats.maxOwedMs = Math.max(pollStats.maxOwedMs, start - owedSince);
  sweepOwed = false;
  pollStats.sweeps++;
  for (const p of polled) {
    const v = p.file.keyed()?.get(p.key);
    if (v !== undefined && v > p.last) {
      p.last = v;
      p.cb(v);
    }
  }
  const took = performance.now() - start;
  pollStats.sweepMs += took;
  nextSweepAt = start + took * (1 + SWEEP_SPACING);
}

function schedule(delay: number): void {
  if (pollTimer !== undefined) clearTimeout(pollTimer);
  pollDelay = delay;
  pollTimer = setTimeout(tick, delay);
  pollTimer.unref();
}

function tick(): void {
  pollTimer = undefined;
  pollOnce();
  if (polled.size === 0 || pollTimer !== undefined) return; // stopped, or a callback re-armed it
  schedule(sweepOwed || Date.now() - lastMove <= PIDS_FAST_FOR_MS ? V1_PIDS_POLL_MS : V1_PIDS_IDLE_POLL_MS);
}

/** Shared poll of a keyed counter file (v1 pids.events `max`). */
export function pollCounter(file: string, key: string, cb: (value: number) => void): Stop {
  const p: PolledCounter = { file: new StatFile(file), key, last: 0, cb };
  p.last = p.file.keyed()?.get(key) ?? 0;
  polled.add(p);
  if (lastPidFile === undefined) {
    lastPidFile = new StatFile('/proc/loadavg');
    lastPid = readLastPid();
  }
  // A new sandbox is being started: its first process and threads are about to be created.
  lastMove = Date.now();
  sweepUntil = lastMove + PIDS_SWEEP_AFTER_MS;
  if (pollTimer === undefined || pollDelay !== V1_PIDS_POLL_MS) schedule(V1_PIDS_POLL_MS);
  return () => {
    if (!polled.delete(p)) return;
    p.file.close();
    if (polled.size === 0) {
      if (pollTimer !== undefined) clearTimeout(pollTimer);
      pollTimer = undefined;
      lastPidFile?.close();
      lastPidFile = undefined;
      sweepOwed = false;
    }
  };
}
