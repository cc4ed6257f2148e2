/**
 * The addon functions this module uses. Loaded lazily: only v1 OOM notification needs native code,
 * so a unified host never loads it here.
 */
import { requireAddon } from '../native-file';

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
    addon = requireAddon() as CgroupEventsAddon;
  }
  return addon;
}
