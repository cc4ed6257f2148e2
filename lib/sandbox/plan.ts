/**
 * Options → the native launch plan. All user-facing validation happens here: a bad option throws an
 * InvalidOptionError naming the field before anything is started.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { DEFAULT_SETUP_TIMEOUT_MS } from '../defaults';
import { InvalidOptionError } from '../errors';
import { releaseIdleHostIdBlocks } from './ids';
import { parseSize } from '../limits/units';
import { addon, type NativeMount, type NativeMountSet, type NativePlan } from '../native';
import { NAMESPACES, type NamespaceName, type RlimitName, type SpawnOptions } from './types';

export const DEFAULT_PATH = '/usr/local/bin:/usr/bin:/bin';
export const NOBODY = 65534;

/** System directories bound read-only by default, when they exist on the host. */
const DEFAULT_SYSTEM_DIRS = ['/usr', '/bin', '/sbin', '/lib', '/lib32', '/lib64', '/libx32'];
/**
 * Files of /etc that the dynamic loader and ordinary programs read at run time; nothing that names
 * users. (ld.so.conf is only for ldconfig.) Each bind costs tens of microseconds of every spawn.
 */
const DEFAULT_ETC = ['/etc/ld.so.cache', '/etc/alternatives', '/etc/localtime'];
const DEVICES = ['null', 'zero', 'full', 'random', 'urandom'];

const RLIMITS: Record<RlimitName, number> = {
  cpu: 0, fsize: 1, data: 2, stack: 3, core: 4, rss: 5, nproc: 6, nofile: 7, memlock: 8, as: 9,
  locks: 10, sigpending: 11, msgqueue: 12, nice: 13, rtprio: 14, rttime: 15,
};

/** The rlimits of a sandbox that asks for none: no core dumps. */
const DEFAULT_RLIMIT_NAMES: readonly string[] = Object.freeze(['core']);
const DEFAULT_RLIMITS: ReadonlyArray<{ resource: number; soft: number; hard: number }> = Object.freeze([Object.freeze({ resource: RLIMITS.core, soft: 0, hard: 0 })]);

function checkId(field: string, v: unknown): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > 0xfffffffe) {
    throw new InvalidOptionError(field, `must be an integer id from 0 to 4294967294, got ${String(v)}`);
  }
  return v;
}

function checkSandboxPath(field: string, p: unknown): string {
  if (typeof p !== 'string' || !path.isAbsolute(p)) throw new InvalidOptionError(field, `must be an absolute path, got ${JSON.stringify(p)}`);
  if (p.includes('\0')) throw new InvalidOptionError(field, 'must not contain a NUL byte');
  const normal = path.posix.normalize(p);
  if (normal !== p.replace(/\/+$/, '') && normal !== p) throw new InvalidOptionError(field, `'${p}' is not normalized; write '${normal}'`);
  return normal.length > 1 ? normal.replace(/\/+$/, '') : normal;
}

function lastCap(): number {
  try {
    return Number(fs.readFileSync('/proc/sys/kernel/cap_last_cap', 'utf8').trim());
  } catch {
    return 63; // drop every possible bit; unknown ones answer EINVAL, which the child ignores
  }
}
let cachedLastCap: number | undefined;

/**
 * The default system mounts of this host, looked up once per process. A symlink is recreated rather
 * than bound: a merged-/usr host has /bin → usr/bin, and /etc/localtime points into /usr, which is
 * bound anyway (a symlink costs far less than a bind).
 */
