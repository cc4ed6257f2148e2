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
 * names that are not UTF-8 (they could not be written back as they were digested), and symlinks that
 * are absolute, dangling, looping or that leave the directory at any step of their resolution.
 *
 * Symlinks are resolved the way they will be where the plugin runs: its files are recreated under
 * /plugin in the sandbox, where "../../../../srv/plugins/p/real.js" leaves /plugin for the host path it
 * names, even though on the host it lands back inside the directory. So a link is followed inside the
 * tree only (resolveInTree): ".." above the top is refused, whatever lies above it here or there.
 * Every failure to read the tree is an ERR_TRUST_* error (TreeReadError for I/O).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { createHash, Hash } from 'node:crypto';
import { TreeReadError, TrustError, UnsafeFileError } from './errors';

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
  try {
    const root = await fs.promises.realpath(dir);
    const st = await fs.promises.lstat(root);
    if (!st.isDirectory()) throw new UnsafeFileError(dir, 'not-directory', 'not a directory');

    const entries: Entry[] = [];
    // Iterative walk: directory depth is not bounded by the JS stack.
    const pending: string[] = [''];
    while (pending.length > 0) {
      const relDir = pending.pop() as string;
      const names = await fs.promises.readdir(path.join(root, relDir), { encoding: 'buffer' });
      for (const raw of names) {
        const rel = childPath(relDir, raw);
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
  } catch (e) {
    throw treeError(e, dir);
  }
}

/**
 * Turns a file system error met while reading a plugin tree into TreeReadError, so that every
 * refusal of a tree carries an ERR_TRUST_* code. Trust errors and anything else pass through.
 */
export function treeError(e: unknown, dir: string): unknown {
  if (e instanceof TrustError) return e;
  const err = e as NodeJS.ErrnoException;
  if (typeof err?.code === 'string' && /^E[A-Z0-9]+$/.test(err.code)) {
    // The message names the errno, what it means and the call: "ENOENT: no such file or directory, lstat '…'".
    return new TreeReadError(typeof err.path === 'string' ? err.path : dir, err.code, err.message);
  }
  return e;
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/**
 * The relative path of a directory entry whose name readdir gave as bytes. A name that is not UTF-8
 * is refused: as a JS string it would be mangled (U+FFFD), so it could neither be opened under that
 * name nor recreated in the sandbox as it is here.
 */
export function childPath(relDir: string, raw: Buffer): string {
  let name: string;
  try {
    name = utf8.decode(raw);
  } catch {
    const shown = `${relDir === '' ? '' : `${relDir}/`}${raw.toString('latin1').replace(/[^\x20-\x7e]/g, '?')}`;
    throw new UnsafeFileError(shown, 'name-not-utf8', 'file name is not valid UTF-8; rename it');
  }
  return relDir === '' ? name : `${relDir}/${name}`;
}

/** Most symlinks followed while resolving one link, as the kernel's limit (ELOOP past it). */
const MAX_LINK_HOPS = 40;

/**
 * Resolves the symlink `rel` (its target `target`) as it will resolve in the sandbox, where the tree
 * is the whole of /plugin: components are taken one by one, links inside the tree are expanded, and
 * ".." above the top of the tree is an escape, as is an absolute target anywhere along the way.
 * Returns the tree-relative path it reaches ('' for the top), or throws UnsafeFileError.
 */
export async function resolveInTree(root: string, rel: string, target: string): Promise<string> {
  if (path.isAbsolute(target)) throw new UnsafeFileError(rel, 'symlink-absolute', `symlink to absolute path ${target}`);
  const stack = rel.split('/').slice(0, -1);
  let pending = target.split('/');
  let hops = 0;
  while (pending.length > 0) {
    const comp = pending.shift() as string;
    if (comp === '' || comp === '.') continue;
    if (comp === '..') {
      if (stack.length === 0) {
        throw new UnsafeFileError(rel, 'symlink-escape', `symlink to ${target} leaves the plugin directory (in the sandbox it would resolve outside /plugin)`);
      }
      stack.pop();
      continue;
    }
    const here = [...stack, comp].join('/');
    let st: fs.Stats;
    try {
      st = await fs.promises.lstat(path.join(root, here));
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ENOTDIR') throw new UnsafeFileError(rel, 'symlink-dangling', `symlink to ${target}, which does not exist in the plugin directory`);
      throw e;
    }
    if (st.isSymbolicLink()) {
      if (++hops > MAX_LINK_HOPS) throw new UnsafeFileError(rel, 'symlink-loop', `symlink to ${target} loops (more than ${MAX_LINK_HOPS} links)`);
      const next = await fs.promises.readlink(path.join(root, here));
      if (path.isAbsolute(next)) throw new UnsafeFileError(rel, 'symlink-absolute', `symlink to ${target} goes through ${here}, a symlink to absolute path ${next}`);
      pending = [...next.split('/'), ...pending];
      continue;
    }
    if (pending.some((c) => c !== '' && c !== '.') && !st.isDirectory()) {
      throw new UnsafeFileError(rel, 'symlink-dangling', `symlink to ${target}, which goes through ${here}, not a directory`);
    }
    stack.push(comp);
  }
  return stack.join('/');
}

/** What an entry of a plugin tree is; throws UnsafeFileError for what a tree may not hold. */
export async function classify(root: string, rel: string, abs: string, st: fs.Stats): Promise<'d' | 'f' | 'l'> {
  if (st.isDirectory()) return 'd';
  if (st.isFile()) {
    if ((st.mode & 0o6000) !== 0) throw new UnsafeFileError(rel, 'setuid', 'setuid/setgid bit set');
    return 'f';
  }
  if (st.isSymbolicLink()) {
    const raw = await fs.promises.readlink(abs, { encoding: 'buffer' });
    let target: string;
    try {
      target = utf8.decode(raw);
    } catch {
      throw new UnsafeFileError(rel, 'symlink-not-utf8', 'symlink target is not valid UTF-8');
    }
    // Resolved inside the tree, not with realpath here: see resolveInTree (which refuses absolute targets too).
    await resolveInTree(root, rel, target);
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
