/**
 * The files of a plugin directory as the scan sees them: walked without following any symlink
 * (lstat only), bounded in entries, each file opened with O_NOFOLLOW and read only up to the size
 * the scan would parse. A symlink is listed with its target, never followed: the files a link
 * inside the tree points to are scanned where they are, and one that leaves the tree is a finding.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

export interface ScanEntry {
  /** Relative path, '/'-separated. */
  path: string;
  kind: 'f' | 'd' | 'l';
  /** Files: size in bytes. */
  size?: number;
  /** Symlinks: the target as written. */
  target?: string;
  /** Files: the contents (read at most `maxBytes` of them; undefined when larger). */
  read?: () => Buffer | undefined;
}

export interface DirectoryListing {
  entries: ScanEntry[];
  /** True when the walk stopped at `maxFiles`. */
  truncated: boolean;
}

/** Walks `dir` breadth first, at most `maxFiles` entries; throws only for `dir` itself. */
export function listDirectory(dir: string, maxFiles: number): DirectoryListing {
  const root = fs.realpathSync(dir);
  if (!fs.lstatSync(root).isDirectory()) throw Object.assign(new Error(`${dir} is not a directory`), { code: 'ENOTDIR', path: dir });
  const entries: ScanEntry[] = [];
  const pending: string[] = [''];
  while (pending.length > 0) {
    const relDir = pending.shift()!;
    // Read no more names than could still be listed (and one to tell the walk stopped short): a
    // directory of millions of entries costs what maxFiles allows, not an array of all its names.
    const names = readNames(path.join(root, relDir), maxFiles - entries.length + 1);
    if (names === undefined) continue; // unreadable: what is in it is not seen (the load's digest would refuse it)
    names.sort();
    for (const name of names) {
      if (entries.length >= maxFiles) return { entries, truncated: true };
      const rel = relDir === '' ? name : `${relDir}/${name}`;
      const abs = path.join(root, rel);
      let st: fs.Stats;
      try {
        st = fs.lstatSync(abs);
      } catch {
        continue;
      }
      if (st.isDirectory()) {
        entries.push({ path: rel, kind: 'd' });
        pending.push(rel);
      } else if (st.isSymbolicLink()) {
        let target = '';
        try {
          target = fs.readlinkSync(abs);
        } catch {
          target = '';
        }
        entries.push({ path: rel, kind: 'l', target });
      } else if (st.isFile()) {
        entries.push({ path: rel, kind: 'f', size: st.size, read: () => readNoFollow(abs, st.size) });
      }
    }
  }
  return { entries, truncated: false };
}

/** Up to `max` names of the directory `abs` (in the order the file system gives them); undefined when it cannot be read. */
function readNames(abs: string, max: number): string[] | undefined {
  let d: fs.Dir;
  try {
    d = fs.opendirSync(abs);
  } catch {
    return undefined;
  }
  const names: string[] = [];
  try {
    while (names.length < max) {
      const e = d.readSync();
      if (e === null) break;
      names.push(e.name);
    }
  } catch {
    // A directory that fails half way is seen as far as it was read.
  } finally {
    d.closeSync();
  }
  return names;
}

function readNoFollow(abs: string, size: number): Buffer | undefined {
  let fd: number;
  try {
    fd = fs.openSync(abs, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW | fs.constants.O_NONBLOCK);
  } catch {
    return undefined;
  }
  try {
    const st = fs.fstatSync(fd);
    // Swapped for something else since the walk: not what was listed, not read.
    if (!st.isFile() || st.size !== size) return undefined;
    // Not from the shared pool: the worker is sent the buffer's whole memory, which is then this file only.
    const data = Buffer.allocUnsafeSlow(size);
    let total = 0;
    while (total < size) {
      const n = fs.readSync(fd, data, total, size - total, total);
      if (n === 0) break;
      total += n;
    }
    return total === size ? data : undefined;
  } catch {
    return undefined;
  } finally {
    fs.closeSync(fd);
  }
}

/** True when a link at `linkPath` to `target` resolves outside the tree at any step (or is absolute). */
export function linkLeaves(linkPath: string, target: string): boolean {
  if (target === '' || path.posix.isAbsolute(target)) return true;
  const parts = linkPath.split('/').slice(0, -1);
  for (const seg of target.split('/')) {
    if (seg === '' || seg === '.') continue;
    if (seg === '..') {
      if (parts.length === 0) return true;
      parts.pop();
    } else {
      parts.push(seg);
    }
  }
  return false;
}