let systemMounts: NativeMount[] | undefined;
function defaultSystemMounts(): NativeMount[] {
  if (systemMounts !== undefined) return systemMounts;
  const mounts: NativeMount[] = [];
  for (const p of [...DEFAULT_SYSTEM_DIRS, ...DEFAULT_ETC]) {
    let st: fs.Stats;
    try {
      st = fs.lstatSync(p);
    } catch {
      continue;
    }
    const link = st.isSymbolicLink() ? fs.readlinkSync(p) : null;
    const into = link === null ? null : path.posix.resolve(path.posix.dirname(p), link);
    if (link !== null && (into!.startsWith('/usr/') || DEFAULT_SYSTEM_DIRS.includes(p))) mounts.push({ kind: 'symlink', source: link, target: p });
    // Bind sources are never followed through symlinks: a host file that is one (chosen by the
    // host's administrator, not by a sandbox) is bound by its real path.
    else {
      let source = p;
      try {
        if (link !== null) source = fs.realpathSync(p);
      } catch {
        continue; // a dangling link: nothing to bind
      }
      mounts.push({ kind: 'bind', source, target: p });
    }
  }
  systemMounts = mounts;
  return mounts;
}

/** One entry of the logical mount list, kept to name the culprit of a failed mount. */
export interface MountDescription {
  entry: string;
  text: string;
  /** A bind's host path. */
  source?: string;
  /** The path inside the sandbox. */
  target: string;
}

/** What decides a sandbox's mount list. */
interface MountListSpec {
  defaults: boolean;
  proc: boolean;
  tmpSize: number;
  binds: Array<{ source: string; target: string; writable: boolean; hostAccess: boolean }>;
  tmpfs: Array<{ target: string; size: number }>;
}

/** A mount list with its native form, prepared once (see NativeMountSet) and reused by every spawn. */
interface MountList {
  descriptions: MountDescription[];
  set: NativeMountSet;
}

/**
 * Prepared mount lists by content. Binds are still resolved at every spawn (the native side clones
 * each source then); what is kept is the list's validation, its ops and, on a root host, the
 * template root. Bounded: a host that varies its binds endlessly keeps only the recent lists.
 */
const mountLists = new Map<string, MountList>();
const MAX_MOUNT_LISTS = 64;

function mountListFor(spec: MountListSpec): MountList {
  let key = `${spec.defaults ? 1 : 0}${spec.proc ? 1 : 0}${spec.tmpSize}`;
  for (const b of spec.binds) key += `\0b${b.source}\0${b.target}\0${b.writable ? 1 : 0}${b.hostAccess ? 1 : 0}`;
  for (const t of spec.tmpfs) key += `\0t${t.target}\0${t.size}`;
  const hit = mountLists.get(key);
  if (hit !== undefined) {
    mountLists.delete(key); // most recently used last
    mountLists.set(key, hit);
    return hit;
  }

  const mounts: NativeMount[] = [];
  const descriptions: MountDescription[] = [];
  const add = (m: NativeMount, entry: string) => {
    mounts.push(m);
    descriptions.push({ entry, text: m.kind === 'bind' ? `${m.source} → ${m.target}` : `${m.kind} ${m.target}`, source: m.kind === 'bind' ? m.source : undefined, target: m.target });
  };
  if (spec.defaults) {
    for (const m of defaultSystemMounts()) add(m, `default ${m.target}`);
  }
  if (spec.proc) add({ kind: 'proc', target: '/proc' }, 'default /proc');
  // /dev is a directory of the read-only root: nothing can be created there.
  add({ kind: 'dir', target: '/dev', mode: 0o755 }, 'default /dev');
  for (const d of DEVICES) add({ kind: 'bind', source: `/dev/${d}`, target: `/dev/${d}`, writable: true, device: true }, `default /dev/${d}`);
  add({ kind: 'symlink', source: '/proc/self/fd', target: '/dev/fd' }, 'default /dev/fd');
  ['stdin', 'stdout', 'stderr'].forEach((s, i) => add({ kind: 'symlink', source: `/proc/self/fd/${i}`, target: `/dev/${s}` }, `default /dev/${s}`));
  add({ kind: 'tmpfs', target: '/tmp', options: `mode=1777,size=${spec.tmpSize}` }, 'default /tmp');
  spec.binds.forEach((b, i) => add({ kind: 'bind', source: b.source, target: b.target, writable: b.writable, hostAccess: b.hostAccess }, `binds[${i}]`));
  spec.tmpfs.forEach((t, i) => add({ kind: 'tmpfs', target: t.target, options: `mode=0755,size=${t.size}` }, `tmpfs[${i}]`));

  const targets = new Map<string, string>();
  mounts.forEach((m, i) => {
    const prev = targets.get(m.target);
    if (prev !== undefined && !descriptions[i].entry.startsWith('default')) {
      throw new InvalidOptionError(descriptions[i].entry, `mounts onto ${m.target}, which ${prev} already uses; pick another target`);
    }
    targets.set(m.target, descriptions[i].entry);
  });

  // WARDEN_MOUNT_TEMPLATE=0: no template root, the way a kernel without proc's pidns= (before 6.17)
  // or an unprivileged host goes; for testing that way on a newer kernel.
  const list: MountList = { descriptions, set: new (addon().MountSet)(mounts, { template: process.env.WARDEN_MOUNT_TEMPLATE !== '0' }) };
  mountLists.set(key, list);
  if (mountLists.size > MAX_MOUNT_LISTS) {
    const oldest = mountLists.keys().next().value!;
    mountLists.get(oldest)!.set.close();
    mountLists.delete(oldest);
  }
  return list;
}

