/**
 * Host ids of sandboxes started as root: a distinct uid (and gid of the same number) per live
 * sandbox, from a range, as systemd's DynamicUser= or Android's app ids do.
 *
 * Why: the kernel keeps per-user counts (processes, inotify instances and watches, message queue
 * bytes, pending signals, locked memory, pipe buffers, epoll watches, key quotas). Sandboxes that
 * share a host uid share those counts, so one could exhaust them for all. (The user namespace's
 * owner is charged too: the launcher creates it with these ids as effective ids, see
 * native/launcher.cc, so nothing is charged to root.)
 *
 * The default range, 0x7ffc0000 to 0x7ffcffff (2147221504 to 2147287039, 65536 ids), lies in what
 * systemd documents as unused (1879048192 to 2147352575: above its container ranges, which end at
 * 1879048191, and below its "foreign" range at 0x7ffe0000), far above the ranges of regular users
 * and of /etc/subuid (100000 and up, 65536 per user), and below 2^31 (some software reads uids as
 * signed 32-bit numbers). Ids that /etc/passwd or /etc/group name are skipped.
 *
 * Other processes of the host may run sandboxes too: a process claims blocks of BLOCK ids by an
 * exclusive flock on a file per block under LOCK_DIR, held for its life (the kernel drops it when
 * the process ends), and hands out ids of its blocks only. Within a block, ids go round: a released
 * id comes back last.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { InvalidOptionError, WardenError } from '../errors';
import { addon } from '../native';

export interface HostIdRange {
  /** The first id of the range. */
  first: number;
  /** How many ids, from `first`. */
  count: number;
}

export const DEFAULT_HOST_ID_RANGE: Readonly<HostIdRange> = Object.freeze({ first: 0x7ffc0000, count: 0x10000 });
/** Ids per claimed block. */
export const BLOCK = 1024;
export const LOCK_DIR = '/run/warden/host-ids';

/** No free id in the range: every id is held by a live sandbox of this process or by other processes. */
export class HostIdsExhaustedError extends WardenError {
  readonly range: HostIdRange;
  constructor(range: HostIdRange, message: string) {
    super('ERR_HOST_IDS_EXHAUSTED', message);
    this.range = range;
  }
}

/** A range as text: "FIRST-LAST" (inclusive). */
export function formatRange(r: HostIdRange): string {
  return `${r.first}-${r.first + r.count - 1}`;
}

/** Checks a range option (an object, or "FIRST-LAST" from the CLI or the environment). */
export function checkRange(field: string, v: unknown): HostIdRange {
  let r: HostIdRange;
  if (typeof v === 'string') {
    const m = /^(\d+)-(\d+)$/.exec(v.trim());
    if (m === null) throw new InvalidOptionError(field, `must be FIRST-LAST (e.g. ${formatRange(DEFAULT_HOST_ID_RANGE)}), got ${JSON.stringify(v)}`);
    r = { first: Number(m[1]), count: Number(m[2]) - Number(m[1]) + 1 };
  } else if (v !== null && typeof v === 'object') {
    r = { first: (v as HostIdRange).first, count: (v as HostIdRange).count };
  } else {
    throw new InvalidOptionError(field, 'must be { first, count }');
  }
  if (!Number.isInteger(r.first) || r.first < 1 || !Number.isInteger(r.count) || r.count < 1) {
    throw new InvalidOptionError(field, `must be { first, count } of whole numbers ≥ 1, got ${JSON.stringify(v)}`);
  }
  // 65534 (nobody, the overflow id) and 65535 / 2^32-1 ((uid_t)-1) are never usable.
  const last = r.first + r.count - 1;
  if (last > 0xfffffffe) throw new InvalidOptionError(field, `ends at ${last}, above the largest uid 4294967294`);
  if (r.first <= 65535 && last >= 65534) throw new InvalidOptionError(field, 'must not include 65534 (nobody) or 65535 ((uid_t)-1 of 16-bit software)');
  return r;
}

/** The lines of a colon-separated database file; none when it cannot be read (absent). */
function linesOf(file: string): string[] {
  try {
    return fs.readFileSync(file, 'utf8').split('\n');
  } catch {
    return [];
  }
}

/** Ids that the user and group databases name: never handed out. Read once per process. */
let namedIds: Set<number> | undefined;
function named(): Set<number> {
  if (namedIds !== undefined) return namedIds;
  namedIds = new Set();
  for (const file of ['/etc/passwd', '/etc/group']) {
    for (const line of linesOf(file)) {
      const id = Number(line.split(':')[2]);
      if (line !== '' && !line.startsWith('#') && Number.isInteger(id)) namedIds.add(id);
    }
  }
  return namedIds;
}

interface Block {
  start: number;
  fd: number;
  /** Where the round of this block stands. */
  cursor: number;
}

/** Blocks this process holds, by start; ids of its live sandboxes. */
const blocks = new Map<number, Block>();
const live = new Set<number>();

function lockDir(): string {
  fs.mkdirSync(LOCK_DIR, { recursive: true, mode: 0o700 });
  const st = fs.lstatSync(LOCK_DIR);
  // Only root decides which blocks are taken: a directory others can write would let them hold
  // every block (and every spawn would fail) or plant links.
  if (!st.isDirectory() || st.uid !== 0 || (st.mode & 0o022) !== 0) {
    throw new WardenError('ERR_HOST_IDS_LOCK', `${LOCK_DIR} must be a directory owned by root and writable by root only (it holds the locks of claimed host id blocks); remove it and let warden create it`);
  }
  return LOCK_DIR;
}

