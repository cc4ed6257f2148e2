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

import { DIGEST_PREFIX, classify } from './digest';
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

/**
 * Reads `dir` whole. Throws UnsafeFileError (ERR_TRUST_UNSAFE_FILE) for what digestDirectory
 * refuses (symlinks leaving the tree, devices, setuid files, ...), for a tree over `limits`
 * (kind 'too-many-entries' or 'too-large'), and for a file that changes or moves while read.
 */
export async function readPluginTree(dir: string, limits: TreeLimits = {}): Promise<PluginTree> {
  const maxFiles = limitOf(limits.maxFiles, DEFAULT_TREE_LIMITS.maxFiles, 'maxFiles');
  const maxBytes = limitOf(limits.maxBytes, DEFAULT_TREE_LIMITS.maxBytes, 'maxBytes');
  const root = await fs.promises.realpath(dir);
  const st = await fs.promises.lstat(root);
  if (!st.isDirectory()) throw new UnsafeFileError(dir, 'not-directory', 'not a directory');

  const found: Array<{ rel: string; relBytes: Buffer; kind: 'd' | 'f' | 'l' }> = [];
  const pending: string[] = [''];
  while (pending.length > 0) {
    const relDir = pending.pop() as string;
    for (const name of await fs.promises.readdir(path.join(root, relDir))) {
      const rel = relDir === '' ? name : `${relDir}/${name}`;
      const kind = await classify(root, rel, path.join(root, rel), await fs.promises.lstat(path.join(root, rel)));
      found.push({ rel, relBytes: Buffer.from(rel, 'utf8'), kind });
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
  for (const e of found) {
    const abs = path.join(root, e.rel);
    if (e.kind === 'd') {
      hash.update('d\0').update(e.relBytes).update('\0');
      files.push({ path: e.rel, kind: 'd' });
    } else if (e.kind === 'l') {
      const target = await fs.promises.readlink(abs, { encoding: 'buffer' });
      hash.update('l\0').update(e.relBytes).update('\0').update(target).update('\0');
      files.push({ path: e.rel, kind: 'l', target: target.toString('utf8') });
    } else {
      const { mode, data } = await readFile(root, abs, e.rel, maxBytes - bytes, maxBytes);
      bytes += data.length;
      hash.update('f\0').update(e.relBytes).update(`\0${mode.toString(8)}\0${data.length}\0`).update(data);
      files.push({ path: e.rel, kind: 'f', mode, data });
    }
  }
  return { root, digest: DIGEST_PREFIX + hash.digest('hex'), files, bytes };
}

async function readFile(root: string, abs: string, rel: string, budget: number, maxBytes: number): Promise<{ mode: number; data: Buffer }> {
  // O_NOFOLLOW guards the last component; the fd's own path below guards the ones before it (a
  // parent directory swapped for a symlink since the walk would lead outside the tree).
  const fh = await fs.promises.open(abs, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW | fs.constants.O_NONBLOCK);
  try {
    const st = await fh.stat();
    if (!st.isFile()) throw new UnsafeFileError(rel, 'changed', 'changed type while being read');
    const where = await fs.promises.readlink(`/proc/self/fd/${fh.fd}`).catch(() => undefined);
    if (where !== undefined && !where.startsWith(root + path.sep)) throw new UnsafeFileError(rel, 'changed', `moved out of the plugin directory while being read (now ${where})`);
    if (st.size > budget) {
      throw new UnsafeFileError(rel, 'too-large', `${st.size} bytes: the plugin's files may total at most ${maxBytes} bytes when sent to its sandbox (treeLimits.maxBytes)`);
    }
    const data = Buffer.allocUnsafe(st.size);
    let total = 0;
    while (total < st.size) {
      const { bytesRead } = await fh.read(data, total, st.size - total, total);
      if (bytesRead === 0) break;
      total += bytesRead;
    }
    // One more byte readable means it grew: the size in the digest would be wrong.
    const extra = await fh.read(Buffer.alloc(1), 0, 1, total);
    if (total !== st.size || extra.bytesRead !== 0) throw new UnsafeFileError(rel, 'changed', 'changed size while being read; retry when it is stable');
    return { mode: (st.mode & 0o111) !== 0 ? 0o755 : 0o644, data };
  } finally {
    await fh.close();
  }
}
