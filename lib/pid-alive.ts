/**
 * Whether a process with this pid exists (in our pid namespace). EPERM means it exists but is not
 * ours to signal. Used to tell a dead host's leftovers from a live host's; pids are reused, so a true
 * answer may be another process: callers that clean up treat it as "keep".
 */
export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}
