/**
 * Sandbox cgroups left behind by hosts that died (SIGKILL, OOM kill, power loss) and never ran their
 * teardown. Their sandboxes are gone already (every sandbox gets a parent-death signal), but their
 * directories stay in every hierarchy until someone removes them; a host that comes back removes them.
 *
 * What is removed, and what never is:
 * - only directories named like ours (`warden.<host pid>.<n>`) under this host's own cgroups;
 * - only when no process with that host pid is alive (a live host, or a process that got the pid
 *   again, keeps them: we cannot tell a live host from its pid alone, so we leave them), or when the
 *   pid is ours and the directory existed before this process made any cgroup (a dead host whose pid
 *   we got: see listSandboxCgroups);
 * - only when empty: a cgroup that still holds a process is left and reported, never killed.
 * Removal is a plain rmdir, which the kernel refuses for a cgroup with tasks or children in use.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { pidAlive } from '../pid-alive';
import { CGROUP_PREFIX, inheritedSandboxCgroups, sandboxCgroupsNamed } from './sandbox-cgroup';

export interface LeftoverCgroup {
  /** The directory. */
  path: string;
  /** The pid of the host that made it (from its name). */
  hostPid: number;
  /** What was done: removed (or, when only looking, removable), or left and why. */
  outcome: 'removed' | 'removable' | 'host-alive' | 'has-processes' | 'failed';
  /** For 'failed': the errno; for 'has-processes': how many. */
  detail?: string;
}

/** warden.<host pid>.<n>, or warden.<host pid>.<worker thread id>.<n> (sandbox-cgroup.ts nextName). */
const NAME = new RegExp(`^${CGROUP_PREFIX.replace('.', '\\.')}(\\d+)\\.(?:\\d+\\.)?\\d+$`);

/**
 * Finds the sandbox cgroups of other hosts under this host's cgroups and, with `remove`, removes
 * those of dead hosts that are empty. Without it, only reports (warden doctor).
 */
export function deadHostCgroups(remove: boolean): LeftoverCgroup[] {
  const inherited = inheritedSandboxCgroups();
  const out: LeftoverCgroup[] = [];
  for (const dir of sandboxCgroupsNamed(CGROUP_PREFIX)) {
    const m = NAME.exec(path.basename(dir));
    if (m === null) continue;
    const hostPid = Number(m[1]);
    const ours = hostPid === process.pid;
    if (ours && !inherited.has(dir)) continue; // a live sandbox of this host
    if (!ours && pidAlive(hostPid)) {
      out.push({ path: dir, hostPid, outcome: 'host-alive' });
      continue;
    }
    const procs = readProcs(dir);
    if (procs > 0) {
      out.push({ path: dir, hostPid, outcome: 'has-processes', detail: `${procs} process(es)` });
      continue;
    }
    if (!remove) {
      out.push({ path: dir, hostPid, outcome: 'removable' });
      continue;
    }
    try {
      fs.rmdirSync(dir);
      inherited.delete(dir);
      out.push({ path: dir, hostPid, outcome: 'removed' });
    } catch (e) {
      out.push({ path: dir, hostPid, outcome: 'failed', detail: (e as NodeJS.ErrnoException).code ?? String(e) });
    }
  }
  return out;
}

/** Processes in a cgroup (v1 and v2 both have cgroup.procs); unreadable counts as in use. */
function readProcs(dir: string): number {
  try {
    return fs.readFileSync(path.join(dir, 'cgroup.procs'), 'utf8').split('\n').filter((l) => l !== '').length;
  } catch {
    return 1;
  }
}
