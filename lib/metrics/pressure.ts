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

/**
 * An episode of memory pressure ends when usage falls under this share of the threshold, so a plugin
 * sitting at the threshold is one episode, not one per page it takes or gives back. (The sampled
 * kinds end by their own rules: a sample not throttled; an error rate under half its threshold.)
 */
export const PRESSURE_CLEAR_SHARE = 0.9;
/**
 * Pressure events (and their audit lines) a plugin may cause, per kind: a burst, then one a minute. A plugin
 * can start and end episodes at will (writing and deleting a file on its tmpfs swings its memory by
 * megabytes in a millisecond): 2 s of that made 1,064 events and audit lines before this bound.
 * Episodes past it are counted and the count rides on the next event that is sent (`suppressed`).
 */
export const PRESSURE_EVENTS = Object.freeze({ burst: 3, perMinute: 1 });
/**
 * After a kernel notice the watch is closed, and armed again this long after: a plugin swinging its
 * memory across the threshold wakes the host twice (a notice, the re-arming) per this long at most,
 * however fast it swings.
 */
export const THRESHOLD_REARM_MS = 50;

/**
 * Arms the kernel's memory threshold for the sandbox of `pid` (cgroup v1); undefined where the host
 * has no v1 memory controller or the cgroup cannot be found (the sample then stands in).
 *
 * The level watched is `level()` at each arming: the observer watches the warning threshold while a
 * plugin is under it, and the level that ends the episode while it is over, so the kernel reports
 * both edges of an episode. `onUsage` gets `readUsage()` (the cgroup's `memory.usage_in_bytes`,
 * through the limits layer's open file) right after each notice and at each arming.
 *
 * Why a read at each arming: the kernel takes its side of a threshold at registration and sends
 * nothing for a threshold already crossed. And why the watch is closed on a notice and armed again
 * THRESHOLD_REARM_MS later (rather than read once and left): the kernel checks thresholds only every
 * 128 pages charged or freed, and pages come and go between its check and the host's read. A notice
 * of usage going over was read one page under (107,372,544 bytes against 107,374,182), and the
 * kernel, which had not seen the dip, sent nothing more while usage rose to 114 MB. The arming's
 * read, 50 ms later, sees where usage went; and closing the watch in between bounds the host's
 * wake-ups however fast a plugin swings its memory.
 */
export function watchMemoryThreshold(pid: number, level: () => number, readUsage: () => number | undefined, onUsage: (usage: number) => void): Stop | undefined {
  let dir: string | undefined;
  try {
    const layout = hostLayout();
    if (!layout.v1.has('memory')) return undefined;
    dir = discoverOwnCgroups(layout, `/proc/${pid}/cgroup`).v1.get('memory');
  } catch {
    return undefined; // the process is gone already
  }
  if (dir === undefined || dir === '/') return undefined;
  const cgroup = dir;
  let stopped = false;
  let watch: Stop | undefined;
  let armedLevel = NaN;
  let rearm: NodeJS.Timeout | undefined;

  const register = (): boolean => {
    armedLevel = Math.floor(level());
    try {
      watch = watchV1Event(cgroup, 'memory.usage_in_bytes', String(armedLevel), onNotice);
      return true;
    } catch {
      return false; // the cgroup was removed
    }
  };
  const read = (): void => {
    if (stopped) return;
    const usage = readUsage();
    if (usage === undefined) return;
    onUsage(usage);
    // The reading may have started or ended an episode: watch the other edge (not at once: at most
    // one arming per THRESHOLD_REARM_MS).
    if (Math.floor(level()) !== armedLevel) later();
  };
  const later = (): void => {
    if (rearm !== undefined || stopped) return;
    rearm = setTimeout(() => {
      rearm = undefined;
      if (stopped) return;
      watch?.();
      watch = undefined;
      if (register()) read();
    }, THRESHOLD_REARM_MS);
    rearm.unref();
  };
  function onNotice(): void {
    watch?.();
    watch = undefined;
    read();
    later();
  }

  if (!register()) return undefined;
  // Not from inside the caller (the observer arms this while it builds a snapshot).
  setImmediate(read);
  return () => {
    stopped = true;
    clearTimeout(rearm);
    watch?.();
    watch = undefined;
  };
}