/**
 * Closes every prepared mount list (their template roots and namespaces hold fds), and the lock
 * files of host id blocks that no live sandbox uses (lib/sandbox/ids.ts). Sandboxes already
 * running keep theirs until they exit; later spawns prepare their list again. The plugin host and the
 * runner pool call it when they close, so that a shut-down host leaves no fd behind.
 */
export function releasePreparedMounts(): void {
  for (const list of mountLists.values()) list.set.close();
  mountLists.clear();
  // Likewise the lock files of host id blocks no live sandbox uses.
  releaseIdleHostIdBlocks();
}

export interface BuiltPlan {
  plan: Omit<NativePlan, 'fds' | 'seccomp' | 'cgroupTasks' | 'cgroupDir'>;
  mountDescriptions: MountDescription[];
  rlimitNames: readonly string[];
  namespaces: Record<NamespaceName, boolean>;
  network: boolean;
}

const KNOWN_OPTIONS = new Set([
  'command', 'env', 'cwd', 'namespaces', 'shareNet', 'uid', 'gid', 'hostUid', 'hostGid', 'hostname',
  'defaultBinds', 'binds', 'tmpfs', 'tmpSize', 'stdio', 'fds', 'rlimits', 'seccomp', 'setupTimeout',
  'limits', 'hostIds', 'network',
]);

/**
 * `allocatedId`: as root, the host uid (and gid) the sandbox drew from its range (lib/sandbox/ids.ts),
 * used where hostUid / hostGid are not given.
 */