function claimBlock(start: number): Block | undefined {
  const file = path.join(lockDir(), String(start));
  // Node opens every fd close-on-exec.
  const fd = fs.openSync(file, fs.constants.O_RDWR | fs.constants.O_CREAT | fs.constants.O_NOFOLLOW, 0o600);
  const rc = (addon().flockFile as (fd: number, mode: 'exclusive') => number)(fd, 'exclusive');
  if (rc !== 0) {
    fs.closeSync(fd);
    return undefined; // another process holds it
  }
  const block = { start, fd, cursor: start };
  blocks.set(start, block);
  return block;
}

/** A free id of `block` within [lo, hi], going round from the block's cursor; undefined if none. */
function takeFrom(block: Block, lo: number, hi: number): number | undefined {
  const from = Math.max(block.start, lo);
  const to = Math.min(block.start + BLOCK - 1, hi);
  if (from > to) return undefined;
  const span = to - from + 1;
  const ids = named();
  let id = Math.min(Math.max(block.cursor, from), to);
  for (let i = 0; i < span; i++, id = id === to ? from : id + 1) {
    if (live.has(id) || ids.has(id)) continue;
    live.add(id);
    block.cursor = id === to ? from : id + 1;
    return id;
  }
  return undefined;
}

/**
 * A uid (and the gid of the same number) from `range` that no live sandbox of this host holds.
 * Give it back with releaseHostId when the sandbox has exited. Throws HostIdsExhaustedError.
 */
export function acquireHostId(range: HostIdRange = DEFAULT_HOST_ID_RANGE): number {
  const lo = range.first;
  const hi = range.first + range.count - 1;
  for (const block of blocks.values()) {
    const id = takeFrom(block, lo, hi);
    if (id !== undefined) return id;
  }
  let busy = 0;
  for (let start = Math.floor(lo / BLOCK) * BLOCK; start <= hi; start += BLOCK) {
    if (blocks.has(start)) continue;
    const block = claimBlock(start);
    if (block === undefined) {
      busy++;
      continue;
    }
    const id = takeFrom(block, lo, hi);
    if (id !== undefined) return id;
  }
  throw new HostIdsExhaustedError(range, `no free host uid in ${formatRange(range)}: this process's sandboxes hold ${live.size}, other processes hold ${busy} block(s) of ${BLOCK}; ` +
    'wait for sandboxes to exit, or give a wider range (the hostIds option, or WARDEN_HOST_IDS=FIRST-LAST for the CLI)');
}

export function releaseHostId(id: number): void {
  live.delete(id);
}

/**
 * Gives back the blocks none of whose ids is live (closing their lock files): a host that shut
 * down leaves no fd behind. Kept otherwise, so that spawning does not claim a block each time.
 */
export function releaseIdleHostIdBlocks(): void {
  for (const [start, block] of blocks) {
    let used = false;
    for (const id of live) if (id >= start && id < start + BLOCK) used = true;
    if (used) continue;
    fs.closeSync(block.fd); // drops the flock
    blocks.delete(start);
  }
}

/** For `warden doctor` and tests: what this process holds. */
export function hostIdUsage(): { live: number; blocks: number[] } {
  return { live: live.size, blocks: [...blocks.keys()].sort((a, b) => a - b) };
}

/** For `warden doctor`: the range, what of it is skipped or overlaps, and blocks other processes hold. */
export interface HostIdReport {
  range: string;
  count: number;
  /** Ids of the range that /etc/passwd or /etc/group name (skipped). */
  named: number;
  /** /etc/subuid and /etc/subgid entries that overlap the range. */
  subidOverlaps: string[];
  /** Blocks of the range that other processes hold now. */
  blocksHeldElsewhere: number;
}

export function hostIdReport(range: HostIdRange = DEFAULT_HOST_ID_RANGE): HostIdReport {
  const lo = range.first;
  const hi = range.first + range.count - 1;
  let namedCount = 0;
  for (const id of named()) if (id >= lo && id <= hi) namedCount++;
  const subidOverlaps: string[] = [];
  for (const file of ['/etc/subuid', '/etc/subgid']) {
    for (const line of linesOf(file)) {
      const [who, start, n] = line.split(':');
      const s = Number(start);
      const c = Number(n);
      if (Number.isInteger(s) && Number.isInteger(c) && s <= hi && s + c - 1 >= lo) subidOverlaps.push(`${file}: ${who} ${s}-${s + c - 1}`);
    }
  }
  let held = 0;
  for (let start = Math.floor(lo / BLOCK) * BLOCK; start <= hi; start += BLOCK) {
    if (blocks.has(start)) continue;
    let fd: number;
    try {
      fd = fs.openSync(path.join(LOCK_DIR, String(start)), fs.constants.O_RDWR | fs.constants.O_NOFOLLOW);
    } catch {
      continue; // never claimed
    }
    const flock = addon().flockFile as (fd: number, mode: 'exclusive' | 'unlock') => number;
    if (flock(fd, 'exclusive') !== 0) held++;
    else flock(fd, 'unlock');
    fs.closeSync(fd);
  }
  return { range: formatRange(range), count: range.count, named: namedCount, subidOverlaps, blocksHeldElsewhere: held };
}
