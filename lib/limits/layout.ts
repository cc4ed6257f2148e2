/**
 * Which cgroup layout the host has, decided the way crun decides it: statfs of /sys/fs/cgroup.
 *   cgroup2 there                                  → unified (v2 controllers for everything)
 *   tmpfs there, with a cgroup2 mount at ./unified → hybrid  (v1 controllers, v2 for kill and events)
 *   tmpfs there, without                           → legacy  (v1 only)
 * The mount points themselves come from /proc/self/mountinfo, so a host that mounts its hierarchies
 * elsewhere, or co-mounts controllers (cpu,cpuacct), is described as it is.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

export const CGROUP2_SUPER_MAGIC = 0x63677270;
export const CGROUP_SUPER_MAGIC = 0x27e0eb;
export const TMPFS_MAGIC = 0x01021994;

export type CgroupMode = 'unified' | 'hybrid' | 'legacy' | 'none';

/** One mounted hierarchy. */
export interface Hierarchy {
  version: 1 | 2;
  /** Where it is mounted in our mount namespace. */
  mountPoint: string;
  /** Which cgroup the mount shows at mountPoint (not '/' for a bind mount of a subtree). */
  root: string;
  /** v1: the controllers bound to it (from the super options); v2: [] (read cgroup.controllers per cgroup). */
  controllers: string[];
}

export interface CgroupLayout {
  mode: CgroupMode;
  /** The cgroup2 hierarchy, on unified hosts and hybrid ones. */
  v2?: Hierarchy;
  /** v1 hierarchies by controller name: cpu and cpuacct point at the same Hierarchy when co-mounted. */
  v1: Map<string, Hierarchy>;
}

interface MountEntry {
  root: string;
  mountPoint: string;
  fsType: string;
  superOptions: string[];
}

// mountinfo escapes space, tab, newline and backslash as \ooo.
function unescapeMount(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
}

export function parseMountinfo(text: string): MountEntry[] {
  const out: MountEntry[] = [];
  for (const line of text.split('\n')) {
    if (line === '') continue;
    const fields = line.split(' ');
    const sep = fields.indexOf('-');
    if (sep < 6 || fields.length < sep + 4) continue;
    out.push({
      root: unescapeMount(fields[3]!),
      mountPoint: unescapeMount(fields[4]!),
      fsType: fields[sep + 1]!,
      superOptions: fields[sep + 3]!.split(','),
    });
  }
  return out;
}

const V1_OPTIONS_NOT_CONTROLLERS = new Set(['rw', 'ro', 'noprefix', 'clone_children', 'xattr', 'cpuset_v2_mode']);

function statfsType(p: string): number | undefined {
  try {
    return fs.statfsSync(p).type;
  } catch {
    return undefined;
  }
}

export interface DetectOptions {
  /** Where the hierarchies are conventionally mounted. Default /sys/fs/cgroup. */
  base?: string;
  /** Mount table to read. Default /proc/self/mountinfo. */
  mountinfo?: string;
}

export function detectLayout(opts: DetectOptions = {}): CgroupLayout {
  const base = opts.base ?? '/sys/fs/cgroup';
  let mounts: MountEntry[] = [];
  try {
    mounts = parseMountinfo(fs.readFileSync(opts.mountinfo ?? '/proc/self/mountinfo', 'utf8'));
  } catch {
    // No /proc: nothing can be located; the mode below still says what /sys/fs/cgroup is.
  }
  // Prefer mounts at or under the conventional base; the first one listed wins (later ones are binds).
  const rank = (m: MountEntry) => (m.mountPoint === base || m.mountPoint.startsWith(base + '/') ? 0 : 1);
  mounts.sort((a, b) => rank(a) - rank(b));

  const v1 = new Map<string, Hierarchy>();
  let v2: Hierarchy | undefined;
  for (const m of mounts) {
    if (m.fsType === 'cgroup2') {
      if (v2 === undefined) v2 = { version: 2, mountPoint: m.mountPoint, root: m.root, controllers: [] };
    } else if (m.fsType === 'cgroup') {
      const controllers = m.superOptions.filter((o) => !V1_OPTIONS_NOT_CONTROLLERS.has(o) && !o.includes('='));
      if (controllers.length === 0) continue; // a named hierarchy (name=systemd): no controller
      const h: Hierarchy = { version: 1, mountPoint: m.mountPoint, root: m.root, controllers };
      for (const c of controllers) if (!v1.has(c)) v1.set(c, h);
    }
  }

  const type = statfsType(base);
  let mode: CgroupMode;
  if (type === CGROUP2_SUPER_MAGIC) {
    mode = 'unified';
    // The mount at base is the one to use even if mountinfo listed another cgroup2 mount first.
    const atBase = mounts.find((m) => m.fsType === 'cgroup2' && m.mountPoint === base);
    v2 = atBase ? { version: 2, mountPoint: base, root: atBase.root, controllers: [] } : v2 ?? { version: 2, mountPoint: base, root: '/', controllers: [] };
    v1.clear(); // v1 controllers cannot be bound while v2 owns them; stray named mounts do not matter
  } else if (type === TMPFS_MAGIC) {
    mode = statfsType(path.join(base, 'unified')) === CGROUP2_SUPER_MAGIC ? 'hybrid' : 'legacy';
    if (mode === 'legacy' && v2 !== undefined && v1.size === 0) mode = 'unified'; // v2 mounted elsewhere only
  } else if (v2 !== undefined && v1.size === 0) {
    mode = 'unified';
  } else if (v1.size > 0) {
    mode = v2 !== undefined ? 'hybrid' : 'legacy';
  } else {
    mode = 'none';
  }
  return { mode, v2, v1 };
}

let cached: CgroupLayout | undefined;
/** The layout of this host, detected once per process (mounts do not change under a running host). */
export function hostLayout(): CgroupLayout {
  cached ??= detectLayout();
  return cached;
}
