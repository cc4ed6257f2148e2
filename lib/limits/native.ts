/**
 * The addon functions this module uses. Loaded lazily: only v1 OOM notification needs native code,
 * so a unified host never loads it here.
 */
import * as path from 'node:path';

export interface CgroupEventWatch {
  readonly fd: number;
  close(): void;
}

interface CgroupEventsAddon {
  /** Registers an eventfd for dir/file in dir/cgroup.event_control; cb gets the counter, or null on error. */
  watchCgroupEvent(dir: string, file: string, args: string, cb: (count: number | null) => void): CgroupEventWatch;
}

let addon: CgroupEventsAddon | undefined;

export function cgroupEventsAddon(): CgroupEventsAddon {
  if (addon === undefined) {
    // dist/lib/limits/native.js → build/Release/warden.node at the package root.
    const file = path.join(__dirname, '..', '..', '..', 'build', 'Release', 'warden.node');
    addon = require(file) as CgroupEventsAddon;
  }
  return addon;
}
