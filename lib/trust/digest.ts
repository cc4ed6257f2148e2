/**
 * SHA3-512 digest of a plugin directory over a canonical encoding, so the same tree gives the same
 * digest on any machine:
 *
 *   "warden-tree-v1\0"
 *   then for every entry, sorted by the bytes of its relative path ("/"-separated):
 *     directory: "d\0" path "\0"
 *     file:      "f\0" path "\0" mode "\0" size "\0" contents
 *     symlink:   "l\0" path "\0" target "\0"
 *
 * Paths and targets cannot contain NUL, and contents are length-prefixed, so the encoding is
 * unambiguous. The mode is "755" if any execute bit is set and "644" otherwise, as git records it:
 * the other bits depend on the umask of whoever unpacked the plugin and would make digests differ
 * between machines for no security reason. Owners and times are left out for the same reason.
 *
 * Refused: devices, fifos, sockets (reading them blocks or has side effects), setuid/setgid files,
 * and symlinks that are absolute, dangling or that resolve outside the directory.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { createHash, Hash } from 'node:crypto';
import { UnsafeFileError } from './errors';

export const DIGEST_PREFIX = 'sha3-512:';
const DIGEST_RE = /^sha3-512:[0-9a-f]{128}$/;

export function isDigest(s: string): boolean {
  return DIGEST_RE.test(s);
}

export interface DigestOptions {
  /** Refuse trees with more entries than this (a plugin is not a filesystem dump). Default 100000. */
  maxEntries?: number;
}

interface Entry {
  rel: string;
  relBytes: Buffer;
  kind: 'd' | 'f' | 'l';
}

/** Returns "sha3-512:<128 hex digits>" for the directory `dir`. */
export async function digestDirectory(dir: string, opts: DigestOptions = {}): Promise<string> {
  const maxEntries = opts.maxEntries ?? 100_000;
  const root = await fs.promises.realpath(dir);
  const st = await fs.promises.lstat(root);
  if (!st.isDirectory()) throw new UnsafeFileError(dir, 'not-directory', 'not a directory');

  const entries: Entry[] = [];
  // Iterative walk: directory depth is not bounded by the JS stack.
  const pending: string[] = [''];
  while (pending.length > 0) {
    const relDir = pending.pop() as string;
    const names = await fs.promises.readdir(path.join(root, relDir));
    for (const name of names) {
      const rel = relDir === '' ? name : `${relDir}/${name}`;
      const abs = path.join(root, rel);
      const lst = await fs.promises.lstat(abs);
      const kind = await classify(root, rel, abs, lst);
      entries.push({ rel, relBytes: Buffer.from(rel, 'utf8'), kind });
      if (entries.length > maxEntries) throw new UnsafeFileError(dir, 'too-many-entries', `more than ${maxEntries} entries`);
      if (kind === 'd') pending.push(rel);
    }
  }
  entries.sort((a, b) => Buffer.compare(a.relBytes, b.relBytes));

  const hash = createHash('sha3-512');
  hash.update('warden-tree-v1\0');
  for (const e of entries) {
    const abs = path.join(root, e.rel);
    if (e.kind === 'd') {
      hash.update('d\0').update(e.relBytes).update('\0');
    } else if (e.kind === 'l') {
      hash.update('l\0').update(e.relBytes).update('\0').update(await fs.promises.readlink(abs, { encoding: 'buffer' })).update('\0');
    } else {
      await hashFile(hash, abs, e);
    }
  }
  return DIGEST_PREFIX + hash.digest('hex');
}

/** What an entry of a plugin tree is; throws UnsafeFileError for what a tree may not hold. */
export async function classify(root: string, rel: string, abs: string, st: fs.Stats): Promise<'d' | 'f' | 'l'> {
  if (st.isDirectory()) return 'd';
  if (st.isFile()) {
    if ((st.mode & 0o6000) !== 0) throw new UnsafeFileError(rel, 'setuid', 'setuid/setgid bit set');
    return 'f';
  }
  if (st.isSymbolicLink()) {
    const target = await fs.promises.readlink(abs);
    if (path.isAbsolute(target)) throw new UnsafeFileError(rel, 'symlink-absolute', `symlink to absolute path ${target}`);
    // A lexical check is not enough (a link to "x/.." where x -> "." leaves the tree), so resolve it.
    let real: string;
    try {
      real = await fs.promises.realpath(abs);
    } catch {
      throw new UnsafeFileError(rel, 'symlink-dangling', `symlink to ${target}, which does not exist`);
    }
    if (real !== root && !real.startsWith(root + path.sep)) {
      throw new UnsafeFileError(rel, 'symlink-escape', `symlink to ${target} leaves the plugin directory`);
    }
    return 'l';
  }
  const kind = st.isFIFO() ? 'fifo' : st.isSocket() ? 'socket' : st.isBlockDevice() || st.isCharacterDevice() ? 'device' : 'unknown';
  throw new UnsafeFileError(rel, kind, `is a ${kind}, not a regular file, directory or symlink`);
}

async function hashFile(hash: Hash, abs: string, e: Entry): Promise<void> {
  // O_NOFOLLOW: if the file was swapped for a symlink since the walk, fail rather than follow it.
  const fh = await fs.promises.open(abs, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW | fs.constants.O_NONBLOCK);
  try {
    const st = await fh.stat();
    if (!st.isFile()) throw new UnsafeFileError(e.rel, 'changed', 'changed type while being hashed');
    const mode = (st.mode & 0o111) !== 0 ? '755' : '644';
    hash.update('f\0').update(e.relBytes).update(`\0${mode}\0${st.size}\0`);
    const buf = Buffer.allocUnsafe(1024 * 1024);
    let total = 0;
    for (;;) {
      const { bytesRead } = await fh.read(buf, 0, buf.length, null);
      if (bytesRead === 0) break;
      total += bytesRead;
      if (total > st.size) break;
      hash.update(buf.subarray(0, bytesRead));
    }
    // The size is in the encoding before the contents; a file changing under us must not yield a digest.
    if (total !== st.size) throw new UnsafeFileError(e.rel, 'changed', 'changed size while being hashed; retry when it is stable');
  } finally {
    await fh.close();
  }
}
