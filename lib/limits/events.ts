/**
 * Kernel event sources, one per kind of notification the kernel offers:
 *  - v2 event files (memory.events, pids.events, cgroup.events) raise inotify IN_MODIFY when they
 *    change (kernfs_notify); fs.watch delivers that on the event loop. No timer.
 *  - v1 memory.oom_control signals an eventfd registered in cgroup.event_control (native, uv_poll).
 *  - v1 pids.events has a `max` counter but the v1 pids controller never notifies it (inotify and
 *    poll stay silent; checked on 6.x kernels). There is no event to wait for, so for that one case a
 *    single shared timer reads the counter of every v1 sandbox with a pids limit. It runs only while such
 *    a sandbox exists; one pread per sandbox per tick (~2 µs each).
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

/** Period of the v1 pids poll: keeps breach→event p99 well under the 50 ms target of the benchmark. */
export const V1_PIDS_POLL_MS = 10;

interface PolledCounter {
  file: StatFile;
  key: string;
  last: number;
  cb: (value: number) => void;
}

const polled = new Set<PolledCounter>();
let pollTimer: NodeJS.Timeout | undefined;

function pollOnce(): void {
  for (const p of polled) {
    const v = p.file.keyed()?.get(p.key);
    if (v !== undefined && v > p.last) {
      p.last = v;
      p.cb(v);
    }
  }
}

/** Shared poll of a keyed counter file (v1 pids.events `max`). */
export function pollCounter(file: string, key: string, cb: (value: number) => void): Stop {
  const p: PolledCounter = { file: new StatFile(file), key, last: 0, cb };
  p.last = p.file.keyed()?.get(key) ?? 0;
  polled.add(p);
  if (pollTimer === undefined) {
    pollTimer = setInterval(pollOnce, V1_PIDS_POLL_MS);
    pollTimer.unref();
  }
  return () => {
    if (!polled.delete(p)) return;
    p.file.close();
    if (polled.size === 0 && pollTimer !== undefined) {
      clearInterval(pollTimer);
      pollTimer = undefined;
    }
  };
}
