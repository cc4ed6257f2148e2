/**
 * Soft thresholds: told before a limit is hit, never enforced.
 *
 * Memory comes from the kernel where it notifies: on a cgroup v1 memory controller (hybrid and legacy
 * hosts) an eventfd registered in `cgroup.event_control` with a threshold on `memory.usage_in_bytes`
 * is signalled the moment usage crosses it, either way, with no read in between. On cgroup v2 the
 * kernel's notifications (`memory.events` `high`, PSI triggers) need `memory.high` set (which would
 * throttle the plugin) or a poll(2) on a PSI trigger fd, so there the history's sample (every
 * intervalMs) is the source. CPU throttling and the error rate are rates over an interval: sampled.
 */
import * as fs from 'node:fs';
import { discoverOwnCgroups, hostLayout } from '../limits';
import { watchV1Event, type Stop } from '../limits/events';

export interface Thresholds {
  /** Share of the memory limit (default 0.8). */
  memory: number;
  /** Share of wall time the plugin's cgroup spent throttled (default 0.25)... */
  cpuThrottled: number;
  /** ...for this many consecutive samples (default 3). */
  cpuThrottledSamples: number;
  /** Share of hook calls that failed within one interval (default 0.5)... */
  errorRate: number;
  /** ...with at least this many calls in it (default 10). */
  errorMinCalls: number;
}

export const DEFAULT_THRESHOLDS: Thresholds = { memory: 0.8, cpuThrottled: 0.25, cpuThrottledSamples: 3, errorRate: 0.5, errorMinCalls: 10 };

/** How long after a notice the usage is read again (see watchMemoryThreshold). */
export const THRESHOLD_RECHECK_MS = 50;

/**
 * Arms the kernel's memory threshold for the sandbox of `pid` (cgroup v1); undefined where the host
 * has no v1 memory controller or the cgroup cannot be found (the sample then stands in).
 * `onCross` runs on the event loop with the usage read right after a notice, again
 * THRESHOLD_RECHECK_MS later, and once just after arming.
 *
 * Why the extra reads: the kernel checks a cgroup's thresholds only every 128 pages charged or
 * freed, and pages come and go between its check and the host's read. A notice of usage going
 * over was read one page under (107,372,544 bytes against 107,374,182) and taken for usage going
 * back down; the kernel, which had not seen the dip, sent nothing more while usage rose to 114 MB.
 * And a threshold armed when usage is already over it is never signalled: the kernel takes its
 * side at registration.
 */
export function watchMemoryThreshold(pid: number, bytes: number, onCross: (usage: number) => void): Stop | undefined {
  let dir: string | undefined;
  try {
    const layout = hostLayout();
    if (!layout.v1.has('memory')) return undefined;
    dir = discoverOwnCgroups(layout, `/proc/${pid}/cgroup`).v1.get('memory');
  } catch {
    return undefined; // the process is gone already
  }
  if (dir === undefined || dir === '/') return undefined;
  const usageFile = `${dir}/memory.usage_in_bytes`;
  let stopped = false;
  let recheck: NodeJS.Timeout | undefined;
  const check = (): void => {
    if (stopped) return;
    let usage: number;
    try {
      usage = Number(fs.readFileSync(usageFile, 'utf8'));
    } catch {
      return; // the cgroup was removed (the kernel signals that too)
    }
    onCross(usage);
  };
  let stopWatch: Stop;
  try {
    stopWatch = watchV1Event(dir, 'memory.usage_in_bytes', String(Math.floor(bytes)), () => {
      check();
      if (recheck === undefined) {
        recheck = setTimeout(() => {
          recheck = undefined;
          check();
        }, THRESHOLD_RECHECK_MS);
        recheck.unref();
      }
    });
  } catch {
    return undefined;
  }
  // Not from inside the caller (the observer arms this while it builds a snapshot).
  setImmediate(check);
  return () => {
    stopped = true;
    clearTimeout(recheck);
    stopWatch();
  };
}
