/**
 * Why a bind source or mount target was refused, in words: the native side answers with an errno
 * only (the child between clone and exec cannot format text), so the offending component is found
 * again here, after the fact. For the message only: the refusal itself was made by the kernel walk.
 */
import * as fs from 'node:fs';

/** '/a/b/c' → ['/a', '/a/b', '/a/b/c']. */
function prefixes(p: string): string[] {
  const parts = p.split('/').filter((c) => c !== '');
  return parts.map((_, i) => '/' + parts.slice(0, i + 1).join('/'));
}

/** The first component of `p` that is a symlink now, with what it points to, or undefined. */
export function symlinkComponent(p: string): { component: string; to: string } | undefined {
  for (const c of prefixes(p)) {
    let st: fs.Stats;
    try {
      st = fs.lstatSync(c);
    } catch {
      return undefined;
    }
    if (st.isSymbolicLink()) {
      let to = '?';
      try {
        to = fs.readlinkSync(c);
      } catch {
        // gone meanwhile
      }
      return { component: c, to };
    }
  }
  return undefined;
}

/** The first directory on the way to `p` that `uid`:`gid` (no supplementary groups) may not search. */
function unsearchable(p: string, uid: number, gid: number): string | undefined {
  for (const dir of ['/', ...prefixes(p).slice(0, -1)]) {
    let st: fs.Stats;
    try {
      st = fs.statSync(dir);
    } catch {
      return undefined;
    }
    const bit = st.uid === uid ? 0o100 : st.gid === gid ? 0o010 : 0o001;
    if ((st.mode & bit) === 0) return dir;
  }
  return undefined;
}

/** The reason a bind source was refused (stage 'bind-source'), naming the component and the way out. */
export function explainBindSource(source: string, errnoName: string, hostUid: number, hostGid: number): string {
  if (errnoName === 'ELOOP') {
    const link = symlinkComponent(source);
    const what = link === undefined ? `a component of '${source}' was a symlink when the sandbox was set up` : `'${link.component}' is a symlink (to '${link.to}')`;
    return `${what}: warden never follows a symlink in a bind source (a sandbox that can write there could point it anywhere); bind the real path`;
  }
  if (errnoName === 'EACCES') {
    const dir = unsearchable(source, hostUid, hostGid);
    const what = dir === undefined ? `'${source}' was out of reach of host uid ${hostUid}` : `'${dir}' cannot be searched by host uid ${hostUid}`;
    return `${what}: a bind shows only what the sandbox's host identity can reach itself; make the path reachable to it (e.g. chmod o+x) or bind another path`;
  }
  return `'${source}' could not be opened`;
}

/** The reason a mount target inside the new root was refused (stage 'mount-target'). */
export function explainMountTarget(target: string, errnoName: string): string {
  if (errnoName === 'ELOOP') {
    return `'${target}' is reached through a symlink inside the sandbox (under a bind whose host directory holds one?): mounts are never made through symlinks; pick a target without symlinks`;
  }
  return `'${target}' could not be reached inside the sandbox`;
}
