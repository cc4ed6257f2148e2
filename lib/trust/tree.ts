/**
 * A plugin directory read into memory, with its digest computed from exactly the bytes read.
 *
 * This is how a plugin reaches a sandbox that was started without its directory (the runner pool):
 * the host reads the tree once, checks the digest against the trust entry, and sends these very
 * bytes over the channel. What is verified is what is loaded: nothing can change the files between
 * the check and the use, as it could with a directory bound into the sandbox.
 *
 * The digest is the one digestDirectory() computes (same walk, same refusals, same encoding), so it
 * compares with a trust list entry as is.
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';

import { DIGEST_PREFIX, childPath, classify, treeError } from './digest';
import { UnsafeFileError } from './errors';

export interface TreeLimits {
  /** Most entries (files, directories, symlinks). Default 10000. */
  maxFiles?: number;
  /** Most bytes of file contents, summed. Default 64 MiB. */
  maxBytes?: number;
}

export const DEFAULT_TREE_LIMITS: Required<TreeLimits> = { maxFiles: 10_000, maxBytes: 64 * 1024 * 1024 };

export interface TreeEntry {
  /** Relative path, '/'-separated. */
  path: string;
  kind: 'd' | 'f' | 'l';
  /** Files: 0o755 when any execute bit was set, else 0o644 (what the digest records). */
  mode?: number;
  /** Files: the contents. */
  data?: Buffer;
  /** Symlinks: the target (relative, inside the tree). */
  target?: string;
}

export interface PluginTree {
  /** The directory it was read from (resolved). */
  root: string;
  /** "sha3-512:<hex>", equal to digestDirectory(root) for an unchanged tree. */
  digest: string;
  /** Every entry, sorted by the bytes of its path (parents before their children). */
  files: TreeEntry[];
  /** Bytes of file contents. */
  bytes: number;
}

function limitOf(v: number | undefined, dflt: number, field: string): number {
  if (v === undefined) return dflt;
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) throw new TypeError(`${field} must be a whole number ≥ 0`);
  return v;
}

/** Between synchronous steps, the event loop gets a turn this often (entries, bytes). */
const YIELD_EVERY_ENTRIES = 64;
const YIELD_EVERY_BYTES = 1 << 20;
const turn = () => new Promise<void>((resolve) => setImmediate(resolve));

/**
 * Reads `dir` whole. The file system calls are synchronous (a small plugin reads in a fraction of
 * the time the thread pool round trips would take), with a turn of the event loop every 64
 * entries and every MiB read, so a large tree does not hold the host up. Throws UnsafeFileError (ERR_TRUST_UNSAFE_FILE) for what digestDirectory
 * refuses (symlinks leaving the tree, devices, setuid files, ...), for a tree over `limits`
 * (kind 'too-many-entries' or 'too-large'), and for a file that changes or moves while read.
 */
export async function readPluginTree(dir: string, limits: TreeLimits = {}): Promise<PluginTree> {
  const maxFiles = limitOf(limits.maxFiles, DEFAULT_TREE_LIMITS.maxFiles, 'maxFiles');
  const maxBytes = limitOf(limits.maxBytes, DEFAULT_TREE_LIMITS.maxBytes, 'maxBytes');
  try {
    return await readTree(dir, maxFiles, maxBytes);
  } catch (e) {
    // A missing directory or an unreadable file is a refusal of the tree too: ERR_TRUST_TREE_UNREADABLE.
    throw treeError(e, dir);
  }
}

