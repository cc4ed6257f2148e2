/**
 * Where this process sits in each hierarchy: /proc/self/cgroup gives the path relative to the
 * hierarchy's root, mountinfo (via the layout) gives where that root is mounted. Sandbox cgroups are
 * created below these directories, never beside them: a host run by systemd, in a container, or in a
 * test harness owns its own cgroup and nothing above it.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { LimitError } from '../errors';
import type { CgroupLayout, Hierarchy } from './layout';

export interface OwnCgroups {
  /** Our directory in the v2 hierarchy, when one is mounted. */
  v2?: string;
  /** Our directory per v1 controller. */
  v1: Map<string, string>;
}

export function parseProcCgroup(text: string): { v2?: string; v1: Map<string, string> } {
  const v1 = new Map<string, string>();
  let v2: string | undefined;
  for (const line of text.split('\n')) {
    const m = /^(\d+):([^:]*):(.*)$/.exec(line);
    if (!m) continue;
    const [, id, controllers, p] = m;
    if (id === '0' && controllers === '') v2 = p!;
    else for (const c of controllers!.split(',')) if (c !== '' && !c.startsWith('name=')) v1.set(c, p!);
  }
  return { v2, v1 };
}

function dirIn(h: Hierarchy, cgroupPath: string, what: string): string {
  // A cgroup namespace shows '/' for its root; a bind mount shows its subtree as root. Either way the
  // path must lie inside what is mounted, or we cannot reach our own cgroup.
  const rel = path.posix.relative(h.root, cgroupPath);
  if (rel.startsWith('..')) {
    throw new LimitError('cgroup', `our ${what} cgroup ${cgroupPath} is outside the mounted part (${h.root} at ${h.mountPoint}); mount the hierarchy so that it includes it`, { path: h.mountPoint });
  }
  return path.join(h.mountPoint, rel);
}

export function discoverOwnCgroups(layout: CgroupLayout, procSelfCgroup = '/proc/self/cgroup'): OwnCgroups {
  const parsed = parseProcCgroup(fs.readFileSync(procSelfCgroup, 'utf8'));
  const own: OwnCgroups = { v1: new Map() };
  if (layout.v2 && parsed.v2 !== undefined) own.v2 = dirIn(layout.v2, parsed.v2, 'cgroup2');
  for (const [controller, h] of layout.v1) {
    const p = parsed.v1.get(controller);
    if (p !== undefined) own.v1.set(controller, dirIn(h, p, controller));
  }
  return own;
}
