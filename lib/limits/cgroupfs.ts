/**
 * Small file helpers for cgroupfs. Writes turn errno into LimitError naming the limit and the file;
 * stat reads go through fds kept open and pread at offset 0, which re-renders a kernfs file and costs
 * about a tenth of open+read+close (stats() is meant to be called often, for many sandboxes).
 */
import * as fs from 'node:fs';
import { LimitError } from '../errors';

export const DELEGATION_HELP =
  'run the host as root, or give it a delegated cgroup: under systemd start it with `systemd-run --user -p Delegate=yes ...` ' +
  'or Delegate=yes in its unit (cgroup v2), or chown the cgroup directories to its user (cgroup v1); ' +
  'or pass limits.allowDegraded to run with rlimits instead';

export function errnoOf(e: unknown): string | undefined {
  return (e as NodeJS.ErrnoException | undefined)?.code;
}

export function writeCg(limit: string, file: string, value: string): void {
  try {
    fs.writeFileSync(file, value);
  } catch (e) {
    const errno = errnoOf(e);
    throw new LimitError(limit, `cannot set the ${limit} limit: writing '${value}' to ${file} failed with ${errno}`, { path: file, errno });
  }
}

/** Write that may fail without consequence (a tuning knob that some kernels lack). Returns success. */
export function tryWrite(file: string, value: string): boolean {
  try {
    fs.writeFileSync(file, value);
    return true;
  } catch {
    return false;
  }
}

export function readText(file: string): string | undefined {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch {
    return undefined;
  }
}

/** `key value` lines (memory.events, cpu.stat, pids.events, memory.oom_control, cgroup.events). */
export function parseKeyed(text: string): Map<string, number> {
  const m = new Map<string, number>();
  for (const line of text.split('\n')) {
    const sp = line.indexOf(' ');
    if (sp > 0) m.set(line.slice(0, sp), Number(line.slice(sp + 1)));
  }
  return m;
}

export function exists(file: string): boolean {
  try {
    fs.accessSync(file);
    return true;
  } catch {
    return false;
  }
}

/** Reads of cgroup counter files by this process (StatFile), for the benchmarks and their tests. */
export const statFileReads = { count: 0 };

/** An fd kept open on a cgroup file, read from offset 0 each time. Missing file → reads give undefined. */
export class StatFile {
  private fd: number | undefined;
  private static readonly buf = Buffer.alloc(4096);
  constructor(readonly file: string) {
    try {
      this.fd = fs.openSync(file, 'r');
    } catch {
      this.fd = undefined;
    }
  }
  get available(): boolean {
    return this.fd !== undefined;
  }
  text(): string | undefined {
    if (this.fd === undefined) return undefined;
    statFileReads.count++;
    try {
      const n = fs.readSync(this.fd, StatFile.buf, 0, StatFile.buf.length, 0);
      return StatFile.buf.toString('latin1', 0, n);
    } catch {
      return undefined; // the cgroup is being removed
    }
  }
  /** A single number; 'max' reads as Infinity. */
  number(): number | undefined {
    const t = this.text();
    if (t === undefined) return undefined;
    const s = t.trim();
    return s === 'max' ? Infinity : Number(s);
  }
  keyed(): Map<string, number> | undefined {
    const t = this.text();
    return t === undefined ? undefined : parseKeyed(t);
  }
  close(): void {
    if (this.fd !== undefined) fs.closeSync(this.fd);
    this.fd = undefined;
  }
}

/** Remove a cgroup directory, retrying briefly on EBUSY (v1 lets exiting tasks linger a moment). */
export async function removeCgroupDir(dir: string, deadlineMs = 2000): Promise<void> {
  const until = Date.now() + deadlineMs;
  for (let delay = 1; ; delay = Math.min(delay * 2, 50)) {
    try {
      fs.rmdirSync(dir);
      return;
    } catch (e) {
      const errno = errnoOf(e);
      if (errno === 'ENOENT') return;
      if (errno !== 'EBUSY' || Date.now() > until) {
        throw new LimitError('cgroup', `cannot remove cgroup ${dir}: ${errno}`, { path: dir, errno, code: 'ERR_LIMIT_CLEANUP' });
      }
    }
    await new Promise((r) => setTimeout(r, delay));
  }
}
