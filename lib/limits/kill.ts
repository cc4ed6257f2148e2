/**
 * Killing everything in a sandbox's cgroup, including processes that double-forked and called setsid
 * (they left the process group and session, not the cgroup). In order of preference:
 *  1. cgroup.kill (v2, Linux ≥ 5.14): the kernel kills every task atomically, forks in flight included.
 *     Used on hybrid hosts too, through the controller-less v2 directory.
 *  2. freeze, SIGKILL each listed process, thaw (v2 cgroup.freeze, or the v1 freezer): a frozen task
 *     cannot fork, so the list cannot grow behind our back.
 *  3. SIGKILL each listed process until none is left: racy against a fork loop, bounded by pids.max.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { exists, readText, tryWrite, parseKeyed } from './cgroupfs';
import { watchFile } from './events';
import type { Backend } from './backend';

export type KillMethod = 'cgroup.kill' | 'cgroup.freeze' | 'freezer' | 'signal';

export function killMethod(b: Backend): KillMethod {
  if (b.v2Dir !== undefined && exists(path.join(b.v2Dir, 'cgroup.kill'))) return 'cgroup.kill';
  if (b.v2Dir !== undefined && exists(path.join(b.v2Dir, 'cgroup.freeze'))) return 'cgroup.freeze';
  if (b.freezerDir !== undefined) return 'freezer';
  return 'signal';
}

function listPids(procsFile: string): number[] {
  return (readText(procsFile) ?? '').split('\n').filter((s) => s !== '').map(Number);
}

function signalAll(procsFile: string): number {
  const pids = listPids(procsFile);
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // ESRCH: it exited between the read and the kill
    }
  }
  return pids.length;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function waitFor(check: () => boolean, deadlineMs: number): Promise<boolean> {
  const until = Date.now() + deadlineMs;
  for (let delay = 1; !check(); delay = Math.min(delay * 2, 20)) {
    if (Date.now() > until) return false;
    await sleep(delay);
  }
  return true;
}

/** Sends the kill. Synchronous where the kernel allows (cgroup.kill), so it can run inside an event handler. */
export async function killCgroup(b: Backend, method = killMethod(b)): Promise<void> {
  switch (method) {
    case 'cgroup.kill':
      tryWrite(path.join(b.v2Dir!, 'cgroup.kill'), '1');
      return;
    case 'cgroup.freeze': {
      const dir = b.v2Dir!;
      tryWrite(path.join(dir, 'cgroup.freeze'), '1');
      await waitFor(() => parseKeyed(readText(path.join(dir, 'cgroup.events')) ?? '').get('frozen') === 1, 1000);
      signalAll(path.join(dir, 'cgroup.procs'));
      tryWrite(path.join(dir, 'cgroup.freeze'), '0'); // SIGKILL is delivered once thawed
      return;
    }
    case 'freezer': {
      const dir = b.freezerDir!;
      const state = path.join(dir, 'freezer.state');
      tryWrite(state, 'FROZEN');
      await waitFor(() => (readText(state) ?? '').trim() === 'FROZEN', 1000);
      signalAll(path.join(dir, 'cgroup.procs'));
      tryWrite(state, 'THAWED');
      return;
    }
    case 'signal':
      for (let round = 0; round < 100 && signalAll(b.anyProcsFile) > 0; round++) await sleep(1);
      return;
  }
}

/** True when no process is left in any of the sandbox's cgroups. */
export function isEmpty(b: Backend): boolean {
  if (b.v2Dir !== undefined) {
    const populated = parseKeyed(readText(path.join(b.v2Dir, 'cgroup.events')) ?? '').get('populated');
    if (populated !== undefined) return populated === 0;
  }
  return b.procsFiles.every((f) => listPids(f).length === 0);
}

/** Resolves true once the cgroup is empty (v2: cgroup.events `populated 0`, no timer), false at the deadline. */
export async function waitEmpty(b: Backend, deadlineMs = 5000): Promise<boolean> {
  if (isEmpty(b)) return true;
  const events = b.v2Dir !== undefined ? path.join(b.v2Dir, 'cgroup.events') : undefined;
  if (events !== undefined && fs.existsSync(events)) {
    return new Promise((resolve) => {
      let stop: () => void = () => {};
      const done = (v: boolean) => { stop(); clearTimeout(t); resolve(v); };
      const t = setTimeout(() => done(isEmpty(b)), deadlineMs);
      stop = watchFile(events, () => { if (isEmpty(b)) done(true); });
      if (isEmpty(b)) done(true); // it emptied between the first check and the watch
    });
  }
  return waitFor(() => isEmpty(b), deadlineMs);
}