async function readTree(dir: string, maxFiles: number, maxBytes: number): Promise<PluginTree> {
  // The native call: one realpath(3), where the JavaScript one lstats each component itself.
  const root = fs.realpathSync.native(dir);
  const st = fs.lstatSync(root);
  if (!st.isDirectory()) throw new UnsafeFileError(dir, 'not-directory', 'not a directory');

  const found: Array<{ rel: string; relBytes: Buffer; kind: 'd' | 'f' | 'l' }> = [];
  const pending: string[] = [''];
  while (pending.length > 0) {
    const relDir = pending.pop() as string;
    for (const raw of fs.readdirSync(path.join(root, relDir), { encoding: 'buffer' })) {
      const rel = childPath(relDir, raw);
      const abs = path.join(root, rel);
      const lst = fs.lstatSync(abs);
      // classify() is async only for symlinks (it resolves them); files and directories need no await.
      const kind = lst.isDirectory() ? 'd' : lst.isFile() && (lst.mode & 0o6000) === 0 ? 'f' : await classify(root, rel, abs, lst);
      found.push({ rel, relBytes: Buffer.from(rel, 'utf8'), kind });
      if (found.length % YIELD_EVERY_ENTRIES === 0) await turn();
      if (found.length > maxFiles) {
        throw new UnsafeFileError(dir, 'too-many-entries', `more than ${maxFiles} entries, the most a plugin sent to its sandbox may have (treeLimits.maxFiles)`);
      }
      if (kind === 'd') pending.push(rel);
    }
  }
  found.sort((a, b) => Buffer.compare(a.relBytes, b.relBytes));

  const hash = createHash('sha3-512');
  hash.update('warden-tree-v1\0');
  const files: TreeEntry[] = [];
  let bytes = 0;
  let sinceTurn = 0;
  for (const [i, e] of found.entries()) {
    if (sinceTurn >= YIELD_EVERY_BYTES || (i > 0 && i % YIELD_EVERY_ENTRIES === 0)) {
      sinceTurn = 0;
      await turn();
    }
    const abs = path.join(root, e.rel);
    if (e.kind === 'd') {
      hash.update('d\0').update(e.relBytes).update('\0');
      files.push({ path: e.rel, kind: 'd' });
    } else if (e.kind === 'l') {
      const target = fs.readlinkSync(abs, { encoding: 'buffer' });
      hash.update('l\0').update(e.relBytes).update('\0').update(target).update('\0');
      files.push({ path: e.rel, kind: 'l', target: target.toString('utf8') });
    } else {
      const { mode, data } = readFile(root, abs, e.rel, maxBytes - bytes, maxBytes);
      bytes += data.length;
      sinceTurn += data.length;
      hash.update('f\0').update(e.relBytes).update(`\0${mode.toString(8)}\0${data.length}\0`).update(data);
      files.push({ path: e.rel, kind: 'f', mode, data });
    }
  }
  return { root, digest: DIGEST_PREFIX + hash.digest('hex'), files, bytes };
}

function readFile(root: string, abs: string, rel: string, budget: number, maxBytes: number): { mode: number; data: Buffer } {
  // O_NOFOLLOW guards the last component; the fd's own path below guards the ones before it (a
  // parent directory swapped for a symlink since the walk would lead outside the tree).
  const fd = fs.openSync(abs, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW | fs.constants.O_NONBLOCK);
  try {
    const st = fs.fstatSync(fd);
    if (!st.isFile()) throw new UnsafeFileError(rel, 'changed', 'changed type while being read');
    let where: string | undefined;
    try {
      where = fs.readlinkSync(`/proc/self/fd/${fd}`);
    } catch {
      where = undefined; // no /proc: the walk's checks stand alone
    }
    if (where !== undefined && !where.startsWith(root + path.sep)) throw new UnsafeFileError(rel, 'changed', `moved out of the plugin directory while being read (now ${where})`);
    if (st.size > budget) {
      throw new UnsafeFileError(rel, 'too-large', `${st.size} bytes: the plugin's files may total at most ${maxBytes} bytes when sent to its sandbox (treeLimits.maxBytes)`);
    }
    // One byte more than its size is asked for: a file that grew fills it (the size in the digest
    // would be wrong), and a small file is read, end included, in one call.
    const room = Buffer.allocUnsafe(st.size + 1);
    let total = 0;
    while (total < room.length) {
      const n = fs.readSync(fd, room, total, room.length - total, total);
      if (n === 0) break;
      total += n;
    }
    if (total !== st.size) throw new UnsafeFileError(rel, 'changed', 'changed size while being read; retry when it is stable');
    return { mode: (st.mode & 0o111) !== 0 ? 0o755 : 0o644, data: room.subarray(0, total) };
  } finally {
    fs.closeSync(fd);
  }
}