export function buildPlan(options: SpawnOptions, allocatedId?: number): BuiltPlan {
  if (options === null || typeof options !== 'object') throw new InvalidOptionError('options', 'must be an object');
  for (const key in options) {
    if (!KNOWN_OPTIONS.has(key) && Object.hasOwn(options, key)) throw new InvalidOptionError(key, 'is not a sandbox option (typo?)');
  }
  const { command } = options;
  if (!Array.isArray(command) || command.length === 0) {
    throw new InvalidOptionError('command', 'is missing: give the program and its arguments, e.g. ["/bin/true"]');
  }
  command.forEach((a, i) => {
    if (typeof a !== 'string') throw new InvalidOptionError(`command[${i}]`, 'must be a string');
    if (a.includes('\0')) throw new InvalidOptionError(`command[${i}]`, 'must not contain a NUL byte');
  });
  if (command[0] === '') throw new InvalidOptionError('command[0]', 'is empty: name the program to run');

  // Namespaces: every one on unless switched off.
  const namespaces = {} as Record<NamespaceName, boolean>;
  for (const name of NAMESPACES) namespaces[name] = true;
  if (options.namespaces !== undefined) {
    if (options.namespaces === null || typeof options.namespaces !== 'object') throw new InvalidOptionError('namespaces', 'must be an object of booleans');
    for (const [name, on] of Object.entries(options.namespaces)) {
      if (!(NAMESPACES as readonly string[]).includes(name)) throw new InvalidOptionError(`namespaces.${name}`, `is not a namespace; use one of ${NAMESPACES.join(', ')}`);
      if (typeof on !== 'boolean') throw new InvalidOptionError(`namespaces.${name}`, 'must be true or false');
      namespaces[name as NamespaceName] = on;
    }
  }
  if (options.shareNet !== undefined && typeof options.shareNet !== 'boolean') throw new InvalidOptionError('shareNet', 'must be true or false');
  if (options.shareNet === true) {
    if (options.namespaces?.net === true) throw new InvalidOptionError('shareNet', 'conflicts with namespaces.net = true: sharing the network means no network namespace');
    namespaces.net = false;
  }
  if (options.network !== undefined && !namespaces.net) {
    throw new InvalidOptionError('network', 'a network policy needs the sandbox\'s own network namespace; drop shareNet (or namespaces.net = false)');
  }

  // Once per call: each is a system call.
  const callerUid = process.getuid?.() ?? NOBODY;
  const callerGid = process.getgid?.() ?? NOBODY;
  const root = callerUid === 0;
  const anyNs = NAMESPACES.some((n) => namespaces[n]);
  if (!root && anyNs && !namespaces.user) {
    throw new InvalidOptionError('namespaces.user', 'an unprivileged process needs the user namespace to create the others; switch it on or run as root');
  }
  if (!namespaces.mount && (options.binds?.length || options.tmpfs?.length)) {
    throw new InvalidOptionError('namespaces.mount', 'binds and tmpfs need the mount namespace; switch it on or drop them');
  }

  // Identity.
  let uid: number, gid: number;
  let mapUidInside = 0, mapUidOutside = 0, mapGidInside = 0, mapGidOutside = 0;
  let denySetgroups = false, dropGroups = true;
  if (!root && (options.hostUid !== undefined || options.hostGid !== undefined)) {
    throw new InvalidOptionError(options.hostUid !== undefined ? 'hostUid' : 'hostGid', 'only root can choose the host ids; an unprivileged sandbox always maps to the caller');
  }
  const hostUid = options.hostUid === undefined ? allocatedId ?? NOBODY : checkId('hostUid', options.hostUid);
  const hostGid = options.hostGid === undefined ? allocatedId ?? NOBODY : checkId('hostGid', options.hostGid);
  if (root && hostUid === 0) throw new InvalidOptionError('hostUid', 'must not be 0: a sandbox never runs as host root');
  if (root && hostGid === 0) throw new InvalidOptionError('hostGid', 'must not be 0: a sandbox never runs in the host root group');
  if (namespaces.user) {
    uid = options.uid === undefined ? (root ? NOBODY : callerUid) : checkId('uid', options.uid);
    gid = options.gid === undefined ? (root ? NOBODY : callerGid) : checkId('gid', options.gid);
    mapUidInside = uid;
    mapGidInside = gid;
    mapUidOutside = root ? hostUid : callerUid;
    mapGidOutside = root ? hostGid : callerGid;
    // Without privilege a gid map needs setgroups denied, and then groups cannot be dropped.
    denySetgroups = !root;
    dropGroups = root;
  } else if (root) {
    uid = hostUid;
    gid = hostGid;
    if (options.uid !== undefined && checkId('uid', options.uid) !== hostUid) throw new InvalidOptionError('uid', 'without a user namespace the sandbox uid is the host uid; set hostUid instead');
    if (options.gid !== undefined && checkId('gid', options.gid) !== hostGid) throw new InvalidOptionError('gid', 'without a user namespace the sandbox gid is the host gid; set hostGid instead');
  } else {
    uid = callerUid;
    gid = callerGid;
    dropGroups = false;
  }

  // Environment: explicit only.
  const env = options.env ?? { PATH: DEFAULT_PATH };
  if (env === null || typeof env !== 'object') throw new InvalidOptionError('env', 'must be an object of strings');
  const envp: string[] = [];
  for (const [k, v] of Object.entries(env)) {
    if (k === '' || k.includes('=') || k.includes('\0')) throw new InvalidOptionError(`env.${k}`, 'is not a valid variable name');
    if (typeof v !== 'string') throw new InvalidOptionError(`env.${k}`, 'must be a string');
    if (v.includes('\0')) throw new InvalidOptionError(`env.${k}`, 'must not contain a NUL byte');
    envp.push(`${k}=${v}`);
  }

  const cwd = options.cwd === undefined ? '/' : checkSandboxPath('cwd', options.cwd);

  // PATH search happens in the sandbox's terms, by the child trying each candidate in turn.
  const file = command[0];
  let candidates: string[];
  if (file.includes('/')) {
    candidates = [path.posix.resolve(cwd, file)];
  } else {
    const searchPath = typeof env.PATH === 'string' ? env.PATH : DEFAULT_PATH;
    candidates = searchPath.split(':').filter((d) => d.startsWith('/')).map((d) => path.posix.join(d, file));
    if (candidates.length === 0) throw new InvalidOptionError('env.PATH', `has no absolute directory to find '${file}' in; give an absolute command path`);
  }

  let hostname = '';
  if (options.hostname !== undefined) {
    if (!namespaces.uts) throw new InvalidOptionError('hostname', 'needs the uts namespace; switch it on or drop hostname');
    if (typeof options.hostname !== 'string' || !/^[A-Za-z0-9]([A-Za-z0-9.-]{0,62})$/.test(options.hostname)) {
      throw new InvalidOptionError('hostname', 'must be 1 to 63 letters, digits, dots or dashes, starting with a letter or digit');
    }
    hostname = options.hostname;
  } else if (namespaces.uts) {
    hostname = 'warden';
  }

  // Mounts, in order: system dirs, /proc, /dev, /tmp, the caller's binds and tmpfs.
  let mountList: MountList | null = null;
  if (namespaces.mount) {
    if (options.defaultBinds !== undefined && typeof options.defaultBinds !== 'boolean') throw new InvalidOptionError('defaultBinds', 'must be true or false');
    const tmpSize = options.tmpSize === undefined ? 64 * 1024 * 1024 : parseSize('tmpSize', options.tmpSize);
    const spec: MountListSpec = { defaults: options.defaultBinds !== false, proc: namespaces.pid, tmpSize, binds: [], tmpfs: [] };

    if (options.binds !== undefined && !Array.isArray(options.binds)) throw new InvalidOptionError('binds', 'must be an array of { source, target?, writable? }');
    (options.binds ?? []).forEach((b, i) => {
      const field = `binds[${i}]`;
      if (b === null || typeof b !== 'object') throw new InvalidOptionError(field, 'must be an object { source, target?, writable? }');
      const source = checkSandboxPath(`${field}.source`, b.source);
      try {
        fs.accessSync(source, fs.constants.R_OK);
      } catch (err) {
        throw new InvalidOptionError(`${field}.source`, `'${source}' cannot be read (${(err as NodeJS.ErrnoException).code}); bind only paths that exist and that this process can read`);
      }
      const target = b.target === undefined ? source : checkSandboxPath(`${field}.target`, b.target);
      if (target === '/') throw new InvalidOptionError(`${field}.target`, 'cannot be /: the root is the sandbox\'s own tmpfs');
      if (b.writable !== undefined && typeof b.writable !== 'boolean') throw new InvalidOptionError(`${field}.writable`, 'must be true or false');
      if (b.hostAccess !== undefined && typeof b.hostAccess !== 'boolean') throw new InvalidOptionError(`${field}.hostAccess`, 'must be true or false');
      spec.binds.push({ source, target, writable: b.writable === true, hostAccess: b.hostAccess === true });
    });
    if (options.tmpfs !== undefined && !Array.isArray(options.tmpfs)) throw new InvalidOptionError('tmpfs', 'must be an array of { target, size? }');
    (options.tmpfs ?? []).forEach((t, i) => {
      const field = `tmpfs[${i}]`;
      if (t === null || typeof t !== 'object') throw new InvalidOptionError(field, 'must be an object { target, size? }');
      const target = checkSandboxPath(`${field}.target`, t.target);
      if (target === '/') throw new InvalidOptionError(`${field}.target`, 'cannot be /');
      const size = t.size === undefined ? 64 * 1024 * 1024 : parseSize(`${field}.size`, t.size);
      spec.tmpfs.push({ target, size });
    });
    mountList = mountListFor(spec);
  }

  // rlimits: core dumps off unless asked for.
  let rlimitNames = DEFAULT_RLIMIT_NAMES;
  let rlimits = DEFAULT_RLIMITS;
  if (options.rlimits !== undefined) {
    const rlimitValues: Partial<Record<RlimitName, { soft: number; hard: number }>> = { core: { soft: 0, hard: 0 } };
    if (options.rlimits === null || typeof options.rlimits !== 'object') throw new InvalidOptionError('rlimits', 'must be an object like { nofile: 256 }');
    for (const [name, value] of Object.entries(options.rlimits)) {
      const field = `rlimits.${name}`;
      if (!(name in RLIMITS)) throw new InvalidOptionError(field, `is not a resource; use one of ${Object.keys(RLIMITS).join(', ')}`);
      const pair = typeof value === 'number' ? { soft: value, hard: value } : value;
      if (pair === null || typeof pair !== 'object') throw new InvalidOptionError(field, 'must be a number or { soft, hard }');
      for (const k of ['soft', 'hard'] as const) {
        const v = pair[k];
        if (typeof v !== 'number' || Number.isNaN(v) || v < 0 || (!Number.isSafeInteger(v) && v !== Infinity)) {
          throw new InvalidOptionError(`${field}.${k}`, `must be a whole number ≥ 0 or Infinity, got ${String(v)}`);
        }
      }
      if (pair.soft > pair.hard) throw new InvalidOptionError(field, `soft limit ${pair.soft} exceeds hard limit ${pair.hard}`);
      rlimitValues[name as RlimitName] = { soft: pair.soft, hard: pair.hard };
    }
    rlimitNames = Object.keys(rlimitValues);
    rlimits = Object.entries(rlimitValues).map(([name, v]) => ({ resource: RLIMITS[name as RlimitName], soft: v!.soft, hard: v!.hard }));
  }

  let setupTimeoutMs = DEFAULT_SETUP_TIMEOUT_MS;
  if (options.setupTimeout !== undefined) {
    if (typeof options.setupTimeout !== 'number' || !Number.isInteger(options.setupTimeout) || options.setupTimeout < 1 || options.setupTimeout > 600000) {
      throw new InvalidOptionError('setupTimeout', 'must be a whole number of milliseconds from 1 to 600000');
    }
    setupTimeoutMs = options.setupTimeout;
  }

  cachedLastCap ??= lastCap();
  return {
    plan: {
      candidates,
      argv: [...command],
      envp,
      cwd,
      hostname,
      namespaces,
      mapUidInside, mapUidOutside, mapGidInside, mapGidOutside,
      denySetgroups,
      // As root the user namespace is created with the host ids as owner, so that the per-user
      // counts of what runs inside are charged to them, not to root (native/launcher.cc).
      ownUserNamespace: root && namespaces.user,
      dropGroups,
      uid,
      gid,
      lastCap: cachedLastCap,
      setupTimeoutMs,
      mountSet: mountList?.set ?? null,
      rlimits,
    },
    mountDescriptions: mountList?.descriptions ?? [],
    rlimitNames,
    namespaces,
    network: !namespaces.net,
  };
}
